//! Colours and symbols, off when `NO_COLOR` is set or output is not a
//! terminal.

use crate::events::{FailureKind, StageStatus};

/// Whether to colour output.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colour when `tty` and `NO_COLOR` is unset.
    pub fn new(tty: bool) -> Self {
        Self {
            color: tty && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// Green.
    pub fn ok(&self, s: &str) -> String {
        self.paint("32", s)
    }
    /// Red.
    pub fn bad(&self, s: &str) -> String {
        self.paint("31", s)
    }
    /// Yellow.
    pub fn warn(&self, s: &str) -> String {
        self.paint("33", s)
    }
    /// Cyan.
    pub fn busy(&self, s: &str) -> String {
        self.paint("36", s)
    }
    /// Grey.
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    /// Bold.
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// The symbol of a finished stage.
pub fn symbol(status: StageStatus) -> &'static str {
    match status {
        StageStatus::Succeeded => "✓",
        StageStatus::Failed => "✗",
        StageStatus::Skipped => "↷",
        StageStatus::Cancelled => "⊘",
    }
}

/// How a failure is named for people.
pub fn failure_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Plugin => "failed",
        FailureKind::Gate => "gate failed",
        FailureKind::Trap => "crashed",
        FailureKind::Timeout => "timed out",
        FailureKind::Limit => "limit hit",
        FailureKind::Host => "could not run",
    }
}

/// `12ms`, `3.4s`, `2m05s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Cut `s` to `width` characters, with an ellipsis when cut.
pub fn fit(s: &str, width: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    let s = crate::events::printable(&s).into_owned();
    if s.chars().count() <= width {
        s
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// `path` relative to the working directory when it is inside it.
pub fn short_path(path: &str) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            std::path::Path::new(path)
                .strip_prefix(cwd)
                .ok()
                .map(|p| p.display().to_string())
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| path.to_string())
}

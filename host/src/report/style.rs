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
        FailureKind::RolledBack => "rolled back",
        FailureKind::Approval => "not approved",
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

pub use crate::events::fit;

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

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-22 02:16:05 UTC` for milliseconds since the Unix epoch.
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let day = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        day / 3600,
        (day / 60) % 60,
        day % 60
    )
}

#[cfg(test)]
mod date_tests {
    use super::{civil_from_days, timestamp};

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
        assert_eq!(timestamp(1_763_764_565_000), "2025-11-21 22:36:05 UTC");
    }
}

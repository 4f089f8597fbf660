//! Conveniences for the `process` import: a [`Command`] builder, `?` from a
//! [`HostError`] to a [`Failure`], and ways to describe an [`Exit`].
//!
//! ```no_run
//! use weir_sdk::Failure;
//! use weir_sdk::process::Command;
//!
//! fn build() -> Result<(), Failure> {
//!     let exit = weir_sdk::process::run(&Command::new("make").arg("all").cwd("app"))?;
//!     if !exit.success() {
//!         return Err(Failure::new(format!("make {}", exit.describe())).with_details(exit.tail(20)));
//!     }
//!     Ok(())
//! }
//! ```

use crate::wit::weir::plugin::process::{Command, Exit};
use crate::{Failure, HostError};

impl Command {
    /// Run `program` (as granted in the stage's `allow.exec`) in the
    /// workspace, with no arguments, the stage's environment, no stdin and
    /// the stage's remaining time as its timeout.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            stdin: None,
            timeout_ms: None,
            quiet: false,
        }
    }

    /// Add an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run in this directory, relative to the workspace.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Set an environment variable for this program only.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Write these bytes to its standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Kill it after this many milliseconds (capped by the stage's timeout).
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Keep its output out of the stage's log (it is still returned).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }
}

impl Exit {
    /// Exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// How it ended, for a message: `exited with code 2`, `was killed by
    /// signal 9`, `timed out after 300 ms`.
    pub fn describe(&self) -> String {
        if self.timed_out {
            return format!("timed out after {} ms", self.duration_ms);
        }
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended without an exit status".into(),
        }
    }

    /// The last `lines` lines of its stderr, or of its stdout when stderr
    /// is empty: the part worth quoting in a failure.
    pub fn tail(&self, lines: usize) -> String {
        let bytes = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl From<HostError> for Failure {
    /// A refused or failed host call, as the stage's failure: the host's
    /// message already names the capability and what to grant.
    fn from(e: HostError) -> Self {
        match e {
            HostError::Denied(m)
            | HostError::Unavailable(m)
            | HostError::Invalid(m)
            | HostError::Limit(m)
            | HostError::Failed(m) => Failure::new(m),
        }
    }
}

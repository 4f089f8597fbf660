//! How strongly a stage's programs are sandboxed: what a stage asks for
//! (`sandbox = "..."`) and the least its tenant accepts.

/// Host directories every sandbox shows read-only (when present):
/// programs, their libraries and the dynamic loader. A stage's PATH
/// entries inside them need no grant.
pub const SYSTEM_DIRS: [&str; 6] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// Whether a stage's programs run inside bubblewrap. The order is the
/// strength: `None < Auto < Required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SandboxChoice {
    /// Never: `sandbox = "none"`.
    None,
    /// Inside bubblewrap when it is installed.
    #[default]
    Auto,
    /// Inside bubblewrap, or the stage fails.
    Required,
}

impl SandboxChoice {
    /// `sandbox = "..."` as written.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "bubblewrap" => Some(Self::Required),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// How it is written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Required => "bubblewrap",
            Self::None => "none",
        }
    }
}

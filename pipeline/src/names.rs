//! Names users give: stages, plugins, tenants and environments. One
//! grammar for all of them, since each becomes a directory, a history
//! row, a metric label or a word in a message: 1 to 64 ASCII letters,
//! digits, `-` and `_`, starting with a letter or a digit.
//!
//! Each kind has its own type ([`StageName`], [`PluginName`],
//! [`TenantName`], [`EnvironmentName`]) so that one cannot stand in for
//! another, and a value of one has passed the grammar.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest name.
pub const MAX_NAME: usize = 64;

/// What a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// `[stages.NAME]`.
    Stage,
    /// `[plugins.NAME]`, or a plugin's manifest name.
    Plugin,
    /// `[tenants.NAME]`.
    Tenant,
    /// `[environments.NAME]`.
    Environment,
}

impl NameKind {
    /// `stage`, `plugin`, `tenant` or `environment`.
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Stage => "stage",
            NameKind::Plugin => "plugin",
            NameKind::Tenant => "tenant",
            NameKind::Environment => "environment",
        }
    }
}

/// A name outside the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a valid {} name: {why}", kind.as_str())]
pub struct NameError {
    /// What it was to name.
    pub kind: NameKind,
    /// The name as written.
    pub name: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl NameError {
    /// How to write one instead.
    pub const HELP: &'static str =
        "use 1 to 64 letters, digits, `-` and `_`, starting with a letter or digit";
}

/// Whether `name` is a valid `kind` name.
pub fn check(kind: NameKind, name: &str) -> Result<(), NameError> {
    let fail = |why| {
        Err(NameError {
            kind,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > MAX_NAME {
        return fail("it is longer than 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return fail("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return fail("only letters, digits, `-` and `_` are allowed");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// `name`, if it is in the grammar.
            pub fn parse(name: &str) -> Result<Self, NameError> {
                check($kind, name).map(|()| Self(name.to_string()))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// `name` as it was written, once its problem (if any) is
            /// reported: a plan or a tenants file with a reported problem
            /// is never returned, so no invalid name leaves this crate.
            #[allow(dead_code, reason = "plugin names are checked where they are declared, not planned")]
            pub(crate) fn reported(name: &str) -> Self {
                Self(name.to_string())
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(name: String) -> Result<Self, NameError> {
                check($kind, &name).map(|()| Self(name))
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> String {
                name.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

name_type!(
    /// A stage's name: `[stages.NAME]`.
    StageName,
    NameKind::Stage
);
name_type!(
    /// A plugin's name: `[plugins.NAME]` or its manifest's.
    PluginName,
    NameKind::Plugin
);
name_type!(
    /// A tenant's name: `[tenants.NAME]`.
    TenantName,
    NameKind::Tenant
);
name_type!(
    /// An environment's name: `[environments.NAME]`.
    EnvironmentName,
    NameKind::Environment
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_grammar_for_every_kind() {
        for good in ["build", "deploy-prod", "a_1", "9lives", &"x".repeat(64)] {
            for kind in [
                NameKind::Stage,
                NameKind::Plugin,
                NameKind::Tenant,
                NameKind::Environment,
            ] {
                assert!(check(kind, good).is_ok(), "{good}");
            }
        }
        for bad in ["", "-x", "_x", "a b", "a/b", "../x", "a.b", "é", &"x".repeat(65)] {
            assert!(check(NameKind::Stage, bad).is_err(), "{bad:?}");
        }
        let e = StageName::parse("a b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`a b` is not a valid stage name: only letters, digits, `-` and `_` are allowed"
        );
    }

    #[test]
    fn a_name_reads_as_its_text_and_checks_when_deserialized() {
        let t = TenantName::parse("acme").unwrap();
        assert_eq!(t, "acme");
        assert_eq!(t.len(), 4);
        assert_eq!(format!("{t}"), "acme");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<TenantName>("\"a/b\"").is_err());
        assert_eq!(serde_json::from_str::<TenantName>("\"acme\"").unwrap(), t);
    }
}

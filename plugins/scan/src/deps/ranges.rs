//! Version requirements as RustSec reads them (`>= 0.6.14, < 1.0.0`,
//! `^1.2`, `< 0.6.3`, `=1.2.3`, `~1.2`), turned into intervals.
//!
//! This follows the `rustsec` crate rather than `semver::VersionReq`: a
//! missing minor or patch is 0 (`> 1` is above 1.0.0), caret and tilde
//! ranges end just before the next version's pre-releases (`-0`), and a
//! version is compared by plain semver order, pre-releases included, so
//! `1.0.0-alpha` is at or above `0.9` and `0.9.0-rc.1` is not.

use semver::{Prerelease, Version};

/// One end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    version: Version,
    inclusive: bool,
}

/// A version interval; `None` ends are open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    lower: Option<Bound>,
    upper: Option<Bound>,
}

impl Interval {
    /// Whether `v` lies inside.
    pub fn contains(&self, v: &Version) -> bool {
        let above = self.lower.as_ref().is_none_or(|b| {
            if b.inclusive {
                v >= &b.version
            } else {
                v > &b.version
            }
        });
        let below = self.upper.as_ref().is_none_or(|b| {
            if b.inclusive {
                v <= &b.version
            } else {
                v < &b.version
            }
        });
        above && below
    }
}

/// Parse one requirement string (one or two comma-separated comparators)
/// into an interval.
pub fn parse(req: &str) -> Result<Interval, String> {
    let mut interval = Interval {
        lower: None,
        upper: None,
    };
    let parts: Vec<&str> = req.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err(format!("`{req}` must have one or two comparators"));
    }
    for part in parts {
        let (op, rest) = split_op(part);
        let (version, given) =
            partial_version(rest).ok_or_else(|| format!("`{part}` is not a version comparator"))?;
        let mut set_lower = |b: Bound| -> Result<(), String> {
            if interval.lower.replace(b).is_some() {
                return Err(format!("`{req}` has two lower bounds"));
            }
            Ok(())
        };
        match op {
            ">=" => set_lower(Bound {
                version,
                inclusive: true,
            })?,
            ">" => set_lower(Bound {
                version,
                inclusive: false,
            })?,
            "<" | "<=" => {
                if interval
                    .upper
                    .replace(Bound {
                        version,
                        inclusive: op == "<=",
                    })
                    .is_some()
                {
                    return Err(format!("`{req}` has two upper bounds"));
                }
            }
            "=" => {
                set_lower(Bound {
                    version: version.clone(),
                    inclusive: true,
                })?;
                interval.upper = Some(Bound {
                    version,
                    inclusive: true,
                });
            }
            "^" | "" => {
                let next = if version.major > 0 || given == 1 {
                    Version::new(version.major.saturating_add(1), 0, 0)
                } else if version.minor > 0 || given == 2 {
                    Version::new(0, version.minor.saturating_add(1), 0)
                } else {
                    Version::new(0, 0, version.patch.saturating_add(1))
                };
                set_lower(Bound {
                    version,
                    inclusive: true,
                })?;
                interval.upper = Some(just_before(next));
            }
            "~" => {
                let next = if given == 1 {
                    Version::new(version.major.saturating_add(1), 0, 0)
                } else {
                    Version::new(version.major, version.minor.saturating_add(1), 0)
                };
                set_lower(Bound {
                    version,
                    inclusive: true,
                })?;
                interval.upper = Some(just_before(next));
            }
            other => return Err(format!("`{other}` in `{part}` is not a comparison")),
        }
    }
    Ok(interval)
}

/// `v-0`: below every pre-release of `v`, so the range stops before them.
fn just_before(mut v: Version) -> Bound {
    v.pre = Prerelease::new("0").unwrap_or(Prerelease::EMPTY);
    Bound {
        version: v,
        inclusive: false,
    }
}

fn split_op(s: &str) -> (&str, &str) {
    for op in [">=", "<=", ">", "<", "=", "^", "~"] {
        if let Some(rest) = s.strip_prefix(op) {
            return (op, rest.trim());
        }
    }
    ("", s.trim())
}

/// `1`, `1.2`, `1.2.3`, `1.2.3-rc.1`: the version with missing parts as 0,
/// and how many numeric parts were written.
fn partial_version(s: &str) -> Option<(Version, usize)> {
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    let core = core.split('+').next().unwrap_or(core);
    let nums: Vec<u64> = core.split('.').map(|n| n.parse().ok()).collect::<Option<_>>()?;
    if nums.is_empty() || nums.len() > 3 {
        return None;
    }
    let mut v = Version::new(
        nums[0],
        nums.get(1).copied().unwrap_or(0),
        nums.get(2).copied().unwrap_or(0),
    );
    if let Some(pre) = pre {
        v.pre = Prerelease::new(pre).ok()?;
    }
    Some((v, nums.len()))
}

/// Whether `version` is vulnerable: it lies in none of the `patched` and
/// `unaffected` intervals. No intervals at all means every version is.
pub fn is_vulnerable(version: &Version, safe: &[Interval]) -> bool {
    !safe.iter().any(|i| i.contains(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vulnerable(v: &str, safe: &[&str]) -> bool {
        let safe: Vec<Interval> = safe.iter().map(|s| parse(s).unwrap()).collect();
        is_vulnerable(&Version::parse(v).unwrap(), &safe)
    }

    #[test]
    fn smallvec_advisory() {
        let safe = [">= 0.6.14, < 1.0.0", ">= 1.6.1", "< 0.6.3"];
        assert!(vulnerable("1.6.0", &safe));
        assert!(vulnerable("0.6.10", &safe));
        assert!(!vulnerable("1.6.1", &safe));
        assert!(!vulnerable("0.6.14", &safe));
        assert!(!vulnerable("0.6.2", &safe));
        assert!(vulnerable("1.0.0", &safe));
    }

    #[test]
    fn prereleases_follow_rustsec() {
        assert!(!vulnerable("1.0.0-alpha", &[">= 0.9"]));
        assert!(vulnerable("0.9.0-rc.1", &[">= 0.9"]));
        assert!(!vulnerable("1.5.0-beta", &["^1.2"]));
        assert!(vulnerable("2.0.0-alpha", &["^1.2"]));
        assert!(!vulnerable("0.7.20-alpha", &["> 0.7.19"]));
        assert!(!vulnerable("1.2.3-rc.1", &["< 1.2.3"]));
    }

    #[test]
    fn partial_and_odd_forms() {
        assert!(!vulnerable("1.5.0", &["> 1"]));
        assert!(vulnerable("1.2.1", &["=1.2"]));
        assert!(!vulnerable("1.2.0", &["=1.2"]));
        assert!(!vulnerable("0.54.9", &["0.54.2"]));
        assert!(vulnerable("0.55.0", &["0.54.2"]));
        assert!(!vulnerable("0.3.9", &["^ 0.3.1"]));
        assert!(!vulnerable("1.2.9", &["~1.2"]));
        assert!(vulnerable("1.3.0", &["~1.2"]));
        assert!(!vulnerable("0.9.5", &["< 0.10.0, >= 0.9.3"]));
        assert!(vulnerable("3.0.0", &[]), "no patched versions: all vulnerable");
        assert!(parse(">= 1, >= 2").is_err());
        assert!(parse("1.*").is_err());
        assert!(!vulnerable("0.0.9", &[">= 0.0.8 "]));
    }
}

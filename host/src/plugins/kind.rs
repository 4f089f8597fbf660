//! Telling a component's kind (and WIT version) from its exports.

use crate::bindings::types::PluginKind;

/// The WIT package prefix every weir interface name starts with.
pub const PACKAGE: &str = "weir:plugin";
/// The version this host implements; components must match its major
/// (for 0.x, its minor).
pub const VERSION: &str = "0.1.0";

/// A version of the contract this host implements. Each is bound from
/// its frozen WIT (`crate::bindings`); a component is linked through the
/// bindings of the version its exports carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `weir:plugin@0.1.x`, bound from `wit/since_v0.1.0`.
    V0_1,
}

impl Contract {
    /// The contract a WIT version such as `0.1.0` belongs to, if this host
    /// implements it.
    pub fn of(version: &str) -> Option<Self> {
        let v = semver::Version::parse(version).ok()?;
        // For 0.x, a minor is a contract of its own (semver's caret rule).
        semver::VersionReq::parse("^0.1")
            .ok()
            .filter(|req| req.matches(&v))
            .map(|_| Contract::V0_1)
    }

    /// The package and version, as WIT writes them.
    pub fn package(self) -> &'static str {
        match self {
            Contract::V0_1 => "weir:plugin@0.1.0",
        }
    }
}

/// Every kind with the name of its exported interface.
pub const KINDS: [(PluginKind, &str); 5] = [
    (PluginKind::Stage, "stage"),
    (PluginKind::Analyzer, "analyzer"),
    (PluginKind::TestRunner, "test-runner"),
    (PluginKind::Strategy, "strategy"),
    (PluginKind::Deployer, "deployer"),
];

/// The kind's name as people write it.
pub fn kind_name(kind: PluginKind) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("unknown", |(_, n)| n)
}

/// What the exports say.
#[derive(Debug, PartialEq, Eq)]
pub enum ExportedKind {
    /// Exactly one kind, at a supported version, with `plugin.describe`.
    One(PluginKind, Contract),
    /// No weir kind interface among the exports.
    None,
    /// More than one kind.
    Many(Vec<&'static str>),
    /// Built against a WIT version this host does not support.
    Version(String),
    /// A kind, but no `weir:plugin/plugin` (so no `describe()`).
    NoDescribe,
}

/// Inspect export names such as `weir:plugin/stage@0.1.0`.
pub fn exported_kind<'a>(exports: impl IntoIterator<Item = &'a str>) -> ExportedKind {
    let mut kinds = Vec::new();
    let mut has_plugin = false;
    let mut contracts = Vec::new();
    for name in exports {
        let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let Some(contract) = Contract::of(version) else {
            return ExportedKind::Version(format!("{PACKAGE}@{version}"));
        };
        if !contracts.contains(&contract) {
            contracts.push(contract);
        }
        if iface == "plugin" {
            has_plugin = true;
        }
        if let Some((kind, _)) = KINDS.iter().find(|(_, n)| *n == iface) {
            kinds.push((*kind, kind_name(*kind)));
        }
    }
    match (kinds.as_slice(), contracts.as_slice()) {
        ([], _) => ExportedKind::None,
        ([(k, _)], [contract]) if has_plugin => ExportedKind::One(*k, *contract),
        ([_], [_]) => ExportedKind::NoDescribe,
        ([_], mixed) => ExportedKind::Version(
            mixed
                .iter()
                .map(|c| c.package())
                .collect::<Vec<_>>()
                .join(" and "),
        ),
        (many, _) => ExportedKind::Many(many.iter().map(|(_, n)| *n).collect()),
    }
}

/// The imports weir offers a plugin, whether or not a stage grants them:
/// weir's interfaces, WASI 0.2's, and wasi:http's two.
pub fn offered(import: &str) -> bool {
    const WEIR: [&str; 6] = ["types", "log", "process", "metrics", "secrets", "runtime"];
    const WASI: [&str; 6] = ["io", "clocks", "filesystem", "random", "cli", "sockets"];
    let Some((name, version)) = import.split_once('@') else {
        return false;
    };
    if let Some(iface) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) {
        return WEIR.contains(&iface) && compatible(version);
    }
    let wasi_02 = version.starts_with("0.2.");
    match name.strip_prefix("wasi:").and_then(|r| r.split_once('/')) {
        Some(("http", iface)) => wasi_02 && ["types", "outgoing-handler"].contains(&iface),
        Some((package, _)) => wasi_02 && WASI.contains(&package),
        None => false,
    }
}

/// Whether WIT `version` is loadable by this host: one of its
/// [`Contract`]s.
pub fn compatible(version: &str) -> bool {
    Contract::of(version).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kind() {
        let e = exported_kind(["weir:plugin/plugin@0.1.0", "weir:plugin/stage@0.1.0"]);
        assert_eq!(e, ExportedKind::One(PluginKind::Stage, Contract::V0_1));
        assert_eq!(Contract::of("0.1.7"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.2.0"), None);
        assert_eq!(Contract::of("0.1"), None);
    }

    #[test]
    fn offered_imports() {
        for yes in [
            "weir:plugin/log@0.1.0",
            "weir:plugin/runtime@0.1.3",
            "wasi:filesystem/preopens@0.2.12",
            "wasi:io/streams@0.2.0",
            "wasi:http/outgoing-handler@0.2.10",
        ] {
            assert!(offered(yes), "{yes}");
        }
        for no in [
            "weir:plugin/log@0.2.0",
            "weir:plugin/kv@0.1.0",
            "wasi:http/incoming-handler@0.2.10",
            "wasi:keyvalue/store@0.2.0",
            "wasi:io/streams@0.3.0",
            "acme:db/query@1.0.0",
            "log",
        ] {
            assert!(!offered(no), "{no}");
        }
    }

    #[test]
    fn wrong_version_and_missing_kind() {
        assert_eq!(
            exported_kind(["weir:plugin/stage@0.2.0"]),
            ExportedKind::Version("weir:plugin@0.2.0".into())
        );
        assert_eq!(exported_kind(["wasi:cli/run@0.2.6"]), ExportedKind::None);
        assert_eq!(
            exported_kind(["weir:plugin/stage@0.1.0"]),
            ExportedKind::NoDescribe
        );
    }

    #[test]
    fn the_frozen_contract_is_the_current_one() {
        // While this weir implements 0.1.0, wit/ is exactly the frozen
        // contract; a breaking change goes through wit/PENDING_CHANGES.md.
        assert_eq!(VERSION, "0.1.0");
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let frozen = wit.join("since_v0.1.0");
        let mut names: Vec<_> = std::fs::read_dir(&wit)
            .expect("wit/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wit"))
            .collect();
        names.sort();
        assert!(!names.is_empty());
        for current in names {
            let name = current.file_name().expect("a file name");
            let then = std::fs::read_to_string(frozen.join(name)).unwrap_or_default();
            let now = std::fs::read_to_string(&current).expect("readable");
            assert!(
                then == now,
                "{} differs from wit/since_v0.1.0: a change to the 0.1.0 contract must be compatible and frozen too, or go to wit/PENDING_CHANGES.md",
                current.display()
            );
        }
    }
}

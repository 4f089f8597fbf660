//! Loading plugins: from bytes to something a stage can run.
//!
//! [`PluginLoader::load`] reads a built-in or a file, checks its pinned
//! sha256, compiles it (or loads the cached compilation), tells its kind
//! from its exports, links it with no capabilities to call `describe()` in
//! a throwaway Store and read its manifest. The result is shared by every
//! stage that uses the plugin; [`LoadedPlugin::pre_for`] links it once per
//! set of capabilities a stage grants it (see
//! [`crate::sandbox::linking`]).

pub mod builtin;
mod checks;
mod error;
pub mod kind;
mod loading;
pub mod schema;
pub mod wit_section;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use crate::bindings::types::{Manifest, PluginKind};
use crate::bindings::{analyzer, deployer, stage, strategy, test_runner};
use crate::engine::{CacheOutcome, CompileCache, StageLimits, WeirEngine};
use crate::events::EventSink;
use crate::plan::PluginRef;
use crate::sandbox::linking::{Linked, linker_for};
use crate::sandbox::{StageState, StateSpec};

use checks::read_limited;
pub use error::PluginError;
pub use kind::{Contract, kind_name};

/// Largest plugin file accepted (a Python component is ~18 MiB).
pub const MAX_PLUGIN_BYTES: usize = 128 << 20;

/// The longest a plugin may take to compile. Python and JavaScript
/// components (17 MiB) take up to ~20 s on a loaded machine; a component
/// built to make the compiler work far longer is refused before anything
/// is scheduled.
pub const MAX_COMPILE_TIME: std::time::Duration = std::time::Duration::from_secs(120);

/// How long `describe()` may take.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A plugin ready to link and instantiate.
pub struct LoadedPlugin {
    /// What it is.
    pub info: PluginInfo,
    component: Component,
    /// Linked once per set of linked capabilities; instantiated per
    /// attempt.
    linked: Mutex<HashMap<Linked, KindPre>>,
}

/// A loaded plugin could not be linked for a stage's grants.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot link plugin `{plugin}`: {error}")]
pub struct LinkError {
    /// The plugin.
    pub plugin: String,
    /// What wasmtime said, with its causes.
    pub error: String,
}

impl LoadedPlugin {
    /// The plugin linked with what a stage's `grants` give it: each
    /// capability its manifest declares and the stage grants some of, and
    /// refusals for the rest.
    pub fn pre_for(&self, grants: &crate::plan::Grants) -> Result<KindPre, LinkError> {
        let linked = Linked::for_stage(|c| self.info.declares(c), grants);
        let mut cache = self.linked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pre) = cache.get(&linked) {
            return Ok(pre.clone());
        }
        let declares = |c| self.info.declares(c);
        let pre = link_kind(
            &self.component,
            self.info.kind,
            self.info.contract,
            linked,
            &self.info.name,
            Some(&declares),
        )
        .map_err(|e| LinkError {
            plugin: self.info.name.clone(),
            error: format!("{e:#}"),
        })?;
        cache.insert(linked, pre.clone());
        Ok(pre)
    }
}

/// `component` linked with `linked` as its `kind`'s world.
fn link_kind(
    component: &Component,
    kind: PluginKind,
    contract: Contract,
    linked: Linked,
    plugin: &str,
    declares: Option<&dyn Fn(crate::bindings::types::Capability) -> bool>,
) -> wasmtime::Result<KindPre> {
    let linker = linker_for(component.engine(), component, linked, plugin, declares)?;
    pre_of(&linker, component, kind, contract)
}

/// The kind's `InstancePre` of `component` through `linker`, bound by the
/// bindings of the contract version it was built for. A future version
/// adds its arm here, with the adapter that maps it onto the host's types.
fn pre_of(
    linker: &Linker<StageState>,
    component: &Component,
    kind: PluginKind,
    contract: Contract,
) -> wasmtime::Result<KindPre> {
    let instance_pre = linker.instantiate_pre(component)?;
    let Contract::V0_1 = contract;
    Ok(match kind {
        PluginKind::Stage => KindPre::Stage(stage::StagePluginPre::new(instance_pre)?),
        PluginKind::Analyzer => KindPre::Analyzer(analyzer::AnalyzerPluginPre::new(instance_pre)?),
        PluginKind::TestRunner => KindPre::TestRunner(test_runner::TestRunnerPluginPre::new(instance_pre)?),
        PluginKind::Strategy => KindPre::Strategy(strategy::StrategyPluginPre::new(instance_pre)?),
        PluginKind::Deployer => KindPre::Deployer(deployer::DeployerPluginPre::new(instance_pre)?),
    })
}

/// What `weir plugins inspect` shows.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The name the pipeline uses.
    pub name: String,
    /// `built-in` or the file path.
    pub source: String,
    /// sha256 of the component bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// The kind, from its exports.
    pub kind: PluginKind,
    /// The contract version its exports carry, which it is linked by.
    pub contract: Contract,
    /// What `describe()` returned.
    pub manifest: Manifest,
    /// The WIT package its SDK declares (`weir-wit-package`), if any.
    pub wit_package: Option<String>,
    /// Names of its imports (WASI and weir interfaces).
    pub imports: Vec<String>,
    /// Names of its exports.
    pub exports: Vec<String>,
    /// Whether it was compiled now or loaded from the cache.
    pub compiled: CacheOutcome,
}

impl PluginInfo {
    /// `name version`, as events and the history show a plugin.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.manifest.version)
    }

    /// Whether its manifest declares `capability`.
    pub fn declares(&self, capability: crate::bindings::types::Capability) -> bool {
        self.manifest.capabilities.contains(&capability)
    }
}

/// What `weir plugin inspect` shows of a component, problems included.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The name it was inspected under.
    pub name: String,
    /// `built-in` or the file path.
    pub source: String,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// The kind its exports make it, if exactly one.
    pub kind: Option<PluginKind>,
    /// The contract version its exports carry, if one this host speaks.
    pub contract: Option<Contract>,
    /// What `describe()` returned, if it could be called.
    pub manifest: Option<Manifest>,
    /// The WIT package it declares (`weir-wit-package`), if any.
    pub wit_package: Option<String>,
    /// Names of its imports.
    pub imports: Vec<String>,
    /// Names of its exports.
    pub exports: Vec<String>,
    /// Whether it was compiled now or loaded from the cache.
    pub compiled: CacheOutcome,
    /// What would stop weir running it, one sentence each.
    pub problems: Vec<String>,
}

/// The `InstancePre` of each kind's world.
#[derive(Clone)]
pub enum KindPre {
    /// A stage.
    Stage(stage::StagePluginPre<StageState>),
    /// An analyzer.
    Analyzer(analyzer::AnalyzerPluginPre<StageState>),
    /// A test runner.
    TestRunner(test_runner::TestRunnerPluginPre<StageState>),
    /// A strategy.
    Strategy(strategy::StrategyPluginPre<StageState>),
    /// A deployer.
    Deployer(deployer::DeployerPluginPre<StageState>),
}

/// Loads plugins, each once per process.
pub struct PluginLoader {
    engine: WeirEngine,
    cache: CompileCache,
    loaded: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
}

impl PluginLoader {
    /// A loader compiling with `engine` and caching in `cache_dir` (`None`:
    /// no cache).
    pub fn new(engine: WeirEngine, cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let cache = CompileCache::new(cache_dir, engine.engine());
        Ok(Self {
            engine,
            cache,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The compile cache.
    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// The engine.
    pub fn engine(&self) -> &WeirEngine {
        &self.engine
    }

    /// Load what `plugin` names.
    pub async fn load(&self, plugin: &PluginRef) -> Result<Arc<LoadedPlugin>, PluginError> {
        match plugin {
            PluginRef::Builtin(name) => {
                let bytes = builtin::bytes(name).ok_or_else(|| PluginError::UnknownBuiltin(name.clone()))?;
                self.load_bytes(name, "built-in".into(), bytes.to_vec(), None)
                    .await
            }
            PluginRef::File { name, path, sha256 } => {
                let bytes = read_limited(name, path)?;
                self.load_bytes(name, path.display().to_string(), bytes, sha256.as_deref())
                    .await
            }
        }
    }

    /// Inspect what `plugin` names: [`Self::inspect_bytes`].
    pub async fn inspect(&self, plugin: &PluginRef) -> Result<Inspection, PluginError> {
        match plugin {
            PluginRef::Builtin(name) => {
                let bytes = builtin::bytes(name).ok_or_else(|| PluginError::UnknownBuiltin(name.clone()))?;
                self.inspect_bytes(name, "built-in".into(), bytes.to_vec()).await
            }
            PluginRef::File { name, path, .. } => {
                let bytes = read_limited(name, path)?;
                self.inspect_bytes(name, path.display().to_string(), bytes).await
            }
        }
    }
}

/// A capability's name, as manifests, `weir plugins inspect` and the
/// dashboard show it.
pub fn capability_name(c: &crate::bindings::types::Capability) -> &'static str {
    use crate::bindings::types::Capability;
    match c {
        Capability::Process => "process",
        Capability::Network => "network",
        Capability::Metrics => "metrics",
        Capability::Secrets => "secrets",
        Capability::Runtime => "runtime",
        Capability::Files => "files",
    }
}

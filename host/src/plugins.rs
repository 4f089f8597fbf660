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
pub mod kind;
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

impl LoadedPlugin {
    /// The plugin linked with what a stage's `grants` give it: each
    /// capability its manifest declares and the stage grants some of, and
    /// refusals for the rest.
    pub fn pre_for(&self, grants: &crate::plan::Grants) -> Result<KindPre, String> {
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
        .map_err(|e| format!("cannot link plugin `{}`: {e:#}", self.info.name))?;
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

/// Why a plugin could not be loaded. Each names the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin `{name}` from {}: {source}", path.display())]
    Read {
        /// The `uses` name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No such built-in.
    #[error("there is no built-in plugin `{0}`")]
    UnknownBuiltin(String),
    /// Bigger than [`MAX_PLUGIN_BYTES`].
    #[error(
        "plugin `{name}` ({source_label}) is {size} bytes; the limit is {limit} bytes (limit `plugin-size`)"
    )]
    TooLarge {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Compiling took longer than [`MAX_COMPILE_TIME`].
    #[error(
        "plugin `{name}` ({source_label}) took longer than {}s to compile and was refused (limit `compile-time`)",
        limit.as_secs()
    )]
    CompileTime {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// The limit.
        limit: std::time::Duration,
    },
    /// The pinned digest does not match.
    #[error(
        "plugin `{name}` ({source_label}) has sha256 {actual}, but the pipeline pins {expected}; refusing to run it"
    )]
    DigestMismatch {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// Pinned.
        expected: String,
        /// Found.
        actual: String,
    },
    /// Not a component, or not a valid one.
    #[error("plugin `{name}` ({source_label}) is not a valid WebAssembly component: {reason}")]
    Malformed {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What is wrong.
        reason: String,
    },
    /// It declares more memories, tables or elements than a Store may
    /// have.
    #[error(
        "plugin `{name}` ({source_label}) asks for more than a plugin may have: {reason} (limit `{limit}`)"
    )]
    Exceeds {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What it asks for.
        reason: String,
        /// The limit's name.
        limit: &'static str,
    },
    /// The exports do not make it a weir plugin of one kind.
    #[error("plugin `{name}` ({source_label}) {reason}")]
    Kind {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What is wrong.
        reason: String,
    },
    /// It needs an import weir does not provide.
    #[error("plugin `{name}` ({source_label}) cannot be linked: {reason}")]
    Link {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// `describe()` trapped, timed out or returned nonsense.
    #[error("plugin `{name}` ({source_label}): describe() failed: {reason}")]
    Describe {
        /// The name.
        name: String,
        /// Where from.
        source_label: String,
        /// What happened.
        reason: String,
    },
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

    /// Load a component given as bytes.
    pub async fn load_bytes(
        &self,
        name: &str,
        source_label: String,
        bytes: Vec<u8>,
        pinned: Option<&str>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let sha256 = self.precheck(name, &source_label, &bytes, pinned)?;
        let key = format!("{name}\0{sha256}");
        if let Some(hit) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(hit.clone());
        }
        let kind_error = |reason: String| PluginError::Kind {
            name: name.into(),
            source_label: source_label.clone(),
            reason,
        };
        // The contract its SDK declares, checked before any compiling.
        let declared = wit_section::declared_package(&bytes);
        if let Some(reason) = declared.as_deref().and_then(unsupported_package) {
            return Err(kind_error(reason));
        }
        let size = bytes.len();
        let (component, compiled) = self.compile(name, &source_label, bytes, &sha256).await?;

        let (imports, exports) = import_and_export_names(&component);
        let (kind, contract) = kind_of(&exports).map_err(kind_error)?;

        // Linked with no capabilities: describe() needs none, and an
        // import weir does not offer at all is found here.
        let pre = link_kind(&component, kind, contract, Linked::NONE, name, None).map_err(|e| {
            PluginError::Link {
                name: name.into(),
                source_label: source_label.clone(),
                reason: format!("{e:#}"),
            }
        })?;

        let manifest = self
            .describe(name, &pre)
            .await
            .map_err(|reason| PluginError::Describe {
                name: name.into(),
                source_label: source_label.clone(),
                reason,
            })?;
        if manifest.kind != kind {
            return Err(kind_error(kind_mismatch(kind, manifest.kind)));
        }

        let loaded = Arc::new(LoadedPlugin {
            info: PluginInfo {
                name: name.into(),
                source: source_label,
                sha256,
                size,
                kind,
                contract,
                manifest,
                wit_package: declared,
                imports,
                exports,
                compiled,
            },
            component,
            linked: Mutex::new(HashMap::new()),
        });
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, loaded.clone());
        Ok(loaded)
    }

    /// What `weir plugin inspect` shows: as much of the component as can be
    /// read, and every problem that would stop [`Self::load_bytes`] once it
    /// compiles (another contract, a kind the exports or the manifest do
    /// not agree on, imports weir does not offer), listed instead of
    /// refused. What stops it compiling at all is still an error.
    pub async fn inspect_bytes(
        &self,
        name: &str,
        source_label: String,
        bytes: Vec<u8>,
    ) -> Result<Inspection, PluginError> {
        let sha256 = self.precheck(name, &source_label, &bytes, None)?;
        let mut problems = Vec::new();
        let declared = wit_section::declared_package(&bytes);
        if let Some(reason) = declared.as_deref().and_then(unsupported_package) {
            problems.push(reason);
        }
        let size = bytes.len();
        let (component, compiled) = self.compile(name, &source_label, bytes, &sha256).await?;
        let engine = self.engine.engine();
        let (imports, exports) = import_and_export_names(&component);
        let unoffered: Vec<&String> = imports.iter().filter(|i| !kind::offered(i)).collect();
        for import in &unoffered {
            problems.push(format!(
                "imports `{import}`, which weir does not offer a plugin (it offers {}/{{log, process, metrics, secrets, runtime}}, WASI 0.2 and wasi:http's outgoing-handler)",
                kind::PACKAGE
            ));
        }
        let found = kind_of(&exports).map_err(|reason| problems.push(reason)).ok();
        let (kind, contract) = (found.map(|(k, _)| k), found.map(|(_, c)| c));
        let mut manifest = None;
        if let Some((kind, contract)) = found {
            // Imports weir does not offer are listed above; here they trap,
            // so describe() can still say what the plugin claims to be.
            let linked = linker_for(engine, &component, Linked::NONE, name, None).and_then(|mut linker| {
                stub_unoffered(&mut linker, &component, &unoffered)?;
                pre_of(&linker, &component, kind, contract)
            });
            match linked {
                Err(e) => problems.push(format!("cannot be linked: {e:#}")),
                Ok(pre) => match self.describe(name, &pre).await {
                    Err(reason) => problems.push(format!("describe() failed: {reason}")),
                    Ok(m) => {
                        if m.kind != kind {
                            problems.push(kind_mismatch(kind, m.kind));
                        }
                        manifest = Some(m);
                    }
                },
            }
        }
        Ok(Inspection {
            name: name.into(),
            source: source_label,
            sha256,
            size,
            kind,
            contract,
            manifest,
            wit_package: declared,
            imports,
            exports,
            compiled,
            problems,
        })
    }

    /// The checks before compiling: size, the pinned digest, the header.
    /// The bytes' sha256.
    fn precheck(
        &self,
        name: &str,
        source_label: &str,
        bytes: &[u8],
        pinned: Option<&str>,
    ) -> Result<String, PluginError> {
        if bytes.len() > MAX_PLUGIN_BYTES {
            return Err(PluginError::TooLarge {
                name: name.into(),
                source_label: source_label.into(),
                size: bytes.len(),
                limit: MAX_PLUGIN_BYTES,
            });
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(expected) = pinned
            && expected != sha256
        {
            return Err(PluginError::DigestMismatch {
                name: name.into(),
                source_label: source_label.into(),
                expected: expected.into(),
                actual: sha256,
            });
        }
        if let Some(reason) = header_problem(bytes) {
            return Err(PluginError::Malformed {
                name: name.into(),
                source_label: source_label.into(),
                reason,
            });
        }
        Ok(sha256)
    }

    /// Compile `bytes`, or load them from the compile cache, within
    /// [`MAX_COMPILE_TIME`].
    async fn compile(
        &self,
        name: &str,
        source_label: &str,
        bytes: Vec<u8>,
        sha256: &str,
    ) -> Result<(Component, CacheOutcome), PluginError> {
        let malformed = |reason: String| PluginError::Malformed {
            name: name.into(),
            source_label: source_label.into(),
            reason,
        };
        let engine = self.engine.engine().clone();
        let cache = self.cache.clone();
        let digest = sha256.to_string();
        let compiling = tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &digest, &bytes));
        // Cranelift cannot be interrupted: past the limit the plugin is
        // refused and the compiler thread finishes on its own (its result
        // is dropped, nothing is scheduled).
        tokio::time::timeout(MAX_COMPILE_TIME, compiling)
            .await
            .map_err(|_| PluginError::CompileTime {
                name: name.to_string(),
                source_label: source_label.into(),
                limit: MAX_COMPILE_TIME,
            })?
            .map_err(|e| malformed(format!("the compiler thread failed: {e}")))?
            .map_err(|e| {
                let reason = format!("{e:#}");
                match pool_limit(&reason) {
                    Some(limit) => PluginError::Exceeds {
                        name: name.into(),
                        source_label: source_label.into(),
                        reason: reason.rsplit(": ").next().unwrap_or(&reason).to_string(),
                        limit,
                    },
                    None => malformed(reason),
                }
            })
    }

    /// Call `describe()` in a Store with no filesystem, default limits and
    /// a short deadline.
    async fn describe(&self, name: &str, pre: &KindPre) -> Result<Manifest, String> {
        // Log lines from describe() go nowhere: it is not part of a stage.
        let (sink, _rx) = EventSink::channel("describe");
        let state = StageState::new(StateSpec {
            stage: name,
            tenant: "",
            plugin: name,
            declared: &[],
            grants: &Default::default(),
            workspace: None,
            read_dirs: &[],
            env: &[],
            secret_env: &[],
            limits: StageLimits::default(),
            sink,
            deadline: std::time::Instant::now() + DESCRIBE_TIMEOUT,
            sandbox: crate::capabilities::process::Sandbox::Unavailable,
            secret_source: &crate::config::tenants::Tenant::unrestricted_default().secrets,
            tape: Default::default(),
            mapped_dirs: &[],
            target: &Default::default(),
        })
        .map_err(|e| e.to_string())?;
        let mut store =
            crate::guest_call::new_store(&self.engine, state, DESCRIBE_TIMEOUT, StageLimits::default());
        let result = tokio::time::timeout(DESCRIBE_TIMEOUT + Duration::from_secs(1), async {
            macro_rules! describe {
                ($pre:expr) => {{
                    let bindings = $pre.instantiate_async(&mut store).await?;
                    bindings
                        .weir_plugin_plugin()
                        .call_describe(&mut store)
                        .await
                }};
            }
            match pre {
                KindPre::Stage(p) => describe!(p),
                KindPre::Analyzer(p) => describe!(p),
                KindPre::TestRunner(p) => describe!(p),
                KindPre::Strategy(p) => describe!(p),
                KindPre::Deployer(p) => describe!(p),
            }
        })
        .await;
        match result {
            Ok(Ok(manifest)) => Ok(manifest),
            Ok(Err(_)) if let Some(hit) = store.data().limiter.hit() => Err(hit.to_string()),
            Ok(Err(e)) if store.data().timed_out => Err(format!("timed out after {DESCRIBE_TIMEOUT:?}: {e}")),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("timed out after {DESCRIBE_TIMEOUT:?}")),
        }
    }
}

fn read_limited(name: &str, path: &Path) -> Result<Vec<u8>, PluginError> {
    let read_err = |source| PluginError::Read {
        name: name.into(),
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len() as usize;
    if size > MAX_PLUGIN_BYTES {
        return Err(PluginError::TooLarge {
            name: name.into(),
            source_label: path.display().to_string(),
            size,
            limit: MAX_PLUGIN_BYTES,
        });
    }
    std::fs::read(path).map_err(read_err)
}

/// Why `bytes` is obviously not a component, if it is not.
fn header_problem(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Some("it does not start with the WebAssembly magic bytes (is this the right file?)".into());
    }
    // Bytes 4..8: version and layer. Layer 1 is a component, 0 a module.
    if bytes[6..8] == [0, 0] {
        return Some(
            "it is a core WebAssembly module, not a component; build for wasm32-wasip2 (not wasm32-unknown-unknown or wasm32-wasip1)"
                .into(),
        );
    }
    None
}

/// The limit a compile error from the pooling allocator's checks names:
/// these run when a component is compiled, before any Store exists.
fn pool_limit(reason: &str) -> Option<&'static str> {
    if !reason.contains("pooling allocator") {
        return None;
    }
    Some(
        if reason.contains("memories count") || reason.contains("linear memories") {
            "memories"
        } else if reason.contains("tables count")
            || (reason.contains("contains") && reason.contains("tables"))
        {
            "table-count"
        } else if reason.contains("table index") {
            "tables"
        } else if reason.contains("memory index") {
            "memory"
        } else {
            "instances"
        },
    )
}

/// Functions that fail for the imports of `component` weir does not offer
/// (`unoffered`), so `weir plugin inspect` can call describe() on a plugin
/// weir would not run. Only those names: the linker's own interfaces are
/// matched by semver (`@0.2.9` by `@0.2.12`), which a stand-in under the
/// exact name would shadow.
fn stub_unoffered(
    linker: &mut Linker<StageState>,
    component: &Component,
    unoffered: &[&String],
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = component.engine();
    for (name, item) in component.component_type().imports(engine) {
        if !unoffered.iter().any(|u| u.as_str() == name) {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentFunc(_) => {
                let what = name.to_string();
                linker.root().func_new(name, move |_, _, _, _| {
                    wasmtime::bail!("`{what}` is not offered by weir")
                })?;
            }
            ComponentItem::ComponentInstance(instance) => {
                let mut stubs = linker.instance(name)?;
                for (function, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(_) = item.ty {
                        let what = format!("{name}#{function}");
                        stubs.func_new(function, move |_, _, _, _| {
                            wasmtime::bail!("`{what}` is not offered by weir")
                        })?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The names of `component`'s imports and exports.
fn import_and_export_names(component: &Component) -> (Vec<String>, Vec<String>) {
    let engine = component.engine();
    let ty = component.component_type();
    (
        ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
        ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
    )
}

/// Why a plugin whose SDK declared `package` cannot load here, if so.
fn unsupported_package(package: &str) -> Option<String> {
    let version = package
        .strip_prefix(kind::PACKAGE)
        .and_then(|v| v.strip_prefix('@'));
    (!version.is_some_and(kind::compatible)).then(|| {
        format!(
            "was built with a weir-sdk for {package}, but this weir supports {}@{}; rebuild it against a matching weir-sdk (its `{}` section says which it used; for Python and JavaScript, the project's wit/deps/weir-plugin)",
            kind::PACKAGE,
            kind::VERSION,
            wit_section::SECTION
        )
    })
}

/// The one kind `exports` make a plugin, or why they make none.
fn kind_of(exports: &[String]) -> Result<(PluginKind, Contract), String> {
    match kind::exported_kind(exports.iter().map(String::as_str)) {
        kind::ExportedKind::One(k, contract) => Ok((k, contract)),
        kind::ExportedKind::None => Err(format!(
            "exports none of weir's plugin interfaces (it exports: {}); build it with weir-sdk and one of its export_* macros",
            list_or_nothing(exports)
        )),
        kind::ExportedKind::Many(kinds) => Err(format!(
            "exports more than one plugin kind ({}); a plugin is exactly one kind",
            kinds.join(", ")
        )),
        kind::ExportedKind::Version(found) => Err(format!(
            "was built for {found}, but this weir supports {}@{}; rebuild it against a matching weir-sdk",
            kind::PACKAGE,
            kind::VERSION
        )),
        kind::ExportedKind::NoDescribe => Err(format!(
            "does not export {}/plugin, so it has no describe(); build it with weir-sdk",
            kind::PACKAGE
        )),
    }
}

fn kind_mismatch(exported: PluginKind, declared: PluginKind) -> String {
    format!(
        "exports the `{}` interface but its manifest says it is a `{}`",
        kind_name(exported),
        kind_name(declared)
    )
}

fn list_or_nothing(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

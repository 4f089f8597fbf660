//! Loading a component: size and header checks, compiling (or the
//! compile cache), linking by its kind and contract, and asking it to
//! `describe()` itself in a throwaway Store.

use super::checks::*;
use super::*;

/// Why `describe()` gave no manifest.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The throwaway Store could not be made.
    #[error("{0}")]
    Sandbox(std::io::Error),
    /// A named limit, hit.
    #[error("{0}")]
    Limit(String),
    /// Past [`DESCRIBE_TIMEOUT`]; what the guest said, if anything.
    #[error("timed out after {DESCRIBE_TIMEOUT:?}{0}")]
    Timeout(String),
    /// It trapped or returned an error.
    #[error("{0}")]
    Failed(String),
}

impl PluginLoader {
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
        let (kind, contract) = kind_of(&exports).map_err(|e| kind_error(e.to_string()))?;

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
                reason: reason.to_string(),
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
        let found = kind_of(&exports)
            .map_err(|reason| problems.push(reason.to_string()))
            .ok();
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
    pub(super) fn precheck(
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
    pub(super) async fn compile(
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
    pub(super) async fn describe(&self, name: &str, pre: &KindPre) -> Result<Manifest, DescribeError> {
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
            stopping: Default::default(),
        })
        .map_err(DescribeError::Sandbox)?;
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
            Ok(Err(_)) if let Some(hit) = store.data().limiter.hit() => {
                Err(DescribeError::Limit(hit.to_string()))
            }
            Ok(Err(e)) if store.data().timed_out => Err(DescribeError::Timeout(format!(": {e}"))),
            Ok(Err(e)) => Err(DescribeError::Failed(format!("{e:#}"))),
            Err(_) => Err(DescribeError::Timeout(String::new())),
        }
    }
}

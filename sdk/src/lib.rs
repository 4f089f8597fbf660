//! # weir-sdk: write weir plugins in Rust
//!
//! A weir plugin is a WebAssembly component that exports one *kind*: a
//! [`Stage`] (a pipeline step), an [`Analyzer`] (findings and a verdict), a
//! [`TestRunner`] (test cases), a [`Strategy`] (rollout decisions) or a
//! [`Deployer`] (drives a deployment target). Implement [`Plugin`] plus the
//! kind's trait on a type, export it with the kind's macro, and build for
//! `wasm32-wasip2`:
//!
//! ```no_run
//! use weir_sdk::{Context, Failure, Manifest, Plugin, Stage, StageOutput};
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     greeting: String,
//! }
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         weir_sdk::package_manifest!(Stage)
//!     }
//! }
//!
//! impl Stage for Hello {
//!     fn run(ctx: Context) -> Result<StageOutput, Failure> {
//!         let config: Config = ctx.config()?;
//!         std::fs::write("hello.txt", &config.greeting)
//!             .map_err(|e| Failure::new(format!("cannot write hello.txt: {e}")))?;
//!         weir_sdk::log::info(&format!("wrote hello.txt for {}", ctx.stage));
//!         Ok(StageOutput::new().output("file", "hello.txt"))
//!     }
//! }
//!
//! weir_sdk::export_stage!(Hello);
//! # fn main() {}
//! ```
//!
//! ```toml
//! # Cargo.toml of the plugin
//! [lib]
//! crate-type = ["cdylib"]
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then writes the component
//! to `target/wasm32-wasip2/release/NAME.wasm`; point a pipeline at it with
//! `[plugins.NAME] path = "..."`.
//!
//! ## What a plugin can touch
//!
//! The workspace directory (relative paths resolve inside it, nothing
//! outside it opens), the directories the stage grants with `allow.read`
//! (read-only, at their absolute paths) when the manifest lists
//! `Capability::Files`, the environment variables its stage declares, and the
//! host imports re-exported here ([`log`] always; [`process`], [`metrics`],
//! [`secrets`] and [`runtime`] only when the manifest lists the capability
//! and the pipeline grants it). A refused call returns a [`HostError`]
//! naming what to grant. Outgoing HTTP goes through `wasi:http` (any
//! wasi:http client crate) with `Capability::Network` and the host in the
//! stage's `allow.network`.
//!
//! Secrets are handles: `secrets::open("TOKEN")` gives a `secret` whose
//! `placeholder()` a plugin puts in a program's environment
//! (`Command::env`) or an HTTP header value; the host swaps the value in as
//! the program starts or the request leaves, so the plugin never holds it.
//!
//! ## Host imports, by example
//!
//! Each import works only when the manifest declares its capability and
//! the stage grants it; otherwise the call returns a [`HostError`] saying
//! what to grant, which `?` turns into a [`Failure`]. `process` has its own
//! example on `process::Command::new`; `runtime` is used in the
//! [`Deployer`] example.
//!
//! **`log`**: lines and progress in the stage's log, always available.
//!
//! ```no_run
//! let files = ["a.txt", "b.txt"];
//! for (i, file) in files.iter().enumerate() {
//!     weir_sdk::log::progress(i as u64, Some(files.len() as u64), &format!("hashing {file}"));
//! }
//! weir_sdk::log::with_fields(weir_sdk::log::Level::Info, "hashed", &[("files", "2")]);
//! ```
//!
//! **`secrets`** (`Capability::Secrets`, `allow = { secrets = ["TOKEN"] }`):
//! a handle, never the value. Its placeholder becomes the value only where
//! the host consumes it: a program's environment, or an HTTP header.
//!
//! ```no_run
//! use weir_sdk::Failure;
//! use weir_sdk::process::Command;
//!
//! fn publish() -> Result<(), Failure> {
//!     let token = weir_sdk::secrets::open("TOKEN")?;
//!     // The program sees the value in $NPM_TOKEN; this plugin never does,
//!     // and what the program prints comes back with it masked.
//!     let exit = weir_sdk::process::run(
//!         &Command::new("npm").arg("publish").env("NPM_TOKEN", token.placeholder()),
//!     )?;
//!     if !exit.success() {
//!         return Err(Failure::new(format!("npm publish {}", exit.describe())));
//!     }
//!     Ok(())
//! }
//! ```
//!
//! **`metrics`** (`Capability::Metrics`, `allow = { metrics = ["prom"] }`):
//! range and instant queries to the local target (`builtin`) or a
//! configured Prometheus.
//!
//! ```no_run
//! use weir_sdk::Failure;
//! use weir_sdk::metrics::{self, Instant};
//!
//! fn error_rate(now_ms: u64) -> Result<f64, Failure> {
//!     let series = metrics::query_instant(&Instant {
//!         provider: "prom".into(),
//!         expr: "sum(rate(http_requests_total{code=~\"5..\"}[1m]))".into(),
//!         at_ms: now_ms,
//!     })?;
//!     Ok(series
//!         .first()
//!         .and_then(|s| s.points.last())
//!         .map_or(0.0, |p| p.value))
//! }
//! ```
//!
//! **Outgoing HTTP** (`Capability::Network`, `allow = { network = ["api.example.com"] }`)
//! goes through `wasi:http`, with any client crate built on it; weir checks
//! the host after resolving it, and swaps a secret's placeholder into a
//! header value. With the `wasip2` crate's bindings (`wasip2 = "1"` in
//! the plugin's `[dependencies]`), a GET with a secret as its bearer token:
//!
//! ```no_run
//! use wasip2::http::outgoing_handler;
//! use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
//! use weir_sdk::Failure;
//!
//! /// The status of `GET https://api.example.com/v1/deploys/{id}`.
//! fn deploy_status(id: &str) -> Result<u16, Failure> {
//!     let token = weir_sdk::secrets::open("API_TOKEN")?;
//!     let headers = Fields::new();
//!     // The placeholder, not the value: weir swaps it in on the way out.
//!     let bearer = format!("Bearer {}", token.placeholder());
//!     headers
//!         .append("authorization", bearer.as_bytes())
//!         .map_err(|e| Failure::new(format!("header: {e:?}")))?;
//!     let request = OutgoingRequest::new(headers);
//!     let set = |ok: Result<(), ()>, what: &str| ok.map_err(|()| Failure::new(format!("bad {what}")));
//!     set(request.set_scheme(Some(&Scheme::Https)), "scheme")?;
//!     set(request.set_authority(Some("api.example.com")), "host")?;
//!     set(request.set_path_with_query(Some(&format!("/v1/deploys/{id}"))), "path")?;
//!     // A host the stage does not grant answers HTTP-request-denied here.
//!     let pending = outgoing_handler::handle(request, None)
//!         .map_err(|code| Failure::new(format!("refused: {code:?}")))?;
//!     pending.subscribe().block();
//!     match pending.get() {
//!         Some(Ok(Ok(response))) => Ok(response.status()),
//!         Some(Ok(Err(code))) => Err(Failure::retryable(format!("failed: {code:?}"))),
//!         _ => Err(Failure::new("no response")),
//!     }
//! }
//! ```
#![deny(missing_docs)]

pub mod glob;
mod helpers;
pub use helpers::duration_ms;
mod pattern;
mod process_ext;
pub mod stats;
pub mod target;

/// Bindings generated from `wit/` for the host imports and shared types.
/// Everything useful is re-exported at the crate root.
#[allow(
    missing_docs,
    reason = "generated: module paths and `use` aliases have no WIT docs; every WIT item is documented in wit/"
)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weir:plugin/host",
        generate_unused_types: true,
    });
}

pub use wit::weir::plugin::types::{
    Action, Analysis, Artifact, Capability, Context, DeploymentStatus, Failure, Finding, HostError, Manifest,
    MetricPoint, MetricSeries, PluginKind, Release, RolloutState, ScaleTo, Severity, StageOutput, TestCase,
    TestReport, TestStatus, Upstream, Verdict,
};
pub use wit::weir::plugin::{metrics, process, runtime, secrets};

pub mod log;

/// The WIT package this SDK was built against.
pub const WIT_PACKAGE: &str = "weir:plugin@0.1.0";

/// Who a plugin is; every kind implements this.
pub trait Plugin {
    /// The manifest `describe()` returns. [`package_manifest!`] fills it
    /// from `Cargo.toml`.
    fn manifest() -> Manifest;
}

/// A pipeline step. Export with [`export_stage!`].
pub trait Stage: Plugin {
    /// Do the work; return outputs for downstream stages or a failure.
    fn run(ctx: Context) -> Result<StageOutput, Failure>;
}

/// Judges code or metrics. Export with [`export_analyzer!`].
///
/// ```no_run
/// use weir_sdk::{Analysis, Analyzer, Context, Failure, Finding, Manifest, Plugin, Severity};
///
/// /// Flags `TODO` markers in `src/main.rs`.
/// struct Todos;
///
/// impl Plugin for Todos {
///     fn manifest() -> Manifest {
///         weir_sdk::package_manifest!(Analyzer)
///     }
/// }
///
/// impl Analyzer for Todos {
///     fn analyze(_ctx: Context) -> Result<Analysis, Failure> {
///         let text = std::fs::read_to_string("src/main.rs")
///             .map_err(|e| Failure::new(format!("cannot read src/main.rs: {e}")))?;
///         let findings = text
///             .lines()
///             .enumerate()
///             .filter(|(_, l)| l.contains("TODO"))
///             .map(|(i, _)| {
///                 Finding::new("todo", Severity::Low, "a TODO is left in the code")
///                     .at("src/main.rs", i as u32 + 1, None)
///             })
///             .collect();
///         // Low findings warn; a High one would fail the stage.
///         Ok(Analysis::from_findings(findings, Severity::High))
///     }
/// }
///
/// weir_sdk::export_analyzer!(Todos);
/// # fn main() {}
/// ```
pub trait Analyzer: Plugin {
    /// Return findings and a verdict; a failure means no analysis was done.
    fn analyze(ctx: Context) -> Result<Analysis, Failure>;
}

/// Runs tests. Export with [`export_test_runner!`].
///
/// ```no_run
/// use weir_sdk::{Context, Failure, Manifest, Plugin, TestCase, TestReport, TestRunner, TestStatus};
///
/// /// Each file in `golden/` must equal its twin in `out/`.
/// struct Golden;
///
/// impl Plugin for Golden {
///     fn manifest() -> Manifest {
///         weir_sdk::package_manifest!(TestRunner)
///     }
/// }
///
/// impl TestRunner for Golden {
///     fn run_tests(_ctx: Context) -> Result<TestReport, Failure> {
///         let files = weir_sdk::glob::find_files(&["golden/*".to_string()])
///             .map_err(|e| Failure::new(format!("cannot list golden/: {e}")))?;
///         let cases = files
///             .iter()
///             .map(|golden| {
///                 let out = golden.replacen("golden/", "out/", 1);
///                 let same = std::fs::read(golden).ok() == std::fs::read(&out).ok();
///                 TestCase {
///                     suite: "golden".into(),
///                     name: out.clone(),
///                     status: if same { TestStatus::Passed } else { TestStatus::Failed },
///                     duration_ms: 0,
///                     message: (!same).then(|| format!("{out} differs from {golden}")),
///                     file: Some(golden.clone()),
///                 }
///             })
///             .collect();
///         Ok(TestReport::from_cases(cases))
///     }
/// }
///
/// weir_sdk::export_test_runner!(Golden);
/// # fn main() {}
/// ```
pub trait TestRunner: Plugin {
    /// Return every test case; a failure means the suite could not run.
    fn run_tests(ctx: Context) -> Result<TestReport, Failure>;
}

/// Decides rollout steps. Export with [`export_strategy!`].
///
/// ```no_run
/// use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, Strategy, Verdict};
///
/// /// 10% → 50% → 100%, checking the canary after each step.
/// struct Canary;
///
/// impl Plugin for Canary {
///     fn manifest() -> Manifest {
///         weir_sdk::package_manifest!(Strategy)
///     }
/// }
///
/// impl Strategy for Canary {
///     fn next(_ctx: Context, state: RolloutState) -> Result<Action, Failure> {
///         if !state.candidate_deployed {
///             return Ok(Action::DeployCandidate);
///         }
///         if let Some(a) = &state.last_analysis {
///             if matches!(a.verdict, Verdict::Fail | Verdict::Inconclusive) {
///                 return Ok(Action::Rollback("the canary check failed".into()));
///             }
///         }
///         Ok(match state.candidate_weight {
///             0 => Action::SetWeight(10),
///             10 if state.last_analysis.is_none() => Action::Analyze,
///             10 => Action::SetWeight(50),
///             50 => Action::SetWeight(100),
///             _ => Action::Promote,
///         })
///     }
/// }
///
/// weir_sdk::export_strategy!(Canary);
/// # fn main() {}
/// ```
pub trait Strategy: Plugin {
    /// The next action for `state`.
    fn next(ctx: Context, state: RolloutState) -> Result<Action, Failure>;
}

/// Drives a deployment target. Export with [`export_deployer!`]. Every
/// method must be safe to call again after a failure.
///
/// ```no_run
/// use weir_sdk::runtime::{self, InstanceSpec};
/// use weir_sdk::{Capability, Context, Deployer, DeploymentStatus, Failure, Manifest, Plugin, Release};
///
/// /// Runs releases on weir's local target through the `runtime` import.
/// struct Local;
///
/// fn host(e: weir_sdk::HostError) -> Failure {
///     Failure::new(format!("{e:?}"))
/// }
///
/// fn status(service: &str) -> Result<DeploymentStatus, Failure> {
///     let instances = runtime::instances(service).map_err(host)?;
///     let mut ready: Vec<(String, u32)> = Vec::new();
///     for i in instances.iter().filter(|i| i.ready) {
///         match ready.iter_mut().find(|(v, _)| *v == i.version) {
///             Some((_, n)) => *n += 1,
///             None => ready.push((i.version.clone(), 1)),
///         }
///     }
///     Ok(DeploymentStatus { service: service.into(), weights: Vec::new(), ready })
/// }
///
/// impl Plugin for Local {
///     fn manifest() -> Manifest {
///         weir_sdk::package_manifest!(Deployer, [Capability::Runtime])
///     }
/// }
///
/// impl Deployer for Local {
///     fn deploy(_ctx: Context, r: Release) -> Result<DeploymentStatus, Failure> {
///         for _ in 0..r.replicas {
///             let spec = InstanceSpec {
///                 service: r.service.clone(),
///                 version: r.version.clone(),
///                 artifact: r.artifact.clone(),
///                 args: Vec::new(),
///                 env: r.env.clone(),
///                 readiness_path: "/healthz".into(),
///             };
///             runtime::start(&spec).map_err(host)?;
///         }
///         status(&r.service)
///     }
///     fn set_traffic(_ctx: Context, service: String, weights: Vec<(String, u32)>) -> Result<DeploymentStatus, Failure> {
///         runtime::set_weights(&service, &weights).map_err(host)?;
///         status(&service)
///     }
///     fn scale(_ctx: Context, service: String, version: String, replicas: u32) -> Result<DeploymentStatus, Failure> {
///         let mine: Vec<_> = runtime::instances(&service).map_err(host)?.into_iter().filter(|i| i.version == version).collect();
///         // Stop the extras (starting missing ones works as in `deploy`).
///         for i in mine.iter().skip(replicas as usize) {
///             runtime::stop(&i.id).map_err(host)?;
///         }
///         status(&service)
///     }
///     fn promote(_ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure> {
///         runtime::set_weights(&service, &[(version, 100)]).map_err(host)?;
///         status(&service)
///     }
///     fn rollback(_ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure> {
///         for i in runtime::instances(&service).map_err(host)?.into_iter().filter(|i| i.version == version) {
///             runtime::stop(&i.id).map_err(host)?;
///         }
///         status(&service)
///     }
///     fn status(_ctx: Context, service: String) -> Result<DeploymentStatus, Failure> {
///         status(&service)
///     }
/// }
///
/// weir_sdk::export_deployer!(Local);
/// # fn main() {}
/// ```
pub trait Deployer: Plugin {
    /// Start `release`'s instances without traffic.
    fn deploy(ctx: Context, release: Release) -> Result<DeploymentStatus, Failure>;
    /// Set the traffic split; weights add up to 100.
    fn set_traffic(
        ctx: Context,
        service: String,
        weights: Vec<(String, u32)>,
    ) -> Result<DeploymentStatus, Failure>;
    /// Run exactly `replicas` ready instances of `version`: start the
    /// missing ones, drain and stop the extra ones.
    fn scale(
        ctx: Context,
        service: String,
        version: String,
        replicas: u32,
    ) -> Result<DeploymentStatus, Failure>;
    /// Make `version` the only version.
    fn promote(ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure>;
    /// Send all traffic back to the stable version and stop `version`.
    fn rollback(ctx: Context, service: String, version: String) -> Result<DeploymentStatus, Failure>;
    /// What runs now.
    fn status(ctx: Context, service: String) -> Result<DeploymentStatus, Failure>;
}

/// A [`Manifest`] from the plugin's `Cargo.toml`: name, version and
/// description, with the given [`PluginKind`] variant and, optionally,
/// capabilities: `package_manifest!(Stage, [Capability::Process])`.
#[macro_export]
macro_rules! package_manifest {
    ($kind:ident) => {
        $crate::package_manifest!($kind, [])
    };
    ($kind:ident, [$($cap:expr),* $(,)?]) => {
        $crate::Manifest {
            name: ::std::string::String::from(env!("CARGO_PKG_NAME")),
            version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
            kind: $crate::PluginKind::$kind,
            description: ::std::string::String::from(env!("CARGO_PKG_DESCRIPTION")),
            capabilities: ::std::vec![$($cap),*],
            config_schema: ::core::option::Option::None,
        }
    };
}

#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;
}

include!(concat!(env!("OUT_DIR"), "/export_macros.rs"));

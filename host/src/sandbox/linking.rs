//! Which capability imports a Store links, and what stands in for the rest.
//!
//! A capability's host code (`process`, `metrics`, `secrets`, `runtime`,
//! `wasi:http/outgoing-handler`) is linked only when the plugin's manifest
//! declares it *and* the stage grants some of it. Every other import of
//! those interfaces is bound to a refusal that runs none of weir's
//! capability code: it logs a warning and answers `denied` (or
//! `HTTP-request-denied`) naming the function, capability, stage and
//! tenant. A component still instantiates when it imports more than it was
//! granted, as every SDK-built plugin does, but the code it was not granted
//! is not reachable from it.
//!
//! `log`, `types` and WASI p2 (with `wasi:http/types`, plain data) are
//! linked for every plugin.

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, HasSelf, Linker, ResourceType, Val};
use wasmtime::{Engine, StoreContextMut};

use crate::bindings::host::weir::plugin as wit;
use crate::bindings::types::Capability;
use crate::capabilities::{log, metrics, process, runtime, secrets, unavailable};
use crate::events::Level;
use crate::plan::Grants;
use crate::sandbox::StageState;

/// The capabilities a Store links. Each is linked when the manifest
/// declares it and the stage grants some of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Linked {
    /// `weir:plugin/process`: declares `process`, grants some `exec`.
    pub process: bool,
    /// `wasi:http/outgoing-handler`: declares `network`, grants some host.
    pub network: bool,
    /// `weir:plugin/metrics`: declares `metrics`, grants some provider.
    pub metrics: bool,
    /// `weir:plugin/secrets`: declares `secrets`, grants some secret.
    pub secrets: bool,
    /// `weir:plugin/runtime`: declares `runtime`, grants `runtime = true`.
    pub runtime: bool,
}

impl Linked {
    /// Nothing beyond the baseline (what `describe()` runs with).
    pub const NONE: Linked = Linked {
        process: false,
        network: false,
        metrics: false,
        secrets: false,
        runtime: false,
    };

    /// What a stage links for a plugin whose manifest declares what
    /// `declares` says, given the stage's `grants`.
    pub fn for_stage(declares: impl Fn(Capability) -> bool, grants: &Grants) -> Self {
        Self {
            process: declares(Capability::Process) && !grants.exec.is_empty(),
            network: declares(Capability::Network) && !grants.network.is_empty(),
            metrics: declares(Capability::Metrics) && !grants.metrics.is_empty(),
            secrets: declares(Capability::Secrets) && !grants.secrets.is_empty(),
            runtime: declares(Capability::Runtime) && grants.runtime,
        }
    }
}

/// The capability interfaces, as named in a component's imports.
struct Gated {
    /// The import's name without its version, e.g. `weir:plugin/process`.
    interface: &'static str,
    /// The manifest capability.
    capability: Capability,
    /// The manifest's name for it.
    declared_as: &'static str,
    /// How a stage grants it.
    grant_hint: &'static str,
}

const GATED: [Gated; 5] = [
    Gated {
        interface: "weir:plugin/process",
        capability: Capability::Process,
        declared_as: "process",
        grant_hint: "allow = { exec = [\"PROGRAM\"] }",
    },
    Gated {
        interface: "wasi:http/outgoing-handler",
        capability: Capability::Network,
        declared_as: "network",
        grant_hint: "allow = { network = [\"HOST\"] }",
    },
    Gated {
        interface: "weir:plugin/metrics",
        capability: Capability::Metrics,
        declared_as: "metrics",
        grant_hint: "allow = { metrics = [\"PROVIDER\"] }",
    },
    Gated {
        interface: "weir:plugin/secrets",
        capability: Capability::Secrets,
        declared_as: "secrets",
        grant_hint: "allow = { secrets = [\"NAME\"] }",
    },
    Gated {
        interface: "weir:plugin/runtime",
        capability: Capability::Runtime,
        declared_as: "runtime",
        grant_hint: "allow = { runtime = true }",
    },
];

impl Gated {
    fn linked(&self, linked: Linked) -> bool {
        match self.capability {
            Capability::Process => linked.process,
            Capability::Network => linked.network,
            Capability::Metrics => linked.metrics,
            Capability::Secrets => linked.secrets,
            Capability::Runtime => linked.runtime,
            Capability::Files => true,
        }
    }

    /// Whether `import` (e.g. `weir:plugin/process@0.1.0`) is this one.
    fn names(&self, import: &str) -> bool {
        import.split('@').next() == Some(self.interface)
    }
}

/// A linker for `component` with the baseline and the capabilities in
/// `linked`; every other gated import is a refusal. `declares` is the
/// plugin's manifest (`None` while `describe()` has not answered yet).
pub fn linker_for(
    engine: &Engine,
    component: &Component,
    linked: Linked,
    plugin: &str,
    declares: Option<&dyn Fn(Capability) -> bool>,
) -> wasmtime::Result<Linker<StageState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let http_options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<_, wasmtime_wasi_http::WasiHttp>(
        &mut linker,
        &http_options.into(),
        <StageState as wasmtime_wasi_http::WasiHttpView>::http,
    )?;
    wit::types::add_to_linker::<_, HasSelf<unavailable::Unavailable>>(&mut linker, |s| &mut s.unavailable)?;
    wit::log::add_to_linker::<_, HasSelf<log::LogCtx>>(&mut linker, |s| &mut s.log)?;
    if linked.process {
        wit::process::add_to_linker::<_, HasSelf<process::ProcessCtx>>(&mut linker, |s| &mut s.process)?;
    }
    if linked.network {
        wasmtime_wasi_http::p2::bindings::http::outgoing_handler::add_to_linker::<
            _,
            wasmtime_wasi_http::WasiHttp,
        >(
            &mut linker,
            <StageState as wasmtime_wasi_http::WasiHttpView>::http,
        )?;
    }
    if linked.metrics {
        wit::metrics::add_to_linker::<_, HasSelf<metrics::MetricsCtx>>(&mut linker, |s| &mut s.metrics)?;
    }
    if linked.secrets {
        wit::secrets::add_to_linker::<_, HasSelf<secrets::SecretsCtx>>(&mut linker, |s| &mut s.secrets)?;
    }
    if linked.runtime {
        wit::runtime::add_to_linker::<_, HasSelf<runtime::RuntimeCtx>>(&mut linker, |s| &mut s.runtime)?;
    }
    for (import, item) in component.component_type().imports(engine) {
        let Some(gated) = GATED.iter().find(|g| g.names(import)) else {
            continue;
        };
        if gated.linked(linked) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let why = match declares {
            None => "describe() runs with no capabilities".to_string(),
            Some(declares) if !declares(gated.capability) => format!(
                "plugin `{plugin}` does not declare the `{}` capability in its manifest",
                gated.declared_as
            ),
            Some(_) => format!("the stage grants none of it; grant it with {}", gated.grant_hint),
        };
        let mut scope = linker.instance(import)?;
        for (name, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(func) => {
                    let refusal = Refusal::of(&func);
                    let what = format!("{}#{name}", gated.interface);
                    let why = why.clone();
                    scope.func_new(name, move |store, _, params, results| {
                        refuse(store, &call(&what, params), &why, &refusal, results)
                    })?;
                }
                // `wasi:http/outgoing-handler`'s resources are those of
                // `wasi:http/types`, which is linked; weir's `secret` is
                // its interface's own and needs a stand-in.
                ComponentItem::Resource(_) if gated.interface.starts_with("weir:") => {
                    scope.resource(name, ResourceType::host::<NotLinked>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(linker)
}

/// `interface#func`, with what it was asked for when that is plain: the
/// name a secret is opened by, the program a process runs.
fn call(what: &str, params: &[Val]) -> String {
    let subject = match params.first() {
        Some(Val::String(s)) => Some(s),
        Some(Val::Record(fields)) => fields.iter().find_map(|(k, v)| match (k.as_str(), v) {
            ("program", Val::String(s)) => Some(s),
            _ => None,
        }),
        _ => None,
    };
    match subject {
        Some(s) if s.len() <= 200 => format!("{what} `{}`", crate::events::printable(s)),
        _ => what.to_string(),
    }
}

/// The resource type standing in for an unlinked interface's resources;
/// none is ever created, as nothing that would create one is linked.
struct NotLinked;

/// How a refused function answers.
#[derive(Clone)]
enum Refusal {
    /// `result<_, host-error>`: `err(denied(message))`.
    HostError,
    /// `result<_, wasi:http error-code>`: `err(HTTP-request-denied)`.
    HttpDenied(String),
    /// Any other shape: a trap carrying the message.
    Trap,
}

impl Refusal {
    fn of(func: &ComponentFunc) -> Self {
        use wasmtime::component::types::Type;
        let mut results = func.results();
        let (Some(Type::Result(result)), None) = (results.next(), results.next()) else {
            return Refusal::Trap;
        };
        let Some(Type::Variant(error)) = result.err() else {
            return Refusal::Trap;
        };
        if error.cases().any(|c| c.name == "denied" && c.ty.is_some()) {
            return Refusal::HostError;
        }
        match error
            .cases()
            .find(|c| c.name.eq_ignore_ascii_case("http-request-denied") && c.ty.is_none())
        {
            Some(case) => Refusal::HttpDenied(case.name.to_string()),
            None => Refusal::Trap,
        }
    }
}

fn refuse(
    mut store: StoreContextMut<'_, StageState>,
    what: &str,
    why: &str,
    refusal: &Refusal,
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let state = store.data_mut();
    let message = format!(
        "{what} refused: {why}, so it is not linked into stage `{}` (tenant `{}`)",
        state.process.stage, state.process.tenant
    );
    log::emit_line(
        &state.http.sink,
        &state.http.budget,
        &state.process.stage,
        Level::Warn,
        &message,
        Default::default(),
    );
    let error = match refusal {
        Refusal::HostError => Val::Variant("denied".into(), Some(Box::new(Val::String(message.clone())))),
        Refusal::HttpDenied(case) => Val::Variant(case.clone(), None),
        Refusal::Trap => return Err(wasmtime::Error::msg(message)),
    };
    match results.first_mut() {
        Some(slot) => {
            *slot = Val::Result(Err(Some(Box::new(error))));
            Ok(())
        }
        None => Err(wasmtime::Error::msg(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants {
            exec: vec!["git".into()],
            network: vec!["example.com".into()],
            secrets: vec!["TOKEN".into()],
            metrics: vec!["builtin".into()],
            runtime: true,
            read: vec![],
            env: vec![],
            publish: vec![],
        }
    }

    #[test]
    fn a_capability_is_linked_only_when_declared_and_granted() {
        let all = Linked::for_stage(|_| true, &grants());
        assert_eq!(
            all,
            Linked {
                process: true,
                network: true,
                metrics: true,
                secrets: true,
                runtime: true
            }
        );
        assert_eq!(Linked::for_stage(|_| false, &grants()), Linked::NONE);
        assert_eq!(Linked::for_stage(|_| true, &Grants::default()), Linked::NONE);
        let only_process = Linked::for_stage(|c| c == Capability::Process, &grants());
        assert_eq!(
            only_process,
            Linked {
                process: true,
                ..Linked::NONE
            }
        );
    }

    #[test]
    fn gated_interfaces_match_any_version() {
        let process = &GATED[0];
        assert!(process.names("weir:plugin/process@0.1.0"));
        assert!(process.names("weir:plugin/process"));
        assert!(!process.names("weir:plugin/processes@0.1.0"));
        assert!(GATED[1].names("wasi:http/outgoing-handler@0.2.12"));
        assert!(!GATED.iter().any(|g| g.names("wasi:http/types@0.2.12")));
    }

    #[test]
    fn a_refused_call_names_what_it_asked_for() {
        assert_eq!(
            call("weir:plugin/secrets#open", &[Val::String("TOKEN".into())]),
            "weir:plugin/secrets#open `TOKEN`"
        );
        let cmd = Val::Record(vec![
            ("program".into(), Val::String("sh\u{1b}[2J".into())),
            ("args".into(), Val::List(vec![])),
        ]);
        assert!(!call("weir:plugin/process#run", &[cmd]).contains('\u{1b}'));
        assert_eq!(call("x#y", &[Val::U32(1)]), "x#y");
    }
}

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
use crate::capabilities::{log, unavailable};
use crate::events::Level;
use crate::plan::Grants;
use crate::sandbox::{GATED, StageState};

/// The gated capabilities a Store links, by their line in [`GATED`].
/// Each is linked when the manifest declares it and the stage grants
/// some of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Linked(u32);

impl Linked {
    /// Nothing beyond the baseline (what `describe()` runs with).
    pub const NONE: Linked = Linked(0);

    /// What a stage links for a plugin whose manifest declares what
    /// `declares` says, given the stage's `grants`.
    pub fn for_stage(declares: impl Fn(Capability) -> bool, grants: &Grants) -> Self {
        let mut linked = Self::NONE;
        for (i, entry) in GATED.iter().enumerate() {
            if declares(entry.gate.capability) && (entry.granted)(grants) {
                linked.0 |= 1 << i;
            }
        }
        linked
    }

    /// Whether the capability on line `i` of the table is linked.
    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// Whether `capability` is linked.
    pub fn links(self, capability: Capability) -> bool {
        GATED
            .iter()
            .position(|e| e.gate.capability == capability)
            .is_some_and(|i| self.has(i))
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
    for (i, entry) in GATED.iter().enumerate() {
        if linked.has(i) {
            (entry.link)(&mut linker)?;
        }
    }
    for (import, item) in component.component_type().imports(engine) {
        let Some(i) = GATED.iter().position(|e| e.gate.names(import)) else {
            continue;
        };
        if linked.has(i) {
            continue;
        }
        let gate = GATED[i].gate;
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let why = match declares {
            None => "describe() runs with no capabilities".to_string(),
            Some(declares) if !declares(gate.capability) => format!(
                "plugin `{plugin}` does not declare the `{}` capability in its manifest",
                gate.declared_as
            ),
            Some(_) => format!("the stage grants none of it; grant it with {}", gate.grant_hint),
        };
        let mut scope = linker.instance(import)?;
        for (name, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(func) => {
                    let refusal = Refusal::of(&func);
                    let what = format!("{}#{name}", gate.interface);
                    let why = why.clone();
                    scope.func_new(name, move |store, _, params, results| {
                        refuse(store, &call(&what, params), &why, &refusal, results)
                    })?;
                }
                // `wasi:http/outgoing-handler`'s resources are those of
                // `wasi:http/types`, which is linked; weir's `secret` is
                // its interface's own and needs a stand-in.
                ComponentItem::Resource(_) if gate.interface.starts_with("weir:") => {
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
        state.stage, state.tenant
    );
    log::emit_line(
        &state.sink,
        &state.budget,
        &state.stage,
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
        for c in [
            Capability::Process,
            Capability::Network,
            Capability::Metrics,
            Capability::Secrets,
            Capability::Runtime,
        ] {
            assert!(all.links(c), "{c:?}");
        }
        assert!(!all.links(Capability::Files), "files is a preopen, not an import");
        assert_eq!(Linked::for_stage(|_| false, &grants()), Linked::NONE);
        assert_eq!(Linked::for_stage(|_| true, &Grants::default()), Linked::NONE);
        let only_process = Linked::for_stage(|c| c == Capability::Process, &grants());
        assert!(only_process.links(Capability::Process));
        assert!(!only_process.links(Capability::Network));
        let no_exec = Grants {
            exec: vec![],
            ..grants()
        };
        assert!(!Linked::for_stage(|_| true, &no_exec).links(Capability::Process));
    }

    #[test]
    fn gated_interfaces_match_any_version() {
        let process = &GATED[0].gate;
        assert!(process.names("weir:plugin/process@0.1.0"));
        assert!(process.names("weir:plugin/process"));
        assert!(!process.names("weir:plugin/processes@0.1.0"));
        assert!(GATED[1].gate.names("wasi:http/outgoing-handler@0.2.12"));
        assert!(!GATED.iter().any(|g| g.gate.names("wasi:http/types@0.2.12")));
    }

    #[test]
    fn the_table_has_one_line_per_gated_capability() {
        for (i, a) in GATED.iter().enumerate() {
            assert!(
                GATED[i + 1..]
                    .iter()
                    .all(|b| b.gate.capability != a.gate.capability),
                "{} twice",
                a.gate.declared_as
            );
        }
        assert!(GATED.len() < 32, "Linked is a 32-bit set");
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

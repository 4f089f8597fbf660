//! Host imports: one module per WIT interface, each owning its state and
//! its grant check, linked with one line each in [`add_to_linker`].
//!
//! | import | state | status |
//! |---|---|---|
//! | `log` | [`log::LogCtx`] | always available |
//! | `process` | [`process::ProcessCtx`] | manifest + `allow.exec`; bubblewrap where installed |
//! | `metrics` | [`metrics::MetricsCtx`] | manifest + `allow.metrics`; `builtin` (the local target) and Prometheus |
//! | `secrets` | [`secrets::SecretsCtx`] | manifest + `allow.secrets`; handles only, values swapped in by the consumers |
//! | `runtime` | [`runtime::RuntimeCtx`] | manifest + `allow.runtime`; the local target |
//! | WASI p2 | [`wasi`] | one preopen (the workspace), no sockets, declared env only |
//! | `wasi:http` outgoing | [`http::HttpGate`] | manifest `network` + `allow.network`, checked after DNS resolution |
//!
//! [`tape`] records what `process`, `metrics` and `secrets` answered, for
//! `weir replay`.

pub mod http;
pub mod log;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod secrets;
pub mod tape;
pub mod unavailable;
pub mod wasi;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::host::weir::plugin as wit;
use crate::sandbox::StageState;

/// Link WASI p2 and every weir import into `linker`.
pub fn add_to_linker(linker: &mut Linker<StageState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    wit::types::add_to_linker::<_, HasSelf<unavailable::Unavailable>>(linker, |s| &mut s.unavailable)?;
    wit::log::add_to_linker::<_, HasSelf<log::LogCtx>>(linker, |s| &mut s.log)?;
    wit::process::add_to_linker::<_, HasSelf<process::ProcessCtx>>(linker, |s| &mut s.process)?;
    wit::metrics::add_to_linker::<_, HasSelf<metrics::MetricsCtx>>(linker, |s| &mut s.metrics)?;
    wit::secrets::add_to_linker::<_, HasSelf<secrets::SecretsCtx>>(linker, |s| &mut s.secrets)?;
    wit::runtime::add_to_linker::<_, HasSelf<runtime::RuntimeCtx>>(linker, |s| &mut s.runtime)?;
    Ok(())
}

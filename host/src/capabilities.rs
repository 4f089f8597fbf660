//! Host imports: one module per WIT interface, each owning its state and
//! its grant check; `sandbox::linking` decides which of them a Store
//! links (the sandbox holds every capability's state; capabilities know
//! nothing of it).
//!
//! | import | state | linked when |
//! |---|---|---|
//! | `log` | [`log::LogCtx`] | always |
//! | `process` | [`process::ProcessCtx`] | manifest `process` + some `allow.exec`; bubblewrap where installed |
//! | `metrics` | [`metrics::MetricsCtx`] | manifest + some `allow.metrics`; `builtin` (the local target) and Prometheus |
//! | `secrets` | [`secrets::SecretsCtx`] | manifest + some `allow.secrets`; handles only, values swapped in by the consumers |
//! | `runtime` | [`runtime::RuntimeCtx`] | manifest + `allow.runtime`; the local target |
//! | WASI p2 | [`wasi`] | always: one preopen (the workspace), no sockets, declared env only |
//! | `wasi:http` outgoing | [`http::HttpGate`] | manifest `network` + some `allow.network`, each request checked after DNS resolution |
//!
//! A linked import still checks each call against the exact grant (this
//! program, that host). [`tape`] records what `process`, `metrics` and
//! `secrets` answered, for `weir replay`.

pub mod egress;
pub mod http;
pub mod log;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod secrets;
pub mod tape;
pub mod unavailable;
pub mod wasi;

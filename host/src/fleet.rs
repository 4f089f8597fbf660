//! What `weir serve --nats` and `weir worker` share: how they reach NATS
//! JetStream, the streams, buckets and subjects they use, and the
//! messages that cross them.
//!
//! ```text
//! serve ──job──▶ WEIR_JOBS (work queue) ──pull, ack──▶ worker ─▶ session
//!   ▲                                                    │
//!   └──── store ◀── WEIR_EVENTS (kept) ◀──events, ends───┘
//! weir-cancel (KV) ▶ worker      weir-workers (KV) ◀ heartbeats
//! weir-workspaces, weir-artifacts (object stores) ◀▶ worker, serve
//! ```

pub mod connect;
pub mod locks;
pub mod names;
pub mod setup;
pub mod wire;

pub use connect::{NatsError, NatsOptions};
pub use setup::{Fleet, ensure};

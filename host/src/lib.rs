//! # weir: CI/CD pipelines whose every step is a sandboxed WebAssembly component
//!
//! Data flows one way: [`config`] (read `pipeline.toml`, with spans) →
//! [`plan`] (checked DAG) → [`run`] (the scheduler, driving an
//! [`run::Executor`]) → [`events`] → [`report`] (live view, JSON lines).
//! The wasmtime side is [`engine`] (the Engine and compile cache),
//! [`plugins`] (loading and kind checks), [`sandbox`] (one Store's state),
//! [`capabilities`] (host imports, each checking its grant) and [`execute`]
//! (one attempt in a fresh Store). [`store`] keeps the run history in
//! SQLite; [`stage_cache`] serves unchanged stages from it and [`blobs`]
//! keeps the files replay needs. [`rollout`] drives deploy stages against
//! [`target`], the local deployment target. [`session`] is a whole run as
//! a library call, which every front end uses; [`cli`] is the `weir`
//! command.

#![deny(missing_docs)]

pub use weir_pipeline::{config, findings, plan};

pub mod artifacts;
pub mod attempt;
pub mod author;
pub mod beneath;
pub mod bindings;
pub mod blobs;
pub mod capabilities;
pub mod cli;
pub mod confine;
pub mod engine;
pub mod events;
pub mod execute;
pub mod guest_call;
pub mod netns;
pub mod notify;
pub mod plugins;
pub mod replay_record;
pub mod report;
pub mod rollout;
pub mod run;
pub mod sandbox;
pub mod session;
pub mod stage_cache;
pub mod stage_store;
pub mod store;
pub mod target;
pub mod verdicts;
pub mod waits;

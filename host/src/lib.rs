//! # weir: CI/CD pipelines whose every step is a sandboxed WebAssembly component
//!
//! Data flows one way, and no module imports one that imports it back
//! (`tools/modcycles.py host/src` prints nothing):
//!
//! ```text
//! config → plan → session ─▶ run (scheduler) ─▶ events ─▶ report
//!                   │            │ Executor
//!                   │            ▼
//!                   │        execute (WasmExecutor) ─▶ rollout ─▶ target
//!                   │            │
//!                   ▼            ▼
//!                 store      stage_store → guest_call → sandbox → capabilities → confine
//! ```
//!
//! Where a run starts: [`session`] (a whole run as a library call:
//! [`session::launch`] plans, checks and records it, [`session::Session::run`]
//! drives it, [`session::replay`] re-runs a recorded analyzer); `weir run`,
//! `weir dev`, `weir replay` and the coming `weir serve` call it,
//! and [`cli`] only parses arguments and renders. The scheduler is [`run`]:
//! it knows nothing of wasmtime and drives an [`run::Executor`], each
//! attempt an [`attempt::AttemptRequest`] answered by an
//! [`attempt::AttemptResult`].
//!
//! Where a guest is called: [`execute`] is the wasmtime-backed executor;
//! every plugin call, whatever its kind, goes through [`guest_call`]
//! (a Store with limits and a deadline, the call, every failure classified
//! into one [`guest_call::CallFailure`]), in a Store [`stage_store`] builds
//! from the run and the attempt. [`verdicts`] judges analyzers' and test
//! runners' reports by their gates; [`rollout`] drives deploy stages
//! against [`target`], the local deployment target.
//!
//! What a plugin may touch: [`sandbox`] is one Store's state and links the
//! host imports; each import is a module of [`capabilities`] that checks
//! its grant, and the gated ones implement [`capabilities::Gated`] and sit
//! on one line of the sandbox's table ([`sandbox::GATED`]); what a stage
//! may be granted, and its tenant allows, is [`plan::Grants`] with its
//! table of rules. Programs and deployed instances are confined by [`confine`]
//! (bubblewrap, cgroups). [`plugins`] loads components and reads their
//! kind and contract version; [`bindings`] holds one module per contract
//! version, generated from its frozen WIT. [`engine`] is the Engine and
//! compile cache.
//!
//! What is kept: [`store`] is the run history in SQLite; [`stage_cache`]
//! serves unchanged stages from it, [`blobs`] keeps the files replay needs
//! and [`replay_record`] is an analyzer's typed replay record.

#![deny(missing_docs)]

pub use weir_pipeline::{config, findings, plan};

pub mod advisories;
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
pub mod fleet;
pub mod guest_call;
pub mod netns;
pub mod notify;
pub mod plugins;
pub mod replay_record;
pub mod report;
pub mod rollout;
pub mod run;
pub mod sandbox;
pub mod serve;
pub mod session;
pub mod stage_cache;
pub mod stage_store;
pub mod store;
pub mod target;
pub mod verdicts;
pub mod waits;
pub mod worker;

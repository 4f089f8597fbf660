//! # weir-pipeline: what a pipeline and a tenant say, checked
//!
//! The first two steps of weir's one-way flow, with nothing of wasmtime in
//! them: [`config`] reads `pipeline.toml` and the tenants file keeping
//! every span, and [`plan`] turns a pipeline into the checked DAG the
//! scheduler runs (names, cycles, `needs`, interpolation, environments,
//! the tenant's policy). The small modules beside them are the plain data
//! both the plan and the host share: [`limits`], [`providers`],
//! [`grants`], [`webhooks`], [`findings`], [`globs`], [`sandbox`] and [`results`] (the bounds on
//! what a plugin returns).
//!
//! Being free of wasmtime keeps this crate quick to build, which is what
//! lets the fuzz targets (`fuzz/`) run in CI.

#![deny(missing_docs)]

pub mod config;
pub mod env_policy;
pub mod findings;
pub mod globs;
pub mod grants;
pub mod limits;
pub mod names;
pub mod plan;
pub mod providers;
pub mod results;
pub mod sandbox;
pub mod webhooks;

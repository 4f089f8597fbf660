pub mod bindings;
pub mod config;
pub mod engine;
pub mod plan;

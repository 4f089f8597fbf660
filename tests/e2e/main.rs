//! End-to-end tests: each drives the real `weir` binary on a pipeline
//! written into a temporary directory, and asserts exit codes, output and
//! `--json` events. One test binary, to keep link time down.

mod analyzers;
mod authoring;
mod boundary;
mod browser;
mod cache;
mod cli;
mod containers;
mod dashboard;
mod deploy;
mod environments;
mod escapes;
mod git;
mod guests;
mod history;
mod injection;
mod languages;
mod network;
mod process;
mod provenance;
mod replay;
mod scheduler;
mod serve;
mod support;
mod tenancy;
mod validation;
mod workers;

/// Paths of the test guest components, built by host/build.rs.
pub mod guest_paths {
    include!(env!("WEIR_TEST_GUESTS_RS"));
}

// Every test guest must have a test named after it in `guests`: a guest
// without one fails the build here.
macro_rules! assert_guest_is_tested {
    ($name:ident) => {
        const _: fn() = guests::$name;
    };
}
guest_paths::for_each_guest!(assert_guest_is_tested);

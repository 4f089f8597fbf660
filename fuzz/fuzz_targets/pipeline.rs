//! Any text as `pipeline.toml`: parsing, planning (names, cycles, `needs`,
//! interpolation, environments) and the tenant check must return errors,
//! never panic, overflow the stack or hang.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir_pipeline::config::tenants::{AllowPolicy, Tenant};

/// The built-ins' names, as `plan::build` needs them (their bytes are not
/// built for fuzzing).
const BUILTINS: &[&str] = &[
    "blue-green",
    "build",
    "canary",
    "canary-metrics",
    "cargo-test",
    "checksum",
    "deploy",
    "git",
    "junit",
    "lint",
    "noop",
    "recreate",
    "require-files",
    "rolling",
    "run",
    "scan",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = weir_pipeline::config::parse(Path::new("pipeline.toml"), text.to_string()) else {
        return;
    };
    let Ok(mut plan) = weir_pipeline::plan::build(loaded, BUILTINS) else {
        return;
    };
    let _ = plan.topological_order();
    let strict = Tenant {
        allow: Some(AllowPolicy {
            exec: vec!["sh".into()],
            network: vec!["*.example.com".into()],
            ..AllowPolicy::default()
        }),
        sandbox: weir_pipeline::sandbox::SandboxChoice::Required,
        ..Tenant::unrestricted_default()
    };
    weir_pipeline::plan::tenancy::clamp_timeouts(&mut plan, &strict);
    weir_pipeline::plan::tenancy::raise_sandboxes(&mut plan, &strict);
    let _ = weir_pipeline::plan::tenancy::check(&plan, &strict);
    let _ = weir_pipeline::plan::environments::resolve(&mut plan, None, &|_| None);
});

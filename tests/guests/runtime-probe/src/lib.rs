//! A plain stage with `allow = { runtime = true }` (which drives the whole
//! target, unlike a deploy stage) that reaches for the service its config
//! names: lists its instances, sets its traffic split, stops an instance.
//! Each answer is an output (`ok …` or the host's refusal), so a test can
//! check what a tenant may do to another tenant's service.

use serde::Deserialize;
use weir_sdk::runtime;
use weir_sdk::{Capability, Context, Failure, HostError, Manifest, Plugin, Stage, StageOutput};

#[derive(Deserialize)]
struct Config {
    service: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    instance: String,
}

struct Probe;

impl Plugin for Probe {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Stage, [Capability::Runtime])
    }
}

fn said(e: HostError) -> String {
    match e {
        HostError::Denied(m) => format!("denied: {m}"),
        HostError::Invalid(m) => format!("invalid: {m}"),
        HostError::Failed(m) => format!("failed: {m}"),
        HostError::Limit(m) => format!("limit: {m}"),
        HostError::Unavailable(m) => format!("unavailable: {m}"),
    }
}

impl Stage for Probe {
    fn run(ctx: Context) -> Result<StageOutput, Failure> {
        let c: Config = ctx.config()?;
        let listed = match runtime::instances(&c.service) {
            Ok(list) => format!("ok {}", list.len()),
            Err(e) => said(e),
        };
        let weighed = match runtime::set_weights(&c.service, &[(c.version.clone(), 100)]) {
            Ok(()) => "ok".to_string(),
            Err(e) => said(e),
        };
        let stopped = if c.instance.is_empty() {
            "not tried".to_string()
        } else {
            match runtime::stop(&c.instance) {
                Ok(()) => "ok".to_string(),
                Err(e) => said(e),
            }
        };
        Ok(StageOutput::new()
            .output("instances", listed)
            .output("weights", weighed)
            .output("stop", stopped))
    }
}

weir_sdk::export_stage!(Probe);

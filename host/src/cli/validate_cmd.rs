//! `weir validate`.

use std::process::ExitCode;

use super::ValidateArgs;
use super::load_tenant;
use crate::config::duration::format_duration;
use crate::plan::environments;
use crate::plugins::kind_name;
use crate::session::prepare::{EnvironmentProblems, engine_for, prepare_layered, within_tenant};

pub async fn validate(args: ValidateArgs) -> ExitCode {
    // With --env, the environment is laid over the plan before the
    // plugins check it, exactly as `weir run --env` would.
    // So is the tenant's policy, as `weir run --tenant` would check it.
    let Some(tenant) = load_tenant(args.tenants.as_deref(), args.tenant.as_deref()) else {
        return ExitCode::from(2);
    };
    let mut secret_values = Vec::new();
    let mut layer =
        |plan: &mut crate::plan::Plan| {
            if let Some(env) = &args.environment {
                let resolved = environments::resolve(plan, Some(env), &|name| tenant.secrets.get(name))
                    .map_err(|e| EnvironmentProblems {
                        path: plan.source.path().to_path_buf(),
                        problems: e.iter().map(ToString::to_string).collect(),
                    })?;
                secret_values = resolved.secret_values;
            }
            within_tenant(plan, &tenant)
        };
    let engine = engine_for(&tenant);
    let prepared = match prepare_layered(&args.pipeline, None, None, &engine, &mut layer).await {
        Ok(p) => p,
        Err(e) => {
            super::render(e);
            return ExitCode::from(2);
        }
    };
    let plan = &prepared.plan;
    println!(
        "✓ {} is valid: pipeline `{}`, {} stage(s)",
        args.pipeline.display(),
        plan.name,
        plan.stages.len()
    );
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(4);
    for i in plan.topological_order() {
        let stage = &plan.stages[i];
        let plugin = &prepared.plugins[i].info;
        let needs: Vec<&str> = stage
            .needs
            .iter()
            .map(|&n| plan.stages[n].name.as_str())
            .collect();
        let cached =
            crate::stage_cache::cacheable(&stage.cache, &plugin.name, &plugin.manifest.capabilities).is_ok();
        println!(
            "  {:<width$}  {} {} ({}), timeout {}{}{}{}",
            stage.name,
            plugin.name,
            plugin.manifest.version,
            kind_name(plugin.kind),
            format_duration(stage.timeout),
            if stage.retries > 0 {
                format!(", {} retries", stage.retries)
            } else {
                String::new()
            },
            if needs.is_empty() {
                String::new()
            } else {
                format!(", needs {}", needs.join(", "))
            },
            if cached { ", cacheable" } else { "" },
        );
    }
    if let Some(env) = &args.environment {
        super::env_cmd::print_resolved(plan, env, &secret_values);
    }
    ExitCode::SUCCESS
}

//! `weir validate`.

use std::process::ExitCode;

use super::ValidateArgs;
use super::prepare::prepare;
use crate::config::duration::format_duration;
use crate::plugins::kind_name;

pub async fn validate(args: ValidateArgs) -> ExitCode {
    let prepared = match prepare(&args.pipeline, None).await {
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
    ExitCode::SUCCESS
}

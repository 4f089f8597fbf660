//! `weir env show|diff`, `weir approve`, `weir reject`.

use std::path::Path;
use std::process::ExitCode;

use crate::plan::Plan;
use crate::plan::environments::{self, Environment, MASK};
use crate::session::state::state_dir;
use crate::store::Store;
use crate::store::coordination::DecideError;

/// Read and plan `pipeline` (plugins are not loaded: environments do not
/// need them).
fn plan_of(pipeline: &Path) -> Result<Plan, ExitCode> {
    let loaded = crate::config::load(pipeline).map_err(|e| {
        super::render(e);
        ExitCode::from(2)
    })?;
    crate::plan::build(loaded, &crate::plugins::builtin::names()).map_err(|e| {
        super::render(e);
        ExitCode::from(2)
    })
}

fn environment<'p>(plan: &'p Plan, name: &str) -> Result<&'p Environment, ExitCode> {
    plan.environments.get(name).ok_or_else(|| {
        if plan.environments.is_empty() {
            eprintln!(
                "weir: {} declares no environments; add [environments.{name}]",
                plan.source.path().display()
            );
        } else {
            let known: Vec<&str> = plan.environments.keys().map(String::as_str).collect();
            eprintln!(
                "weir: there is no environment `{name}` in {} (it declares {})",
                plan.source.path().display(),
                known.join(", ")
            );
        }
        ExitCode::from(2)
    })
}

/// `weir env show NAME`, with secrets read from `tenant`'s source.
pub fn show(
    pipeline: &Path,
    name: &str,
    json: bool,
    tenants: Option<&Path>,
    tenant: Option<&str>,
) -> ExitCode {
    let Some(tenant) = super::load_tenant(tenants, tenant) else {
        return ExitCode::from(2);
    };
    let plan = match plan_of(pipeline) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let env = match environment(&plan, name) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let (value, problems) = environments::describe(env, &|name| tenant.secrets.get(name));
    if json {
        let mut value = value;
        value["problems"] = problems.iter().map(ToString::to_string).collect();
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        println!(
            "environment {name}{}",
            env.description
                .as_ref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        );
        for (key, v) in environments::flatten(&value) {
            println!("  {key} = {v}");
        }
        let deployers: Vec<&str> = plan
            .stages
            .iter()
            .filter(|s| environments::target_of(s, Some(name)).as_deref() == Some(name))
            .map(|s| s.name.as_str())
            .collect();
        if !deployers.is_empty() {
            println!("  stages: {}", deployers.join(", "));
        }
        for p in &problems {
            eprintln!("weir: {p}");
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// `weir env diff A B`: the settings that differ, `-` for A, `+` for B.
pub fn diff(pipeline: &Path, a: &str, b: &str) -> ExitCode {
    let plan = match plan_of(pipeline) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (ea, eb) = match (environment(&plan, a), environment(&plan, b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    // Secrets are compared by name only: both sides show the mask.
    let (va, _) = environments::describe(ea, &|_| Some(MASK.into()));
    let (vb, _) = environments::describe(eb, &|_| Some(MASK.into()));
    let (fa, fb) = (environments::flatten(&va), environments::flatten(&vb));
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let mut same = 0;
    println!("--- {a}\n+++ {b}");
    for k in keys {
        match (fa.get(k), fb.get(k)) {
            (Some(x), Some(y)) if x == y => same += 1,
            (x, y) => {
                if let Some(x) = x {
                    println!("- {k} = {x}");
                }
                if let Some(y) = y {
                    println!("+ {k} = {y}");
                }
            }
        }
    }
    println!("({same} setting(s) the same)");
    ExitCode::SUCCESS
}

/// `weir validate --env NAME`: the stages that target it, as they will
/// run (secrets masked). `plan` has the environment laid over it.
pub fn print_resolved(plan: &Plan, env: &str, secret_values: &[String]) {
    println!("environment {env}:");
    let masked = |v: &str| {
        if secret_values.iter().any(|s| s == v) {
            MASK.to_string()
        } else {
            v.to_string()
        }
    };
    let Some(e) = plan.environments.get(env) else {
        println!("  (not declared; a label for `when` only)");
        return;
    };
    if let Some(a) = &e.approval {
        println!(
            "  requires approval by {} within {}",
            if a.approvers.is_empty() {
                "anyone".to_string()
            } else {
                a.approvers.join(", ")
            },
            crate::config::duration::format_duration(a.timeout)
        );
    }
    if !e.branches.is_empty() || !e.tags.is_empty() {
        println!(
            "  deploys from branches [{}] tags [{}]",
            e.branches.join(", "),
            e.tags.join(", ")
        );
    }
    for stage in plan
        .stages
        .iter()
        .filter(|s| s.environment.as_deref() == Some(env))
    {
        println!("  stage {}:", stage.name);
        for (k, v) in &stage.env {
            if e.variables.iter().any(|(n, _)| n == k) || e.secrets.contains(k) || e.inherit_env.contains(k) {
                println!("    env {k} = {}", masked(v));
            }
        }
        if stage.rollout.is_some() {
            println!("    with {}", stage.with);
            for c in stage.rollout.iter().flat_map(|r| &r.checks) {
                println!("    check {} {}", c.plugin.name(), c.with);
            }
        }
        for c in &stage.concurrency {
            println!("    holds concurrency group `{}`", c.group);
        }
    }
}

/// The name an approval is given under: `--as`, else `$USER`.
fn approver(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `weir approve RUN` and `weir reject RUN --reason ...`.
pub fn decide(
    run: &str,
    stage: Option<&str>,
    approve: bool,
    who: Option<String>,
    reason: Option<&str>,
) -> ExitCode {
    if !state_dir().join(crate::store::DB_FILE).is_file() {
        eprintln!(
            "weir: no run history here ({}/); run weir approve where the run was started",
            state_dir().display()
        );
        return ExitCode::from(2);
    }
    let mut store = match Store::open(&state_dir()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(2);
        }
    };
    let who = approver(who);
    match store.decide(run, stage, approve, &who, reason) {
        Ok(decided) => {
            for a in &decided {
                println!(
                    "{} stage `{}` of run {run} ({}) {} by {who}",
                    if approve { "✓" } else { "✗" },
                    a.stage,
                    a.environment,
                    a.decision
                );
            }
            let status = store.status(run).unwrap_or_default();
            if status != "running" {
                println!("  run {run} is {status}: `weir run --resume {run}` continues it");
            }
            ExitCode::SUCCESS
        }
        Err(DecideError::Store(e)) => {
            eprintln!("weir: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::from(1)
        }
    }
}

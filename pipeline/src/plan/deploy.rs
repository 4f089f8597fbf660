//! A deploy stage's rollout (its strategy, checks and load) and the
//! plugins a stage names: `uses`, a strategy's or a check's.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use super::text::{quoted, suggest};
use super::*;
use crate::config::model::StageSpec;

/// The rollout of a stage with a `strategy`, `None` for any other; a
/// stage with checks or load but no strategy, or a deploy that asks for
/// the stage cache, is an error.
pub(super) fn plan_rollout(
    source: &SourceFile,
    name: &str,
    spec: &StageSpec,
    declared: &BTreeMap<String, PluginRef>,
    builtins: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<RolloutPlan> {
    let rollout = spec.strategy.as_ref().map(|strategy| RolloutPlan {
        strategy: plan_use(
            source,
            name,
            "strategy",
            strategy,
            STRATEGY_TIMEOUT,
            declared,
            builtins,
            errors,
        ),
        checks: spec
            .checks
            .iter()
            .map(|c| {
                plan_use(
                    source,
                    name,
                    "check",
                    c,
                    CHECK_TIMEOUT,
                    declared,
                    builtins,
                    errors,
                )
            })
            .collect(),
        load: spec.load.as_ref().map(|l| {
            let l = l.get_ref();
            let rate = *l.rate.get_ref();
            if rate == 0 || rate > MAX_LOAD_RATE {
                errors.push(
                    source
                        .error(
                            l.rate.span(),
                            format!("a load of {rate} requests per second is out of range"),
                        )
                        .help(format!("use 1 to {MAX_LOAD_RATE}")),
                );
            }
            let path = l.path.as_ref().map_or("/".to_string(), |p| p.get_ref().clone());
            if !path.starts_with('/')
                && let Some(p) = &l.path
            {
                errors.push(source.error(p.span(), format!("the load path `{path}` must start with `/`")));
            }
            Load { rate, path }
        }),
    });
    if rollout.is_some()
        && let Some(c) = spec.cache.as_ref().filter(|c| *c.get_ref())
    {
        errors.push(
            source
                .error(
                    c.span(),
                    format!("stage `{name}` deploys, so it cannot be served from the stage cache"),
                )
                .help("a deploy changes what serves; remove `cache = true`"),
        );
    }
    if rollout.is_none() {
        for (what, span) in spec
            .checks
            .first()
            .map(|c| ("checks", c.span()))
            .into_iter()
            .chain(spec.load.as_ref().map(|l| ("load", l.span())))
        {
            errors.push(
                source
                    .error(span, format!("stage `{name}` has `{what}` but no `strategy`"))
                    .help("checks and load belong to a deploy stage: add strategy = { uses = \"canary\" }"),
            );
        }
    }
    rollout
}

/// The plugin `uses` names: a `[plugins]` key or a built-in.
pub(super) fn resolve_plugin(
    source: &SourceFile,
    who: &str,
    uses: &str,
    span: Range<usize>,
    declared: &BTreeMap<String, PluginRef>,
    builtins: &[&str],
    errors: &mut Vec<ConfigError>,
) -> PluginRef {
    if let Some(p) = declared.get(uses) {
        return p.clone();
    }
    if builtins.contains(&uses) {
        return PluginRef::Builtin(uses.to_string());
    }
    let candidates = builtins
        .iter()
        .copied()
        .chain(declared.keys().map(String::as_str));
    let help = suggest(uses, candidates).unwrap_or_else(|| {
        format!(
            "built-in plugins are {}; declare others with [plugins.{uses}] path = \"plugin.wasm\"",
            quoted(builtins.iter().copied())
        )
    });
    errors.push(
        source
            .error(span, format!("{who} `{uses}`, which is not a known plugin"))
            .help(help),
    );
    PluginRef::Builtin(uses.to_string())
}

/// A stage's `strategy` or a `checks` entry, planned.
#[expect(
    clippy::too_many_arguments,
    reason = "two call sites; a struct would only rename these"
)]
pub(super) fn plan_use(
    source: &SourceFile,
    name: &str,
    what: &str,
    u: &toml::Spanned<crate::config::model::PluginUse>,
    default_timeout: Duration,
    declared: &BTreeMap<String, PluginRef>,
    builtins: &[&str],
    errors: &mut Vec<ConfigError>,
) -> PlannedUse {
    let spec = u.get_ref();
    let plugin = resolve_plugin(
        source,
        &format!("stage `{name}`'s {what} uses"),
        spec.uses.get_ref(),
        spec.uses.span(),
        declared,
        builtins,
        errors,
    );
    let timeout = match &spec.timeout {
        Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|msg| {
            errors.push(
                source
                    .error(t.span(), msg.to_string())
                    .help("write a number and a unit: \"250ms\", \"90s\", \"10m\""),
            );
            default_timeout
        }),
        None => default_timeout,
    };
    PlannedUse {
        plugin,
        uses_span: spec.uses.span(),
        with: match &spec.with {
            Some(t) => toml_to_json(&toml::Value::Table(t.get_ref().clone())),
            None => serde_json::Value::Object(Default::default()),
        },
        timeout,
    }
}

/// A strategy's call when it sets no `timeout`.
pub const STRATEGY_TIMEOUT: Duration = Duration::from_secs(10);
/// A check's run when it sets no `timeout`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// The most requests per second `load` may ask for.
pub const MAX_LOAD_RATE: u32 = 10_000;

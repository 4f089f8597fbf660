//! One stage of the plan: what `[stages.NAME]` says, checked, with the
//! facts of the whole pipeline it is checked against ([`Planner`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use super::build::concurrency_of;
use super::deploy::resolve_plugin;
use super::text::{quoted, replace_in_json, suggest, toml_to_json, valid_env_name};
use super::*;
use crate::config::model::StageSpec;

/// What planning one stage reads besides the stage itself.
pub(super) struct Planner<'a> {
    /// The pipeline file, for errors.
    pub source: &'a SourceFile,
    /// `[pipeline] env`, which every stage starts from.
    pub pipeline_env: &'a indexmap::IndexMap<toml::Spanned<String>, toml::Spanned<String>>,
    /// Stage names to their index.
    pub index: &'a BTreeMap<&'a str, usize>,
    /// Every stage name, in order.
    pub names: &'a [String],
    /// `[plugins]`.
    pub declared: &'a BTreeMap<String, PluginRef>,
    /// The built-in plugins' names.
    pub builtins: &'a [&'a str],
    /// The pipeline file's directory.
    pub base_dir: &'a std::path::Path,
    /// Every problem found, all reported at once.
    pub errors: &'a mut Vec<ConfigError>,
}

impl Planner<'_> {
    /// Stage `name` as `spec` says, with its problems added to `errors`.
    pub(super) fn stage(&mut self, name: &str, spec: &StageSpec, stage_span: Range<usize>) -> PlannedStage {
        let (source, pipeline_env, index, names, declared, builtins, base_dir) = (
            self.source,
            self.pipeline_env,
            self.index,
            self.names,
            self.declared,
            self.builtins,
            self.base_dir,
        );
        let errors = &mut *self.errors;
        let (uses, uses_span) = match (&spec.uses, &spec.run) {
            (Some(u), None) => (u.get_ref().clone(), u.span()),
            (None, Some(r)) => (RUN_PLUGIN.to_string(), r.span()),
            (Some(u), Some(_)) => {
                errors.push(
                    source
                        .error(u.span(), format!("stage `{name}` has both `uses` and `run`"))
                        .help(
                            "`run = \"COMMAND\"` is shorthand for the built-in `run` plugin; keep one of the two",
                        ),
                );
                (u.get_ref().clone(), u.span())
            }
            (None, None) => {
                errors.push(
                    source
                        .error(
                            stage_span,
                            format!("stage `{name}` says neither what plugin it uses nor what to run"),
                        )
                        .help("add `uses = \"PLUGIN\"` (see `weir plugins list`) or `run = \"COMMAND\"`"),
                );
                (RUN_PLUGIN.to_string(), 0..0)
            }
        };
        let plugin = resolve_plugin(
            source,
            &format!("stage `{name}` uses"),
            &uses,
            uses_span.clone(),
            declared,
            builtins,
            errors,
        );

        let mut needs = Vec::new();
        for need in &spec.needs {
            let n = need.get_ref();
            if n == name {
                errors.push(
                    source
                        .error(need.span(), format!("stage `{name}` needs itself"))
                        .help("remove it from `needs`"),
                );
            } else if let Some(i) = index.get(n.as_str()) {
                if !needs.contains(i) {
                    needs.push(*i);
                }
            } else {
                let help = suggest(n, names.iter().map(String::as_str)).unwrap_or_else(|| {
                    format!("the stages are {}", quoted(names.iter().map(String::as_str)))
                });
                errors.push(
                    source
                        .error(
                            need.span(),
                            format!("stage `{name}` needs `{n}`, which is not a stage"),
                        )
                        .help(help),
                );
            }
        }

        let timeout = match &spec.timeout {
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) => d,
                Err(msg) => {
                    errors.push(
                        source
                            .error(t.span(), msg.to_string())
                            .help("write a number and a unit: \"250ms\", \"90s\", \"10m\", \"1h30m\""),
                    );
                    DEFAULT_TIMEOUT
                }
            },
            None => DEFAULT_TIMEOUT,
        };

        let retries = match &spec.retries {
            Some(r) if *r.get_ref() > MAX_RETRIES => {
                errors.push(
                    source
                        .error(
                            r.span(),
                            format!("{} retries is more than the {MAX_RETRIES} allowed", r.get_ref()),
                        )
                        .help("a stage that needs more retries than that has a bug worth fixing"),
                );
                MAX_RETRIES
            }
            Some(r) => *r.get_ref(),
            None => 0,
        };

        let mut inputs = Vec::new();
        for glob in &spec.inputs {
            match crate::globs::check_glob(glob.get_ref()) {
                Ok(()) => inputs.push(glob.get_ref().clone()),
                Err(why) => errors.push(
                    source
                        .error(glob.span(), format!("input `{}` {why}", glob.get_ref()))
                        .help("inputs are workspace paths or globs: \"Cargo.lock\", \"src/**/*.rs\""),
                ),
            }
        }

        let pipeline_dir = base_dir.display().to_string();
        let mut with = match &spec.with {
            Some(t) => toml_to_json(&toml::Value::Table(t.get_ref().clone())),
            None => serde_json::Value::Object(Default::default()),
        };
        replace_in_json(&mut with, PIPELINE_DIR, &pipeline_dir);
        let mut grants: Grants = spec
            .allow
            .as_ref()
            .map(|a| {
                let mut allow = a.get_ref().clone();
                for r in &mut allow.read {
                    *r = PathBuf::from(r.to_string_lossy().replace(PIPELINE_DIR, &pipeline_dir));
                }
                allow.resolve_read(base_dir);
                allow
            })
            .unwrap_or_default();
        if let Some(run) = &spec.run {
            if let serde_json::Value::Object(map) = &mut with {
                map.insert("command".into(), serde_json::Value::String(run.get_ref().clone()));
            }
            if !grants.exec.iter().any(|e| e == RUN_SHELL) {
                grants.exec.push(RUN_SHELL.into());
            }
        }
        let (gate, gate_keys) = super::gate::plan_gate(source, spec.gate.as_ref(), errors);
        let sandbox_span = spec.sandbox.as_ref().map(|s| s.span());
        let sandbox = match &spec.sandbox {
            None => SandboxChoice::Auto,
            Some(s) => SandboxChoice::parse(s.get_ref()).unwrap_or_else(|| {
                errors.push(
                    source
                        .error(s.span(), format!("`{}` is not a sandbox weir knows", s.get_ref()))
                        .help(
                            "use \"auto\" (bubblewrap when installed), \"bubblewrap\" (required) or \"none\"",
                        ),
                );
                SandboxChoice::Auto
            }),
        };

        let mut env: Vec<(String, String)> = Vec::new();
        let mut env_spans: Vec<(String, Range<usize>)> = Vec::new();
        for (k, v) in pipeline_env.iter().chain(spec.env.iter()) {
            let key = k.get_ref();
            env_spans.push((key.clone(), k.span()));
            if key.starts_with(super::shell::VAR_PREFIX) {
                errors.push(
                    source
                        .error(k.span(), format!("`{key}` is a name weir keeps for itself"))
                        .help("weir hands the values of expressions in shell text to the shell as WEIR_EXPR_1, WEIR_EXPR_2, …; choose another name"),
                );
            }
            if !valid_env_name(key) {
                errors.push(
                    source
                        .error(
                            k.span(),
                            format!("`{key}` is not a valid environment variable name"),
                        )
                        .help("use letters, digits and `_`, not starting with a digit"),
                );
            }
            env.retain(|(existing, _)| existing != key);
            env.push((key.clone(), v.get_ref().replace(PIPELINE_DIR, &pipeline_dir)));
        }
        let mut inherited = Vec::new();
        for name in &spec.inherit_env {
            let key = name.get_ref();
            env_spans.push((key.clone(), name.span()));
            inherited.push(key.clone());
            if !valid_env_name(key) {
                errors.push(source.error(
                    name.span(),
                    format!("`{key}` is not a valid environment variable name"),
                ));
            } else if let Ok(value) = std::env::var(key) {
                env.retain(|(existing, _)| existing != key);
                env.push((key.clone(), value));
            }
        }

        let when = spec
            .when
            .as_ref()
            .map(|w| {
                let w = w.get_ref();
                When {
                    branch: w.branch.clone().map(|b| b.into_vec()).unwrap_or_default(),
                    environment: w.environment.clone().map(|e| e.into_vec()).unwrap_or_default(),
                }
            })
            .unwrap_or_default();

        let rollout = super::deploy::plan_rollout(source, name, spec, declared, builtins, errors);

        let concurrency = concurrency_of(
            source,
            spec.concurrency.as_ref(),
            spec.cancel_in_progress.as_ref(),
            errors,
        )
        .into_iter()
        .collect();
        PlannedStage {
            rollout,
            concurrency,
            name: crate::names::StageName::reported(name),
            plugin,
            uses_span,
            with,
            with_span: spec.with.as_ref().map(|w| w.span()),
            shell: if spec.run.is_some() {
                vec!["command".to_string()]
            } else {
                Vec::new()
            },
            needs,
            upstream: BTreeSet::new(),
            timeout,
            retries,
            when,
            env,
            secret_env: Vec::new(),
            env_spans,
            inherited,
            grants,
            allow_span: spec.allow.as_ref().map(|a| a.span()),
            timeout_span: spec.timeout.as_ref().map(|t| t.span()),
            sandbox,
            sandbox_span,
            gate,
            gate_span: spec.gate.as_ref().map(|g| g.span()),
            gate_keys,
            environment: spec.environment.as_ref().map(|e| e.get_ref().clone()),
            cache: CachePolicy {
                setting: spec.cache.as_ref().map(|c| *c.get_ref()),
                inputs,
            },
        }
    }
}

//! [`build`]: a parsed pipeline checked as a whole and turned into its
//! [`Plan`].

use super::graph::{check_references, fill_upstream, find_cycle};
use super::stage::Planner;
use super::text::suggest;
use super::*;

/// Check `loaded` and build its plan. `builtins` are the names of the
/// plugins embedded in this host.
pub fn build(loaded: LoadedPipeline, builtins: &[&str]) -> Result<Plan, InvalidConfig> {
    let LoadedPipeline { source, file } = loaded;
    let mut errors = Vec::new();
    let names: Vec<String> = file.stages.keys().map(|k| k.get_ref().clone()).collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let base_dir = source
        .path()
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        .unwrap_or_default();

    if file.stages.is_empty() {
        errors.push(
            source
                .error_whole("the pipeline has no stages")
                .help("add one: [stages.hello] then uses = \"noop\""),
        );
    }
    let name_span = file.pipeline.name.span();
    if file.pipeline.name.get_ref().trim().is_empty() {
        errors.push(source.error(name_span, "the pipeline's name is empty"));
    }

    // Plugins declared by path.
    let mut declared: BTreeMap<String, PluginRef> = BTreeMap::new();
    for (key, spec) in &file.plugins {
        let name = key.get_ref();
        if let Err(e) = crate::names::check(crate::names::NameKind::Plugin, name) {
            errors.push(
                source
                    .error(key.span(), e.to_string())
                    .help(crate::names::NameError::HELP),
            );
            continue;
        }
        if builtins.contains(&name.as_str()) {
            errors.push(
                source
                    .error(key.span(), format!("`{name}` is the name of a built-in plugin"))
                    .help("choose another name for this plugin so `uses` is never ambiguous"),
            );
            continue;
        }
        let spec = spec.get_ref();
        let rel = spec.path.get_ref();
        let path = base_dir.join(rel);
        if !path.is_file() {
            // cargo names the component after the crate with `-` turned
            // into `_`: `my-check` builds `my_check.wasm`.
            let twin = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| path.with_file_name(n.replace('-', "_")))
                .filter(|t| *t != path && t.is_file());
            let help = match twin {
                Some(t) => format!(
                    "did you mean `{}`? cargo writes crate `my-check` as `my_check.wasm`",
                    t.file_name().and_then(|n| n.to_str()).unwrap_or_default()
                ),
                None => build_hint(&path),
            };
            errors.push(
                source
                    .error(
                        spec.path.span(),
                        format!("plugin file `{}` does not exist", path.display()),
                    )
                    .help(help),
            );
        }
        let sha256 = match &spec.sha256 {
            Some(s) => {
                let hex = s.get_ref().trim().to_ascii_lowercase();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    errors.push(
                        source
                            .error(s.span(), "`sha256` must be 64 hexadecimal characters")
                            .help("`weir plugins inspect PATH` prints a file's sha256"),
                    );
                }
                Some(hex)
            }
            None => None,
        };
        declared.insert(
            name.clone(),
            PluginRef::File {
                name: name.clone(),
                path,
                sha256,
            },
        );
    }

    let mut providers = BTreeMap::new();
    for (key, spec) in &file.providers {
        let name = key.get_ref();
        let url = spec
            .get_ref()
            .prometheus
            .get_ref()
            .trim()
            .trim_end_matches('/')
            .to_string();
        if name == "builtin" {
            errors.push(
                source
                    .error(key.span(), "`builtin` is the local target's own provider")
                    .help("choose another name, e.g. [providers.prometheus]"),
            );
        } else if !url.starts_with("http://") || url.len() <= "http://".len() {
            errors.push(
                source
                    .error(
                        spec.get_ref().prometheus.span(),
                        format!("`{url}` is not an http:// URL"),
                    )
                    .help("write the server's base URL, e.g. prometheus = \"http://127.0.0.1:9090\""),
            );
        }
        providers.insert(name.clone(), crate::providers::Provider::Prometheus(url));
    }
    for (key, spec) in &file.stages {
        let Some(allow) = &spec.get_ref().allow else {
            continue;
        };
        for m in &allow.get_ref().metrics {
            if m != "builtin" && !providers.contains_key(m) {
                let known = std::iter::once("builtin").chain(providers.keys().map(String::as_str));
                errors.push(
                    source
                        .error(allow.span(), format!("stage `{}` is granted metrics provider `{m}`, which is not configured", key.get_ref()))
                        .help(suggest(m, known).unwrap_or_else(|| format!("declare it: [providers.{m}] prometheus = \"http://127.0.0.1:9090\"; `builtin` is always there"))),
                );
            }
        }
    }

    let environments = environments::plan_environments(&source, &file.environments, &mut errors);
    if let Some(e) = &file.pipeline.environment {
        environments::check_reference(&source, &environments, e, &mut errors);
    }
    for spec in file.stages.values() {
        if let Some(e) = &spec.get_ref().environment {
            environments::check_reference(&source, &environments, e, &mut errors);
        }
    }
    let concurrency = concurrency_of(
        &source,
        file.pipeline.concurrency.as_ref(),
        file.pipeline.cancel_in_progress.as_ref(),
        &mut errors,
    );
    let mut runs_on = Vec::new();
    for label in &file.pipeline.runs_on {
        if super::valid_label(label.get_ref()) {
            runs_on.push(label.get_ref().clone());
        } else {
            errors.push(
                source
                    .error(label.span(), format!("`{}` is not a worker label", label.get_ref()))
                    .help("labels are 1 to 32 lowercase letters, digits and `-`, as `weir worker --labels` takes them"),
            );
        }
    }
    runs_on.sort();
    runs_on.dedup();
    let notify = file
        .notify
        .as_ref()
        .map(|n| crate::webhooks::plan_webhooks(&source, n.get_ref(), &mut errors))
        .unwrap_or_default();

    let mut stages = Vec::with_capacity(names.len());
    for (key, spec) in &file.stages {
        let name = key.get_ref();
        if let Err(e) = crate::names::check(crate::names::NameKind::Stage, name) {
            errors.push(
                source
                    .error(key.span(), e.to_string())
                    .help(crate::names::NameError::HELP),
            );
        }
        let stage = Planner {
            source: &source,
            pipeline_env: &file.pipeline.env,
            index: &index,
            names: &names,
            declared: &declared,
            builtins,
            base_dir: &base_dir,
            errors: &mut errors,
        }
        .stage(name, spec.get_ref(), key.span());
        stages.push(stage);
    }

    if errors.is_empty()
        && let Some(cycle) = find_cycle(&stages)
    {
        {
            let path: Vec<&str> = cycle.iter().map(|i| names[*i].as_str()).collect();
            // Point at the `needs` entry that closes the cycle.
            let (from, to) = (cycle[cycle.len() - 2], cycle[cycle.len() - 1]);
            let span = file.stages[from]
                .get_ref()
                .needs
                .iter()
                .find(|n| n.get_ref() == &names[to])
                .map(|n| n.span())
                .unwrap_or_else(|| file.stages.get_index(from).map(|(k, _)| k.span()).unwrap_or(0..0));
            errors.push(
                source
                    .error(span, format!("the stages form a cycle: {}", path.join(" → ")))
                    .label("this need closes the cycle")
                    .help("remove one of these `needs` so the stages can run in order"),
            );
        }
    }

    if errors.is_empty() {
        fill_upstream(&mut stages);
        check_references(&source, &file.stages, &stages, &names, &mut errors);
    }
    // `[pipeline] env` is every stage's: it can hold no reference to a
    // stage's outputs, and a malformed `${{` in it is an error like any.
    for (key, value) in &file.pipeline.env {
        match super::expr::parse(&value.get_ref().replace(PIPELINE_DIR, "")) {
            Err(msg) => errors.push(source.error(value.span(), msg)),
            Ok(pieces) if pieces.iter().any(|p| matches!(p, super::expr::Piece::Ref(..))) => errors.push(
                source
                    .error(
                        value.span(),
                        format!("`[pipeline] env` `{}` reads a stage's output, but it is every stage's, the first included", key.get_ref()),
                    )
                    .help("move it to the `env` of the stages that need it (and list the stage it reads in their `needs`)"),
            ),
            Ok(_) => {}
        }
    }

    if !errors.is_empty() {
        return Err(InvalidConfig {
            path: source.path().to_path_buf(),
            errors,
        });
    }
    Ok(Plan {
        name: file.pipeline.name.into_inner(),
        source,
        stages,
        providers,
        environments,
        default_environment: file.pipeline.environment.map(|e| e.into_inner()),
        concurrency,
        runs_on,
        notify,
    })
}

/// `concurrency = "GROUP"` and `cancel-in-progress`, checked.
pub(super) fn concurrency_of(
    source: &SourceFile,
    group: Option<&toml::Spanned<String>>,
    cancel: Option<&toml::Spanned<bool>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Concurrency> {
    match (group, cancel) {
        (Some(g), _) => {
            let name = g.get_ref().trim();
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                errors.push(
                    source
                        .error(g.span(), "a concurrency group needs a short, printable name")
                        .help("e.g. concurrency = \"deploy-web\""),
                );
            }
            Some(Concurrency {
                group: name.to_string(),
                cancel_in_progress: cancel.is_some_and(|c| *c.get_ref()),
            })
        }
        (None, Some(c)) => {
            errors.push(
                source
                    .error(c.span(), "`cancel-in-progress` without `concurrency`")
                    .help("name the group it applies to: concurrency = \"deploy-web\""),
            );
            None
        }
        (None, None) => None,
    }
}

/// How to build the plugin a missing `path` names: the project it sits
/// in (the nearest folder above it with a Cargo.toml, pyproject.toml or
/// package.json) says which toolchain; `weir plugin build` builds each.
fn build_hint(path: &std::path::Path) -> String {
    let project = path.ancestors().skip(1).take(4).find_map(|dir| {
        [
            ("Cargo.toml", "Rust"),
            ("pyproject.toml", "Python"),
            ("package.json", "JavaScript"),
        ]
        .into_iter()
        .find(|(marker, _)| dir.join(marker).is_file())
        .map(|(_, lang)| (dir, lang))
    });
    match project {
        Some((dir, lang)) => format!(
            "the path is relative to the pipeline file; build the plugin first: it is a {lang} plugin, so run `weir plugin build` in {} (or `weir plugin build {}`)",
            dir.display(),
            dir.display()
        ),
        None => "the path is relative to the pipeline file; build the plugin first (`weir plugin build DIR` in its project folder; for Rust, `cargo build --release --target wasm32-wasip2` works too)".into(),
    }
}

//! The stage graph: cycles in `needs`, what each stage runs after, and
//! `${{ stages.X.outputs.Y }}` references to stages that run before.

use super::text::{json_strings, suggest};
use super::*;

/// A cycle as a path of stage indices whose last element equals its first.
pub(super) fn find_cycle(stages: &[PlannedStage]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        stages: &[PlannedStage],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Active;
        path.push(i);
        for &n in &stages[i].needs {
            match marks[n] {
                Mark::Active => {
                    let start = path.iter().position(|p| *p == n).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(n);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(n, stages, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; stages.len()];
    for i in 0..stages.len() {
        if marks[i] == Mark::New {
            let mut path = Vec::new();
            if let Some(c) = visit(i, stages, &mut marks, &mut path) {
                return Some(c);
            }
        }
    }
    None
}

pub(super) fn fill_upstream(stages: &mut [PlannedStage]) {
    // Memoised over the needs graph (acyclic by now): a stage's upstream
    // is its needs and their upstreams, each computed once. Gathered in a
    // vector and built into the set in one sorted pass, which keeps a
    // 1,000-stage chain's half a million entries cheap.
    fn visit(i: usize, stages: &[PlannedStage], memo: &mut [Option<Vec<usize>>]) {
        if memo[i].is_some() {
            return;
        }
        let mut acc = Vec::new();
        for &n in &stages[i].needs {
            if n >= stages.len() || n == i {
                continue;
            }
            visit(n, stages, memo);
            acc.push(n);
            acc.extend(memo[n].iter().flatten().copied());
        }
        acc.sort_unstable();
        acc.dedup();
        memo[i] = Some(acc);
    }
    let mut memo: Vec<Option<Vec<usize>>> = vec![None; stages.len()];
    for i in 0..stages.len() {
        visit(i, stages, &mut memo);
    }
    for (stage, up) in stages.iter_mut().zip(memo) {
        stage.upstream = up.unwrap_or_default().into_iter().collect();
    }
}

pub(super) fn check_references(
    source: &SourceFile,
    specs: &indexmap::IndexMap<toml::Spanned<String>, toml::Spanned<StageSpec>>,
    stages: &[PlannedStage],
    names: &[String],
    errors: &mut Vec<ConfigError>,
) {
    for (i, (_, spec)) in specs.iter().enumerate() {
        let spec = spec.get_ref();
        let stage = &stages[i];
        let mut strings: Vec<(String, Range<usize>)> = Vec::new();
        if let Some(with) = &spec.with {
            let mut all = Vec::new();
            json_strings(&stage.with, &mut all);
            // A `run` stage's command is checked where `run` is written.
            all.retain(|s| spec.run.as_ref().is_none_or(|r| r.get_ref() != s));
            strings.extend(all.into_iter().map(|s| (s, with.span())));
        }
        // `run = "…"` is the `run` plugin's `command`, written elsewhere.
        if let Some(run) = &spec.run {
            strings.push((run.get_ref().clone(), run.span()));
        }
        for (_, v) in &spec.env {
            // `${{ pipeline.dir }}` is replaced when the stage is planned.
            strings.push((v.get_ref().replace(crate::plan::PIPELINE_DIR, ""), v.span()));
        }
        for (text, region) in strings {
            let at = |needle: &str| -> Range<usize> {
                let hay = &source.text()[region.clone()];
                match hay.find(needle) {
                    Some(off) => region.start + off..region.start + off + needle.len(),
                    None => region.clone(),
                }
            };
            let pieces = match expr::parse(&text) {
                Ok(p) => p,
                Err(msg) => {
                    let needle = text.find("${{").map(|o| &text[o..]).unwrap_or(&text);
                    let needle = needle.split('\n').next().unwrap_or(needle);
                    errors.push(source.error(at(needle), msg));
                    continue;
                }
            };
            for piece in pieces {
                let expr::Piece::Ref(r, whole) = piece else {
                    continue;
                };
                match names.iter().position(|n| *n == r.stage) {
                    None => {
                        let help = suggest(&r.stage, names.iter().map(String::as_str))
                            .unwrap_or_else(|| "name a stage of this pipeline".to_string());
                        errors.push(
                            source
                                .error(
                                    at(whole),
                                    format!("`{whole}` refers to stage `{}`, which does not exist", r.stage),
                                )
                                .help(help),
                        );
                    }
                    Some(j) if !stage.upstream.contains(&j) => {
                        errors.push(
                            source
                                .error(at(whole), format!(
                                    "stage `{}` reads an output of `{}` but does not need it, so `{}` may not have run yet",
                                    stage.name, r.stage, r.stage
                                ))
                                .help(format!("add \"{}\" to `needs` of stage `{}`", r.stage, stage.name)),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

//! A stage's `gate`: what its test or findings report must show for the
//! stage to pass, and which keys it set (the host checks each against
//! the kind of plugin the stage uses).

use std::ops::Range;

use super::{FindingsGate, Gate, GateFor, GateKey, Severity};
use crate::config::model::GateSpec;
use crate::config::{ConfigError, SourceFile, did_you_mean};

/// The gate `gate` asks for (the default when none), and the keys it set.
pub(super) fn plan_gate(
    source: &SourceFile,
    gate: Option<&toml::Spanned<GateSpec>>,
    errors: &mut Vec<ConfigError>,
) -> (Gate, Vec<GateKey>) {
    let mut gate_keys = Vec::new();
    let gate = match gate {
        None => Gate::default(),
        Some(g) => {
            let g = g.get_ref();
            let mut key = |name: &'static str, applies_to: GateFor, span: Option<Range<usize>>| {
                if let Some(span) = span {
                    gate_keys.push(GateKey {
                        name,
                        applies_to,
                        span,
                    });
                }
            };
            key(
                "min-pass-rate",
                GateFor::Tests,
                g.min_pass_rate.as_ref().map(|v| v.span()),
            );
            key(
                "max-failures",
                GateFor::Tests,
                g.max_failures.as_ref().map(|v| v.span()),
            );
            key(
                "allow-skipped",
                GateFor::Tests,
                g.allow_skipped.as_ref().map(|v| v.span()),
            );
            key("fail-on", GateFor::Findings, g.fail_on.as_ref().map(|v| v.span()));
            key(
                "max-findings",
                GateFor::Findings,
                g.max_findings.as_ref().map(|v| v.span()),
            );
            key(
                "min-score",
                GateFor::Findings,
                g.min_score.as_ref().map(|v| v.span()),
            );
            if let Some(rate) = &g.min_pass_rate
                && !(0.0..=1.0).contains(rate.get_ref())
            {
                errors.push(
                    source
                        .error(
                            rate.span(),
                            format!("min-pass-rate {} is not between 0 and 1", rate.get_ref()),
                        )
                        .help("write it as a fraction: 0.95 means 95% of the cases that ran must pass"),
                );
            }
            if let Some(score) = &g.min_score
                && !(0.0..=100.0).contains(score.get_ref())
            {
                errors.push(
                    source
                        .error(score.span(), format!("min-score {} is not between 0 and 100", score.get_ref()))
                        .help("the score is max(0, 100 − 10·critical − 5·high − 2·medium); 80 allows two high findings"),
                );
            }
            let fail_on = g.fail_on.as_ref().and_then(|f| {
                let parsed = Severity::parse(f.get_ref());
                if parsed.is_none() {
                    let names: Vec<&str> = Severity::WORST_FIRST.iter().map(|s| s.name()).collect();
                    let mut e = source.error(f.span(), format!("`{}` is not a severity", f.get_ref()));
                    e = match did_you_mean(f.get_ref(), names.iter().copied()) {
                        Some(s) => e.help(format!("did you mean `{s}`? Severities: {}", names.join(", "))),
                        None => e.help(format!("severities, worst first: {}", names.join(", "))),
                    };
                    errors.push(e);
                }
                parsed
            });
            let findings =
                (g.fail_on.is_some() || g.max_findings.is_some() || g.min_score.is_some()).then(|| {
                    FindingsGate {
                        fail_on,
                        max_findings: g.max_findings.as_ref().map(|v| *v.get_ref()),
                        min_score: g.min_score.as_ref().map(|v| *v.get_ref()),
                    }
                });
            Gate {
                min_pass_rate: g.min_pass_rate.as_ref().map(|r| *r.get_ref()),
                max_failures: g.max_failures.as_ref().map(|v| *v.get_ref()),
                allow_skipped: g.allow_skipped.as_ref().map(|v| *v.get_ref()).unwrap_or(true),
                findings,
            }
        }
    };
    (gate, gate_keys)
}

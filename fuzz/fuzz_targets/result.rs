//! Any stage result a plugin could return: the checks on its outputs and
//! the cutting of failure text must decide, never panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir_pipeline::results::{
    MAX_FAILURE_TEXT, MAX_OUTPUTS, StageResult, check_stage_output, cut_failure_text,
};

#[derive(Arbitrary, Debug)]
struct Input {
    outputs: Vec<(String, String)>,
    artifacts: Vec<(String, String)>,
    summary: Option<String>,
    failure: String,
}

fuzz_target!(|input: Input| {
    let artifacts: Vec<(&str, &str)> = input
        .artifacts
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_str()))
        .collect();
    let out = StageResult {
        outputs: &input.outputs,
        artifacts: &artifacts,
        summary: input.summary.as_deref(),
    };
    if check_stage_output(out).is_ok() {
        assert!(input.outputs.len() <= MAX_OUTPUTS);
    }
    let cut = cut_failure_text(input.failure);
    assert!(cut.len() <= MAX_FAILURE_TEXT + 32);
});

//! Any stage result a plugin could return: the checks on its outputs and
//! the cutting of failure text must decide, never panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::bindings::types::{Artifact, StageOutput};
use weir::execute::results::{check_stage_output, cut_failure_text};

#[derive(Arbitrary, Debug)]
struct Input {
    outputs: Vec<(String, String)>,
    artifacts: Vec<(String, String)>,
    summary: Option<String>,
    failure: String,
}

fuzz_target!(|input: Input| {
    let out = StageOutput {
        outputs: input.outputs,
        artifacts: input
            .artifacts
            .into_iter()
            .map(|(name, path)| Artifact { name, path })
            .collect(),
        summary: input.summary,
    };
    if check_stage_output(&out).is_ok() {
        assert!(out.outputs.len() <= weir::execute::results::MAX_OUTPUTS);
    }
    let cut = cut_failure_text(input.failure);
    assert!(cut.len() <= weir::execute::results::MAX_FAILURE_TEXT + 32);
});

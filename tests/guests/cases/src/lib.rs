use serde::Deserialize;
use weir_sdk::{Context, Failure, Manifest, Plugin, TestCase, TestReport, TestRunner, TestStatus};

#[derive(Deserialize)]
struct Config {
    passed: u32,
    failed: u32,
    #[serde(default)]
    skipped: u32,
}

struct Cases;

impl Plugin for Cases {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(TestRunner)
    }
}

impl TestRunner for Cases {
    fn run_tests(ctx: Context) -> Result<TestReport, Failure> {
        let config: Config = ctx.config()?;
        let case = |i: u32, status: TestStatus| TestCase {
            suite: "guest".into(),
            name: format!("case_{i}"),
            status,
            duration_ms: 1,
            message: (status == TestStatus::Failed).then(|| format!("case_{i} failed: expected 1, got 2")),
            file: Some("src/lib.rs".into()),
        };
        let mut cases: Vec<TestCase> = (0..config.passed).map(|i| case(i, TestStatus::Passed)).collect();
        let failed_end = config.passed + config.failed;
        cases.extend((config.passed..failed_end).map(|i| case(i, TestStatus::Failed)));
        cases.extend((failed_end..failed_end + config.skipped).map(|i| case(i, TestStatus::Skipped)));
        Ok(TestReport::from_cases(cases))
    }
}

weir_sdk::export_test_runner!(Cases);

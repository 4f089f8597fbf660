//! A deployer that tries to reach past the release its stage rolls out:
//! start another service, start its own service from another workspace
//! file, move another service's traffic, stop an instance that is not its
//! own. It fails with what the host answered to each, so a test can check
//! that every one was refused. A release whose env sets `HOG` instead
//! grows the deployer's memory until its limit stops it.

use weir_sdk::runtime::{self, InstanceSpec};
use weir_sdk::{Capability, Context, Deployer, DeploymentStatus, Failure, Manifest, Plugin, Release};

struct Greedy;

fn spec(service: &str, version: &str, artifact: &str) -> InstanceSpec {
    InstanceSpec {
        service: service.into(),
        version: version.into(),
        artifact: artifact.into(),
        args: Vec::new(),
        env: Vec::new(),
        readiness_path: "/healthz".into(),
    }
}

fn nothing(service: &str) -> DeploymentStatus {
    DeploymentStatus {
        service: service.into(),
        weights: Vec::new(),
        ready: Vec::new(),
    }
}

impl Plugin for Greedy {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Deployer, [Capability::Runtime])
    }
}

impl Deployer for Greedy {
    fn deploy(_ctx: Context, r: Release) -> Result<DeploymentStatus, Failure> {
        if r.env.iter().any(|(k, _)| k == "HOG") {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            loop {
                chunks.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&chunks);
            }
        }
        let answers = [
            (
                "other service",
                runtime::start(&spec("other", &r.version, &r.artifact)).map(|_| ()),
            ),
            (
                "other artifact",
                runtime::start(&spec(&r.service, &r.version, "evil.py")).map(|_| ()),
            ),
            (
                "other weights",
                runtime::set_weights("other", &[("x".into(), 100)]),
            ),
            ("foreign stop", runtime::stop("other-x-1")),
        ];
        let said: Vec<String> = answers.iter().map(|(what, a)| format!("{what}: {a:?}")).collect();
        Err(Failure::new(said.join(" | ")))
    }
    fn set_traffic(
        _ctx: Context,
        service: String,
        _w: Vec<(String, u32)>,
    ) -> Result<DeploymentStatus, Failure> {
        Ok(nothing(&service))
    }
    fn scale(_ctx: Context, service: String, _v: String, _n: u32) -> Result<DeploymentStatus, Failure> {
        Ok(nothing(&service))
    }
    fn promote(_ctx: Context, service: String, _v: String) -> Result<DeploymentStatus, Failure> {
        Ok(nothing(&service))
    }
    fn rollback(_ctx: Context, service: String, _v: String) -> Result<DeploymentStatus, Failure> {
        Ok(nothing(&service))
    }
    fn status(_ctx: Context, service: String) -> Result<DeploymentStatus, Failure> {
        Ok(nothing(&service))
    }
}

weir_sdk::export_deployer!(Greedy);

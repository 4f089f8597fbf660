//! The names of the streams, buckets and subjects, in one place.

/// The work-queue stream of jobs: each message is taken by one worker.
pub const JOBS_STREAM: &str = "WEIR_JOBS";
/// The stream of what workers send the server: kept (not a work queue),
/// so a worker taking a run up again reads how far it got.
pub const EVENTS_STREAM: &str = "WEIR_EVENTS";
/// The server's durable consumer of [`EVENTS_STREAM`].
pub const SERVER_CONSUMER: &str = "weir-server";
/// Workers' heartbeats, one key per worker.
pub const WORKERS_BUCKET: &str = "weir-workers";
/// Cancellations the API asked for, one key per run.
pub const CANCEL_BUCKET: &str = "weir-cancel";
/// Concurrency groups held by runs on workers (`TENANT.GROUP` → run).
pub const LOCKS_BUCKET: &str = "weir-locks";
/// Approval decisions made on the server, one key per run and stage
/// (`RUN.STAGE`), for the worker running the run.
pub const DECISIONS_BUCKET: &str = "weir-decisions";
/// Each unfinished run's workspace as its last finished stage left it.
pub const WORKSPACES_BUCKET: &str = "weir-workspaces";
/// Artifacts kept by stages on workers, until the server has them.
pub const ARTIFACTS_BUCKET: &str = "weir-artifacts";

/// The label key of a job that may run anywhere (or whose labels are not
/// known yet: the pipeline is read once the commit is checked out).
pub const ANY: &str = "any";

/// `weir.jobs.TENANT.LABELS`: the jobs of `tenant` that need `labels`.
pub fn job_subject(tenant: &str, labels: &[String]) -> String {
    format!("weir.jobs.{tenant}.{}", label_key(labels))
}

/// `podman+gpu`, sorted; `any` for none.
pub fn label_key(labels: &[String]) -> String {
    if labels.is_empty() {
        return ANY.to_string();
    }
    let mut sorted = labels.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.join("+")
}

/// The durable consumer of `job_subject(tenant, labels)`: JetStream names
/// are short and plain, so the label key is hashed into it.
pub fn job_consumer(tenant: &str, labels: &[String]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(label_key(labels).as_bytes());
    format!("jobs-{tenant}-{}", hex::encode(&digest[..6]))
}

/// `weir.events.TENANT.RUN`: what the worker running `run` sends.
pub fn events_subject(tenant: &str, run: &str) -> String {
    format!("weir.events.{tenant}.{run}")
}

/// `weir.secrets.TENANT.RUN`: where the worker running `run` asks the
/// server for one of its secrets (a request, never kept in a stream).
pub fn secrets_subject(tenant: &str, run: &str) -> String {
    format!("weir.secrets.{tenant}.{run}")
}

/// The key of `tenant`'s concurrency group `group` in [`LOCKS_BUCKET`].
pub fn lock_key(tenant: &str, group: &str) -> String {
    let group: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-/_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{tenant}.{group}")
}

/// The key of `stage`'s decision in [`DECISIONS_BUCKET`].
pub fn decision_key(run: &str, stage: &str) -> String {
    format!("{run}.{stage}")
}

/// The artifact `sha256` of `run` in [`ARTIFACTS_BUCKET`].
pub fn artifact_object(run: &str, sha256: &str) -> String {
    format!("{run}/{sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_are_sorted_and_consumers_differ_by_labels() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(label_key(&[]), "any");
        assert_eq!(label_key(&l(&["podman", "gpu", "podman"])), "gpu+podman");
        assert_eq!(job_subject("acme", &l(&["podman"])), "weir.jobs.acme.podman");
        assert_eq!(
            job_consumer("acme", &l(&["gpu", "podman"])),
            job_consumer("acme", &l(&["podman", "gpu"]))
        );
        assert_ne!(job_consumer("acme", &[]), job_consumer("acme", &l(&["podman"])));
        assert_ne!(job_consumer("acme", &[]), job_consumer("beta", &[]));
    }
}

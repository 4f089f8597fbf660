//! The database schema, as numbered migrations. `PRAGMA user_version` is
//! the number of migrations applied; each runs in its own transaction, so
//! a crash leaves the database at one version or the next, never between.

/// Every migration, oldest first. Never edit one that has shipped: add a
/// new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, their events, and what is derived from the events.
    r#"
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    pipeline     TEXT NOT NULL,
    pipeline_file TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    -- running, succeeded, failed, cancelled, interrupted
    status       TEXT NOT NULL,
    started_ms   INTEGER NOT NULL,
    finished_ms  INTEGER,
    duration_ms  INTEGER,
    workspace    TEXT NOT NULL,
    -- The weir process that ran it, to tell a live run from one whose
    -- process was killed: its pid and the kernel's start time for it.
    host_pid     INTEGER NOT NULL,
    host_start   TEXT NOT NULL
);
CREATE INDEX runs_by_start ON runs (started_ms DESC);

-- Every event, in order: the `--json` stream, kept.
CREATE TABLE events (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    stage   TEXT,
    body    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE stages (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    -- waiting, running, succeeded, failed, skipped, cancelled
    status      TEXT NOT NULL,
    failure     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    plugin      TEXT,
    started_ms  INTEGER,
    finished_ms INTEGER,
    duration_ms INTEGER,
    summary     TEXT,
    error       TEXT,
    details     TEXT,
    outputs     TEXT,
    analysis    TEXT,
    tests       TEXT,
    sandbox     TEXT,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE logs (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    stage   TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL,
    fields  TEXT,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage  TEXT NOT NULL,
    name   TEXT NOT NULL,
    path   TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size   INTEGER NOT NULL,
    stored TEXT NOT NULL
);

CREATE TABLE test_cases (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage       TEXT NOT NULL,
    suite       TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    message     TEXT,
    file        TEXT
);

CREATE TABLE findings (
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage    TEXT NOT NULL,
    rule     TEXT NOT NULL,
    severity TEXT NOT NULL,
    message  TEXT NOT NULL,
    path     TEXT,
    line     INTEGER,
    col      INTEGER,
    fields   TEXT
);
"#,
    // 2: what resuming, the stage cache and replay need.
    r#"
-- The pipeline as it was read and the options the run was started with,
-- so `weir run --resume` runs the same pipeline the same way.
ALTER TABLE runs ADD COLUMN pipeline_text TEXT;
ALTER TABLE runs ADD COLUMN options TEXT;
ALTER TABLE runs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
-- Where a stage's result came from when it did not run now (JSON of the
-- event's `reused`).
ALTER TABLE stages ADD COLUMN reused TEXT;

-- Every attempt of every stage, across resumes.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    plugin      TEXT,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    -- running, succeeded, failed, retried, cancelled, interrupted
    status      TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX attempts_by_run ON attempts (run_id, stage);

-- Stage results by cache key. An entry belongs to the run that produced
-- it (its artifacts live in that run's directory) and goes with it.
CREATE TABLE stage_cache (
    key        TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    pipeline   TEXT NOT NULL,
    stage      TEXT NOT NULL,
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    -- The key's parts and input files, for --explain-cache.
    parts      TEXT NOT NULL,
    result     TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX stage_cache_by_stage ON stage_cache (tenant, pipeline, stage, created_ms DESC);

-- What an analyzer received, for `weir replay`: its request, every host
-- import call with its answer, and its input files (contents in blobs/).
CREATE TABLE recordings (
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage         TEXT NOT NULL,
    plugin        TEXT NOT NULL,
    plugin_sha256 TEXT NOT NULL,
    request       TEXT NOT NULL,
    calls         TEXT NOT NULL,
    files         TEXT NOT NULL,
    complete      INTEGER NOT NULL,
    verdict       TEXT,
    result        TEXT,
    PRIMARY KEY (run_id, stage)
);
"#,
    // 3: approvals, concurrency groups and webhook deliveries.
    r#"
-- A stage's request for approval to deploy to a protected environment,
-- and its decision. It outlives the weir process that asked.
CREATE TABLE approvals (
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage        TEXT NOT NULL,
    environment  TEXT NOT NULL,
    -- JSON list of who may approve; empty means anyone.
    approvers    TEXT NOT NULL,
    requested_ms INTEGER NOT NULL,
    deadline_ms  INTEGER NOT NULL,
    -- pending, approved, rejected, timed_out
    decision     TEXT NOT NULL,
    decided_by   TEXT,
    decided_ms   INTEGER,
    reason       TEXT,
    PRIMARY KEY (run_id, stage)
);

-- Claims on concurrency groups, oldest first: the oldest live claim of a
-- group holds it, the others queue. A claim whose process is gone is
-- dead and removed by whoever looks next.
CREATE TABLE claims (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT NOT NULL,
    grp          TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    -- NULL when the whole run holds the group.
    stage        TEXT,
    host_pid     INTEGER NOT NULL,
    host_start   TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    -- Set when a newer run with cancel-in-progress wants this one gone.
    cancelled_by TEXT
);
CREATE INDEX claims_by_group ON claims (tenant, grp, id);

CREATE TABLE deliveries (
    run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    delivery  TEXT NOT NULL,
    event     TEXT NOT NULL,
    url       TEXT NOT NULL,
    attempts  INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    last      TEXT NOT NULL
);
"#,
    // 4: `weir serve`: where a run came from, its queue, API tokens and
    // forge deliveries.
    r#"
-- Where the run came from and what it builds; `queued` is a status too
-- (a run of `weir serve` waiting for its turn).
ALTER TABLE runs ADD COLUMN branch TEXT;
ALTER TABLE runs ADD COLUMN commit_sha TEXT;
ALTER TABLE runs ADD COLUMN repository TEXT;
-- api, push, pull_request, rerun, cli
ALTER TABLE runs ADD COLUMN trigger TEXT;
-- Why the run ended as it did when its stages do not say (the server
-- stopped, its checkout failed, it was cancelled while queued).
ALTER TABLE runs ADD COLUMN reason TEXT;
CREATE INDEX runs_by_tenant ON runs (tenant, started_ms DESC);
CREATE INDEX runs_by_status ON runs (status, started_ms DESC);
-- Deploys are found by their `rollout` events.
CREATE INDEX events_by_kind ON events (kind);

-- The server's queue: what to run for each of its runs, and how far it
-- got. A run is here from the moment it is accepted until it ends.
CREATE TABLE queue (
    run_id    TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    tenant    TEXT NOT NULL,
    -- JSON: the repository, commit, ref and how to run it.
    job       TEXT NOT NULL,
    -- queued, running, done
    state     TEXT NOT NULL,
    queued_ms INTEGER NOT NULL
);
CREATE INDEX queue_by_state ON queue (state, queued_ms);

-- API tokens: only their SHA-256 is kept.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    -- NULL for an operator's token, which sees every tenant.
    tenant     TEXT,
    sha256     TEXT NOT NULL UNIQUE,
    label      TEXT,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

-- Forge webhook deliveries already taken, so a redelivery queues nothing.
CREATE TABLE hook_deliveries (
    forge       TEXT NOT NULL,
    delivery    TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    run_id      TEXT,
    PRIMARY KEY (forge, delivery)
);
"#,
    // 5: the dashboard's logins.
    r#"
-- A browser's session, made by logging in with an API token: only the
-- SHA-256 of the cookie's secret is kept. It ends with its token.
CREATE TABLE web_sessions (
    sha256     TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_ms);

-- A run's events of one kind (its rollout steps, its stages' ends)
-- without reading its whole log: a run with 100,000 log lines otherwise
-- makes every per-stage lookup a scan.
CREATE INDEX events_by_run_kind ON events (run_id, kind, seq);
"#,
    // 6: workers over NATS JetStream.
    r#"
-- How far the server has read a JetStream stream of workers' messages
-- (written in the same transaction as what they said), so a restarted
-- server reads on from the next one, in order, and none twice.
CREATE TABLE stream_cursors (
    stream TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
);
"#,
];

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
];

//! A `process` call as the replay tape keeps it: the command asked for
//! and the exit it got.

use super::*;

/// A call's arguments, as the replay tape keeps them.
pub(super) fn command_json(cmd: &Command) -> serde_json::Value {
    serde_json::json!({
        "program": cmd.program,
        "args": cmd.args,
        "cwd": cmd.cwd,
        "env": cmd.env,
        "stdin": cmd.stdin.as_deref().map(tape::bytes),
        "timeout_ms": cmd.timeout_ms,
        "quiet": cmd.quiet,
    })
}

pub(super) fn exit_json(e: &Exit) -> serde_json::Value {
    serde_json::json!({ "ok": {
        "code": e.code,
        "signal": e.signal,
        "stdout": tape::bytes(&e.stdout),
        "stderr": tape::bytes(&e.stderr),
        "stdout_truncated": e.stdout_truncated,
        "stderr_truncated": e.stderr_truncated,
        "timed_out": e.timed_out,
        "duration_ms": e.duration_ms,
    }})
}

pub(super) fn exit_of(answer: &serde_json::Value) -> Result<Exit, HostError> {
    if let Some(e) = tape::error_of(answer) {
        return Err(e);
    }
    let ok = &answer["ok"];
    let int = |k: &str| ok[k].as_i64().and_then(|n| i32::try_from(n).ok());
    Ok(Exit {
        code: int("code"),
        signal: int("signal"),
        stdout: tape::bytes_of(&ok["stdout"]),
        stderr: tape::bytes_of(&ok["stderr"]),
        stdout_truncated: ok["stdout_truncated"].as_bool().unwrap_or(false),
        stderr_truncated: ok["stderr_truncated"].as_bool().unwrap_or(false),
        timed_out: ok["timed_out"].as_bool().unwrap_or(false),
        duration_ms: ok["duration_ms"].as_u64().unwrap_or(0),
    })
}

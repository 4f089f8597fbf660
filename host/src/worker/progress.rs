//! How far a run got on the workers that had it before: read back from
//! `WEIR_EVENTS`, which keeps every message, so a worker taking a run up
//! again needs neither the server nor the worker that died.

use std::time::Duration;

use async_nats::jetstream::consumer;
use futures_util::StreamExt as _;

use crate::events::{Event, StageStatus};
use crate::fleet::Fleet;
use crate::fleet::names;
use crate::fleet::wire::Envelope;

/// Where the run had got to.
#[derive(Debug, Default)]
pub struct Progress {
    /// A worker opened it (so its workspace may have been kept).
    pub opened: bool,
    /// How often it was taken up again before.
    pub continued: u32,
    /// Its stages that succeeded: (name, `stage_finished` record).
    pub succeeded: Vec<(String, String)>,
    /// Stages that succeeded after the last workspace kept: they run
    /// again (their files are not in the kept workspace).
    pending: Vec<(String, String)>,
}

/// The longest a read of a run's messages may take.
const READ_LIMIT: Duration = Duration::from_secs(60);

/// Read run `run`'s messages so far.
pub async fn read(fleet: &Fleet, tenant: &str, run: &str) -> Result<Progress, String> {
    let subject = names::events_subject(tenant, run);
    let mut progress = Progress::default();
    // Nothing sent yet: nothing to read (an ordered consumer would wait).
    if fleet
        .events
        .get_last_raw_message_by_subject(&subject)
        .await
        .is_err()
    {
        return Ok(progress);
    }
    let reader = fleet
        .events
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read how far run {run} got: {e}"))?;
    let mut messages = reader
        .messages()
        .await
        .map_err(|e| format!("cannot read how far run {run} got: {e}"))?;
    let read = async {
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| format!("cannot read how far run {run} got: {e}"))?;
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            if let Ok(envelope) = serde_json::from_slice::<Envelope>(&message.payload) {
                progress.take(envelope);
            }
            if pending == 0 {
                break;
            }
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(READ_LIMIT, read).await.map_err(|_| {
        format!(
            "reading how far run {run} got took over {} s",
            READ_LIMIT.as_secs()
        )
    })??;
    Ok(progress)
}

impl Progress {
    fn take(&mut self, envelope: Envelope) {
        match envelope {
            Envelope::Opened { .. } => {
                // Started over from nothing: what an earlier start did is gone.
                self.opened = true;
                self.succeeded.clear();
                self.pending.clear();
            }
            Envelope::Continued { .. } => self.continued += 1,
            Envelope::Events {
                records,
                workspace_kept,
                ..
            } => {
                for record in records {
                    let Event::StageFinished {
                        stage,
                        status: StageStatus::Succeeded,
                        ..
                    } = &record.event
                    else {
                        continue;
                    };
                    let entry = (stage.clone(), serde_json::to_string(&record).unwrap_or_default());
                    self.succeeded.retain(|(s, _)| s != stage);
                    self.pending.retain(|(s, _)| s != stage);
                    if super::forward::finished_well(&record) {
                        self.pending.push(entry);
                    } else {
                        self.succeeded.push(entry);
                    }
                }
                if workspace_kept == Some(true) {
                    self.succeeded.append(&mut self.pending);
                }
            }
            Envelope::Routed { .. } | Envelope::Reason { .. } | Envelope::Ended { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventRecord;

    fn finished(stage: &str) -> EventRecord {
        serde_json::from_value(serde_json::json!({
            "time_ms": 1, "run": "r", "event": "stage_finished", "stage": stage,
            "status": "succeeded", "attempts": 1, "duration_ms": 1, "outputs": {}
        }))
        .unwrap()
    }

    fn events(stage: &str, kept: Option<bool>) -> Envelope {
        Envelope::Events {
            worker: "w".into(),
            delivery: 1,
            records: vec![finished(stage)],
            workspace_kept: kept,
        }
    }

    #[test]
    fn stages_after_the_last_kept_workspace_run_again() {
        let mut p = Progress::default();
        p.take(Envelope::Opened {
            worker: "w".into(),
            delivery: 1,
            run: serde_json::from_value(serde_json::json!({
                "id": "r", "pipeline": "p", "pipeline_file": "f", "tenant": "t", "workspace": "w",
                "stages": ["a", "b", "c"], "pipeline_text": "", "options": "{}", "branch": null, "commit": null
            }))
            .unwrap(),
        });
        p.take(events("a", Some(true)));
        p.take(events("b", Some(false)));
        let names = |p: &Progress| p.succeeded.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
        assert!(p.opened);
        assert_eq!(names(&p), ["a"], "b's files are not in the kept workspace");
        p.take(events("c", Some(true)));
        assert_eq!(
            names(&p),
            ["a", "b", "c"],
            "a later kept workspace holds b's files too"
        );
        p.take(Envelope::Continued {
            worker: "w2".into(),
            delivery: 2,
            run: "r".into(),
            rerun: vec![],
        });
        assert_eq!(p.continued, 1);
    }
}

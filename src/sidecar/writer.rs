//! A serving barrier's hostfile, written off the engine's loop.
//!
//! The engine hands each new hand-off over and goes on with its links and
//! handshakes; the writer renders it and writes it (a temporary file, two
//! fsyncs, a rename) on a blocking thread. A hand-off that changes again
//! before the writer got to it replaces the one waiting: the latest wins,
//! and a burst of re-admissions costs one write, not one per change.
//!
//! `peergate await` must never return before the file is there, so the
//! endpoints see the release through [`HostfileWriter::status`], which
//! turns released only once the first write has ended.

use tokio::sync::watch;
use tracing::{error, info};

use crate::config::HostfileSpec;
use crate::handoff;
use crate::outcome::GateOutcome;
use crate::rendezvous::{OnChange, Status};

pub struct HostfileWriter {
    handoffs: watch::Receiver<Option<GateOutcome>>,
    written: watch::Sender<Status>,
    spec: HostfileSpec,
}

impl HostfileWriter {
    /// A writer for `spec`, and the callback that hands it each hand-off.
    pub fn new(spec: HostfileSpec) -> (HostfileWriter, OnChange) {
        let (tx, handoffs) = watch::channel(None);
        let on_change: OnChange = Box::new(move |outcome: &GateOutcome| {
            tx.send_replace(Some(outcome.clone()));
        });
        let writer = HostfileWriter {
            handoffs,
            written: watch::Sender::new(Status::default()),
            spec,
        };
        (writer, on_change)
    }

    /// Released once the first hostfile write has ended (written, or failed
    /// and logged), with the latest round written.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.written.subscribe()
    }

    /// Writes every hand-off handed over, the latest first, until the
    /// callback is dropped.
    pub async fn run(mut self) {
        while self.handoffs.changed().await.is_ok() {
            let Some(outcome) = self.handoffs.borrow_and_update().clone() else {
                continue;
            };
            let spec = self.spec.clone();
            let round = outcome.round.unwrap_or(0);
            let written = tokio::task::spawn_blocking(move || {
                let text = handoff::render(spec.format, &outcome, spec.slots);
                handoff::write_atomic(&spec.path, &text)
            })
            .await;
            match written {
                Ok(Ok(())) => {
                    info!(path = %self.spec.path.display(), format = %self.spec.format, "hostfile written")
                }
                Ok(Err(e)) => error!("{e}"),
                Err(e) => error!("the hostfile writer stopped: {e}"),
            }
            self.written.send_modify(|s| {
                s.released = true;
                s.round = s.round.max(round);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::test_dir::TestDir;
    use crate::outcome::PeerOutcome;
    use crate::values::HostfileFormat;

    fn outcome(addr: &str) -> GateOutcome {
        GateOutcome {
            self_index: Some(0),
            round: None,
            peers: vec![PeerOutcome {
                index: Some(0),
                name: "job-0.svc".into(),
                addrs: vec![addr.parse().unwrap()],
                reachable_via: None,
                elapsed: None,
            }],
        }
    }

    #[tokio::test]
    async fn released_only_once_written_and_the_latest_hand_off_wins() {
        let dir = TestDir::new();
        let path = dir.join("hosts");
        let spec = HostfileSpec {
            path: path.clone(),
            format: HostfileFormat::Hosts,
            slots: 1,
        };
        let (writer, mut on_change) = HostfileWriter::new(spec);
        let mut status = writer.status();
        // Two hand-offs before the writer runs: only the latest is written.
        on_change(&outcome("10.0.0.1"));
        on_change(&outcome("10.0.0.2"));
        assert!(!status.borrow().released, "nothing written yet");
        let task = tokio::spawn(writer.run());
        status.wait_for(|s| s.released).await.unwrap();
        let text = std::fs::read_to_string(&path).expect("written before the release shows");
        assert!(
            text.contains("10.0.0.2") && !text.contains("10.0.0.1"),
            "{text}"
        );
        // A later change is written too; the callback's end ends the writer.
        on_change(&outcome("10.0.0.3"));
        drop(on_change);
        task.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("10.0.0.3"), "{text}");
    }
}

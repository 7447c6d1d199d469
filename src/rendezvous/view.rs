//! What the barrier shows: the snapshot behind `/peers` and `/metrics`, the
//! progress line, the timeout's report, and the hand-off. Read-only views
//! of the core.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::core::Core;
use super::proto::InstanceId;
use super::proto::{Record, State};
use super::topology::Topology;
use crate::cause::Cause;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::Peer;
use crate::report;

/// What the health endpoints and `await` see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub released: bool,
}

/// A view of the barrier for `/peers` and `/metrics`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub world: u32,
    pub index: u32,
    pub instance: InstanceId,
    pub released_after: Option<Duration>,
    pub uptime: Duration,
    pub peers: Vec<PeerView>,
    pub links: usize,
    pub readmissions: u64,
    pub refused: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone)]
pub struct PeerView {
    pub index: u32,
    pub name: String,
    pub record: Option<Record>,
    pub since: Option<Duration>,
    pub linked: bool,
}

/// Requests from outside the engine (the health server).
pub enum Control {
    Snapshot(oneshot::Sender<Snapshot>),
    /// The hand-off as it stands (for `/await`).
    Outcome(oneshot::Sender<GateOutcome>),
}

impl Core {
    pub fn met_count(&self) -> usize {
        self.members.arrived_count() as usize
    }

    /// Everything the health endpoints show.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let me = self.settings.index;
        Snapshot {
            world: self.world(),
            index: me,
            instance: self.instance(),
            released_after: self.released,
            uptime: self.since_start(now),
            peers: (0..self.world())
                .map(|i| PeerView {
                    index: i,
                    name: self.settings.peers[i as usize].display_name(),
                    record: self.members.current(i).cloned(),
                    since: self.members.since(i),
                    linked: self.links.has(i) || i == me,
                })
                .collect(),
            links: self.links.len(),
            readmissions: self.readmissions,
            refused: self
                .admission
                .totals()
                .map(|(r, n)| (r.name(), n))
                .collect(),
        }
    }

    /// Why `index` has not arrived, as far as this pod can tell.
    fn cause(&self, index: u32) -> Cause {
        if let Some(r) = self.members.current(index)
            && r.state == State::Dead
        {
            return Cause::NotMet(format!(
                "its incarnation {} is gone; waiting for a replacement",
                r.instance.short()
            ));
        }
        let info = &self.dialing.peers[index as usize];
        if info.attempts == 0 {
            return match self.topology {
                Topology::Mesh => Cause::Pending,
                Topology::Tree => Cause::NotMet("no pod has heard of it yet".into()),
            };
        }
        info.last_cause.clone()
    }

    /// `2/3 met; waiting on example-job-2...: NXDOMAIN`.
    pub fn progress_line(&self) -> String {
        let missing: Vec<(&Peer, Cause)> = self
            .members
            .missing()
            .map(|i| (&self.settings.peers[i as usize], self.cause(i)))
            .collect();
        report::progress_line(self.met_count(), self.world() as usize, "met", &missing)
    }

    /// One line per peer not met, with why and how many dials it had.
    pub fn missing(&self) -> Vec<(String, Cause, u32)> {
        self.members
            .missing()
            .map(|i| {
                (
                    self.settings.peers[i as usize].to_string(),
                    self.cause(i),
                    self.dialing.peers[i as usize].attempts,
                )
            })
            .collect()
    }

    /// Peers whose link has not confirmed the release yet (while leaving).
    pub fn unconfirmed(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, l)| !l.peer_complete)
            .map(|(_, l)| self.settings.peers[l.index as usize].to_string())
            .collect()
    }

    /// What the barrier knows now, in index order: each peer's live
    /// incarnation's addresses.
    pub fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        GateOutcome {
            self_index,
            peers: (0..self.world())
                .map(|i| {
                    let addrs = self
                        .members
                        .current(i)
                        .filter(|r| r.state != State::Dead)
                        .map(|r| r.addrs.clone())
                        .unwrap_or_default();
                    PeerOutcome {
                        index: Some(i),
                        name: self.settings.peers[i as usize].display_name(),
                        reachable_via: addrs.first().copied(),
                        addrs,
                        elapsed: self.members.since(i),
                    }
                })
                .collect(),
        }
    }
}

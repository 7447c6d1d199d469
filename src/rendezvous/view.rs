//! What the barrier shows: the snapshot behind `/peers` and `/metrics`, the
//! progress line, the timeout's report, and the hand-off. Read-only views
//! of the core.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::core::Core;
use super::exchange::{Query, Reading, Refusal};
use super::proto::InstanceId;
use super::proto::{Record, State, Work};
use super::rounds::{Attach, EndCause, Rounds};
use super::topology::Topology;
use crate::cause::Cause;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::Peer;
use crate::report;

/// What the health endpoints, `await` and `run` see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The first release has happened: there is a hand-off.
    pub released: bool,
    /// The latest round released (serving; 0 before the first).
    pub round: u32,
    /// Whether that round is still on: released and not ended.
    pub live: bool,
    /// Why it ended, once it has.
    pub end: Option<EndCause>,
    /// The group is finishing (this index's workload is done for good): no
    /// round will be released again.
    pub finishing: Option<u32>,
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
    /// A serving pod's rounds.
    pub rounds: Option<Rounds>,
}

#[derive(Debug, Clone)]
pub struct PeerView {
    pub index: u32,
    pub name: String,
    pub record: Option<Record>,
    pub since: Option<Duration>,
    pub linked: bool,
}

/// Requests from outside the engine (the health and await servers).
pub enum Control {
    Snapshot(oneshot::Sender<Snapshot>),
    /// The hand-off as it stands (for `/await`).
    Outcome(oneshot::Sender<GateOutcome>),
    /// A `peergate run` that ran nothing after round `after` asks to start
    /// its command; with [`Attach::Start`] comes the round's hand-off.
    Attach {
        after: u32,
        grace: Duration,
        reply: oneshot::Sender<(Attach, GateOutcome)>,
    },
    /// The run that started its command in `round` has stopped it, or is gone.
    Detach {
        round: u32,
    },
    /// The run's command ended so (a failure, or done for good).
    Report(Work),
    /// `peergate put` in the live round, or in `round` while it is live.
    Put {
        round: Option<u32>,
        key: String,
        value: String,
        reply: oneshot::Sender<Result<u32, Refusal>>,
    },
    /// `peergate barrier` enters a barrier.
    Enter {
        round: Option<u32>,
        name: String,
        reply: oneshot::Sender<Result<u32, Refusal>>,
    },
    /// `peergate get` and `barrier` look at the round's boards.
    Read {
        round: Option<u32>,
        query: Query,
        reply: oneshot::Sender<Reading>,
    },
}

impl Core {
    /// The table's head: it moves with every change of a record.
    pub fn head(&self) -> u64 {
        self.members.head()
    }

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
            rounds: self.settings.serve.then(|| self.rounds.clone()),
            refused: self
                .admission
                .totals()
                .map(|(r, n)| (r.name(), n))
                .collect(),
        }
    }

    /// What the watchers see now.
    pub fn status(&self) -> Status {
        let released = self.rounds.released();
        Status {
            released: self.released.is_some(),
            round: released.map_or(0, |r| r.round),
            live: self.rounds.live().is_some(),
            end: released.and_then(|r| r.ended).map(|(cause, _)| cause),
            finishing: self.rounds.finishing(),
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
            round: if self.settings.serve {
                self.rounds.released().map(|r| r.round)
            } else {
                None
            },
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

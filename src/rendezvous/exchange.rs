//! The workload's side of a serving sidecar: `peergate put`, `get` and
//! `barrier` against the live round. The core takes a put or a barrier
//! entry into this pod's board (so it floods with the record) and answers
//! reads over the round's members. Pure, like the rest of the core.

use std::net::IpAddr;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::board::{self, Board, Refused};
use super::core::Core;
use super::proto::Record;
use super::rounds::EndCause;

/// Why a request finds no round to act in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// No round has been released yet.
    NotReleased,
    /// `round` is over: it ended (why, when this pod saw it end), or a
    /// later round is on (`latest`).
    Ended {
        round: u32,
        latest: u32,
        cause: Option<EndCause>,
    },
    /// `round` has not been released here (a stale or foreign
    /// `PEERGATE_ROUND`): `latest` is.
    Ahead { round: u32, latest: u32 },
}

/// Why a put or a barrier entry was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Over(Over),
    Limits(Refused),
    /// This pod's `seq` is at its ceiling: nothing of it changes any more.
    Ceiling,
}

/// What a read asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Has every member entered barrier `name`?
    Barrier(String),
    /// The value `index` published under `key`.
    Value { key: String, index: u32 },
    /// Every member's value of `key`, once all have published it.
    All(String),
}

/// One member's value, with what a hand-off needs to name the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u32,
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub value: String,
}

/// What a read finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Done, in `round`: the barrier has passed (no entries), or the values.
    Ready {
        round: u32,
        entries: Vec<Entry>,
    },
    /// Not yet, in `round`: these indices have not entered or published.
    Waiting {
        round: u32,
        missing: Vec<u32>,
    },
    Over(Over),
    /// No such index in a Job of `world` pods.
    NoIndex {
        index: u32,
        world: u32,
    },
}

impl Core {
    /// The round a request acts in: the live one, or `pinned` (the
    /// workload's `PEERGATE_ROUND`) while it is the live one.
    pub fn scope(&self, pinned: Option<u32>) -> Result<u32, Over> {
        let Some(released) = self.rounds.released() else {
            return Err(Over::NotReleased);
        };
        let latest = released.round;
        let live = self.rounds.live();
        match (pinned, live) {
            (None, Some(round)) => Ok(round),
            (Some(p), Some(round)) if p == round => Ok(round),
            (Some(p), _) if p > latest => Err(Over::Ahead { round: p, latest }),
            (pinned, _) => {
                let round = pinned.unwrap_or(latest);
                Err(Over::Ended {
                    round,
                    latest,
                    cause: (round == latest)
                        .then(|| released.ended.map(|(cause, _)| cause))
                        .flatten(),
                })
            }
        }
    }

    /// `peergate put`: sets `key` on this pod's board in the live round.
    pub fn put(
        &mut self,
        now: Instant,
        pinned: Option<u32>,
        key: &str,
        value: &str,
    ) -> Result<u32, Refusal> {
        let round = self.scope(pinned).map_err(Refusal::Over)?;
        let board = (self.members.me().board)
            .put(round, key, value)
            .map_err(Refusal::Limits)?;
        self.set_board(now, board)?;
        debug!(round, key, bytes = value.len(), "put {key}");
        Ok(round)
    }

    /// `peergate barrier`: enters barrier `name` in the live round (once;
    /// entering again changes nothing).
    pub fn enter(&mut self, now: Instant, pinned: Option<u32>, name: &str) -> Result<u32, Refusal> {
        let round = self.scope(pinned).map_err(Refusal::Over)?;
        if let Some(board) = (self.members.me().board)
            .enter(round, name)
            .map_err(Refusal::Limits)?
        {
            self.set_board(now, board)?;
            debug!(round, name, "entered barrier {name}");
        }
        Ok(round)
    }

    fn set_board(&mut self, now: Instant, board: Board) -> Result<(), Refusal> {
        let at = self.since_start(now);
        if self.members.set_own_board(board, at) {
            Ok(())
        } else {
            warn!(
                "barrier: this pod's sequence number is at its ceiling; its board stays as it is"
            );
            Err(Refusal::Ceiling)
        }
    }

    /// Answers a read over the live round's members.
    pub fn read(&self, pinned: Option<u32>, query: &Query) -> Reading {
        if let Query::Value { index, .. } = query
            && *index >= self.world()
        {
            return Reading::NoIndex {
                index: *index,
                world: self.world(),
            };
        }
        let round = match self.scope(pinned) {
            Ok(r) => r,
            Err(over) => return Reading::Over(over),
        };
        let released = self.rounds.released().expect("a live round is released");
        let records: Vec<Option<&Record>> = (0..self.world())
            .map(|i| {
                self.members
                    .current(i)
                    .filter(|r| released.members.get(i as usize) == Some(&r.instance))
            })
            .collect();
        let members: Vec<(u32, Option<&Record>)> = (0..self.world()).zip(records).collect();
        let entry = |index: u32, value: &str| Entry {
            index,
            name: self.settings.peers[index as usize].display_name(),
            addrs: self.members.addrs(index).to_vec(),
            value: value.to_owned(),
        };
        let found = match query {
            Query::Barrier(name) => board::barrier(&members, round, name).map(|()| Vec::new()),
            Query::Value { key, index } => board::value(&members, round, *index, key)
                .map(|v| vec![entry(*index, v)])
                .ok_or_else(|| vec![*index]),
            Query::All(key) => board::all(&members, round, key)
                .map(|values| values.into_iter().map(|(i, v)| entry(i, v)).collect()),
        };
        match found {
            Ok(entries) => Reading::Ready { round, entries },
            Err(missing) => Reading::Waiting { round, missing },
        }
    }
}

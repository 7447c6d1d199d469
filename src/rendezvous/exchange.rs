//! The workload's side of a serving sidecar: `peergate put`, `get` and
//! `barrier` against the live round. The core takes a put or a barrier
//! entry into this pod's board (so it floods with the record) and answers
//! reads over the round's members. Pure, like the rest of the core.

use std::net::IpAddr;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::board::{Board, Refused};
use super::core::Core;
use super::proto::{Record, State};
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
            Query::Barrier(name) => barrier(&members, round, name).map(|()| Vec::new()),
            Query::Value { key, index } => value(&members, round, *index, key)
                .map(|v| vec![entry(*index, v)])
                .ok_or_else(|| vec![*index]),
            Query::All(key) => all(&members, round, key)
                .map(|values| values.into_iter().map(|(i, v)| entry(i, v)).collect()),
        };
        match found {
            Ok(entries) => Reading::Ready { round, entries },
            Err(missing) => Reading::Waiting { round, missing },
        }
    }
}

/// A round's members as the queries see them: every index with its
/// current incarnation's record. `None` or dead: not a member now, so what
/// it published does not count. A member that left (its pod finished, the
/// sidecar said goodbye) still counts: what it published and entered
/// stays true for the round, and a fast pod that is done must not strand a
/// slow one still reading.
pub type Members<'a> = &'a [(u32, Option<&'a Record>)];

fn live(record: Option<&Record>) -> Option<&Record> {
    record.filter(|r| r.state != State::Dead)
}

/// Barrier `name` of `round`: `Ok` once every member has entered it, else
/// the indices that have not.
pub fn barrier(members: Members<'_>, round: u32, name: &str) -> Result<(), Vec<u32>> {
    let missing: Vec<u32> = members
        .iter()
        .filter(|(_, r)| !live(*r).is_some_and(|r| r.board.entered(round, name)))
        .map(|(i, _)| *i)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// What `index` published under `key` in `round`.
pub fn value<'a>(members: Members<'a>, round: u32, index: u32, key: &str) -> Option<&'a str> {
    members
        .iter()
        .find(|(i, _)| *i == index)
        .and_then(|(_, r)| live(*r))
        .and_then(|r| r.board.value(round, key))
}

/// Every member's value of `key` in `round`, in index order, once all have
/// published it; else the indices that have not.
pub fn all<'a>(
    members: Members<'a>,
    round: u32,
    key: &str,
) -> Result<Vec<(u32, &'a str)>, Vec<u32>> {
    let mut values = Vec::with_capacity(members.len());
    let mut missing = Vec::new();
    for (i, r) in members {
        match live(*r).and_then(|r| r.board.value(round, key)) {
            Some(v) => values.push((*i, v)),
            None => missing.push(*i),
        }
    }
    if missing.is_empty() {
        Ok(values)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rendezvous::proto::{Claim, InstanceId};
    use std::sync::Arc;

    fn member(index: u32, state: State, board: Board) -> Record {
        Record {
            index,
            instance: InstanceId([index as u8 + 1; 16]),
            started_ms: 1,
            seq: 1,
            state,
            addrs: vec![],
            claim: Claim::default(),
            board: Arc::new(board),
        }
    }

    #[test]
    fn queries_count_live_members_of_the_round_only() {
        let entered = Board::default().enter(3, "go").unwrap().unwrap();
        let put = |v: &str| Board::default().put(3, "port", v).unwrap();
        let records = [
            member(
                0,
                State::Alive,
                entered.clone().put(3, "port", "1").unwrap(),
            ),
            member(1, State::Alive, put("2")),
            member(2, State::Dead, entered.clone().put(3, "port", "3").unwrap()),
            member(4, State::Left, entered.put(3, "port", "5").unwrap()),
        ];
        let view: Vec<(u32, Option<&Record>)> = vec![
            (0, Some(&records[0])),
            (1, Some(&records[1])),
            (2, Some(&records[2])),
            (3, None),
        ];
        let finished: Vec<(u32, Option<&Record>)> =
            vec![(0, Some(&records[0])), (4, Some(&records[3]))];
        assert_eq!(
            barrier(&finished, 3, "go"),
            Ok(()),
            "a member that left entered"
        );
        assert_eq!(
            value(&finished, 3, 4, "port"),
            Some("5"),
            "and its values stay"
        );
        assert_eq!(barrier(&view, 3, "go"), Err(vec![1, 2, 3]));
        assert_eq!(barrier(&view, 4, "go"), Err(vec![0, 1, 2, 3]));
        assert_eq!(value(&view, 3, 1, "port"), Some("2"));
        assert_eq!(
            value(&view, 3, 2, "port"),
            None,
            "a dead incarnation's values vanish"
        );
        assert_eq!(value(&view, 2, 1, "port"), None);
        assert_eq!(all(&view, 3, "port"), Err(vec![2, 3]));
        assert_eq!(all(&view[..2], 3, "port"), Ok(vec![(0, "1"), (1, "2")]));
        assert_eq!(barrier(&view[..1], 3, "go"), Ok(()));
    }
}

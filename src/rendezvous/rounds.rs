//! Rounds: a serving group's successive agreements on its membership, and
//! what ends one. Pure: it reads the table ([`Members`]) and the time the
//! caller passes, and says what changed; the core logs, floods the new
//! claim and publishes the hand-off.
//!
//! A round is released at a pod when every index's current incarnation
//! claims that round and the same *view* (a digest of which incarnation
//! holds each index) as the pod itself sees complete. A pod announces a
//! view only once every index has arrived, and once it has released a
//! round it never announces another view for it: any change ends the
//! round instead. So two pods that release the same round saw the same
//! membership (each released at the last view it announced, and each
//! announced the other's view before its own; views only grow).
//!
//! A released round ends when, as this pod sees it:
//! * a member's incarnation is replaced, or declared dead;
//! * a member's workload reports a failure in the round;
//! * a member has joined a later round (someone else saw one of the above).
//!
//! The pod then joins the next round, once its own workload (`peergate
//! run`) has stopped or its grace has passed, so no command of the next
//! round starts while a command of the last one still runs anywhere.
//!
//! A member whose workload exited for good (completed, or gave up) cannot
//! rejoin: from then on the group is *finishing*, and no round ends or
//! opens except for the pod whose own workload fails, which is told so.
//! A member that left (its sidecar stopped) without a workload report
//! counts as present in every later round, as it did in the barrier: that
//! is a pod whose workload finished without `peergate run`.

use std::fmt;
use std::time::Duration;

use super::members::Members;
use super::proto::{Claim, InstanceId, State, Work};

/// Time beyond a workload's grace its `peergate run` has to report that
/// its command stopped before this pod joins the next round anyway.
pub const STOP_SLACK: Duration = Duration::from_secs(2);

/// Why a released round ended, as this pod first saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// Index's workload failed in the round, with this code.
    Failed { index: u32, code: u8 },
    /// A new incarnation of index was admitted.
    Replaced { index: u32 },
    /// Index's incarnation was declared dead: a link to it ended without
    /// a goodbye.
    Lost { index: u32 },
    /// Index had joined a later round before this pod heard why.
    Moved { index: u32 },
}

impl EndCause {
    pub fn index(self) -> u32 {
        match self {
            EndCause::Failed { index, .. }
            | EndCause::Replaced { index }
            | EndCause::Lost { index }
            | EndCause::Moved { index } => index,
        }
    }

    /// A short name for logs, JSON and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            EndCause::Failed { .. } => "failed",
            EndCause::Replaced { .. } => "replaced",
            EndCause::Lost { .. } => "lost",
            EndCause::Moved { .. } => "moved",
        }
    }

    /// Which cause says the most: a failure, then a replacement, a loss,
    /// and last a move (which only echoes one of these elsewhere).
    fn weight(self) -> u8 {
        match self {
            EndCause::Failed { .. } => 3,
            EndCause::Replaced { .. } => 2,
            EndCause::Lost { .. } => 1,
            EndCause::Moved { .. } => 0,
        }
    }
}

impl fmt::Display for EndCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EndCause::Failed { index, code } => {
                write!(f, "index {index}'s workload failed ({})", describe(code))
            }
            EndCause::Replaced { index } => write!(f, "index {index} was replaced"),
            EndCause::Lost { index } => write!(f, "index {index} was lost"),
            EndCause::Moved { index } => write!(f, "index {index} moved on to a later round"),
        }
    }
}

/// `exit code 3`, or `signal 9` for a code above 128.
pub fn describe(code: u8) -> String {
    if code > 128 {
        format!("signal {}", code - 128)
    } else {
        format!("exit code {code}")
    }
}

/// A round released at this pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub round: u32,
    /// The incarnation holding each index, in index order.
    pub members: Vec<InstanceId>,
    pub view: u64,
    /// When it was released, since the pod's start.
    pub at: Duration,
    /// Why and when it ended, once it has.
    pub ended: Option<(EndCause, Duration)>,
}

/// This pod's workload, as its `peergate run`s told the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// No command running for any round.
    Idle,
    /// `holders` runs run their command in `round`, each stopping within
    /// `grace` when told to.
    Running {
        round: u32,
        grace: Duration,
        holders: u32,
    },
    /// The round ended; the runs are stopping their commands, until
    /// `until` at the latest.
    Stopping {
        round: u32,
        until: Duration,
        holders: u32,
    },
}

/// What a step changed, for the core to log and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Released(u32),
    Ended(u32, EndCause),
    Joined(u32),
    /// The group began finishing: this index exited for good.
    Finishing(u32),
    /// The workload did not report its command stopped within its grace
    /// and the slack; the pod joins the next round without it.
    Overdue(u32),
}

/// A step's outcome: what changed, and the claim this pod should now make.
#[derive(Debug, Default)]
pub struct Step {
    pub events: Vec<Event>,
    pub claim: Option<Claim>,
}

/// How a `peergate run` that asks to start fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Start the command of this round.
    Start(u32),
    /// No round after the one asked about is released yet: ask again once
    /// one is.
    Wait,
    /// The group is finishing: no round will be released again.
    Finishing,
}

/// Round time statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Formed {
    /// How long the latest released round took to form.
    pub last: Duration,
    pub sum: Duration,
    pub count: u64,
}

/// One pod's rounds.
#[derive(Debug, Clone)]
pub struct Rounds {
    joined: u32,
    /// When this pod joined `joined` (its start for round 1).
    opened: Duration,
    released: Option<Released>,
    local: Local,
    finishing: Option<u32>,
    formed: Formed,
    ended: u64,
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds {
            joined: 1,
            opened: Duration::ZERO,
            released: None,
            local: Local::Idle,
            finishing: None,
            formed: Formed::default(),
            ended: 0,
        }
    }
}

impl Rounds {
    /// The round this pod has joined.
    pub fn joined(&self) -> u32 {
        self.joined
    }

    /// The latest round released here, ended or not.
    pub fn released(&self) -> Option<&Released> {
        self.released.as_ref()
    }

    /// The round released here and not ended, if any: the one whose
    /// workload may run.
    pub fn live(&self) -> Option<u32> {
        self.released
            .as_ref()
            .filter(|r| r.ended.is_none())
            .map(|r| r.round)
    }

    pub fn local(&self) -> Local {
        self.local
    }

    /// The index whose exit made the group finishing.
    pub fn finishing(&self) -> Option<u32> {
        self.finishing
    }

    pub fn formed(&self) -> Formed {
        self.formed
    }

    /// Rounds that ended here.
    pub fn ended_count(&self) -> u64 {
        self.ended
    }

    /// When a step is next due without any input: the end of a stopping
    /// workload's time.
    pub fn deadline(&self) -> Option<Duration> {
        match self.local {
            Local::Stopping { until, .. } => Some(until),
            _ => None,
        }
    }

    /// Brings the rounds up to date with the table at `at`.
    pub fn step(&mut self, members: &Members, at: Duration) -> Step {
        let mut step = Step::default();
        let world = members.world();
        let me = members.me().index;
        if self.finishing.is_none()
            && let Some(i) = members.exited()
        {
            self.finishing = Some(i);
            step.events.push(Event::Finishing(i));
        }
        if let Local::Stopping { round, until, .. } = self.local
            && at >= until
        {
            self.local = Local::Idle;
            step.events.push(Event::Overdue(round));
        }
        let finishing = self.finishing.is_some();
        if let Some(rel) = self.released.as_mut()
            && rel.ended.is_none()
            && let Some(cause) = end_cause(members, rel, me, finishing)
        {
            rel.ended = Some((cause, at));
            self.ended += 1;
            if let Local::Running {
                round,
                grace,
                holders,
            } = self.local
                && round == rel.round
            {
                self.local = Local::Stopping {
                    round,
                    until: at + grace + STOP_SLACK,
                    holders,
                };
            }
            step.events.push(Event::Ended(rel.round, cause));
        }
        if !finishing {
            let highest = (0..world)
                .filter_map(|i| members.current(i))
                .map(|r| r.claim.round)
                .max()
                .unwrap_or(1);
            let mut target = self.joined.max(highest);
            if let Some(rel) = &self.released
                && rel.round == self.joined
                && rel.ended.is_some()
            {
                target = target.max(self.joined.saturating_add(1));
            }
            if target > self.joined && self.local == Local::Idle {
                self.joined = target;
                self.opened = at;
                step.events.push(Event::Joined(target));
            }
        }
        let view = digest(members);
        let mine = members.me().claim;
        let announced = match &self.released {
            // A released round's view is never changed: a change ends it.
            Some(rel) if rel.round == self.joined => rel.view,
            _ => view.unwrap_or(0),
        };
        let claim = Claim {
            round: self.joined,
            view: announced,
            work: mine.work,
        };
        if claim != mine {
            step.claim = Some(claim);
        }
        let releasable = !finishing && self.released.as_ref().is_none_or(|r| r.round < self.joined);
        if releasable
            && let Some(view) = view
            && (0..world).all(|i| {
                i == me
                    || members
                        .current(i)
                        .is_some_and(|r| present(r.state, r.claim, self.joined, view))
            })
        {
            let members = (0..world)
                .map(|i| members.current(i).expect("complete view").instance)
                .collect();
            let took = at.saturating_sub(self.opened);
            self.formed = Formed {
                last: took,
                sum: self.formed.sum + took,
                count: self.formed.count + 1,
            };
            self.released = Some(Released {
                round: self.joined,
                members,
                view,
                at,
                ended: None,
            });
            step.events.push(Event::Released(self.joined));
        }
        step
    }

    /// A `peergate run` that ran nothing after round `after` asks to start,
    /// stopping within `grace` when told.
    /// A finishing group still runs its live round: only a later one is
    /// never to come.
    pub fn attach(&mut self, after: u32, grace: Duration) -> Attach {
        let Some(round) = self.live().filter(|&r| r > after && r == self.joined) else {
            return if self.finishing.is_some() {
                Attach::Finishing
            } else {
                Attach::Wait
            };
        };
        match self.local {
            Local::Idle => {
                self.local = Local::Running {
                    round,
                    grace,
                    holders: 1,
                };
                Attach::Start(round)
            }
            Local::Running {
                round: r,
                grace: g,
                holders,
            } if r == round => {
                self.local = Local::Running {
                    round,
                    grace: g.max(grace),
                    holders: holders + 1,
                };
                Attach::Start(round)
            }
            // Another run still stops an older round's command.
            _ => Attach::Wait,
        }
    }

    /// A run that started its command in `round` is gone: its command
    /// has stopped (or it lost its connection).
    pub fn detach(&mut self, round: u32) {
        let (Local::Running {
            round: r, holders, ..
        }
        | Local::Stopping {
            round: r, holders, ..
        }) = &mut self.local
        else {
            return;
        };
        if *r != round {
            return;
        }
        if *holders > 1 {
            *holders -= 1;
        } else {
            self.local = Local::Idle;
        }
    }
}

/// Whether an index's current incarnation counts as present in `round`
/// with this view: alive and claiming both, or gone after a workload that
/// never reported (a pod that finished without `peergate run`).
fn present(state: State, claim: Claim, round: u32, view: u64) -> bool {
    match state {
        State::Alive => claim.round == round && claim.view == view,
        State::Left => claim.work == Work::Running,
        State::Dead => false,
    }
}

/// What ended `rel`, if anything did; in a finishing group only this
/// pod's own failure does.
fn end_cause(members: &Members, rel: &Released, me: u32, finishing: bool) -> Option<EndCause> {
    let mut best: Option<EndCause> = None;
    let mut note = |cause: EndCause| {
        if best.is_none_or(|b| cause.weight() > b.weight()) {
            best = Some(cause);
        }
    };
    for (i, member) in rel.members.iter().enumerate() {
        let index = i as u32;
        let Some(r) = members.current(index) else {
            continue;
        };
        if let Work::Failed { round, code } = r.claim.work
            && round == rel.round
            && r.instance == *member
            && (!finishing || index == me)
        {
            note(EndCause::Failed { index, code });
        }
        if finishing {
            continue;
        }
        if r.instance != *member {
            note(EndCause::Replaced { index });
        } else if r.state == State::Dead {
            note(EndCause::Lost { index });
        } else if r.claim.round > rel.round {
            note(EndCause::Moved { index });
        }
    }
    best
}

/// The digest of which incarnation holds each index, or `None` while some
/// index has not arrived. Never 0 (that claims no view).
pub fn digest(members: &Members) -> Option<u64> {
    let mut d = 0u64;
    for i in 0..members.world() {
        let r = members.current(i)?;
        if r.state == State::Dead {
            return None;
        }
        d ^= mix(i, r.instance);
    }
    Some(d.max(1))
}

/// A fixed 64-bit mix of an index and an instance id: the same on every
/// pod and every build.
fn mix(index: u32, id: InstanceId) -> u64 {
    let (a, b) = id.0.split_at(8);
    let a = u64::from_be_bytes(a.try_into().expect("8 bytes"));
    let b = u64::from_be_bytes(b.try_into().expect("8 bytes"));
    splitmix(a ^ splitmix(b ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::rendezvous::members::Source;
    use crate::rendezvous::proto::Record;

    const S: Duration = Duration::from_secs(1);

    fn record(index: u32, generation: u8, claim: Claim) -> Record {
        let mut id = [0u8; 16];
        id[0] = index as u8;
        id[1] = generation;
        Record {
            index,
            instance: InstanceId(id),
            started_ms: u64::from(generation),
            seq: u32::from(claim != Claim::default()),
            state: State::Alive,
            addrs: vec![IpAddr::from([10, 0, generation, index as u8])],
            claim,
            board: Default::default(),
        }
    }

    /// A table of `world` pods as pod 0 sees it, each claiming `claim`.
    fn table(world: u32, claim: Claim) -> Members {
        let mut m = Members::new(world, record(0, 1, Claim::default()), Duration::ZERO);
        for i in 1..world {
            m.merge(record(i, 1, claim), Source::Link(1), Duration::ZERO);
        }
        m
    }

    fn released(world: u32) -> (Members, Rounds) {
        let mut m = table(world, Claim::default());
        let view = digest(&m).unwrap();
        let claim = Claim {
            round: 1,
            view,
            work: Work::Running,
        };
        for i in 1..world {
            m.merge(record(i, 1, claim), Source::Link(1), Duration::ZERO);
        }
        let mut rounds = Rounds::default();
        let step = rounds.step(&m, S);
        assert!(step.events.contains(&Event::Released(1)));
        m.set_own_claim(step.claim.unwrap(), S);
        (m, rounds)
    }

    #[test]
    fn the_view_is_announced_only_once_complete_and_released_on_agreement() {
        let mut m = Members::new(3, record(0, 1, Claim::default()), Duration::ZERO);
        m.merge(
            record(1, 1, Claim::default()),
            Source::Link(1),
            Duration::ZERO,
        );
        let mut rounds = Rounds::default();
        // Index 2 is missing: no view, no release.
        let step = rounds.step(&m, S);
        assert!(step.claim.is_none() && step.events.is_empty(), "{step:?}");
        m.merge(
            record(2, 1, Claim::default()),
            Source::Link(1),
            Duration::ZERO,
        );
        let step = rounds.step(&m, S);
        let claim = step.claim.expect("the complete view is announced");
        assert_eq!(claim.view, digest(&m).unwrap());
        assert!(step.events.is_empty(), "the others have not claimed it yet");
        // The digest does not depend on who computes it or in which order.
        assert_ne!(
            mix(1, m.current(1).unwrap().instance),
            mix(2, m.current(1).unwrap().instance)
        );
    }

    #[test]
    fn a_failure_outranks_a_loss_and_a_move_as_the_cause() {
        let (mut m, mut rounds) = released(4);
        let moved = Claim {
            round: 2,
            view: 0,
            work: Work::Running,
        };
        let mut r3 = record(3, 1, moved);
        r3.seq = 5;
        m.merge(r3, Source::Link(1), S);
        let failed = Claim {
            round: 1,
            view: rounds.released().unwrap().view,
            work: Work::Failed { round: 1, code: 9 },
        };
        let mut r2 = record(2, 1, failed);
        r2.seq = 5;
        m.merge(r2, Source::Link(1), S);
        let step = rounds.step(&m, 2 * S);
        assert!(
            step.events
                .contains(&Event::Ended(1, EndCause::Failed { index: 2, code: 9 })),
            "{step:?}"
        );
        assert!(step.events.contains(&Event::Joined(2)));
        assert_eq!(
            EndCause::Failed {
                index: 2,
                code: 137
            }
            .to_string(),
            "index 2's workload failed (signal 9)"
        );
        assert_eq!(describe(3), "exit code 3");
    }

    #[test]
    fn runs_hold_the_next_round_until_the_last_detaches_or_the_grace_passes() {
        let (mut m, mut rounds) = released(2);
        assert_eq!(rounds.attach(0, S), Attach::Start(1));
        assert_eq!(rounds.attach(0, 3 * S), Attach::Start(1), "a second run");
        assert_eq!(
            rounds.attach(1, S),
            Attach::Wait,
            "nothing after round 1 yet"
        );
        let failed = Claim {
            round: 1,
            view: rounds.released().unwrap().view,
            work: Work::Failed { round: 1, code: 1 },
        };
        let mut r1 = record(1, 1, failed);
        r1.seq = 5;
        m.merge(r1, Source::Link(1), S);
        let step = rounds.step(&m, 10 * S);
        assert!(matches!(step.events[..], [Event::Ended(1, _)]), "{step:?}");
        assert_eq!(
            rounds.local(),
            Local::Stopping {
                round: 1,
                until: 10 * S + 3 * S + STOP_SLACK,
                holders: 2
            },
            "the longest grace of the two"
        );
        rounds.detach(1);
        assert!(
            rounds.step(&m, 11 * S).events.is_empty(),
            "one run still stops"
        );
        assert_eq!(rounds.joined(), 1);
        // The other never detaches: its grace and the slack pass.
        let step = rounds.step(&m, 15 * S);
        assert_eq!(step.events, [Event::Overdue(1), Event::Joined(2)]);
        assert_eq!(rounds.deadline(), None);
        // A stale detach changes nothing.
        rounds.detach(1);
        assert_eq!(rounds.local(), Local::Idle);
    }

    #[test]
    fn a_member_that_left_without_a_report_counts_and_one_that_failed_does_not() {
        assert!(present(State::Left, Claim::default(), 5, 77));
        let failed = Claim {
            work: Work::Failed { round: 4, code: 1 },
            ..Claim::default()
        };
        assert!(!present(State::Left, failed, 5, 77));
        assert!(!present(State::Dead, Claim::default(), 1, 77));
        let here = Claim {
            round: 5,
            view: 77,
            work: Work::Running,
        };
        assert!(present(State::Alive, here, 5, 77));
        assert!(!present(State::Alive, here, 5, 78));
        assert!(!present(State::Alive, here, 6, 77));
    }
}

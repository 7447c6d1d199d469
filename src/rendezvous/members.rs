//! Who is in the barrier, as this pod knows it: one slot per index, each
//! holding the incarnations heard of, and a change log from which every
//! link is fed the records it has not seen. Pure: no I/O, no clock (the
//! caller passes the time).
//!
//! Records merge like a join-semilattice, so every pod that has heard the
//! same records holds the same table whatever order they came in:
//! * one incarnation (same instance id): the higher `seq` wins, and at equal
//!   `seq` the later state (`Alive < Dead < Left`);
//! * one index: the *current* incarnation is the newest (start time, then
//!   instance id) among those alive or left, else the newest of all.
//!
//! Only an incarnation itself raises its `seq`: when it hears that it was
//! declared dead (a peer lost its link to it), it answers with `Alive` one
//! higher, which wins everywhere. A pod that is stalled is therefore never
//! left out for good, and a pod that is gone is replaced by its successor.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::board::Board;
use super::proto::{Claim, Hello, InstanceId, Record, Reject, State, Work};

/// Incarnations kept per index: the current one and a few predecessors
/// (enough to recognise a stale one that reconnects).
const MAX_INCARNATIONS: usize = 4;

/// The highest `seq` a record may carry. `u32::MAX` is reserved: no
/// incarnation ever raises its `seq` to it (that would take 2^32 - 1
/// refutations, one at a time), so a record carrying it is forged or
/// corrupt, and refuting it would wrap. Every pod ignores such a record.
pub const MAX_SEQ: u32 = u32::MAX - 1;

/// A change's place in the order of changes; never reused. A link's cursor
/// is the version up to which it has been handed records.
pub type Version = u64;

/// The change log is compacted once it holds this many entries more than
/// twice the records it could still name.
const LOG_SLACK: usize = 16;

/// Where a record came from, so it is not sent back there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Local,
    Link(u64),
}

#[derive(Debug, Clone)]
struct Known {
    record: Record,
    source: Source,
    /// This record's latest change.
    version: Version,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    incarnations: Vec<Known>,
    current: Option<usize>,
    /// When the current incarnation was first known to have arrived.
    since: Option<Duration>,
}

impl Slot {
    fn current(&self) -> Option<&Known> {
        self.current.map(|i| &self.incarnations[i])
    }

    fn choose(&mut self) {
        let newest = |arrived_only: bool| {
            self.incarnations
                .iter()
                .enumerate()
                .filter(|(_, k)| !arrived_only || k.record.state != State::Dead)
                .max_by_key(|(_, k)| (k.record.started_ms, k.record.instance))
                .map(|(i, _)| i)
        };
        self.current = newest(true).or_else(|| newest(false));
    }
}

/// What a merge did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// Nothing new.
    Nothing,
    /// A record changed; `current` tells whether the index's current
    /// incarnation or its state or addresses changed with it.
    Changed { index: u32, current: CurrentChange },
    /// The record declared this pod dead or gone: it answered by raising
    /// its own sequence number.
    Refuted { seq: u32 },
    /// Ignored: about another incarnation of this pod's own index, or
    /// otherwise not a member.
    Ignored(Reject),
    /// Ignored: no incarnation could have sent it (a `seq` above
    /// [`MAX_SEQ`], or a report about this pod it cannot outrank without
    /// passing [`MAX_SEQ`]).
    Invalid(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentChange {
    None,
    /// A new incarnation arrived, or the same one changed state/addresses.
    Updated {
        before: Option<Record>,
        after: Record,
    },
}

/// The barrier's table.
#[derive(Debug, Clone)]
pub struct Members {
    world: u32,
    me: u32,
    slots: Vec<Slot>,
    /// The changes, in version order: (index, instance, version). An
    /// entry whose record changed again since (or was forgotten) is dead;
    /// [`Members::compact`] drops the dead ones, so the log stays within
    /// about twice the records held, however long the pod runs.
    log: Vec<(u32, InstanceId, Version)>,
    /// The version the next change gets.
    next_version: Version,
    /// Records held, over every slot (the live entries at most).
    held: usize,
    arrived: u32,
    /// A record of an earlier incarnation of this pod's own index said its
    /// workload was done for good.
    predecessor_exited: bool,
}

impl Members {
    /// A table for `world` indices, holding this pod's own record.
    pub fn new(world: u32, me: Record, now: Duration) -> Members {
        assert!(
            me.index < world,
            "own index is validated against the world size"
        );
        let mut members = Members {
            world,
            me: me.index,
            slots: vec![Slot::default(); world as usize],
            log: Vec::new(),
            next_version: 0,
            held: 0,
            arrived: 0,
            predecessor_exited: false,
        };
        members.store(me, Source::Local, now);
        members
    }

    pub fn world(&self) -> u32 {
        self.world
    }

    pub fn me(&self) -> &Record {
        &self
            .slots
            .get(self.me as usize)
            .and_then(Slot::current)
            .expect("own record is always present")
            .record
    }

    /// Whether a peer that presents `hello` may join (static checks happen
    /// in the session: Job, world size).
    pub fn admit(&self, hello: &Hello) -> Result<(), Reject> {
        if hello.index >= self.world {
            return Err(Reject::UnknownIndex);
        }
        let mine = self.me();
        if hello.instance == mine.instance {
            return Err(if hello.index == self.me {
                Reject::SelfConnection
            } else {
                Reject::DuplicateInstance
            });
        }
        if hello.index == self.me {
            return Err(Reject::OwnIndex);
        }
        let claims_other_index = self.slots.iter().enumerate().any(|(i, s)| {
            i as u32 != hello.index
                && s.incarnations
                    .iter()
                    .any(|k| k.record.instance == hello.instance)
        });
        if claims_other_index {
            return Err(Reject::DuplicateInstance);
        }
        if let Some(current) = self.slots[hello.index as usize].current()
            && current.record.instance != hello.instance
            && current.record.state == State::Alive
            && (current.record.started_ms, current.record.instance)
                > (hello.started_ms, hello.instance)
        {
            return Err(Reject::StaleIncarnation);
        }
        Ok(())
    }

    /// Takes in a record heard from `source` at `now`.
    pub fn merge(&mut self, record: Record, source: Source, now: Duration) -> Merged {
        if record.index >= self.world {
            return Merged::Ignored(Reject::UnknownIndex);
        }
        if record.seq > MAX_SEQ {
            return Merged::Invalid("its seq is the reserved u32::MAX");
        }
        if record.board.check().is_err() {
            return Merged::Invalid(
                "its board breaks the limits (64 keys, 16 KiB, 4 KiB values, 64 barrier names)",
            );
        }
        let mine = self.me();
        if record.index == self.me {
            if record.instance != mine.instance {
                // Not stored (this pod is its index now), but a predecessor
                // whose workload is done for good still makes the group
                // finishing for this pod too.
                if matches!(record.claim.work, Work::Exited { .. }) {
                    self.predecessor_exited = true;
                }
                return Merged::Ignored(Reject::OwnIndex);
            }
            // About this very process: a report of its death (or a stale
            // copy of itself) is answered with a higher sequence number.
            if (record.seq, record.state) > (mine.seq, mine.state) && mine.state == State::Alive {
                let Some(seq) = record.seq.checked_add(1).filter(|&s| s <= MAX_SEQ) else {
                    return Merged::Invalid("refuting it would pass the highest seq");
                };
                let refuted = Record {
                    seq,
                    state: State::Alive,
                    ..mine.clone()
                };
                self.store(refuted, Source::Local, now);
                return Merged::Refuted { seq };
            }
            return Merged::Nothing;
        }
        if record.instance == mine.instance {
            return Merged::Ignored(Reject::DuplicateInstance);
        }
        self.store(record, source, now)
    }

    /// This pod saw its link to `index`/`instance` die without a goodbye:
    /// it declares that incarnation dead, unless something newer is known.
    pub fn declare_dead(&mut self, index: u32, instance: InstanceId, now: Duration) -> Merged {
        let Some(known) = self.slots.get(index as usize).and_then(|s| {
            s.incarnations
                .iter()
                .find(|k| k.record.instance == instance)
        }) else {
            return Merged::Nothing;
        };
        if known.record.state != State::Alive {
            return Merged::Nothing;
        }
        let record = Record {
            state: State::Dead,
            ..known.record.clone()
        };
        self.store(record, Source::Local, now)
    }

    /// Changes this pod's own state (`Left` when it leaves for good).
    pub fn set_own_state(&mut self, state: State, now: Duration) {
        let mine = self.me().clone();
        if mine.state != state {
            self.store(Record { state, ..mine }, Source::Local, now);
        }
    }

    /// Announces new addresses for this pod, raising its sequence number so
    /// the new record wins everywhere.
    pub fn set_own_addrs(&mut self, addrs: Vec<IpAddr>, now: Duration) {
        let mine = self.me().clone();
        if mine.addrs != addrs {
            // At the ceiling (only a forged record gets there) the new
            // addresses stay local rather than wrap.
            let Some(seq) = mine.seq.checked_add(1).filter(|&s| s <= MAX_SEQ) else {
                return;
            };
            self.store(Record { seq, addrs, ..mine }, Source::Local, now);
        }
    }

    /// Changes this pod's round claim, raising its sequence number so the
    /// new record wins everywhere. False at the ceiling (see
    /// [`Members::set_own_addrs`]), where nothing changes.
    pub fn set_own_claim(&mut self, claim: Claim, now: Duration) -> bool {
        let mine = self.me().clone();
        if mine.claim == claim {
            return true;
        }
        let Some(seq) = mine.seq.checked_add(1).filter(|&s| s <= MAX_SEQ) else {
            return false;
        };
        // A board belongs to its round: joining a later one drops it rather
        // than flooding what nobody will read.
        let board = if claim.round != mine.claim.round {
            Arc::default()
        } else {
            mine.board.clone()
        };
        self.store(
            Record {
                seq,
                claim,
                board,
                ..mine
            },
            Source::Local,
            now,
        );
        true
    }

    /// Replaces this pod's board (its workload put a value or entered a
    /// barrier), raising its sequence number. False at the ceiling.
    pub fn set_own_board(&mut self, board: Board, now: Duration) -> bool {
        let mine = self.me().clone();
        if *mine.board == board {
            return true;
        }
        let Some(seq) = mine.seq.checked_add(1).filter(|&s| s <= MAX_SEQ) else {
            return false;
        };
        let board = Arc::new(board);
        self.store(Record { seq, board, ..mine }, Source::Local, now);
        true
    }

    fn store(&mut self, record: Record, source: Source, now: Duration) -> Merged {
        let index = record.index;
        let instance = record.instance;
        let slot = &mut self.slots[index as usize];
        let before = slot.current().map(|k| k.record.clone());
        let was_arrived = before.as_ref().is_some_and(|r| r.state != State::Dead);
        let version = self.next_version;
        match slot
            .incarnations
            .iter_mut()
            .find(|k| k.record.instance == instance)
        {
            Some(known) => {
                // Only a higher rank changes a record (addresses included):
                // an equal one is a duplicate, a lower one is old news.
                if (record.seq, record.state) <= (known.record.seq, known.record.state) {
                    return Merged::Nothing;
                }
                known.record = record;
                known.source = source;
                known.version = version;
            }
            None => {
                if slot.incarnations.len() >= MAX_INCARNATIONS {
                    // Forget the oldest that is not current.
                    let current = slot.current;
                    if let Some((oldest, _)) = slot
                        .incarnations
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| Some(*i) != current)
                        .min_by_key(|(_, k)| (k.record.started_ms, k.record.instance))
                    {
                        slot.incarnations.swap_remove(oldest);
                        self.held -= 1;
                    }
                }
                self.held += 1;
                slot.incarnations.push(Known {
                    record,
                    source,
                    version,
                });
            }
        }
        slot.choose();
        self.next_version += 1;
        self.log.push((index, instance, version));
        let after = slot
            .current()
            .map(|k| k.record.clone())
            .expect("just stored");
        let is_arrived = after.state != State::Dead;
        match (was_arrived, is_arrived) {
            (false, true) => {
                self.arrived += 1;
                slot.since = Some(now);
            }
            (true, false) => {
                self.arrived -= 1;
                slot.since = None;
            }
            (true, true) if before.as_ref().map(|b| b.instance) != Some(after.instance) => {
                slot.since = Some(now);
            }
            _ => {}
        }
        let current = if before.as_ref() == Some(&after) {
            CurrentChange::None
        } else {
            CurrentChange::Updated { before, after }
        };
        self.compact();
        Merged::Changed { index, current }
    }

    /// The current incarnation of `index`.
    pub fn current(&self, index: u32) -> Option<&Record> {
        self.slots
            .get(index as usize)
            .and_then(Slot::current)
            .map(|k| &k.record)
    }

    /// The lowest index with an incarnation, current or not, whose workload
    /// is done for good (`Work::Exited`): a pod that completed and whose
    /// successor (if any) must not restart the group.
    pub fn exited(&self) -> Option<u32> {
        let held = self.slots.iter().position(|s| {
            s.incarnations
                .iter()
                .any(|k| matches!(k.record.claim.work, Work::Exited { .. }))
        });
        let held = held.map(|i| i as u32);
        match (held, self.predecessor_exited) {
            (Some(i), true) => Some(i.min(self.me)),
            (None, true) => Some(self.me),
            (held, false) => held,
        }
    }

    /// When the current incarnation of `index` was first known to have arrived.
    pub fn since(&self, index: u32) -> Option<Duration> {
        self.slots.get(index as usize).and_then(|s| s.since)
    }

    /// Whether `index` has arrived: its current incarnation is alive, or
    /// left after meeting everyone.
    pub fn arrived(&self, index: u32) -> bool {
        self.current(index).is_some_and(|r| r.state != State::Dead)
    }

    pub fn arrived_count(&self) -> u32 {
        self.arrived
    }

    /// The barrier's condition: every index has arrived.
    pub fn all_arrived(&self) -> bool {
        self.arrived == self.world
    }

    /// Indices that have not arrived, ascending.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.world).filter(|&i| !self.arrived(i))
    }

    /// Whether `instance` is the current incarnation of `index`.
    pub fn is_current(&self, index: u32, instance: InstanceId) -> bool {
        self.current(index).is_some_and(|r| r.instance == instance)
    }

    /// A cursor past every change known now.
    pub fn head(&self) -> Version {
        self.next_version
    }

    /// Entries in the change log (live and dead), for the bound's tests.
    #[cfg(test)]
    pub fn log_entries(&self) -> usize {
        self.log.len()
    }

    /// The record `index`/`instance` names if its latest change is `version`.
    fn live(&self, index: u32, instance: InstanceId, version: Version) -> Option<&Known> {
        self.slots[index as usize]
            .incarnations
            .iter()
            .find(|k| k.record.instance == instance && k.version == version)
    }

    /// Records changed at or after `cursor` that did not come from
    /// `exclude`, each once and in its latest form (a record changed ten
    /// times since is sent once), in version order, with their versions.
    pub fn changes_since(
        &self,
        cursor: Version,
        exclude: Source,
    ) -> impl Iterator<Item = (Version, &Record)> + '_ {
        let start = self.log.partition_point(|e| e.2 < cursor);
        self.log[start..]
            .iter()
            .filter_map(move |&(index, instance, version)| {
                self.live(index, instance, version)
                    .filter(|k| k.source != exclude)
                    .map(|k| (version, &k.record))
            })
    }

    /// Drops the dead entries once they outnumber the live ones. Versions
    /// stay as they were, so no cursor moves.
    fn compact(&mut self) {
        if self.log.len() <= 2 * self.held + LOG_SLACK {
            return;
        }
        let log = std::mem::take(&mut self.log);
        self.log = log
            .into_iter()
            .filter(|&(index, instance, version)| self.live(index, instance, version).is_some())
            .collect();
    }

    /// The addresses to reach `index` at, from its current record.
    pub fn addrs(&self, index: u32) -> &[IpAddr] {
        self.current(index).map_or(&[], |r| &r.addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::INSTANCE_LEN;
    use super::*;

    const T: Duration = Duration::from_secs(1);

    fn id(n: u8) -> InstanceId {
        InstanceId([n; INSTANCE_LEN])
    }

    fn rec(index: u32, inst: u8, started: u64, seq: u32, state: State) -> Record {
        Record {
            index,
            instance: id(inst),
            started_ms: started,
            seq,
            state,
            addrs: vec![IpAddr::from([10, 0, index as u8, inst])],
            claim: Default::default(),
            board: Default::default(),
        }
    }

    /// What a link at `cursor` gets, `exclude` being the link.
    fn since(m: &Members, cursor: Version, exclude: Source) -> Vec<Record> {
        m.changes_since(cursor, exclude)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn table(world: u32) -> Members {
        Members::new(world, rec(0, 100, 50, 0, State::Alive), Duration::ZERO)
    }

    #[test]
    fn release_needs_every_index() {
        let mut m = table(3);
        assert_eq!(m.arrived_count(), 1);
        assert_eq!(m.missing().collect::<Vec<_>>(), [1, 2]);
        m.merge(rec(1, 1, 10, 0, State::Alive), Source::Link(1), T);
        assert!(!m.all_arrived());
        m.merge(rec(2, 2, 10, 0, State::Left), Source::Link(1), T);
        assert!(m.all_arrived(), "a peer that left after meeting counts");
        assert_eq!(m.since(2), Some(T));
    }

    #[test]
    fn merging_is_order_independent() {
        let records = [
            rec(1, 1, 10, 0, State::Alive),
            rec(1, 1, 10, 0, State::Dead),
            rec(1, 2, 20, 0, State::Alive),
            rec(1, 1, 10, 1, State::Alive),
            rec(2, 3, 10, 0, State::Alive),
            rec(2, 3, 10, 2, State::Left),
        ];
        let reference = {
            let mut m = table(3);
            for r in &records {
                m.merge(r.clone(), Source::Link(0), T);
            }
            m
        };
        // Every rotation and the reverse order give the same table.
        for k in 0..records.len() {
            let mut order = records.to_vec();
            order.rotate_left(k);
            for reversed in [false, true] {
                if reversed {
                    order.reverse();
                }
                let mut m = table(3);
                for r in &order {
                    m.merge(r.clone(), Source::Link(0), T);
                }
                for i in 0..3 {
                    assert_eq!(m.current(i), reference.current(i), "index {i}, {order:?}");
                }
                assert_eq!(m.arrived_count(), reference.arrived_count());
            }
        }
        assert_eq!(reference.current(1).unwrap().instance, id(2));
        assert_eq!(reference.current(2).unwrap().state, State::Left);
    }

    #[test]
    fn a_dead_incarnation_is_not_counted_and_its_successor_replaces_it() {
        let mut m = table(2);
        m.merge(rec(1, 1, 10, 0, State::Alive), Source::Link(1), T);
        assert!(m.all_arrived());
        assert!(matches!(
            m.declare_dead(1, id(1), T),
            Merged::Changed { index: 1, .. }
        ));
        assert!(!m.all_arrived(), "a dead incarnation is not met");
        assert_eq!(m.current(1).unwrap().state, State::Dead);
        // The replacement: same index, new instance, new address.
        let merged = m.merge(rec(1, 2, 30, 0, State::Alive), Source::Link(2), 3 * T);
        let Merged::Changed {
            current: CurrentChange::Updated { before, after },
            ..
        } = merged
        else {
            panic!("{merged:?}")
        };
        assert_eq!(before.unwrap().instance, id(1));
        assert_eq!(after.addrs, vec![IpAddr::from([10, 0, 1, 2])]);
        assert!(m.all_arrived());
        assert_eq!(m.since(1), Some(3 * T));
    }

    #[test]
    fn a_newer_live_incarnation_wins_even_before_the_old_is_declared_dead() {
        let mut m = table(2);
        m.merge(rec(1, 1, 10, 0, State::Alive), Source::Link(1), T);
        m.merge(rec(1, 2, 30, 0, State::Alive), Source::Link(2), T);
        assert_eq!(m.current(1).unwrap().instance, id(2));
        // And the old one is stale if it shows up again.
        let old = Hello {
            job: "j".into(),
            world: 2,
            index: 1,
            instance: id(1),
            started_ms: 10,
            serving: false,
            addrs: vec![],
        };
        assert_eq!(m.admit(&old), Err(Reject::StaleIncarnation));
        let newer = Hello {
            instance: id(2),
            started_ms: 30,
            ..old.clone()
        };
        assert_eq!(m.admit(&newer), Ok(()));
    }

    #[test]
    fn a_pod_refutes_its_own_death() {
        let mut m = table(2);
        let me = m.me().clone();
        let obituary = Record {
            state: State::Dead,
            ..me.clone()
        };
        assert_eq!(
            m.merge(obituary, Source::Link(1), T),
            Merged::Refuted { seq: 1 }
        );
        assert_eq!(m.me().seq, 1);
        assert_eq!(m.me().state, State::Alive);
        // The refutation is in the log for every link.
        let out = since(&m, 0, Source::Link(9));
        assert_eq!(out.last().unwrap().seq, 1);
        // An older copy of itself changes nothing.
        assert_eq!(m.merge(me, Source::Link(1), T), Merged::Nothing);
    }

    #[test]
    fn a_record_at_the_reserved_seq_is_ignored_and_never_wraps() {
        let mut m = table(2);
        let me = m.me().clone();
        // An obituary at u32::MAX: refuting it would wrap to 0 (a panic in
        // a debug build, a pod dead everywhere in a release build).
        let forged = Record {
            seq: u32::MAX,
            state: State::Dead,
            ..me.clone()
        };
        assert!(matches!(
            m.merge(forged, Source::Link(1), T),
            Merged::Invalid(_)
        ));
        assert_eq!((m.me().seq, m.me().state), (0, State::Alive));
        // One just below: refuting it would reach the reserved seq.
        let near = Record {
            seq: MAX_SEQ,
            state: State::Dead,
            ..me.clone()
        };
        assert!(matches!(
            m.merge(near, Source::Link(1), T),
            Merged::Invalid(_)
        ));
        assert_eq!(m.me().seq, 0);
        // The highest refutable one is refuted at MAX_SEQ, and new own
        // addresses then stay local instead of wrapping.
        let last = Record {
            seq: MAX_SEQ - 1,
            state: State::Dead,
            ..me
        };
        assert_eq!(
            m.merge(last, Source::Link(1), T),
            Merged::Refuted { seq: MAX_SEQ }
        );
        m.set_own_addrs(vec![IpAddr::from([10, 9, 9, 9])], T);
        assert_eq!(m.me().seq, MAX_SEQ);
        // Nobody stores or forwards another pod's record at u32::MAX.
        let len = m.head();
        assert!(matches!(
            m.merge(rec(1, 1, 10, u32::MAX, State::Dead), Source::Link(1), T),
            Merged::Invalid(_)
        ));
        assert!(m.current(1).is_none());
        assert_eq!(m.head(), len);
    }

    #[test]
    fn a_stalled_peer_declared_dead_comes_back_by_refuting() {
        let mut m = table(2);
        m.merge(rec(1, 1, 10, 0, State::Alive), Source::Link(1), T);
        m.declare_dead(1, id(1), T);
        assert!(!m.all_arrived());
        m.merge(rec(1, 1, 10, 1, State::Alive), Source::Link(2), T);
        assert!(m.all_arrived());
    }

    #[test]
    fn admission_rejections() {
        let m = {
            let mut m = table(3);
            m.merge(rec(1, 1, 10, 0, State::Alive), Source::Link(1), T);
            m
        };
        let hello = |index: u32, inst: u8| Hello {
            job: "j".into(),
            world: 3,
            index,
            instance: id(inst),
            started_ms: 99,
            serving: false,
            addrs: vec![],
        };
        assert_eq!(m.admit(&hello(2, 7)), Ok(()));
        assert_eq!(m.admit(&hello(1, 8)), Ok(()), "newer than the known one");
        assert_eq!(m.admit(&hello(3, 7)), Err(Reject::UnknownIndex));
        assert_eq!(m.admit(&hello(0, 100)), Err(Reject::SelfConnection));
        assert_eq!(m.admit(&hello(0, 7)), Err(Reject::OwnIndex));
        assert_eq!(m.admit(&hello(2, 100)), Err(Reject::DuplicateInstance));
        assert_eq!(
            m.admit(&hello(2, 1)),
            Err(Reject::DuplicateInstance),
            "instance 1 is index 1's"
        );
    }

    #[test]
    fn records_about_other_incarnations_of_this_index_are_ignored() {
        let mut m = table(2);
        assert_eq!(
            m.merge(rec(0, 5, 99, 0, State::Alive), Source::Link(1), T),
            Merged::Ignored(Reject::OwnIndex)
        );
        assert_eq!(
            m.merge(rec(1, 100, 99, 0, State::Alive), Source::Link(1), T),
            Merged::Ignored(Reject::DuplicateInstance)
        );
        assert_eq!(
            m.merge(rec(7, 5, 99, 0, State::Alive), Source::Link(1), T),
            Merged::Ignored(Reject::UnknownIndex)
        );
        assert_eq!(m.current(0).unwrap().instance, id(100));
    }

    #[test]
    fn the_change_log_feeds_each_link_what_it_lacks_once() {
        let mut m = table(4);
        let start = m.head();
        m.merge(rec(1, 1, 10, 0, State::Alive), Source::Link(1), T);
        m.merge(rec(2, 2, 10, 0, State::Alive), Source::Link(2), T);
        m.merge(rec(1, 1, 10, 1, State::Alive), Source::Link(2), T);
        // Link 1 gets record 2 and the new version of record 1 (it came
        // from link 2), not the old version.
        let to1 = since(&m, start, Source::Link(1));
        assert_eq!(
            to1.iter().map(|r| (r.index, r.seq)).collect::<Vec<_>>(),
            [(2, 0), (1, 1)]
        );
        // Link 2 sent both: it gets nothing back.
        assert!(since(&m, start, Source::Link(2)).is_empty());
        // A new link gets everything, own record included, once each.
        let all = since(&m, 0, Source::Link(9));
        assert_eq!(
            all.iter().map(|r| r.index).collect::<Vec<_>>(),
            [0, 2, 1],
            "in order of their latest change"
        );
        // Duplicates change nothing and log nothing.
        let len = m.head();
        assert_eq!(
            m.merge(rec(2, 2, 10, 0, State::Alive), Source::Link(3), T),
            Merged::Nothing
        );
        assert_eq!(m.head(), len);
    }

    #[test]
    fn the_change_log_stays_small_and_a_link_behind_still_gets_the_latest() {
        let mut m = table(3);
        m.merge(rec(2, 2, 10, 0, State::Alive), Source::Link(2), T);
        // A link that was handed everything up to here, then fell behind.
        let behind = m.head();
        m.merge(rec(1, 1, 10, 0, State::Alive), Source::Link(1), T);
        // 10 000 changes of one record: refutations of its own death, as
        // a flapping link makes them, and a few of this pod's.
        for seq in 1..=10_000u32 {
            let state = if seq % 2 == 0 {
                State::Alive
            } else {
                State::Dead
            };
            m.merge(rec(1, 1, 10, seq, state), Source::Link(1), T);
            if seq % 1000 == 0 {
                m.set_own_addrs(vec![IpAddr::from([10, 9, 0, (seq / 1000) as u8])], T);
            }
        }
        assert!(
            m.log_entries() <= 2 * 3 + LOG_SLACK,
            "{} entries for 3 records",
            m.log_entries()
        );
        // The link behind gets the latest version of each record it
        // lacks, once each: record 1 and this pod's, not record 2.
        let out = since(&m, behind, Source::Link(7));
        let mut got: Vec<(u32, u32)> = out.iter().map(|r| (r.index, r.seq)).collect();
        got.sort_unstable();
        assert_eq!(got, [(0, 10), (1, 10_000)]);
        assert_eq!(
            out.iter().find(|r| r.index == 0).unwrap().addrs,
            [IpAddr::from([10, 9, 0, 10])]
        );
        // A new link still gets everything; the one the record came from
        // does not get it back.
        assert_eq!(since(&m, 0, Source::Link(7)).len(), 3);
        assert!(
            since(&m, behind, Source::Link(1))
                .iter()
                .all(|r| r.index == 0)
        );
        // A link that is up to date gets nothing.
        assert!(since(&m, m.head(), Source::Link(7)).is_empty());
    }

    #[test]
    fn incarnations_per_index_are_bounded() {
        let mut m = table(2);
        for inst in 1..=20u8 {
            m.merge(
                rec(1, inst, u64::from(inst), 0, State::Dead),
                Source::Link(1),
                T,
            );
        }
        assert!(m.slots[1].incarnations.len() <= MAX_INCARNATIONS);
        assert_eq!(m.current(1).unwrap().instance, id(20));
    }

    #[test]
    fn boards_flood_with_their_record_and_a_peers_over_the_limits_is_ignored() {
        let mut m = table(2);
        let cursor = m.head();
        let board = Board::default().put(1, "port", "8476").unwrap();
        assert!(m.set_own_board(board.clone(), T));
        let out = since(&m, cursor, Source::Link(1));
        assert_eq!((out.len(), out[0].seq), (1, 1));
        assert_eq!(*out[0].board, board);
        assert!(m.set_own_board(board.clone(), T), "the same board again");
        assert_eq!(m.me().seq, 1, "changes nothing");
        // Joining round 2 drops the board of round 1.
        assert!(m.set_own_claim(
            Claim {
                round: 2,
                ..m.me().claim
            },
            T
        ));
        assert_eq!((m.me().seq, m.me().board.values.len()), (2, 0));

        let mut over = rec(1, 1, 1, 1, State::Alive);
        over.board = Arc::new(Board {
            round: 1,
            values: vec![("a b".into(), "x".into())],
            barriers: vec![],
        });
        assert!(matches!(
            m.merge(over, Source::Link(1), T),
            Merged::Invalid(_)
        ));
        assert!(m.current(1).is_none(), "not stored");
    }

    #[test]
    fn new_own_addresses_win_everywhere() {
        let mut m = table(2);
        let cursor = m.head();
        m.set_own_addrs(vec![IpAddr::from([10, 9, 9, 9])], T);
        let out = since(&m, cursor, Source::Link(1));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].seq, out[0].addrs.len()), (1, 1));
        // A peer holding the old record takes the new one.
        let mut other = table(2);
        let mut old = m.me().clone();
        old.seq = 0;
        old.addrs.clear();
        other.merge(rec(1, 1, 1, 0, State::Alive), Source::Local, T);
        let mut peer = Members::new(2, rec(1, 1, 1, 0, State::Alive), Duration::ZERO);
        peer.merge(old, Source::Link(1), T);
        peer.merge(out[0].clone(), Source::Link(1), T);
        assert_eq!(peer.addrs(0), [IpAddr::from([10, 9, 9, 9])]);
    }

    #[test]
    fn leaving_is_recorded_for_the_others() {
        let mut m = table(2);
        let cursor = m.head();
        m.set_own_state(State::Left, T);
        let out = since(&m, cursor, Source::Link(1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].state, State::Left);
    }
}

//! A deterministic network of cores, for tests: no socket, no task, no
//! clock. Dials succeed when the harness says the peer is up; frames are
//! delivered in an order a seed chooses (each link's direction stays in
//! order, as TCP keeps it); time jumps to the next instant some core wants.
//! The same rules the shell runs are thereby checked over many orders.
//! Each link's frames in flight stand for its outbox: at most
//! [`RECORD_FRAMES`] RECORDS frames, as the shell allows. A pod can be
//! frozen: it neither runs nor reads, and what reaches it waits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use super::core::{Action, Core, DialKey, LinkUp, RECORD_FRAMES};
use super::links::{End, LinkId};
use super::proto::InstanceId;
use super::proto::Sealed;
use super::settings::Settings;
use crate::cause::Cause;
use crate::peers::{Peer, Target};

pub const SEC: Duration = Duration::from_secs(1);

/// Where pod `index` of generation `generation` lives.
pub fn ip(index: u32, generation: u8) -> IpAddr {
    IpAddr::from([10, generation, 0, index as u8 + 1])
}

/// The incarnation id of pod `index`'s generation `generation`.
pub fn instance(index: u32, generation: u8) -> InstanceId {
    let mut id = [0u8; 16];
    id[0] = index as u8;
    id[1] = generation;
    InstanceId(id)
}

pub fn settings(index: u32, world: u32, generation: u8, serve: bool) -> Settings {
    Settings {
        token: Some("uid-1".into()),
        job: "job".into(),
        index,
        peers: (0..world)
            .map(|i| Peer {
                index: Some(i),
                target: Target::Name(format!("job-{i}.svc.")),
            })
            .collect(),
        announce: vec![ip(index, generation)],
        listen: None,
        port: 7470,
        interval: SEC,
        connect_timeout: SEC,
        concurrency: 8,
        serve,
        service: None,
    }
}

/// One end of a link: the pod (by index) and its link id there.
type EndId = (u32, LinkId);

/// What travels between two cores.
#[derive(Debug)]
enum Wire {
    Frame(Sealed),
    /// The sender half-closed: the receiver sees the end of stream.
    Eof,
    /// The link ended under a frozen pod: it sees that when it thaws.
    Gone(End),
}

pub struct Sim {
    pub t0: Instant,
    pub now: Instant,
    /// The live incarnation of each index, if any.
    pub pods: Vec<Option<Core>>,
    generation: Vec<u8>,
    /// Each link end's peer end.
    peer_of: HashMap<EndId, EndId>,
    /// What is in flight towards each end, in order.
    inbox: HashMap<EndId, VecDeque<Wire>>,
    /// Whether each end has half-closed its sending side.
    sent_eof: HashMap<EndId, bool>,
    /// Pods that neither run nor read.
    frozen: Vec<bool>,
    /// Pairs of pods whose path drops everything (lower index first):
    /// frames between them are held, dials between them time out.
    black_holes: HashSet<(u32, u32)>,
    rng: u64,
    next_port: u16,
}

impl Sim {
    /// `world` pods, none started; frames interleave as `seed` says.
    pub fn new(world: u32, seed: u64) -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            pods: (0..world).map(|_| None).collect(),
            generation: vec![0; world as usize],
            peer_of: HashMap::new(),
            inbox: HashMap::new(),
            sent_eof: HashMap::new(),
            frozen: vec![false; world as usize],
            black_holes: HashSet::new(),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            next_port: 40_000,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: small, deterministic, good enough to pick an order.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Starts (or replaces) pod `index` with a new incarnation.
    pub fn start(&mut self, index: u32, serve: bool) {
        if self.pods[index as usize].is_some() {
            self.kill(index);
        }
        let g = &mut self.generation[index as usize];
        *g += 1;
        let generation = *g;
        let world = self.pods.len() as u32;
        let elapsed_ms = self.now.duration_since(self.t0).as_millis() as u64;
        let core = Core::new(
            settings(index, world, generation, serve),
            instance(index, generation),
            1_000 + elapsed_ms,
            self.now,
        );
        self.pods[index as usize] = Some(core);
    }

    /// Pod `index`'s process dies: its links end with an error at the
    /// other ends, after what it had sent.
    pub fn kill(&mut self, index: u32) {
        self.pods[index as usize] = None;
        let ends: Vec<EndId> = self
            .peer_of
            .keys()
            .filter(|e| e.0 == index)
            .copied()
            .collect();
        for end in ends {
            let peer = self.peer_of.remove(&end).expect("paired");
            self.peer_of.remove(&peer);
            self.inbox.remove(&end);
            self.sent_eof.remove(&end);
            if self.frozen[peer.0 as usize] {
                let gone = Wire::Gone(End::Error("connection reset".into()));
                self.inbox.entry(peer).or_default().push_back(gone);
            } else if let Some(core) = self.pods[peer.0 as usize].as_mut() {
                // What was in flight towards the peer still arrives first.
                let pending: Vec<Wire> = self.inbox.remove(&peer).into_iter().flatten().collect();
                for wire in pending {
                    if let Wire::Frame(frame) = wire {
                        core.frame(self.now, peer.1, frame);
                    }
                }
                core.closed(self.now, peer.1, End::Error("connection reset".into()));
            }
            self.sent_eof.remove(&peer);
        }
    }

    /// Freezes pod `index` (its process stops) or thaws it.
    pub fn freeze(&mut self, index: u32, frozen: bool) {
        self.frozen[index as usize] = frozen;
    }

    /// Drops (or, `false`, heals) every packet between pods `a` and `b`:
    /// nothing crosses, neither end hears of it.
    pub fn black_hole(&mut self, a: u32, b: u32, dropping: bool) {
        let pair = (a.min(b), a.max(b));
        if dropping {
            self.black_holes.insert(pair);
        } else {
            self.black_holes.remove(&pair);
        }
    }

    fn cut(&self, a: u32, b: u32) -> bool {
        self.black_holes.contains(&(a.min(b), a.max(b)))
    }

    /// Frames in flight towards pod `index`, over all its links.
    pub fn queued_towards(&self, index: u32) -> usize {
        (self.inbox.iter())
            .filter(|(end, _)| end.0 == index)
            .map(|(_, q)| q.len())
            .sum()
    }

    /// RECORDS frames in flight from link end `from`: its outbox.
    fn outbox(&self, from: EndId) -> usize {
        let to = self.peer_of.get(&from);
        let queue = to.and_then(|to| self.inbox.get(to)).into_iter().flatten();
        queue
            .filter(|w| matches!(w, Wire::Frame(Sealed::Records(_))))
            .count()
    }

    pub fn core(&self, index: u32) -> &Core {
        self.pods[index as usize].as_ref().expect("pod is up")
    }

    /// Polls every pod and carries out what they ask, until nothing is in
    /// flight; then time jumps to the next wake. Stops at `until`, or when
    /// `stop` holds after a step.
    pub fn run_until(&mut self, until: Duration, mut stop: impl FnMut(&Sim) -> bool) {
        let end = self.t0 + until;
        let mut steps = 0u32;
        loop {
            steps += 1;
            assert!(steps < 1_000_000, "the simulation does not settle");
            for i in 0..self.pods.len() as u32 {
                self.poll(i);
            }
            if stop(self) {
                return;
            }
            if !self.deliver_one() {
                let next = self
                    .pods
                    .iter_mut()
                    .zip(&self.frozen)
                    .filter(|(_, frozen)| !**frozen)
                    .filter_map(|(c, _)| c.as_mut())
                    .filter(|c| !c.done())
                    .map(|c| c.next_wake())
                    .min();
                match next {
                    Some(at) if at <= end => self.now = self.now.max(at),
                    _ => return,
                }
            }
        }
    }

    fn poll(&mut self, index: u32) {
        let now = self.now;
        if self.frozen[index as usize] {
            return;
        }
        let Some(core) = self.pods[index as usize].as_ref() else {
            return;
        };
        let ready: Vec<LinkId> = (core.blocked())
            .filter(|&id| self.outbox((index, id)) < RECORD_FRAMES)
            .collect();
        let core = self.pods[index as usize].as_mut().expect("up");
        for id in ready {
            core.room(id);
        }
        core.poll(now);
        self.execute(index);
    }

    fn execute(&mut self, index: u32) {
        loop {
            let Some(core) = self.pods[index as usize].as_mut() else {
                return;
            };
            let Some(action) = core.next_action() else {
                return;
            };
            match action {
                Action::Dial { key, started, .. } => self.dial(index, key, started),
                Action::Records { id, records, from } => {
                    if self.outbox((index, id)) < RECORD_FRAMES {
                        self.send((index, id), Wire::Frame(Sealed::Records(records)));
                    } else if let Some(core) = self.pods[index as usize].as_mut() {
                        core.unsent(id, from);
                    }
                }
                Action::Send(id, frame) => self.send((index, id), Wire::Frame(frame)),
                Action::Close(id) | Action::Abandon(id) => {
                    let end = (index, id);
                    if !self.sent_eof.get(&end).copied().unwrap_or(true) {
                        self.sent_eof.insert(end, true);
                        self.send(end, Wire::Eof);
                    }
                    // An abandoned link stops waiting for the peer's end
                    // of stream after its linger (link::CLOSE_LINGER): at
                    // once here.
                    if matches!(action, Action::Abandon(_))
                        && let Some(core) = self.pods[index as usize].as_mut()
                    {
                        core.closed(self.now, id, End::Eof);
                    }
                }
                Action::Publish => {}
            }
        }
    }

    fn send(&mut self, from: EndId, wire: Wire) {
        if let Some(&to) = self.peer_of.get(&from) {
            self.inbox.entry(to).or_default().push_back(wire);
        }
    }

    /// A dial from `from` to `key` succeeds when the pod it looks for is up.
    fn dial(&mut self, from: u32, key: DialKey, started: Instant) {
        let to = match key {
            DialKey::Peer(c) if self.pods[c as usize].is_some() && !self.frozen[c as usize] => {
                Some(c)
            }
            _ => None,
        };
        let Some(to) = to else {
            if let Some(core) = self.pods[from as usize].as_mut() {
                core.dial_done(key, started, Some(Cause::NxDomain));
            }
            return;
        };
        if self.cut(from, to) {
            if let Some(core) = self.pods[from as usize].as_mut() {
                core.dial_done(key, started, Some(Cause::NoReply));
            }
            return;
        }
        self.pods[from as usize]
            .as_mut()
            .expect("dialer is up")
            .dial_done(key, started, None);
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(40_000);
        let (gf, gt) = (self.generation[from as usize], self.generation[to as usize]);
        let dialer_addr = SocketAddr::new(ip(from, gf), port);
        let listener_addr = SocketAddr::new(ip(to, gt), 7470);
        let (hello_from, hello_to) = (self.core(from).hello(), self.core(to).hello());
        let now = self.now;
        let up_from = self.pods[from as usize].as_mut().unwrap().link_up(
            now,
            hello_to,
            dialer_addr,
            listener_addr,
            true,
        );
        let up_to = self.pods[to as usize].as_mut().unwrap().link_up(
            now,
            hello_from,
            listener_addr,
            dialer_addr,
            false,
        );
        match (up_from, up_to) {
            (LinkUp::Adopted(a), LinkUp::Adopted(b)) => self.pair((from, a), (to, b)),
            // One side turned the link away: the other sees it end.
            (LinkUp::Adopted(a), LinkUp::Refused(frame)) => self.refused((from, a), frame),
            (LinkUp::Refused(frame), LinkUp::Adopted(b)) => self.refused((to, b), frame),
            (LinkUp::Refused(_), LinkUp::Refused(_)) => {}
        }
        self.execute(from);
        self.execute(to);
    }

    fn pair(&mut self, a: EndId, b: EndId) {
        self.peer_of.insert(a, b);
        self.peer_of.insert(b, a);
        self.sent_eof.insert(a, false);
        self.sent_eof.insert(b, false);
    }

    /// The end `adopted` hears `frame` and then the end of stream.
    fn refused(&mut self, adopted: EndId, frame: Sealed) {
        let now = self.now;
        if let Some(core) = self.pods[adopted.0 as usize].as_mut() {
            core.frame(now, adopted.1, frame);
            core.closed(now, adopted.1, End::Eof);
        }
    }

    /// Delivers one thing in flight, picked by the seed; false if none.
    fn deliver_one(&mut self) -> bool {
        let mut ready: Vec<EndId> = self
            .inbox
            .iter()
            .filter(|(e, q)| !q.is_empty() && !self.frozen[e.0 as usize])
            .filter(|(e, _)| {
                self.peer_of
                    .get(e)
                    .is_none_or(|from| !self.cut(from.0, e.0))
            })
            .map(|(&e, _)| e)
            .collect();
        if ready.is_empty() {
            return false;
        }
        ready.sort_unstable();
        let to = ready[(self.random() % ready.len() as u64) as usize];
        let wire = self.inbox.get_mut(&to).unwrap().pop_front().unwrap();
        let now = self.now;
        match wire {
            Wire::Frame(frame) => {
                if let Some(core) = self.pods[to.0 as usize].as_mut() {
                    core.frame(now, to.1, frame);
                }
            }
            Wire::Gone(end) => {
                self.inbox.remove(&to);
                if let Some(core) = self.pods[to.0 as usize].as_mut() {
                    core.closed(now, to.1, end);
                }
            }
            Wire::Eof => {
                // The link task ends on the end of stream: its socket
                // closes, and the sender sees the end of stream too.
                if let Some(core) = self.pods[to.0 as usize].as_mut() {
                    core.closed(now, to.1, End::Eof);
                }
                if let Some(from) = self.peer_of.remove(&to) {
                    self.peer_of.remove(&from);
                    self.inbox.remove(&to);
                    self.inbox.remove(&from);
                    self.sent_eof.remove(&to);
                    self.sent_eof.remove(&from);
                    if self.frozen[from.0 as usize] {
                        self.inbox
                            .insert(from, VecDeque::from([Wire::Gone(End::Eof)]));
                    } else if let Some(core) = self.pods[from.0 as usize].as_mut() {
                        core.closed(now, from.1, End::Eof);
                    }
                }
            }
        }
        self.execute(to.0);
        true
    }

    pub fn all_released(&self) -> bool {
        self.pods.iter().flatten().all(Core::is_released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rendezvous::proto::{Record, State};

    fn addrs_seen(core: &Core) -> Vec<Vec<IpAddr>> {
        core.outcome(None)
            .peers
            .into_iter()
            .map(|p| p.addrs)
            .collect()
    }

    #[test]
    fn in_every_order_everyone_releases_with_the_same_table_and_nobody_dies() {
        // Worlds on both sides of the mesh/tree boundary; 40 interleavings
        // each. The rule that must hold in every order: all release, all
        // agree on every address, nobody is taken for dead, all leave.
        for world in [2, 3, 8, 9, 20] {
            for seed in 0..40 {
                let mut sim = Sim::new(world, seed);
                for i in 0..world {
                    sim.start(i, false);
                }
                sim.run_until(10 * SEC, |s| s.pods.iter().flatten().all(Core::done));
                let expected: Vec<Vec<IpAddr>> = (0..world).map(|i| vec![ip(i, 1)]).collect();
                for i in 0..world {
                    let core = sim.core(i);
                    assert!(core.done(), "world {world} seed {seed}: pod {i} not done");
                    assert_eq!(
                        addrs_seen(core),
                        expected,
                        "world {world} seed {seed}: pod {i}"
                    );
                    assert!(
                        (0..world).all(|j| core.members.current(j).unwrap().state == State::Alive),
                        "world {world} seed {seed}: pod {i} took a live peer for dead"
                    );
                }
            }
        }
    }

    #[test]
    fn a_black_holed_link_holds_nobody_when_another_peer_vouches() {
        // Pods 0 and 1 linked, then their path drops everything; pod 3
        // starts 3 s late. Both learn of it through the others and
        // release, but cannot confirm to each other: pods 2 and 3 heard
        // both COMPLETEs and say so (RELEASED), so both leave at once.
        // Nobody is taken for dead. (The sim has no TCP timeout: without
        // the relays' word they would wait for ever.)
        for seed in 0..40 {
            let mut sim = Sim::new(4, seed);
            for i in 0..3 {
                sim.start(i, false);
            }
            sim.run_until(SEC, |_| false);
            assert!(sim.core(0).links.has(1), "seed {seed}: 0 and 1 linked");
            sim.black_hole(0, 1, true);
            sim.run_until(3 * SEC, |_| false);
            sim.start(3, false);
            let started = sim.now;
            sim.run_until(20 * SEC, |s| s.pods.iter().flatten().all(Core::done));
            let took = sim.now.duration_since(started);
            for i in 0..4 {
                let core = sim.core(i);
                assert!(core.done(), "seed {seed}: pod {i} not done");
                for j in 0..4 {
                    assert_eq!(
                        core.members.current(j).unwrap().state,
                        State::Alive,
                        "seed {seed}: pod {i} about {j}"
                    );
                }
            }
            assert!(
                took <= SEC,
                "seed {seed}: everyone left {took:?} after the late start"
            );
        }
    }

    #[test]
    fn a_black_holed_link_nobody_vouches_for_is_waited_for() {
        // Pod 2 reaches pod 1 only; pod 0 learns of it through pod 1, and
        // the path between 0 and 1 drops everything from the moment pod 0
        // has released, before either COMPLETE crossed. Nobody heard pod
        // 0's COMPLETE, so nobody can say it released: pod 1 waits for it
        // (in a real network until the TCP user timeout), and pod 0 waits
        // too, since only pod 2, which it cannot reach, heard pod 1's.
        for seed in 0..20 {
            let mut sim = Sim::new(3, seed);
            sim.start(0, false);
            sim.start(1, false);
            sim.run_until(SEC, |_| false);
            sim.black_hole(0, 2, true);
            sim.start(2, false);
            sim.run_until(2 * SEC, |s| s.core(0).is_released());
            assert!(sim.core(0).is_released(), "seed {seed}");
            sim.black_hole(0, 1, true);
            sim.run_until(10 * SEC, |s| s.pods.iter().flatten().all(Core::done));
            let (zero, one) = (sim.core(0), sim.core(1));
            assert!(
                !zero
                    .links
                    .iter()
                    .any(|(_, l)| l.index == 1 && l.peer_complete),
                "seed {seed}: the cut came after pod 1's COMPLETE"
            );
            assert!(!zero.done(), "seed {seed}: pod 0 left unconfirmed");
            assert!(
                !one.done(),
                "seed {seed}: pod 1 left a peer nobody vouched for"
            );
        }
    }

    #[test]
    fn a_late_pod_releases_everyone_within_an_interval_of_its_start() {
        for seed in 0..20 {
            let mut sim = Sim::new(4, seed);
            for i in 0..3 {
                sim.start(i, true);
            }
            sim.run_until(3 * SEC, |_| false);
            assert!(sim.pods.iter().flatten().all(|c| !c.is_released()));
            sim.start(3, true);
            let started = sim.now;
            sim.run_until(10 * SEC, Sim::all_released);
            assert!(sim.all_released(), "seed {seed}");
            assert!(
                sim.now.duration_since(started) <= SEC,
                "seed {seed}: released {:?} after the late start",
                sim.now.duration_since(started)
            );
        }
    }

    #[test]
    fn a_killed_pod_is_taken_for_dead_and_its_replacement_is_admitted_everywhere() {
        for seed in 0..20 {
            let mut sim = Sim::new(5, seed);
            for i in 0..5 {
                sim.start(i, true);
            }
            sim.run_until(5 * SEC, Sim::all_released);
            assert!(sim.all_released(), "seed {seed}");
            sim.kill(2);
            sim.run_until(6 * SEC, |_| false);
            for i in [0, 1, 3, 4] {
                let r = sim.core(i).members.current(2).expect("known");
                assert_eq!(
                    r.state,
                    State::Dead,
                    "seed {seed}: pod {i} still counts pod 2"
                );
            }
            sim.start(2, true);
            sim.run_until(15 * SEC, |s| {
                (0..5).all(|i| s.core(i).outcome(None).peers[2].addrs == [ip(2, 2)])
            });
            for i in 0..5 {
                assert_eq!(
                    sim.core(i).outcome(None).peers[2].addrs,
                    [ip(2, 2)],
                    "seed {seed}: pod {i} lists the replacement"
                );
                assert!(sim.core(i).readmissions <= 1);
            }
        }
    }

    #[test]
    fn a_full_outbox_holds_records_back_but_never_complete_and_then_sends_the_latest() {
        let t0 = Instant::now();
        let mut a = Core::new(settings(0, 2, 1, false), InstanceId([1; 16]), 1, t0);
        let b = Core::new(settings(1, 2, 1, false), InstanceId([2; 16]), 2, t0);
        let (la, lb) = (
            SocketAddr::new(ip(0, 1), 40_000),
            SocketAddr::new(ip(1, 1), 7470),
        );
        let LinkUp::Adopted(id) = a.link_up(t0, b.hello(), la, lb, true) else {
            panic!("adopted")
        };
        a.poll(t0);
        let mut first = None;
        let mut completes = 0;
        while let Some(action) = a.next_action() {
            match action {
                Action::Records { from, .. } => first = first.or(Some(from)),
                Action::Send(_, Sealed::Complete) => completes += 1,
                _ => {}
            }
        }
        assert_eq!(
            (first, completes),
            (Some(0), 1),
            "released: records, then COMPLETE"
        );
        // The outbox was full: the records were not handed over.
        a.unsent(id, 0);
        assert_eq!(a.blocked().collect::<Vec<_>>(), [id]);
        // Meanwhile this pod's record changes twice.
        a.members.set_own_addrs(vec![ip(0, 7)], Duration::ZERO);
        a.members.set_own_addrs(vec![ip(0, 8)], Duration::ZERO);
        a.poll(t0 + SEC);
        assert!(
            std::iter::from_fn(|| a.next_action()).all(|x| !matches!(x, Action::Records { .. })),
            "nothing for a link without room"
        );
        // Room again: one frame, with only the latest version.
        a.room(id);
        a.poll(t0 + 2 * SEC);
        let frames: Vec<Vec<Record>> = std::iter::from_fn(|| a.next_action())
            .filter_map(|x| match x {
                Action::Records { records, .. } => Some(records),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), 1, "b's own record is not sent back to b");
        assert_eq!(
            (frames[0][0].seq, &frames[0][0].addrs),
            (2, &vec![ip(0, 8)])
        );
    }

    #[test]
    fn a_peer_frozen_for_an_hour_of_churn_holds_a_bounded_queue_and_then_converges() {
        // World 5 (a mesh), serving. Pod 4 freezes for an hour while pods
        // 1-3 are replaced every 5 s; pod 0 keeps its link to pod 4 the
        // whole time. What waits for pod 4 stays a few frames per link,
        // every table's change log stays small, and after the thaw every
        // pod agrees on the last incarnation of every index.
        let mut sim = Sim::new(5, 7);
        for i in 0..5 {
            sim.start(i, true);
        }
        sim.run_until(5 * SEC, Sim::all_released);
        assert!(sim.all_released());
        sim.freeze(4, true);
        let (mut most_queued, mut longest_log) = (0, 0);
        for round in 0..720u32 {
            sim.start(1 + round % 3, true);
            let until = sim.now.duration_since(sim.t0) + 5 * SEC;
            sim.run_until(until, |_| false);
            most_queued = most_queued.max(sim.queued_towards(4));
            for core in sim.pods.iter().flatten() {
                longest_log = longest_log.max(core.members.log_entries());
            }
        }
        let links = 4; // pod 4's links when it froze
        assert!(
            most_queued <= links * (RECORD_FRAMES + 3 + 1),
            "{most_queued} frames waited for the frozen pod"
        );
        assert!(
            longest_log <= 2 * 5 * 4 + 16,
            "a change log of {longest_log}"
        );
        sim.freeze(4, false);
        let until = sim.now.duration_since(sim.t0) + 30 * SEC;
        let expected = |s: &Sim| -> Vec<Vec<IpAddr>> {
            (0..5u32)
                .map(|i| vec![ip(i, s.generation[i as usize])])
                .collect()
        };
        sim.run_until(until, |s| {
            (0..5).all(|i| addrs_seen(s.core(i)) == expected(s))
        });
        for i in 0..5 {
            let core = sim.core(i);
            assert_eq!(addrs_seen(core), expected(&sim), "pod {i}'s table");
            assert!(
                (0..5).all(|j| core.members.current(j).unwrap().state == State::Alive),
                "pod {i} counts a live pod as dead"
            );
        }
    }
}

//! The rounds' rules over many orders: serving cores in the deterministic
//! network of `sim`, each with a model of `peergate run` beside it, under
//! replacements, workload failures, completions and stalls drawn from a
//! seed. What must hold in every order:
//!
//! * every pod that releases round r saw the same membership;
//! * a pod's released rounds only grow;
//! * no command of round r starts while a command of an older round runs
//!   anywhere, nor before every member of round r has joined it;
//! * after the last disturbance every live pod releases the same round.

use std::collections::HashMap;
use std::time::Duration;

use super::core::Core;
use super::proto::{InstanceId, State, Work};
use super::rounds::{Attach, Local};
use super::sim::{SEC, Sim};

const MS: Duration = Duration::from_millis(1);

/// A pod's `peergate run`, as the sidecar sees it.
#[derive(Debug, Clone, Default)]
struct Run {
    /// The round whose command runs, and the incarnation it attached to.
    running: Option<(u32, InstanceId)>,
    /// The command stops (and the run detaches) at this time, after the
    /// round ended.
    stops_at: Option<Duration>,
    /// The last round it ran.
    last: u32,
    /// It exited for good.
    exited: bool,
}

struct Bed {
    sim: Sim,
    runs: Vec<Run>,
    /// Round → the membership its first releaser saw.
    memberships: HashMap<u32, Vec<InstanceId>>,
    /// (pod incarnation) → the latest round it released.
    latest: HashMap<InstanceId, u32>,
    rng: u64,
    label: String,
}

impl Bed {
    fn new(world: u32, seed: u64) -> Bed {
        let mut sim = Sim::new(world, seed);
        for i in 0..world {
            sim.start(i, true);
        }
        Bed {
            sim,
            runs: vec![Run::default(); world as usize],
            memberships: HashMap::new(),
            latest: HashMap::new(),
            rng: seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1,
            label: format!("world {world} seed {seed}"),
        }
    }

    fn random(&mut self, n: u64) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x % n
    }

    fn elapsed(&self) -> Duration {
        self.sim.now.duration_since(self.sim.t0)
    }

    fn world(&self) -> u32 {
        self.sim.pods.len() as u32
    }

    fn core_mut(&mut self, i: u32) -> Option<&mut Core> {
        self.sim.pods[i as usize].as_mut()
    }

    /// Checks every release seen now against the rules.
    fn observe(&mut self) {
        let world = self.world();
        for i in 0..world {
            let Some(core) = self.sim.pods[i as usize].as_ref() else {
                continue;
            };
            let Some(rel) = core.rounds().released() else {
                continue;
            };
            let me = core.instance();
            let before = self.latest.get(&me).copied().unwrap_or(0);
            assert!(
                rel.round >= before,
                "{}: pod {i} released round {} after {before}",
                self.label,
                rel.round
            );
            if rel.round == before {
                continue;
            }
            self.latest.insert(me, rel.round);
            match self.memberships.get(&rel.round) {
                Some(seen) => assert_eq!(
                    seen, &rel.members,
                    "{}: pod {i} released round {} with another membership",
                    self.label, rel.round
                ),
                None => {
                    self.memberships.insert(rel.round, rel.members.clone());
                }
            }
        }
    }

    /// Moves every run along: starts commands of released rounds, stops
    /// those whose round ended.
    fn drive_runs(&mut self) {
        let now = self.sim.now;
        let at = self.elapsed();
        for i in 0..self.world() {
            let Some(core) = self.sim.pods[i as usize].as_ref() else {
                continue;
            };
            let me = core.instance();
            let live = core.rounds().live();
            let run = self.runs[i as usize].clone();
            match run.running {
                Some((round, inst)) if inst != me => {
                    // The pod was replaced under the run: its command died
                    // with the old incarnation.
                    let _ = round;
                    self.runs[i as usize] = Run::default();
                }
                Some((round, _)) if live != Some(round) => match run.stops_at {
                    None => {
                        let delay = Duration::from_millis(self.random(300));
                        self.runs[i as usize].stops_at = Some(at + delay);
                    }
                    Some(t) if t <= at => {
                        self.runs[i as usize].running = None;
                        self.runs[i as usize].stops_at = None;
                        self.core_mut(i).unwrap().detach(now, round);
                    }
                    Some(_) => {}
                },
                Some(_) => {}
                None if run.exited => {}
                None => {
                    let grace = 300 * MS;
                    let attach = self.core_mut(i).unwrap().attach(now, run.last, grace);
                    if let Attach::Start(round) = attach {
                        self.check_start(i, round);
                        self.runs[i as usize].running = Some((round, me));
                        self.runs[i as usize].last = round;
                    }
                }
            }
        }
    }

    /// Pod `i` starts its command of `round`: nobody runs an older round,
    /// and every member of the round has joined it.
    fn check_start(&self, i: u32, round: u32) {
        for (j, run) in self.runs.iter().enumerate() {
            if let Some((r, _)) = run.running {
                assert!(
                    r >= round,
                    "{}: pod {i} starts round {round} while pod {j} runs round {r}",
                    self.label
                );
            }
        }
        let core = self.sim.core(i);
        let members = &core.rounds().released().expect("released").members;
        for (j, inst) in members.iter().enumerate() {
            let Some(peer) = self.sim.pods[j].as_ref() else {
                continue; // gone since: its successor ends the round
            };
            if peer.instance() != *inst {
                continue;
            }
            let left = peer.members.me().state == State::Left;
            assert!(
                left || peer.rounds().joined() >= round,
                "{}: pod {i} starts round {round} before pod {j} joined it",
                self.label
            );
        }
    }

    /// Runs the bed for `span`, in small steps.
    fn run_for(&mut self, span: Duration) {
        let end = self.elapsed() + span;
        while self.elapsed() < end {
            let next = (self.elapsed() + 10 * MS).min(end);
            self.sim.run_until(next, |_| false);
            if self.sim.now.duration_since(self.sim.t0) < next {
                self.sim.now = self.sim.t0 + next;
            }
            self.observe();
            self.drive_runs();
        }
        self.observe();
    }

    fn report(&mut self, i: u32, work: impl Fn(u32) -> Work) {
        let now = self.sim.now;
        if let Some((round, _)) = self.runs[i as usize].running {
            let w = work(round);
            if matches!(w, Work::Exited { .. }) {
                self.runs[i as usize] = Run {
                    exited: true,
                    ..Run::default()
                };
            }
            self.core_mut(i).unwrap().report(now, w);
            if matches!(w, Work::Exited { .. }) {
                self.core_mut(i).unwrap().detach(now, round);
            }
        }
    }

    /// Every live pod has released the same round and runs its command.
    fn settled(&self) -> Option<u32> {
        let mut round = None;
        for (i, pod) in self.sim.pods.iter().enumerate() {
            let core = pod.as_ref()?;
            let live = core.rounds().live()?;
            if round.is_some_and(|r| r != live) {
                return None;
            }
            self.runs[i].running?;
            round = Some(live);
        }
        round
    }
}

#[test]
fn in_every_order_the_members_of_a_round_agree_and_no_round_overlaps_another() {
    let seeds: u64 = std::env::var("PEERGATE_SIM_SEEDS").map_or(24, |s| s.parse().unwrap());
    for world in [2, 3, 5, 9] {
        for seed in 0..seeds {
            let mut bed = Bed::new(world, seed);
            bed.run_for(3 * SEC);
            let first = bed.settled();
            assert_eq!(first, Some(1), "{}: round 1 everywhere", bed.label);
            let mut expected = 1;
            for _ in 0..4 {
                let who = bed.random(u64::from(world)) as u32;
                match bed.random(4) {
                    // A replacement, at once or after the loss is seen.
                    0 => {
                        bed.sim.kill(who);
                        let wait = Duration::from_millis(bed.random(400));
                        bed.run_for(wait);
                        bed.runs[who as usize] = Run::default();
                        bed.sim.start(who, true);
                    }
                    // A workload fails.
                    1 => bed.report(who, |round| Work::Failed { round, code: 3 }),
                    // A pod stalls during the round change another causes.
                    2 => {
                        let other = (who + 1) % world;
                        bed.report(other, |round| Work::Failed { round, code: 1 });
                        bed.sim.freeze(who, true);
                        bed.run_for(2 * SEC);
                        for i in 0..world {
                            if i != who {
                                assert!(
                                    bed.sim.core(i).members.current(who).unwrap().state
                                        == State::Alive,
                                    "{}: the stalled pod {who} was declared dead",
                                    bed.label
                                );
                                assert!(
                                    bed.sim.core(i).rounds().live().is_none(),
                                    "{}: a round released without the stalled pod",
                                    bed.label
                                );
                            }
                        }
                        bed.sim.freeze(who, false);
                    }
                    // A replacement while another's failure is flooding.
                    _ => {
                        bed.report(who, |round| Work::Failed { round, code: 2 });
                        let other = (who + 1) % world;
                        bed.sim.kill(other);
                        bed.runs[other as usize] = Run::default();
                        bed.sim.start(other, true);
                    }
                }
                bed.run_for(4 * SEC);
                let settled = bed.settled();
                assert!(settled.is_some(), "{}: the group settles", bed.label);
                let round = settled.unwrap();
                assert!(round > expected, "{}: a new round opened", bed.label);
                expected = round;
            }
            assert!(
                bed.memberships.len() as u32 <= expected,
                "{}: rounds released: {:?}",
                bed.label,
                bed.memberships.keys()
            );
        }
    }
}

#[test]
fn one_disturbance_opens_one_round() {
    // A failure, a replacement, and a replacement whose predecessor's
    // loss and successor's arrival reach the pods in any order: each ends
    // the round once, and the next round is the one after it.
    for seed in 0..24 {
        for case in 0..3 {
            let mut bed = Bed::new(5, seed);
            bed.run_for(3 * SEC);
            assert_eq!(bed.settled(), Some(1), "{}", bed.label);
            match case {
                0 => bed.report(2, |round| Work::Failed { round, code: 1 }),
                1 => {
                    bed.sim.kill(2);
                    bed.runs[2] = Run::default();
                    bed.sim.start(2, true);
                }
                _ => {
                    bed.sim.kill(2);
                    bed.runs[2] = Run::default();
                    let wait = Duration::from_millis(bed.random(50));
                    bed.run_for(wait);
                    bed.sim.start(2, true);
                }
            }
            bed.run_for(4 * SEC);
            assert_eq!(bed.settled(), Some(2), "{} case {case}", bed.label);
        }
    }
}

#[test]
fn after_a_completion_nobody_restarts() {
    for seed in 0..16 {
        let mut bed = Bed::new(4, seed);
        bed.run_for(3 * SEC);
        assert_eq!(bed.settled(), Some(1));
        bed.report(0, |round| Work::Exited { round, code: 0 });
        bed.run_for(SEC);
        // A finishing group still runs its live round: a run that starts
        // late (a second workload container) gets it.
        let now = bed.sim.now;
        let late = bed.core_mut(2).unwrap();
        assert_eq!(late.attach(now, 0, SEC), Attach::Start(1), "seed {seed}");
        late.detach(now, 1);
        bed.report(1, |round| Work::Failed { round, code: 7 });
        bed.run_for(2 * SEC);
        for i in 0..4u32 {
            let core = bed.sim.core(i);
            assert_eq!(core.rounds().finishing(), Some(0), "seed {seed} pod {i}");
            assert_eq!(core.rounds().joined(), 1, "seed {seed}: pod {i} moved on");
        }
        // The failing pod's own round ended (so its run is told); the
        // others' did not, and their commands still run.
        assert!(bed.sim.core(1).rounds().live().is_none());
        for i in [2, 3] {
            assert_eq!(bed.sim.core(i).rounds().live(), Some(1), "seed {seed}");
            assert!(bed.runs[i as usize].running.is_some());
        }
        // A replacement cannot start anything now.
        bed.sim.kill(3);
        bed.sim.start(3, true);
        bed.runs[3] = Run::default();
        bed.run_for(2 * SEC);
        let now = bed.sim.now;
        let replacement = bed.core_mut(3).unwrap();
        assert_eq!(replacement.attach(now, 0, SEC), Attach::Finishing);
        // Nor can the successor of the pod that completed, which never
        // saw that record as current.
        bed.sim.kill(0);
        bed.sim.start(0, true);
        bed.runs[0] = Run::default();
        bed.run_for(2 * SEC);
        let now = bed.sim.now;
        let successor = bed.core_mut(0).unwrap();
        assert_eq!(successor.rounds().finishing(), Some(0), "seed {seed}");
        assert_eq!(successor.attach(now, 0, SEC), Attach::Finishing);
    }
}

#[test]
fn a_workload_that_never_stops_holds_the_next_round_only_for_its_grace() {
    let mut bed = Bed::new(3, 7);
    bed.run_for(3 * SEC);
    assert_eq!(bed.settled(), Some(1));
    // Pod 1's run never detaches: it stops driving its run.
    bed.report(0, |round| Work::Failed { round, code: 1 });
    let stuck = bed.runs[1].clone();
    let ended_at = bed.elapsed();
    loop {
        let next = bed.elapsed() + 10 * MS;
        bed.sim.run_until(next, |_| false);
        bed.sim.now = bed.sim.now.max(bed.sim.t0 + next);
        // Pods 0 and 2 detach at once; pod 1 never does.
        let now = bed.sim.now;
        for i in [0, 2] {
            if let Some((round, _)) = bed.runs[i as usize].running
                && bed.sim.core(i).rounds().live() != Some(round)
            {
                bed.runs[i as usize].running = None;
                bed.core_mut(i).unwrap().detach(now, round);
            }
        }
        if matches!(bed.sim.core(1).rounds().local(), Local::Idle) {
            break;
        }
        assert!(bed.elapsed() < ended_at + 5 * SEC, "pod 1 stays stopping");
    }
    let waited = bed.elapsed() - ended_at;
    assert!(
        waited >= 2 * SEC && waited <= 3 * SEC,
        "joined after {waited:?}: grace 300 ms plus the 2 s slack"
    );
    assert!(stuck.running.is_some());
}

//! Barriers and values over many orders: serving cores in the
//! deterministic network of `sim`, the workloads' puts and barrier entries
//! at times drawn from a seed. What must hold in every order:
//!
//! * a barrier passes at a pod only once every member has entered it, and
//!   stays passed for the rest of the round;
//! * `get --all` finds at every pod exactly what each member put, the
//!   latest put of a key winning;
//! * a round's end ends what waits in it, and the next round starts empty.

use std::time::Duration;

use super::exchange::{Over, Query, Reading};
use super::rounds::EndCause;
use super::sim::{SEC, Sim};

const MS: Duration = Duration::from_millis(1);

fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

fn step(sim: &mut Sim, span: Duration) {
    let until = sim.now.duration_since(sim.t0) + span;
    sim.run_until(until, |_| false);
    if sim.now.duration_since(sim.t0) < until {
        sim.now = sim.t0 + until;
    }
}

fn group(world: u32, seed: u64) -> Sim {
    let mut sim = Sim::new(world, seed);
    for i in 0..world {
        sim.start(i, true);
    }
    step(&mut sim, 3 * SEC);
    for i in 0..world {
        assert_eq!(
            sim.core(i).rounds().live(),
            Some(1),
            "seed {seed}: released"
        );
    }
    sim
}

fn ready(reading: &Reading) -> bool {
    matches!(reading, Reading::Ready { .. })
}

#[test]
fn in_every_order_a_barrier_passes_only_once_all_entered_and_values_agree() {
    for world in [2, 3, 5, 8] {
        for seed in 0..24 {
            let label = format!("world {world} seed {seed}");
            let mut sim = group(world, seed);
            let mut random = rng(seed);
            // Each pod puts a value (some twice), then enters the barrier,
            // in an order and at times drawn from the seed.
            let mut order: Vec<u32> = (0..world).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, random(i as u64 + 1) as usize);
            }
            let mut entered = vec![false; world as usize];
            let mut passed = vec![false; world as usize];
            let barrier = Query::Barrier("staged".into());
            for &who in &order {
                let now = sim.now;
                let core = sim.pods[who as usize].as_mut().unwrap();
                core.put(now, None, "port", "0").unwrap();
                if random(2) == 0 {
                    core.put(now, Some(1), "port", &format!("{}", 8000 + who))
                        .unwrap();
                } else {
                    core.put(now, None, "port", &format!("{}", 8000 + who))
                        .unwrap();
                }
                assert_eq!(core.enter(now, Some(1), "staged"), Ok(1));
                entered[who as usize] = true;
                let gap = Duration::from_millis(random(30));
                let end = sim.now + gap;
                while sim.now < end {
                    step(&mut sim, MS);
                    for i in 0..world {
                        let reading = sim.core(i).read(Some(1), &barrier);
                        if ready(&reading) {
                            assert!(
                                entered.iter().all(|&e| e),
                                "{label}: pod {i} passed before everyone entered"
                            );
                            passed[i as usize] = true;
                        } else {
                            assert!(!passed[i as usize], "{label}: pod {i} un-passed");
                        }
                    }
                }
            }
            step(&mut sim, SEC);
            let expected: Vec<(u32, String)> =
                (0..world).map(|i| (i, format!("{}", 8000 + i))).collect();
            for i in 0..world {
                assert!(
                    ready(&sim.core(i).read(None, &barrier)),
                    "{label}: pod {i} passes"
                );
                let Reading::Ready { round, entries } =
                    sim.core(i).read(None, &Query::All("port".into()))
                else {
                    panic!("{label}: pod {i} has every value");
                };
                let got: Vec<(u32, String)> =
                    entries.into_iter().map(|e| (e.index, e.value)).collect();
                assert_eq!((round, &got), (1, &expected), "{label}: pod {i}");
            }
        }
    }
}

#[test]
fn a_replacement_ends_a_barrier_and_the_next_round_starts_empty() {
    for seed in 0..24 {
        let label = format!("seed {seed}");
        let mut sim = group(4, seed);
        let now = sim.now;
        for i in 0..3 {
            let core = sim.pods[i as usize].as_mut().unwrap();
            core.put(now, None, "port", "1").unwrap();
            core.enter(now, None, "staged").unwrap();
        }
        step(&mut sim, 200 * MS);
        let barrier = Query::Barrier("staged".into());
        assert_eq!(
            sim.core(0).read(None, &barrier),
            Reading::Waiting {
                round: 1,
                missing: vec![3]
            },
            "{label}"
        );
        // Pod 3 is replaced before it enters.
        sim.kill(3);
        sim.start(3, true);
        step(&mut sim, 50 * MS);
        match sim.core(0).read(Some(1), &barrier) {
            Reading::Over(Over::Ended {
                round: 1, cause, ..
            }) => assert!(
                matches!(
                    cause,
                    None | Some(EndCause::Replaced { index: 3 } | EndCause::Lost { index: 3 })
                ),
                "{label}: {cause:?}"
            ),
            other => panic!("{label}: round 1 is over, not {other:?}"),
        }
        let now = sim.now;
        assert!(
            matches!(
                sim.pods[0].as_mut().unwrap().put(now, Some(1), "port", "2"),
                Err(super::exchange::Refusal::Over(Over::Ended { round: 1, .. }))
            ),
            "{label}: a put pinned to the old round is refused"
        );
        step(&mut sim, 3 * SEC);
        for i in 0..4 {
            assert_eq!(sim.core(i).rounds().live(), Some(2), "{label}: round 2");
            assert_eq!(
                sim.core(i).read(None, &barrier),
                Reading::Waiting {
                    round: 2,
                    missing: vec![0, 1, 2, 3]
                },
                "{label}: round 2 starts with nobody entered"
            );
            assert_eq!(
                sim.core(i).read(
                    None,
                    &Query::Value {
                        key: "port".into(),
                        index: 0
                    }
                ),
                Reading::Waiting {
                    round: 2,
                    missing: vec![0]
                },
                "{label}: and with no values"
            );
        }
    }
}

#[test]
fn nothing_is_taken_before_the_first_release() {
    let mut sim = Sim::new(2, 1);
    sim.start(0, true);
    step(&mut sim, 100 * MS);
    let now = sim.now;
    let core = sim.pods[0].as_mut().unwrap();
    assert_eq!(
        core.put(now, None, "k", "v"),
        Err(super::exchange::Refusal::Over(Over::NotReleased))
    );
    assert_eq!(
        core.read(None, &Query::All("k".into())),
        Reading::Over(Over::NotReleased)
    );
    assert_eq!(
        core.read(
            None,
            &Query::Value {
                key: "k".into(),
                index: 2
            }
        ),
        Reading::NoIndex { index: 2, world: 2 }
    );
}

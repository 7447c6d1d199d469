//! What a serving barrier (`--serve`) answers over HTTP: health for the
//! kubelet on `--health-port`, and the release for `peergate await` on the
//! loopback `--await-port`.
//!
//! | path       | answers                                                    |
//! |------------|------------------------------------------------------------|
//! | `/livez`   | 200 while the process runs                                 |
//! | `/readyz`  | 200 while the current round is released, 503 otherwise     |
//! | `/peers`   | JSON: every index, its live incarnation, address, state    |
//! | `/metrics` | Prometheus text                                            |
//! | `/await`   | loopback only: blocks until released, then the hand-off    |

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::debug;

use super::answer::AwaitAnswer;
pub use super::endpoints::Endpoints;
use super::http::{self, Parsed, Response};
use crate::outcome::GateOutcome;
use crate::rendezvous::proto::{Record, State, Work};
use crate::rendezvous::rounds::{EndCause, Rounds};
use crate::rendezvous::{Control, Snapshot, Status};

/// HTTP connections served at once per listener, and per source address:
/// a stranger who opens slow connections to the health port cannot starve
/// the kubelet's probes, which come from the node's own address.
const MAX_CONNECTIONS: usize = 64;
const PER_SOURCE: usize = 4;

/// Serves HTTP on `listener` until the future is dropped. `/await` and
/// `/run` are answered only when `with_await` (the loopback listener, where
/// every connection comes from the pod itself, so no source limit applies).
pub async fn serve(listener: TcpListener, endpoints: Endpoints, with_await: bool) {
    let mut tasks: JoinSet<IpAddr> = JoinSet::new();
    let mut per_source: HashMap<IpAddr, usize> = HashMap::new();
    let per_source_limit = if with_await {
        MAX_CONNECTIONS
    } else {
        PER_SOURCE
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let source = remote.ip().to_canonical();
                    let open = per_source.entry(source).or_default();
                    if *open >= per_source_limit || tasks.len() >= MAX_CONNECTIONS {
                        debug!(remote = %remote, "health: too many connections; closing this one");
                        continue;
                    }
                    *open += 1;
                    let endpoints = endpoints.clone();
                    tasks.spawn(async move {
                        handle(stream, endpoints, with_await).await;
                        source
                    });
                }
                Err(e) => {
                    debug!("health: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(source) = done
                    && let Some(n) = per_source.get_mut(&source)
                {
                    *n -= 1;
                    if *n == 0 {
                        per_source.remove(&source);
                    }
                }
            }
        }
    }
}

async fn handle(mut stream: TcpStream, endpoints: Endpoints, with_await: bool) {
    let request = match http::read_request(&mut stream).await {
        Ok(Parsed::Request(r)) => r,
        Ok(Parsed::Bad(why)) => {
            let _ =
                http::respond(&mut stream, &Response::text(400, format!("{why}\n")), false).await;
            return;
        }
        Ok(Parsed::NeedMore) | Err(_) => return,
    };
    if with_await && request.path == "/run" && request.method == "GET" {
        super::lease::serve(stream, request, endpoints).await;
        return;
    }
    if with_await && super::exchange::handles(&request) {
        let Ok(_slot) = endpoints.exchange_slots.clone().try_acquire_owned() else {
            let busy = Response::text(
                503,
                format!(
                    "{} requests of put, get and barrier are already being served here; try \
                     again once some have ended\n",
                    super::endpoints::MAX_EXCHANGE
                ),
            );
            let _ = http::respond(&mut stream, &busy, false).await;
            return;
        };
        if let Some(response) = super::exchange::serve(&mut stream, &request, &endpoints).await {
            let _ = http::respond(&mut stream, &response, false).await;
        }
        return;
    }
    let head_only = request.method == "HEAD";
    let response = if request.method != "GET" && !head_only {
        Response::text(405, "only GET and HEAD\n")
    } else {
        answer(&request.path, &endpoints, with_await).await
    };
    let _ = http::respond(&mut stream, &response, head_only).await;
}

async fn answer(path: &str, endpoints: &Endpoints, with_await: bool) -> Response {
    match path {
        "/livez" => Response::text(200, "ok\n"),
        "/readyz" => {
            let status = endpoints.current();
            if status.live {
                Response::text(200, "released\n")
            } else if status.released {
                Response::text(503, not_live(&status))
            } else {
                match endpoints.snapshot().await {
                    Some(s) => Response::text(
                        503,
                        format!(
                            "waiting: {}/{} met\n",
                            s.peers
                                .iter()
                                .filter(|p| arrived(p.record.as_ref()))
                                .count(),
                            s.world
                        ),
                    ),
                    None => Response::text(503, "waiting\n"),
                }
            }
        }
        "/peers" => match endpoints.snapshot().await {
            Some(s) => Response::json(peers_json(&s)),
            None => Response::text(503, "stopping\n"),
        },
        "/metrics" => match endpoints.snapshot().await {
            Some(s) => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics(&s),
            },
            None => Response::text(503, "stopping\n"),
        },
        "/await" if with_await => {
            let mut endpoints = endpoints.clone();
            if endpoints.wait_for(|s| s.released).await.is_none() {
                return Response::text(503, "stopping\n");
            }
            match endpoints.ask(Control::Outcome).await {
                Some(outcome) => Response::json(handoff_json(&outcome)),
                None => Response::text(503, "stopping\n"),
            }
        }
        _ => Response::text(404, "not found\n"),
    }
}

/// Why `/readyz` says no after the first release.
fn not_live(status: &Status) -> String {
    match status.end {
        Some(cause) if status.finishing.is_some() => format!(
            "round {} ended: {cause}; the group is finishing, no round follows\n",
            status.round
        ),
        Some(cause) => format!(
            "round {} ended: {cause}; forming round {}\n",
            status.round,
            status.round + 1
        ),
        None => format!("round {}: writing its hand-off\n", status.round),
    }
}

fn arrived(record: Option<&Record>) -> bool {
    record.is_some_and(|r| r.state != State::Dead)
}

fn state_name(record: Option<&Record>) -> &'static str {
    match record.map(|r| r.state) {
        None => "unknown",
        Some(State::Alive) => "alive",
        Some(State::Dead) => "dead",
        Some(State::Left) => "left",
    }
}

/// `/peers`: the table as this pod sees it.
pub fn peers_json(s: &Snapshot) -> String {
    let peers: Vec<_> = s
        .peers
        .iter()
        .map(|p| {
            json!({
                "index": p.index,
                "name": p.name,
                "state": state_name(p.record.as_ref()),
                "met": arrived(p.record.as_ref()),
                "addrs": p.record.as_ref().map(|r| r.addrs.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
                "instance": p.record.as_ref().map(|r| r.instance.to_string()),
                "linked": p.linked,
                "since_seconds": p.since.map(|d| d.as_secs_f64()),
                "round": p.record.as_ref().map(|r| r.claim.round),
                "workload": p.record.as_ref().map(|r| work_json(r.claim.work)),
            })
        })
        .collect();
    let mut doc = json!({
        "world_size": s.world,
        "index": s.index,
        "instance": s.instance.to_string(),
        "released": s.released_after.is_some(),
        "released_after_seconds": s.released_after.map(|d| d.as_secs_f64()),
        "peers": peers,
    });
    if let Some(rounds) = &s.rounds {
        doc["round"] = rounds_json(rounds);
    }
    doc.to_string()
}

/// `/peers`' `round`: the latest round released here and how it stands.
fn rounds_json(rounds: &Rounds) -> serde_json::Value {
    let released = rounds.released();
    let ended = released.and_then(|r| r.ended);
    json!({
        "number": released.map(|r| r.round),
        "live": rounds.live().is_some(),
        "joined": rounds.joined(),
        "released_at_seconds": released.map(|r| r.at.as_secs_f64()),
        "ended": ended.map(|(cause, at)| json!({
            "cause": cause.name(),
            "index": cause.index(),
            "code": match cause { EndCause::Failed { code, .. } => Some(code), _ => None },
            "at_seconds": at.as_secs_f64(),
        })),
        "restarts": rounds.ended_count(),
        "finishing": rounds.finishing().is_some(),
        "formed_last_seconds": rounds.formed().last.as_secs_f64(),
    })
}

fn work_json(work: Work) -> serde_json::Value {
    match work {
        Work::Running => json!({"state": "running"}),
        Work::Failed { round, code } => json!({"state": "failed", "round": round, "code": code}),
        Work::Exited { round, code } => json!({"state": "exited", "round": round, "code": code}),
    }
}

/// What `/await` hands to `peergate await`: enough to set the hand-off
/// variables of its command.
pub fn handoff_json(outcome: &GateOutcome) -> String {
    AwaitAnswer::from_outcome(outcome).to_json()
}

/// `/metrics` in the Prometheus text format.
pub fn metrics(s: &Snapshot) -> String {
    let met = s
        .peers
        .iter()
        .filter(|p| arrived(p.record.as_ref()))
        .count();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP peergate_barrier_{name} {help}\n# TYPE peergate_barrier_{name} gauge\npeergate_barrier_{name} {value}"
        );
    };
    gauge("world_size", "Pods in the barrier.", f64::from(s.world));
    gauge(
        "peers_met",
        "Pods known to have arrived, this one included.",
        met as f64,
    );
    gauge(
        "released",
        "1 once every pod has arrived.",
        if s.released_after.is_some() { 1.0 } else { 0.0 },
    );
    if let Some(after) = s.released_after {
        gauge(
            "release_seconds",
            "Time from start to release.",
            after.as_secs_f64(),
        );
    }
    gauge("links", "Authenticated links open now.", s.links as f64);
    gauge(
        "uptime_seconds",
        "Time since this instance started.",
        s.uptime.as_secs_f64(),
    );
    if let Some(rounds) = &s.rounds {
        round_metrics(&mut out, rounds);
    }
    let _ = writeln!(
        out,
        "# HELP peergate_barrier_readmissions_total Peers replaced, moved or back after the release.\n\
         # TYPE peergate_barrier_readmissions_total counter\n\
         peergate_barrier_readmissions_total {}",
        s.readmissions
    );
    let _ = writeln!(
        out,
        "# HELP peergate_barrier_rejected_total Connections turned away, by reason.\n\
         # TYPE peergate_barrier_rejected_total counter"
    );
    for (reason, n) in &s.refused {
        let _ = writeln!(
            out,
            "peergate_barrier_rejected_total{{reason=\"{reason}\"}} {n}"
        );
    }
    out
}

/// The rounds' series: the round, the restarts, how long rounds took to
/// form.
fn round_metrics(out: &mut String, rounds: &Rounds) {
    let released = rounds.released();
    let formed = rounds.formed();
    let _ = writeln!(
        out,
        "# HELP peergate_round The latest round released here (0 before the first).\n\
         # TYPE peergate_round gauge\n\
         peergate_round {}\n\
         # HELP peergate_round_live 1 while that round is released and has not ended.\n\
         # TYPE peergate_round_live gauge\n\
         peergate_round_live {}\n\
         # HELP peergate_round_restarts_total Rounds that ended here (each a group restart).\n\
         # TYPE peergate_round_restarts_total counter\n\
         peergate_round_restarts_total {}\n\
         # HELP peergate_round_finishing 1 once a member's workload is done for good.\n\
         # TYPE peergate_round_finishing gauge\n\
         peergate_round_finishing {}\n\
         # HELP peergate_round_formation_seconds Time from joining a round to its release.\n\
         # TYPE peergate_round_formation_seconds summary\n\
         peergate_round_formation_seconds_sum {}\n\
         peergate_round_formation_seconds_count {}\n\
         # HELP peergate_round_last_formation_seconds How long the latest released round took to form.\n\
         # TYPE peergate_round_last_formation_seconds gauge\n\
         peergate_round_last_formation_seconds {}",
        released.map_or(0, |r| r.round),
        u8::from(rounds.live().is_some()),
        rounds.ended_count(),
        u8::from(rounds.finishing().is_some()),
        formed.sum.as_secs_f64(),
        formed.count,
        formed.last.as_secs_f64(),
    );
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::outcome::PeerOutcome;
    use crate::rendezvous::PeerView;
    use crate::rendezvous::proto::{INSTANCE_LEN, InstanceId};

    fn snapshot(released: bool) -> Snapshot {
        let record = |i: u32, state| Record {
            index: i,
            instance: InstanceId([i as u8; INSTANCE_LEN]),
            started_ms: 1,
            seq: 0,
            state,
            addrs: vec![IpAddr::from([10, 0, 0, i as u8 + 1])],
            claim: Default::default(),
            board: Default::default(),
        };
        Snapshot {
            world: 3,
            index: 0,
            instance: InstanceId([0; INSTANCE_LEN]),
            released_after: released.then_some(Duration::from_millis(1500)),
            uptime: Duration::from_secs(9),
            peers: vec![
                PeerView {
                    index: 0,
                    name: "job-0.svc".into(),
                    record: Some(record(0, State::Alive)),
                    since: Some(Duration::ZERO),
                    linked: true,
                },
                PeerView {
                    index: 1,
                    name: "job-1.svc".into(),
                    record: Some(record(1, State::Dead)),
                    since: None,
                    linked: false,
                },
                PeerView {
                    index: 2,
                    name: "job-2.svc".into(),
                    record: None,
                    since: None,
                    linked: false,
                },
            ],
            links: 1,
            readmissions: 2,
            refused: vec![("bad_proof", 4), ("silent", 1)],
            rounds: None,
        }
    }

    #[test]
    fn peers_json_shows_each_index() {
        let v: serde_json::Value = serde_json::from_str(&peers_json(&snapshot(false))).unwrap();
        assert_eq!(v["world_size"], 3);
        assert_eq!(v["released"], false);
        assert_eq!(v["peers"][0]["state"], "alive");
        assert_eq!(v["peers"][0]["met"], true);
        assert_eq!(v["peers"][0]["addrs"][0], "10.0.0.1");
        assert_eq!(v["peers"][1]["state"], "dead");
        assert_eq!(v["peers"][1]["met"], false);
        assert_eq!(v["peers"][2]["state"], "unknown");
        assert_eq!(v["peers"][2]["instance"], serde_json::Value::Null);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let m = metrics(&snapshot(true));
        for line in [
            "peergate_barrier_world_size 3",
            "peergate_barrier_peers_met 1",
            "peergate_barrier_released 1",
            "peergate_barrier_release_seconds 1.5",
            "peergate_barrier_readmissions_total 2",
            "peergate_barrier_rejected_total{reason=\"bad_proof\"} 4",
            "# TYPE peergate_barrier_rejected_total counter",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        // Every sample line is `name{labels} value`.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(name.starts_with("peergate_barrier_"), "{l}");
            value.parse::<f64>().unwrap();
        }
        assert!(!metrics(&snapshot(false)).contains("release_seconds"));
    }

    #[test]
    fn the_handoff_json_carries_rank_and_peers() {
        let outcome = GateOutcome {
            self_index: Some(0),
            round: None,
            peers: vec![PeerOutcome {
                index: Some(0),
                name: "job-0.svc".into(),
                addrs: vec![IpAddr::from([10, 0, 0, 1])],
                reachable_via: None,
                elapsed: None,
            }],
        };
        let v: serde_json::Value = serde_json::from_str(&handoff_json(&outcome)).unwrap();
        assert_eq!(v["rank"], 0);
        assert_eq!(v["peers"][0]["name"], "job-0.svc");
        assert_eq!(v["peers"][0]["addrs"][0], "10.0.0.1");
    }
}

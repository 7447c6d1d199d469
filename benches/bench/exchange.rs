//! The workload API of the serving sidecar (`peergate barrier`, `put`,
//! `get`): how soon a named barrier passes everywhere after its last
//! member entered, and how soon `get --all` answers everywhere after the
//! last `put`.
//!
//! ```text
//!  namespace <id>x (one "node")
//!  ┌──────────────────────────────────────────────────────────────────────┐
//!  │ lo: 10.250.a.b/32 × N, one per "pod"                                 │
//!  │ pod i: peergate --mode barrier --serve --hosts A0..A(N-1) --index i  │
//!  │          --listen Ai --port 7470 --await-port Qi                     │
//!  │ harness threads (setns into the namespace): HTTP to 127.0.0.1:Qi     │
//!  └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The bed is rounds.rs's: every "pod" an address on the loopback of one
//! namespace, sidecars that find each other by address. The clients are
//! the harness's own threads speaking the sidecar's HTTP (what `peergate
//! barrier` and `get` send, docs/exchange.md), one per pod, so a figure
//! is the sidecars' and the wire's, not the start of N client processes
//! on 2 cores; what a `peergate` client process adds on top is measured
//! apart (the *client* row: one `peergate get` of a value already there,
//! from spawn to exit).
//!
//! * **Barrier** (one repetition, barrier `b<k>`): N - 1 pods enter and
//!   wait; after [`SETTLE`] the last pod enters. *Release* = the last
//!   pod's request written until the last of the N answers read, each
//!   stamped by its thread (CLOCK_MONOTONIC). Every answer must be a 200.
//! * **get --all** (key `v<k>`): every pod asks `get --all` with a wait;
//!   N - 1 pods put their value; after [`SETTLE`] the last pod puts.
//!   *Answer* = that put's request written until the last of the N
//!   answers read. Every answer must hold all N values, each the one its
//!   pod put.
//!
//! Nothing here asserts a time: the figures are reported with the median
//! and the worst run beside the target.

use crate::Knobs;
use crate::netns;
use crate::rounds::{loadavg, tree_line};
use crate::scale::peer_addr;
use crate::support::bed::{Bed, BedConfig};
use crate::wrap::now_ns;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const BARRIER_PORT: u16 = 7470;
const AWAIT_BASE: u16 = 22000;
/// Bound on the group's first release (every `/readyz` 200).
const FORM_LIMIT: Duration = Duration::from_secs(60);
/// Time for the first N - 1 requests to reach their sidecars and their
/// boards to flood, before the last one.
const SETTLE: Duration = Duration::from_millis(400);
/// The wait every request asks for; an answer must come well before.
const WAIT_MS: u64 = 20_000;
/// Bound on reading one answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// Target (ms) from the issue, at 64 pods: both figures.
const TARGET_MS: f64 = 20.0;
const TARGET_PODS: usize = 64;

struct Group {
    n: usize,
    netns_path: PathBuf,
    netns: File,
    sidecars: Vec<Child>,
}

impl Group {
    fn start(k: &Knobs, bed: &mut Bed, n: usize) -> Result<Group, String> {
        let addrs: Vec<Ipv4Addr> = (0..n).map(peer_addr).collect();
        let (netns, netns_path) = netns::lean(bed, &format!("{}x", bed.id), &addrs)?;
        let dir = bed.dir.join(format!("exchange{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let hosts: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let hosts = hosts.join(",");
        let mut sidecars = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let log = dir.join(format!("p{i}.sidecar.log"));
            let err = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
            let mut cmd = Command::new(&k.peergate);
            cmd.args(["--mode", "barrier", "--serve", "--hosts", &hosts])
                .args(["--index", &i.to_string(), "--listen", &addr.to_string()])
                .args(["--token", &format!("bench-{}", bed.id)])
                .args(["--port", &BARRIER_PORT.to_string()])
                .args(["--await-port", &(AWAIT_BASE + i as u16).to_string()])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .process_group(0);
            netns::spawn_into(&mut cmd, &netns);
            sidecars.push(cmd.spawn().map_err(|e| format!("spawn peergate: {e}"))?);
        }
        let group = Group {
            n,
            netns_path,
            netns,
            sidecars,
        };
        let deadline = Instant::now() + FORM_LIMIT;
        loop {
            let answers = group.ask_all(group.every("GET /readyz"), None);
            if answers
                .iter()
                .all(|a| a.as_ref().is_ok_and(|a| a.status == 200))
            {
                return Ok(group);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{n} sidecars not all released after {FORM_LIMIT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The requests (pod, `METHOD TARGET`, body), each from its own thread
    /// in the namespace, all sent together; `late` (pod, delay) is sent
    /// that long after the rest.
    fn ask_all(
        &self,
        requests: Vec<(usize, String, Vec<u8>)>,
        late: Option<(usize, Duration)>,
    ) -> Vec<Result<Answer, String>> {
        let start = Arc::new(Barrier::new(requests.len()));
        let threads: Vec<_> = requests
            .into_iter()
            .map(|(pod, line, body)| {
                let path = self.netns_path.clone();
                let start = Arc::clone(&start);
                let delay = late.filter(|(l, _)| *l == pod).map(|(_, d)| d);
                std::thread::spawn(move || {
                    let joined = netns::join(&path);
                    start.wait();
                    joined?;
                    if let Some(d) = delay {
                        std::thread::sleep(d);
                    }
                    ask(pod, &line, &body)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    }

    /// The same request to every pod.
    fn every(&self, line: &str) -> Vec<(usize, String, Vec<u8>)> {
        (0..self.n)
            .map(|i| (i, line.to_owned(), Vec::new()))
            .collect()
    }

    fn stop(mut self) -> Vec<String> {
        let mut notes = Vec::new();
        for (i, s) in self.sidecars.iter_mut().enumerate() {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(s.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            let code = loop {
                match s.try_wait() {
                    Ok(Some(st)) => break st.code(),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    _ => {
                        let _ = s.kill();
                        let _ = s.wait();
                        break None;
                    }
                }
            };
            if code != Some(0) {
                notes.push(format!("sidecar {i} ended with {code:?} on SIGTERM"));
            }
        }
        drop(self.netns);
        notes
    }
}

/// An answer and when it came.
struct Answer {
    status: u16,
    body: String,
    /// The request written (CLOCK_MONOTONIC ns).
    sent: u64,
    /// The whole answer read.
    read: u64,
}

/// One request to pod `pod`'s sidecar: `line` is `METHOD TARGET`.
fn ask(pod: usize, line: &str, body: &[u8]) -> Result<Answer, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, AWAIT_BASE + pod as u16));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("pod {pod}: connect: {e}"))?;
    s.set_read_timeout(Some(ANSWER_LIMIT))
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut req = format!(
        "{line} HTTP/1.1\r\nHost: pod\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let sent = now_ns();
    s.write_all(&req)
        .map_err(|e| format!("pod {pod}: write: {e}"))?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes)
        .map_err(|e| format!("pod {pod}: read: {e}"))?;
    let read = now_ns();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("pod {pod}: not HTTP: {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("pod {pod}: no status in {head:?}"))?;
    Ok(Answer {
        status,
        body: body.to_owned(),
        sent,
        read,
    })
}

/// The last answer's time minus the trigger's send, in ms; or what went
/// wrong.
fn latency(answers: &[Result<Answer, String>], trigger: u64) -> Result<f64, String> {
    let mut last = 0;
    for (i, a) in answers.iter().enumerate() {
        let a = a.as_ref().map_err(Clone::clone)?;
        if a.status != 200 {
            return Err(format!("pod {i}: {} {}", a.status, a.body.trim()));
        }
        last = last.max(a.read);
    }
    Ok(last.saturating_sub(trigger) as f64 / 1e6)
}

fn barrier_rep(g: &Group, rep: usize) -> Result<f64, String> {
    let last = g.n - 1;
    let target = format!("POST /v1/barriers/b{rep}?wait={WAIT_MS}");
    let answers = g.ask_all(g.every(&target), Some((last, SETTLE)));
    let trigger = answers[last].as_ref().map_err(Clone::clone)?.sent;
    // Nobody passed before the last pod entered.
    for (i, a) in answers.iter().enumerate() {
        if let Ok(a) = a
            && a.read < trigger
        {
            return Err(format!("pod {i} passed before the last pod entered"));
        }
    }
    latency(&answers, trigger)
}

fn get_all_rep(g: &Group, rep: usize) -> Result<f64, String> {
    let key = format!("v{rep}");
    let n = g.n;
    let get = format!("GET /v1/values/{key}?all&wait={WAIT_MS}");
    let put = |i: usize| {
        (
            i,
            format!("PUT /v1/values/{key}"),
            value(rep, i).into_bytes(),
        )
    };
    let (early, last, gets) = std::thread::scope(|scope| {
        let getter = scope.spawn(|| g.ask_all(g.every(&get), None));
        // The gets are waiting: n - 1 puts, then the last after SETTLE.
        std::thread::sleep(SETTLE / 2);
        let early = g.ask_all((0..n - 1).map(put).collect(), None);
        std::thread::sleep(SETTLE);
        let last = g.ask_all(vec![put(n - 1)], None);
        (early, last, getter.join())
    });
    let gets = gets.map_err(|_| "get thread panicked".to_string())?;
    for a in early.iter().chain(&last) {
        let a = a.as_ref().map_err(Clone::clone)?;
        if a.status != 200 {
            return Err(format!("a put answered {} {}", a.status, a.body.trim()));
        }
    }
    let trigger = last[0].as_ref().map_err(Clone::clone)?.sent;
    for (i, a) in gets.iter().enumerate() {
        let a = a.as_ref().map_err(Clone::clone)?;
        let json: serde_json::Value =
            serde_json::from_str(&a.body).map_err(|e| format!("pod {i}: {e}: {}", a.body))?;
        let entries = json["entries"].as_array().cloned().unwrap_or_default();
        let got: Vec<(u64, String)> = entries
            .iter()
            .map(|e| {
                (
                    e["index"].as_u64().unwrap_or(u64::MAX),
                    e["value"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let want: Vec<(u64, String)> = (0..n).map(|j| (j as u64, value(rep, j))).collect();
        if got != want {
            return Err(format!("pod {i}: get --all found {got:?}"));
        }
        if a.read < trigger {
            return Err(format!("pod {i} answered before the last put"));
        }
    }
    latency(&gets, trigger)
}

fn value(rep: usize, i: usize) -> String {
    format!("rep{rep}-pod{i}-{}", 8000 + i)
}

/// One `peergate get` of a value already published, spawn to exit (ms).
fn client_rep(k: &Knobs, g: &Group) -> Result<f64, String> {
    let mut cmd = Command::new(&k.peergate);
    cmd.args([
        "get",
        "v0",
        "--index",
        "0",
        "--port",
        &AWAIT_BASE.to_string(),
    ])
    .env_clear()
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    netns::spawn_into(&mut cmd, &g.netns);
    let t = now_ns();
    let out = cmd
        .output()
        .map_err(|e| format!("spawn peergate get: {e}"))?;
    let took = (now_ns() - t) as f64 / 1e6;
    let printed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || printed.trim() != value(0, 0) {
        return Err(format!("peergate get: {} printed {printed:?}", out.status));
    }
    Ok(took)
}

struct SizeResult {
    n: usize,
    barrier: Vec<f64>,
    get_all: Vec<f64>,
    client: Vec<f64>,
    error: Option<String>,
    notes: Vec<String>,
}

fn run_size(k: &Knobs, n: usize) -> SizeResult {
    let mut r = SizeResult {
        n,
        barrier: Vec::new(),
        get_all: Vec::new(),
        client: Vec::new(),
        error: None,
        notes: Vec::new(),
    };
    let mut bed = Bed::new(BedConfig::default());
    let g = match Group::start(k, &mut bed, n) {
        Ok(g) => g,
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    };
    let step = (|| -> Result<(), String> {
        for rep in 0..k.exchange_reps {
            r.barrier.push(barrier_rep(&g, rep)?);
            r.get_all.push(get_all_rep(&g, rep)?);
            r.client.push(client_rep(k, &g)?);
            eprintln!(
                "bench: exchange {n} pods rep {rep}: barrier {:.1} ms, get --all {:.1} ms, client {:.1} ms",
                r.barrier[rep], r.get_all[rep], r.client[rep]
            );
        }
        Ok(())
    })();
    if let Err(e) = step {
        r.error = Some(e);
    }
    r.notes.extend(g.stop());
    r
}

pub fn run_all(k: &Knobs, binary: &str) {
    let started = Instant::now();
    let load_start = loadavg();
    let tree = tree_line();
    assert!(
        k.exchange.iter().all(|&n| n <= 1000),
        "PEERGATE_BENCH_EXCHANGE: at most 1000 pods"
    );
    let results: Vec<SizeResult> = k.exchange.iter().map(|&n| run_size(k, n)).collect();
    let md = markdown(k, binary, &tree, &load_start, started.elapsed(), &results);
    crate::rounds::print_section(&md, k.exchange_out.as_deref());
}

fn stats(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some((s[s.len() / 2], s[s.len() - 1]))
}

fn markdown(
    k: &Knobs,
    binary: &str,
    tree: &str,
    load_start: &str,
    took: Duration,
    results: &[SizeResult],
) -> String {
    let mut s = String::new();
    let w = &mut s;
    writeln!(w, "## Workload API: barrier and get --all (generated)\n").unwrap();
    writeln!(
        w,
        "{binary} Tree: {tree}; {} repetitions per size; load average {load_start} at the \
         start, {} at the end; took {:.0} s.\n",
        k.exchange_reps,
        loadavg(),
        took.as_secs_f64()
    )
    .unwrap();
    writeln!(
        w,
        "| pods | figure | median ms | worst ms | runs | target |\n|---|---|---|---|---|---|"
    )
    .unwrap();
    for r in results {
        for (name, v, target) in [
            ("barrier: last entry → passed everywhere", &r.barrier, true),
            (
                "get --all: last put → answered everywhere",
                &r.get_all,
                true,
            ),
            ("client: one `peergate get`, spawn → exit", &r.client, false),
        ] {
            let (med, worst) = stats(v).map_or(("–".into(), "–".into()), |(m, x)| {
                (format!("{m:.1}"), format!("{x:.1}"))
            });
            let target = if target && r.n == TARGET_PODS {
                format!("≤ {TARGET_MS:.0} ms")
            } else {
                String::new()
            };
            writeln!(
                w,
                "| {} | {name} | {med} | {worst} | {} | {target} |",
                r.n,
                v.len()
            )
            .unwrap();
        }
    }
    for r in results {
        if let Some(e) = &r.error {
            writeln!(w, "\n{} pods stopped early: {e}", r.n).unwrap();
        }
        for note in &r.notes {
            writeln!(w, "\n{} pods: {note}", r.n).unwrap();
        }
        let all: Vec<String> = r
            .barrier
            .iter()
            .zip(&r.get_all)
            .map(|(b, g)| format!("{b:.1}/{g:.1}"))
            .collect();
        if !all.is_empty() {
            writeln!(
                w,
                "\n{} pods, each run (barrier/get --all ms): {}",
                r.n,
                all.join(", ")
            )
            .unwrap();
        }
    }
    s
}

//! Rounds of the serving sidecar with `peergate run` (the restart path):
//! how long a group takes to restart its workload in every pod.
//!
//! ```text
//!  namespace <id>r (one "node")
//!  ┌──────────────────────────────────────────────────────────────────────┐
//!  │ lo: 10.250.a.b/32 × N, one per "pod"                                 │
//!  │ pod i: peergate --mode barrier --serve --hosts A0..A(N-1) --index i  │
//!  │          --listen Ai --port 7470 --await-port Qi --health-port Hi    │
//!  │        peergate run --port Qi --grace 1s --max-restarts 100          │
//!  │          -- bench --rounds-cmd stamps/<i>   (the workload, "CMD")    │
//!  └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Like barrier_scale.rs, every "pod" is one address on the loopback of a
//! single namespace; the sidecars find each other by address (`--hosts`),
//! so no DNS is involved. The await port is bound on 127.0.0.1, so each pod
//! has its own (Qi = 20000 + i), and so has its health port (21000 + i).
//! Each pod is two processes started straight into the namespace (setns(2)
//! between fork and exec): its sidecar and its `peergate run`.
//!
//! The workload is this binary re-executed as `--rounds-cmd FILE`: on start
//! it appends `start <PEERGATE_ROUND> <PEERGATE_RANK> <pid> <ns>` to FILE,
//! then waits for a signal; on SIGTERM it appends `term <round> <ns>` and
//! exits 0; on SIGUSR1 `fail <round> <ns>` and exits 1 (the harness's way
//! of making one workload fail at a known time). Times are CLOCK_MONOTONIC
//! read by the workload itself (the clock behind `Instant` and behind the
//! harness's spawn stamps), so how often the harness polls does not matter.
//!
//! One group per size is started and reused: every repetition begins from
//! a settled group (every pod's workload started in the same round, then
//! [`SETTLE`] of quiet) and leaves one behind.
//!
//! * **Replacement** (one repetition): pod v's sidecar, its run and its
//!   workload get SIGKILL (a pod deleted); the harness waits until every
//!   other workload has got SIGTERM (its round ended on the loss), then
//!   [`Knobs::rounds_gap_ms`] more, and starts a new sidecar and a new run
//!   for v, with the same index and address. *Restart* = the new sidecar's
//!   spawn until the last other pod's workload of the next round has
//!   started (its own stamp). Also recorded: the same until v's own
//!   workload started too, until every sidecar logged the new round's
//!   release (log stamps, wall clock turned monotonic), until every other
//!   run logged that it started the command, and the kill until every other
//!   workload got SIGTERM.
//! * **Failure**: pod f's workload exits 1 (SIGUSR1 from the harness; it
//!   stamps the time just before exiting). *Stop* = that stamp until every
//!   other workload has got SIGTERM (their stamps); also until every
//!   workload of the next round has started, f's included.
//!
//! CPU is what every sidecar (and every run) used from the replacement's
//! spawn (the failure) until the harness saw every workload restarted
//! (/proc/<pid>/task/*/schedstat), beside the machine's idle share of that
//! window (/proc/stat); RSS is each process's VmHWM at the end of the
//! size's runs. At the end every run, then every sidecar, gets SIGTERM and
//! should exit 0 (anything else becomes a note in the report).
//!
//! Only a size's whole group is torn down on a failed step (its remaining
//! repetitions are skipped); every wait is bounded, and the bed's drop
//! kills whatever is left in the namespace and deletes it.
//!
//! What this bed leaves out compared with pods of a real cluster: the same
//! as barrier_scale.rs (loopback instead of a pod network, 2 cores for
//! every process), and in particular the replacement's start is a fork and
//! exec here, not a pod deletion, scheduling, a sandbox and containers:
//! *restart* counts from the moment the new sidecar process exists.

use crate::Knobs;
use crate::barrier_scale::cpu_ticks;
use crate::latency::parse_rfc3339_ns;
use crate::netns;
use crate::scale::peer_addr;
use crate::support::bed::{Bed, BedConfig};
use crate::wrap::now_ns;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `bench --rounds-cmd FILE`: the workload.
pub const CMD_FLAG: &str = "--rounds-cmd";

const BARRIER_PORT: u16 = 7470;
const AWAIT_BASE: u16 = 20000;
const HEALTH_BASE: u16 = 21000;
/// `peergate run --grace`: the workload exits at once on SIGTERM anyway.
const GRACE: &str = "1s";
/// Enough for every repetition of one group (each is one group restart).
const MAX_RESTARTS: &str = "100";
/// Bound on the group's first round (every workload started).
const FORM_LIMIT: Duration = Duration::from_secs(60);
/// Bound on every other workload getting SIGTERM after a kill or failure.
const TERM_LIMIT: Duration = Duration::from_secs(10);
/// Bound on every workload of the next round having started.
const RESTART_LIMIT: Duration = Duration::from_secs(30);
/// Quiet after the group settled, before the next repetition.
const SETTLE: Duration = Duration::from_millis(500);
/// How often the harness looks at the stamp files (only its own reaction
/// time: the figures come from the workloads' stamps).
const POLL: Duration = Duration::from_millis(10);
/// Bound on a process's exit after SIGKILL or SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(5);
/// Targets (ms) from the issue: restart after a replacement by size, and
/// every other workload stopped after a failure.
const REPLACE_TARGETS: &[(usize, f64)] = &[(16, 100.0), (64, 250.0)];
const FAIL_TARGETS: &[(usize, f64)] = &[(16, 50.0)];

// ---------------------------------------------------------------------------
// The workload.

fn append(path: &str, line: &str) {
    // One write(2) per line on an O_APPEND file: lines never interleave.
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(mut f) => {
            let _ = f.write_all(line.as_bytes());
        }
        Err(e) => eprintln!("bench {CMD_FLAG}: open {path}: {e}"),
    }
}

/// The workload process. Never returns.
pub fn cmd_main(args: &[String]) -> ! {
    let started = now_ns();
    let [path] = args else {
        eprintln!("usage: bench {CMD_FLAG} FILE");
        std::process::exit(2);
    };
    // SAFETY: an all-zero sigset is valid; sigemptyset/sigaddset fill it,
    // and blocking signals of our own thread is plain.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let round = std::env::var("PEERGATE_ROUND").unwrap_or_else(|_| "0".into());
    let rank = std::env::var("PEERGATE_RANK").unwrap_or_else(|_| "?".into());
    let pid = std::process::id();
    append(path, &format!("start {round} {rank} {pid} {started}\n"));
    loop {
        // SAFETY: sigwaitinfo on the set blocked above, a null info pointer.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        let at = now_ns();
        match sig {
            libc::SIGTERM | libc::SIGINT => {
                append(path, &format!("term {round} {at}\n"));
                std::process::exit(0);
            }
            libc::SIGUSR1 => {
                append(path, &format!("fail {round} {at}\n"));
                std::process::exit(1);
            }
            _ => continue, // EINTR
        }
    }
}

// ---------------------------------------------------------------------------
// Stamps.

#[derive(Default, Clone)]
struct Stamps {
    /// (round, pid, ns)
    starts: Vec<(u32, i32, u64)>,
    /// (round, ns)
    terms: Vec<(u32, u64)>,
    fails: Vec<(u32, u64)>,
    /// Bytes of the file parsed so far.
    len: u64,
}

impl Stamps {
    fn parse(text: &str) -> Stamps {
        let mut s = Stamps {
            len: text.len() as u64,
            ..Stamps::default()
        };
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let num = |k: usize| w.get(k).and_then(|x| x.parse::<u64>().ok());
            match w.first().copied() {
                Some("start") => {
                    if let (Some(r), Some(p), Some(t)) = (num(1), num(3), num(4)) {
                        s.starts.push((r as u32, p as i32, t));
                    }
                }
                Some("term") => {
                    if let (Some(r), Some(t)) = (num(1), num(2)) {
                        s.terms.push((r as u32, t));
                    }
                }
                Some("fail") => {
                    if let (Some(r), Some(t)) = (num(1), num(2)) {
                        s.fails.push((r as u32, t));
                    }
                }
                _ => {}
            }
        }
        s
    }

    /// The first start in a round after `r`: (round, pid, ns).
    fn start_after(&self, r: u32) -> Option<(u32, i32, u64)> {
        self.starts.iter().find(|s| s.0 > r).copied()
    }

    fn start_in(&self, r: u32) -> Option<(u32, i32, u64)> {
        self.starts.iter().rev().find(|s| s.0 == r).copied()
    }

    fn term_in(&self, r: u32) -> Option<u64> {
        self.terms.iter().find(|t| t.0 == r).map(|t| t.1)
    }

    fn fail_in(&self, r: u32) -> Option<u64> {
        self.fails.iter().find(|t| t.0 == r).map(|t| t.1)
    }
}

// ---------------------------------------------------------------------------
// Log stamps (peergate's text logs start with an RFC 3339 UTC stamp).

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns.
fn realtime_minus_monotonic_ns() -> i128 {
    let mono = now_ns() as i128;
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128;
    real - mono
}

/// The monotonic time (ns) of the first line of `path` containing any of
/// `needles`.
fn log_stamp(path: &Path, needles: &[&str], offset: i128) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .find(|l| needles.iter().any(|n| l.contains(n)))?;
    let real = parse_rfc3339_ns(line.split_whitespace().next()?)?;
    u64::try_from(real - offset).ok()
}

// ---------------------------------------------------------------------------
// The group.

struct Member {
    sidecar: Child,
    sidecar_log: PathBuf,
    run: Child,
    run_log: PathBuf,
}

struct Group {
    n: usize,
    netns: File,
    netns_path: PathBuf,
    dir: PathBuf,
    addrs: Vec<Ipv4Addr>,
    token: String,
    peergate: PathBuf,
    me: PathBuf,
    members: Vec<Option<Member>>,
    gens: Vec<u32>,
    stamp_paths: Vec<PathBuf>,
    stamps: Vec<Stamps>,
    offset: i128,
    /// Things about the product seen on the way (not failures).
    notes: Vec<String>,
}

/// CPU time (ns) of process `pid` so far, every thread.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// VmHWM (kB) of process `pid`: its own peak, reset at exec.
fn hwm_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits at most `limit` for `child` to exit; its exit code (128 + signal).
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                return Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => return None,
        }
    }
}

impl Group {
    fn new(k: &Knobs, bed: &mut Bed, n: usize) -> Result<Group, String> {
        let addrs: Vec<Ipv4Addr> = (0..n).map(peer_addr).collect();
        let (netns, netns_path) = netns::lean(bed, &format!("{}r", bed.id), &addrs)?;
        let dir = bed.dir.join(format!("rounds{n}"));
        std::fs::create_dir_all(dir.join("stamps"))
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
        let stamp_paths = (0..n)
            .map(|i| dir.join("stamps").join(i.to_string()))
            .collect();
        Ok(Group {
            n,
            netns,
            netns_path,
            dir,
            addrs,
            token: format!("bench-{}", bed.id),
            peergate: k.peergate.clone(),
            me: std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
            members: (0..n).map(|_| None).collect(),
            gens: vec![0; n],
            stamp_paths,
            stamps: vec![Stamps::default(); n],
            offset: realtime_minus_monotonic_ns(),
            notes: Vec::new(),
        })
    }

    fn sidecar_argv(&self, i: usize) -> Vec<String> {
        let hosts: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        [
            self.peergate.display().to_string(),
            "--mode".into(),
            "barrier".into(),
            "--serve".into(),
            "--hosts".into(),
            hosts.join(","),
            "--index".into(),
            i.to_string(),
            "--listen".into(),
            self.addrs[i].to_string(),
            "--token".into(),
            self.token.clone(),
            "--port".into(),
            BARRIER_PORT.to_string(),
            "--await-port".into(),
            (AWAIT_BASE + i as u16).to_string(),
            "--health-port".into(),
            (HEALTH_BASE + i as u16).to_string(),
        ]
        .into()
    }

    fn run_argv(&self, i: usize) -> Vec<String> {
        [
            self.peergate.display().to_string(),
            "run".into(),
            "--port".into(),
            (AWAIT_BASE + i as u16).to_string(),
            "--grace".into(),
            GRACE.into(),
            "--max-restarts".into(),
            MAX_RESTARTS.into(),
            "--".into(),
            self.me.display().to_string(),
            CMD_FLAG.into(),
            self.stamp_paths[i].display().to_string(),
        ]
        .into()
    }

    /// Starts `argv` in the namespace, stderr to `log`; the CLOCK_MONOTONIC
    /// time taken just before the fork.
    fn spawn(&self, argv: &[String], log: &Path) -> Result<(Child, u64), String> {
        let err = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0);
        netns::spawn_into(&mut cmd, &self.netns);
        let start = now_ns();
        let child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", argv[0]))?;
        Ok((child, start))
    }

    /// Starts pod `i`'s sidecar and run; the sidecar's spawn time.
    fn start_member(&mut self, i: usize) -> Result<u64, String> {
        self.gens[i] += 1;
        let g = self.gens[i];
        let sidecar_log = self.dir.join(format!("p{i}.g{g}.sidecar.log"));
        let run_log = self.dir.join(format!("p{i}.g{g}.run.log"));
        let (sidecar, at) = self.spawn(&self.sidecar_argv(i), &sidecar_log)?;
        let (run, _) = match self.spawn(&self.run_argv(i), &run_log) {
            Ok(r) => r,
            Err(e) => {
                let mut sidecar = sidecar;
                let _ = sidecar.kill();
                let _ = wait_bounded(&mut sidecar, EXIT_LIMIT);
                return Err(e);
            }
        };
        self.members[i] = Some(Member {
            sidecar,
            sidecar_log,
            run,
            run_log,
        });
        Ok(at)
    }

    /// SIGKILL to pod `i`'s workload (its process group), sidecar and run:
    /// the pod deleted. The time just before the first kill.
    fn kill_member(&mut self, i: usize) -> u64 {
        self.refresh();
        let cmd = self.stamps[i].starts.last().map(|s| s.1);
        let at = now_ns();
        if let Some(pid) = cmd.filter(|&p| p > 1) {
            // SAFETY: kill(2) of the workload's process group (it leads one:
            // peergate run starts it so), inside our namespace.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        if let Some(mut m) = self.members[i].take() {
            let _ = m.sidecar.kill();
            let _ = m.run.kill();
            if wait_bounded(&mut m.sidecar, EXIT_LIMIT).is_none()
                || wait_bounded(&mut m.run, EXIT_LIMIT).is_none()
            {
                self.notes.push(format!(
                    "pod {i}: a process outlived SIGKILL by {EXIT_LIMIT:?}"
                ));
            }
        }
        at
    }

    /// Reads the stamp files that grew.
    fn refresh(&mut self) {
        for i in 0..self.n {
            let len = std::fs::metadata(&self.stamp_paths[i]).map_or(0, |m| m.len());
            if len != self.stamps[i].len {
                let text = std::fs::read_to_string(&self.stamp_paths[i]).unwrap_or_default();
                self.stamps[i] = Stamps::parse(&text);
            }
        }
    }

    /// Polls until `done` holds, at most `limit`.
    fn wait_until(&mut self, limit: Duration, done: impl Fn(&[Stamps]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.refresh();
            if done(&self.stamps) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Pods (of `which`) whose workload has not started a round after `r`.
    fn not_started(&self, r: u32, which: impl Iterator<Item = usize>) -> Vec<usize> {
        which
            .filter(|&i| self.stamps[i].start_after(r).is_none())
            .collect()
    }

    fn pids(&self) -> (Vec<u32>, Vec<u32>) {
        let m = self.members.iter().flatten();
        (
            m.clone().map(|m| m.sidecar.id()).collect(),
            m.map(|m| m.run.id()).collect(),
        )
    }

    /// CPU (ns) of every sidecar and every run so far.
    fn cpu(&self) -> (u64, u64) {
        let (s, r) = self.pids();
        (
            s.into_iter().map(cpu_ns).sum(),
            r.into_iter().map(cpu_ns).sum(),
        )
    }

    /// The last lines of a few pods' logs, for a failed step.
    fn dump(&self, which: &[usize]) {
        for &i in which.iter().take(3) {
            let Some(m) = &self.members[i] else { continue };
            for (what, path) in [("sidecar", &m.sidecar_log), ("run", &m.run_log)] {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("bench: --- rounds pod {i} {what} (last lines)");
                for l in &lines[lines.len().saturating_sub(6)..] {
                    eprintln!("  {l}");
                }
            }
        }
    }

    /// `/metrics` of every sidecar (None where it did not answer), fetched
    /// from a thread that joined the namespace: loopback inside it only.
    fn metrics(&self) -> Vec<Option<String>> {
        let path = self.netns_path.clone();
        let n = self.n;
        let fetch = move || -> Vec<Option<String>> {
            if netns::join(&path).is_err() {
                return vec![None; n];
            }
            (0..n)
                .map(|i| {
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, HEALTH_BASE + i as u16));
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
                        .ok()?;
                    let mut text = String::new();
                    s.read_to_string(&mut text).ok()?;
                    Some(text)
                })
                .collect()
        };
        std::thread::spawn(fetch)
            .join()
            .unwrap_or_else(|_| vec![None; n])
    }

    /// Sends `sig` to every run (then every sidecar) and collects the exit
    /// codes; a code other than 0 becomes a note.
    fn stop_all(&mut self) {
        for which in ["run", "sidecar"] {
            for m in self.members.iter().flatten() {
                let pid = if which == "run" {
                    m.run.id()
                } else {
                    m.sidecar.id()
                };
                // SAFETY: kill(2) of our own unreaped child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            let mut bad = Vec::new();
            for (i, m) in self.members.iter_mut().enumerate() {
                let Some(m) = m else { continue };
                let child = if which == "run" {
                    &mut m.run
                } else {
                    &mut m.sidecar
                };
                match wait_bounded(child, EXIT_LIMIT) {
                    Some(0) => {}
                    Some(c) => bad.push(format!("pod {i}: {c}")),
                    None => bad.push(format!("pod {i}: still running after {EXIT_LIMIT:?}")),
                }
            }
            if !bad.is_empty() {
                let shown = bad.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
                self.notes.push(format!(
                    "{} pods: on SIGTERM, {} {which}(s) did not exit 0 ({shown})",
                    self.n,
                    bad.len()
                ));
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for m in self.members.iter_mut().flatten() {
            let _ = m.sidecar.kill();
            let _ = m.run.kill();
            let _ = wait_bounded(&mut m.sidecar, EXIT_LIMIT);
            let _ = wait_bounded(&mut m.run, EXIT_LIMIT);
        }
        // Workloads left behind (their run killed) die with the namespace:
        // Bed's drop kills every process in it.
    }
}

// ---------------------------------------------------------------------------
// Repetitions.

#[derive(Default, Clone)]
pub struct Rep {
    pub pod: usize,
    /// The round that ended, and the one that followed.
    pub from: u32,
    pub to: u32,
    pub ok: bool,
    pub why: String,
    /// The headline figure (ms): restart of every other pod's workload
    /// (replacement), or every other workload stopped (failure).
    pub main_ms: Option<f64>,
    /// Every workload of the next round started, the pod's own included.
    pub all_ms: Option<f64>,
    /// Every sidecar logged the next round's release.
    pub release_ms: Option<f64>,
    /// Every other run logged it started its command.
    pub run_ms: Option<f64>,
    /// Replacement: the kill until every other workload got SIGTERM.
    pub term_ms: Option<f64>,
    /// Replacement: the new sidecar's own release (its log).
    pub own_release_ms: Option<f64>,
    /// CPU of all sidecars, all runs (ms), from the replacement's spawn
    /// (the failure) until the harness saw every workload restarted, and
    /// the share of the machine's CPU time nobody used meanwhile.
    pub cpu_sidecars_ms: Option<f64>,
    pub cpu_runs_ms: Option<f64>,
    pub idle_pct: Option<f64>,
    /// peergate_round_last_formation_seconds (ms): the replacement's and
    /// the largest of the others'.
    pub formation_new_ms: Option<f64>,
    pub formation_max_ms: Option<f64>,
}

#[derive(Default)]
pub struct SizeResult {
    pub n: usize,
    pub form_ms: Option<f64>,
    pub replace: Vec<Rep>,
    pub fail: Vec<Rep>,
    /// (median, max) over the processes alive at the end.
    pub sidecar_rss_kb: Option<(f64, f64)>,
    pub run_rss_kb: Option<(f64, f64)>,
    pub sidecar_cpu_ms: Option<(f64, f64)>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

impl Rep {
    /// CPU used since `before` (sidecars, runs) and `ticks0`. A process
    /// started meanwhile counts whole; one that ended is left out, so the
    /// window must not contain a kill.
    fn cpu(&mut self, g: &Group, before: (u64, u64), ticks0: Option<(u64, u64)>) {
        let (s, r) = g.cpu();
        self.cpu_sidecars_ms = Some(ms(s.saturating_sub(before.0)));
        self.cpu_runs_ms = Some(ms(r.saturating_sub(before.1)));
        if let (Some((b0, a0)), Some((b1, a1))) = (ticks0, cpu_ticks())
            && a1 > a0
        {
            self.idle_pct = Some(100.0 * (1.0 - (b1 - b0) as f64 / (a1 - a0) as f64));
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn since(t0: u64, t: u64) -> f64 {
    (t as f64 - t0 as f64) / 1e6
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Round of every sidecar per /metrics, and the replaced pod's and the
/// others' largest last formation (ms).
fn read_metrics(g: &mut Group, r: &mut Rep, new_pod: Option<usize>) {
    let texts = g.metrics();
    let rounds: Vec<Option<f64>> = texts
        .iter()
        .map(|t| t.as_deref().and_then(|t| metric(t, "peergate_round")))
        .collect();
    let off: Vec<String> = rounds
        .iter()
        .enumerate()
        .filter(|(_, x)| **x != Some(r.to as f64))
        .map(|(i, x)| format!("pod {i}: {x:?}"))
        .take(5)
        .collect();
    if !off.is_empty() {
        g.notes.push(format!(
            "{} pods, after the restart to round {}: /metrics peergate_round differs ({})",
            g.n,
            r.to,
            off.join(", ")
        ));
    }
    let form: Vec<Option<f64>> = texts
        .iter()
        .map(|t| {
            t.as_deref()
                .and_then(|t| metric(t, "peergate_round_last_formation_seconds"))
                .map(|s| s * 1000.0)
        })
        .collect();
    r.formation_new_ms = new_pod.and_then(|v| form[v]);
    r.formation_max_ms = form
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_pod)
        .filter_map(|(_, f)| *f)
        .reduce(f64::max);
}

/// Every sidecar's first log line of round `r`'s release, and every run's
/// (but `skip`'s) start of the command in it: (latest sidecar, latest run,
/// pod `own`'s sidecar) in ns.
fn log_times(g: &Group, r: u32, skip: Option<usize>) -> (Option<u64>, Option<u64>, Option<u64>) {
    let released = format!("round {r} released:");
    let serving = format!("in round {r}; serving");
    let started = format!("round {r}: started the command");
    let mut sidecars = Some(0u64);
    let mut runs = Some(0u64);
    let mut own = None;
    for (i, m) in g.members.iter().enumerate() {
        let Some(m) = m else {
            sidecars = None;
            runs = None;
            continue;
        };
        let s = log_stamp(&m.sidecar_log, &[&released, &serving], g.offset);
        if Some(i) == skip {
            own = s;
        }
        sidecars = sidecars.zip(s).map(|(a, b)| a.max(b));
        if Some(i) != skip {
            let t = log_stamp(&m.run_log, &[&started], g.offset);
            runs = runs.zip(t).map(|(a, b)| a.max(b));
        }
    }
    (sidecars, runs, own)
}

/// The round every pod's workload runs in, once they all run the same.
fn settled_round(g: &Group) -> Result<u32, String> {
    let rounds: Vec<Option<u32>> = g
        .stamps
        .iter()
        .map(|s| s.starts.last().map(|x| x.0))
        .collect();
    let first = rounds[0].ok_or("pod 0 has no workload")?;
    if rounds.iter().all(|r| *r == Some(first)) {
        Ok(first)
    } else {
        Err(format!("workloads in different rounds: {rounds:?}"))
    }
}

/// Why the workloads of `others` that got no SIGTERM in round `from` fail
/// the repetition (their logs are dumped).
fn no_term(g: &Group, from: u32, others: impl Iterator<Item = usize>, after: &str) -> String {
    let missing: Vec<usize> = others
        .filter(|&i| g.stamps[i].term_in(from).is_none())
        .collect();
    g.dump(&missing);
    format!(
        "{} other workload(s) had no SIGTERM {TERM_LIMIT:?} after {after}",
        missing.len()
    )
}

/// Waits until every pod's workload has started a round after round
/// `from`; the error names how many did not, `after` saying after what.
fn all_restarted(g: &mut Group, from: u32, n: usize, after: &str) -> Result<(), String> {
    if g.wait_until(RESTART_LIMIT, |s| {
        (0..n).all(|i| s[i].start_after(from).is_some())
    }) {
        return Ok(());
    }
    let missing = g.not_started(from, 0..n);
    g.dump(&missing);
    Err(format!(
        "{} workload(s) not restarted {RESTART_LIMIT:?} after {after}",
        missing.len()
    ))
}

fn replace_once(k: &Knobs, g: &mut Group, v: usize) -> Rep {
    let n = g.n;
    let mut r = Rep {
        pod: v,
        ..Rep::default()
    };
    g.refresh();
    let from = match settled_round(g) {
        Ok(x) => x,
        Err(e) => {
            r.why = e;
            return r;
        }
    };
    r.from = from;
    let killed = g.kill_member(v);
    let others = || (0..n).filter(move |&i| i != v);
    if !g.wait_until(TERM_LIMIT, |s| {
        others().all(|i| s[i].term_in(from).is_some())
    }) {
        r.why = no_term(g, from, others(), &format!("pod {v} was killed"));
        return r;
    }
    let last_term = others()
        .filter_map(|i| g.stamps[i].term_in(from))
        .max()
        .unwrap_or(0);
    r.term_ms = Some(since(killed, last_term));
    std::thread::sleep(Duration::from_millis(k.rounds_gap_ms));
    let (cs0, cr0) = g.cpu();
    let ticks0 = cpu_ticks();
    let spawned = match g.start_member(v) {
        Ok(t) => t,
        Err(e) => {
            r.why = format!("starting the replacement: {e}");
            return r;
        }
    };
    if let Err(why) = all_restarted(g, from, n, "the replacement started") {
        r.why = why;
        return r;
    }
    r.cpu(g, (cs0, cr0), ticks0);
    let starts: Vec<(u32, i32, u64)> = (0..n)
        .map(|i| g.stamps[i].start_after(from).unwrap())
        .collect();
    r.to = starts.iter().map(|s| s.0).max().unwrap_or(0);
    if starts.iter().any(|s| s.0 != r.to) {
        let rounds: Vec<u32> = starts.iter().map(|s| s.0).collect();
        g.notes.push(format!(
            "{n} pods, replacing pod {v} after round {from}: the workloads restarted in different \
             rounds ({rounds:?})"
        ));
    } else if r.to != from + 1 {
        g.notes.push(format!(
            "{n} pods, replacing pod {v} after round {from}: the next workloads ran in round {} \
             (not {})",
            r.to,
            from + 1
        ));
    }
    let last_other = others().map(|i| starts[i].2).max().unwrap_or(0);
    let last_all = starts.iter().map(|s| s.2).max().unwrap_or(0);
    r.main_ms = Some(since(spawned, last_other));
    r.all_ms = Some(since(spawned, last_all));
    let (sidecars, runs, own) = log_times(g, r.to, Some(v));
    r.release_ms = sidecars.map(|t| since(spawned, t));
    r.run_ms = runs.map(|t| since(spawned, t));
    r.own_release_ms = own.map(|t| since(spawned, t));
    read_metrics(g, &mut r, Some(v));
    std::thread::sleep(SETTLE);
    r.ok = true;
    r
}

fn fail_once(g: &mut Group, f: usize) -> Rep {
    let n = g.n;
    let mut r = Rep {
        pod: f,
        ..Rep::default()
    };
    g.refresh();
    let from = match settled_round(g) {
        Ok(x) => x,
        Err(e) => {
            r.why = e;
            return r;
        }
    };
    r.from = from;
    let Some((_, pid, _)) = g.stamps[f].start_in(from) else {
        r.why = format!("pod {f} has no workload in round {from}");
        return r;
    };
    let (cs0, cr0) = g.cpu();
    let ticks0 = cpu_ticks();
    // SAFETY: kill(2) of pod f's workload, inside our namespace.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let others = || (0..n).filter(move |&i| i != f);
    let stopped = g.wait_until(TERM_LIMIT, |s| {
        s[f].fail_in(from).is_some() && others().all(|i| s[i].term_in(from).is_some())
    });
    let Some(failed) = g.stamps[f].fail_in(from) else {
        r.why = format!("pod {f}'s workload did not stamp its failure");
        return r;
    };
    if !stopped {
        r.why = no_term(g, from, others(), &format!("pod {f}'s failed"));
        return r;
    }
    let last_term = others()
        .filter_map(|i| g.stamps[i].term_in(from))
        .max()
        .unwrap_or(0);
    r.main_ms = Some(since(failed, last_term));
    if let Err(why) = all_restarted(g, from, n, &format!("pod {f}'s failure")) {
        r.why = why;
        return r;
    }
    r.cpu(g, (cs0, cr0), ticks0);
    let starts: Vec<(u32, i32, u64)> = (0..n)
        .map(|i| g.stamps[i].start_after(from).unwrap())
        .collect();
    r.to = starts.iter().map(|s| s.0).max().unwrap_or(0);
    if starts.iter().any(|s| s.0 != r.to) || r.to != from + 1 {
        let rounds: Vec<u32> = starts.iter().map(|s| s.0).collect();
        g.notes.push(format!(
            "{n} pods, pod {f} failing in round {from}: the workloads restarted in rounds {rounds:?}"
        ));
    }
    r.all_ms = Some(since(failed, starts.iter().map(|s| s.2).max().unwrap_or(0)));
    let (sidecars, runs, _) = log_times(g, r.to, None);
    r.release_ms = sidecars.map(|t| since(failed, t));
    r.run_ms = runs.map(|t| since(failed, t));
    read_metrics(g, &mut r, None);
    std::thread::sleep(SETTLE);
    r.ok = true;
    r
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn med_max(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut w = v.to_vec();
    let m = median(&mut w);
    Some((m, v.iter().copied().fold(f64::MIN, f64::max)))
}

/// One size: start a group, replace, fail, measure, stop.
fn run_size(k: &Knobs, n: usize, replace: bool, fail: bool) -> SizeResult {
    let mut out = SizeResult {
        n,
        ..SizeResult::default()
    };
    let mut bed = Bed::new(BedConfig {
        dns_up: false,
        ..BedConfig::default()
    });
    let mut g = match Group::new(k, &mut bed, n) {
        Ok(g) => g,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let t0 = now_ns();
    for i in 0..n {
        if let Err(e) = g.start_member(i) {
            out.error = Some(format!("starting pod {i}: {e}"));
            return out;
        }
    }
    if !g.wait_until(FORM_LIMIT, |s| s.iter().all(|s| s.start_after(0).is_some())) {
        let missing = g.not_started(0, 0..n);
        g.dump(&missing);
        out.error = Some(format!(
            "{} workload(s) not started {FORM_LIMIT:?} after the group's start",
            missing.len()
        ));
        return out;
    }
    let last = g
        .stamps
        .iter()
        .filter_map(|s| s.start_after(0))
        .map(|s| s.2)
        .max();
    out.form_ms = last.map(|t| since(t0, t));
    std::thread::sleep(SETTLE);
    let reps = k.rounds_reps;
    if replace {
        for rep in 0..reps {
            let v = (1 + rep * 7) % n;
            let t = Instant::now();
            let r = replace_once(k, &mut g, v);
            eprintln!(
                "bench: rounds {n} pods, replacement {}/{reps} (pod {v}): {} (took {:.1}s)",
                rep + 1,
                describe(&r),
                t.elapsed().as_secs_f64()
            );
            let ok = r.ok;
            out.replace.push(r);
            if !ok {
                out.error =
                    Some("a replacement failed; the group's remaining runs were skipped".into());
                break;
            }
        }
    }
    if fail && out.error.is_none() {
        for rep in 0..reps {
            let f = (3 + rep * 5) % n;
            let t = Instant::now();
            let r = fail_once(&mut g, f);
            eprintln!(
                "bench: rounds {n} pods, failure {}/{reps} (pod {f}): {} (took {:.1}s)",
                rep + 1,
                describe(&r),
                t.elapsed().as_secs_f64()
            );
            let ok = r.ok;
            out.fail.push(r);
            if !ok {
                out.error =
                    Some("a failure run failed; the group's remaining runs were skipped".into());
                break;
            }
        }
    }
    let (s, r) = g.pids();
    let rss = |p: &[u32]| {
        med_max(
            &p.iter()
                .filter_map(|&p| hwm_kb(p))
                .map(|x| x as f64)
                .collect::<Vec<_>>(),
        )
    };
    out.sidecar_rss_kb = rss(&s);
    out.run_rss_kb = rss(&r);
    out.sidecar_cpu_ms = med_max(&s.iter().map(|&p| ms(cpu_ns(p))).collect::<Vec<_>>());
    g.stop_all();
    out.notes = std::mem::take(&mut g.notes);
    drop(g);
    drop(bed);
    out
}

fn describe(r: &Rep) -> String {
    if !r.ok {
        return format!("FAILED: {}", r.why);
    }
    let f = |x: Option<f64>| x.map_or("?".into(), |x| format!("{x:.1}"));
    format!(
        "round {}→{}: {} ms (all {} ms, sidecars released {} ms)",
        r.from,
        r.to,
        f(r.main_ms),
        f(r.all_ms),
        f(r.release_ms)
    )
}

pub fn run_all(k: &Knobs, binary: &str) {
    let started = Instant::now();
    let load_start = loadavg();
    let tree = tree_line();
    let mut sizes: Vec<usize> = k.rounds.iter().chain(&k.rounds_fail).copied().collect();
    sizes.sort_unstable();
    sizes.dedup();
    // Await ports 20000 + i and health ports 21000 + i must not meet.
    assert!(
        sizes.iter().all(|&n| n <= 1000),
        "PEERGATE_BENCH_ROUNDS(_FAIL): at most 1000 pods"
    );
    let mut results = Vec::new();
    for n in sizes {
        let t = Instant::now();
        let r = run_size(k, n, k.rounds.contains(&n), k.rounds_fail.contains(&n));
        eprintln!(
            "bench: rounds {n} pods: {} (took {:.1}s)",
            r.error.as_deref().unwrap_or("done"),
            t.elapsed().as_secs_f64()
        );
        results.push(r);
    }
    let md = markdown(k, binary, &tree, &load_start, started.elapsed(), &results);
    print_section(&md, k.rounds_out.as_deref());
}

// ---------------------------------------------------------------------------
// The report.

/// Prints a generated section, and writes it to `out` when given (the
/// rounds', the workload API's and the soak's `PEERGATE_BENCH_*_OUT`).
pub(crate) fn print_section(md: &str, out: Option<&Path>) {
    println!("{md}");
    if let Some(path) = out {
        match std::fs::write(path, md) {
            Ok(()) => eprintln!("bench: wrote {}", path.display()),
            Err(e) => eprintln!("bench: cannot write {}: {e}", path.display()),
        }
    }
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The commit, and whether the files the binary is built from differ.
pub(crate) fn tree_line() -> String {
    let head = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "?".into());
    let dirty = match git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ]) {
        Some(s) if s.is_empty() => String::new(),
        Some(s) => format!(
            " with uncommitted changes ({} path(s) in src/ or the Cargo files: {})",
            s.lines().count(),
            s.lines()
                .take(6)
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        None => " (working tree unknown)".into(),
    };
    format!("commit {head}{dirty}")
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.1}"))
}

fn target_of(table: &[(usize, f64)], n: usize) -> Option<f64> {
    table.iter().find(|(m, _)| *m == n).map(|(_, t)| *t)
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
    let env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PEERGATE_BENCH_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    writeln!(
        w,
        "## Rounds: restart after a replacement or a failure (generated)\n"
    )
    .unwrap();
    writeln!(
        w,
        "Produced by `{} cargo bench --bench bench` (benches/bench/rounds.rs) on {}; the \
         benchmark's tree at {}.\n",
        env.join(" "),
        crate::report::machine(),
        tree
    )
    .unwrap();
    writeln!(w, "{binary}\n").unwrap();
    writeln!(
        w,
        "Load average (1, 5, 15 min) at the start: {load_start}; at the end: {}. This part took \
         {:.0} s. {} repetitions per figure; gap between the other workloads' SIGTERM and the \
         replacement's start: {} ms; {} ms of quiet before each repetition.\n",
        loadavg(),
        took.as_secs_f64(),
        k.rounds_reps,
        k.rounds_gap_ms,
        SETTLE.as_millis()
    )
    .unwrap();
    writeln!(
        w,
        "| figure | pods | ok | median (ms) | worst (ms) | target (ms) | verdict |"
    )
    .unwrap();
    writeln!(w, "|---|---:|---:|---:|---:|---:|---|").unwrap();
    type Pick = fn(&Rep) -> Option<f64>;
    type Row = (&'static str, bool, Pick, &'static [(usize, f64)]);
    let rows: [Row; 12] = [
        (
            "(a) replacement start → every other workload restarted",
            true,
            |r| r.main_ms,
            REPLACE_TARGETS,
        ),
        (
            "(a) … → every workload restarted (the new pod's too)",
            true,
            |r| r.all_ms,
            &[],
        ),
        (
            "(a) … → every sidecar logged the new round's release",
            true,
            |r| r.release_ms,
            &[],
        ),
        (
            "(a) … → every other run logged its command started",
            true,
            |r| r.run_ms,
            &[],
        ),
        (
            "(a) kill → every other workload got SIGTERM",
            true,
            |r| r.term_ms,
            &[],
        ),
        (
            "(b) workload failure → every other workload got SIGTERM",
            false,
            |r| r.main_ms,
            FAIL_TARGETS,
        ),
        (
            "(b) … → every sidecar logged the new round's release",
            false,
            |r| r.release_ms,
            &[],
        ),
        ("(b) … → every workload restarted", false, |r| r.all_ms, &[]),
        (
            "(a) CPU of all sidecars, replacement start → restarted",
            true,
            |r| r.cpu_sidecars_ms,
            &[],
        ),
        (
            "(a) CPU of all runs, replacement start → restarted",
            true,
            |r| r.cpu_runs_ms,
            &[],
        ),
        (
            "(a) idle CPU of the machine meanwhile (%, not ms)",
            true,
            |r| r.idle_pct,
            &[],
        ),
        (
            "(b) CPU of all sidecars, failure → restarted",
            false,
            |r| r.cpu_sidecars_ms,
            &[],
        ),
    ];
    for (label, replace, pick, targets) in rows {
        for res in results {
            let reps = if replace { &res.replace } else { &res.fail };
            if reps.is_empty() {
                continue;
            }
            let v: Vec<f64> = reps.iter().filter(|r| r.ok).filter_map(pick).collect();
            let ok = reps.iter().filter(|r| r.ok).count();
            let mm = med_max(&v);
            let target = target_of(targets, res.n);
            let verdict = match (mm, target) {
                (_, None) => "–".to_string(),
                (None, Some(_)) => "no data".into(),
                (Some((m, x)), Some(t)) if x <= t && ok == reps.len() => {
                    let _ = m;
                    "met (every run)".into()
                }
                (Some((m, _)), Some(t)) if m <= t => "median met, worst missed".into(),
                _ => "missed".into(),
            };
            writeln!(
                w,
                "| {label} | {} | {ok}/{} | {} | {} | {} | {verdict} |",
                res.n,
                reps.len(),
                fmt(mm.map(|x| x.0)),
                fmt(mm.map(|x| x.1)),
                target.map_or("–".into(), |t| format!("{t:.0}")),
            )
            .unwrap();
        }
    }
    writeln!(w, "\n### Raw runs\n").unwrap();
    writeln!(
        w,
        "Times in ms from the replacement's sidecar spawn (a) or the failing workload's stamp \
         (b). *others* = the headline figure; *all* = every workload of the next round started; \
         *released* = the last sidecar's release log line; *runs* = the last other run's \
         `started the command` line; *own rel.* = the new sidecar's own release; *term* = the \
         kill until the last other SIGTERM; *form new/max* = `peergate_round_last_formation_seconds` \
         of the new sidecar / the largest of the others (from /metrics, after the restart); CPU \
         of all sidecars and all runs from the replacement's spawn (the failure) until the \
         harness saw every workload restarted (up to one 10 ms poll late), and *idle* the share \
         of the machine's CPU time (all cores, 10 ms ticks) nobody used meanwhile.\n"
    )
    .unwrap();
    writeln!(
        w,
        "| pods | kind | pod | rounds | others | all | released | runs | own rel. | term | form new | form max | CPU sidecars | CPU runs | idle % |"
    )
    .unwrap();
    writeln!(
        w,
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    for res in results {
        for (kind, reps) in [("replace", &res.replace), ("fail", &res.fail)] {
            for r in reps {
                if !r.ok {
                    writeln!(
                        w,
                        "| {} | {kind} | {} | {} | FAILED: {} ||||||||||",
                        res.n, r.pod, r.from, r.why
                    )
                    .unwrap();
                    continue;
                }
                writeln!(
                    w,
                    "| {} | {kind} | {} | {}→{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
                    res.n,
                    r.pod,
                    r.from,
                    r.to,
                    fmt(r.main_ms),
                    fmt(r.all_ms),
                    fmt(r.release_ms),
                    fmt(r.run_ms),
                    fmt(r.own_release_ms),
                    fmt(r.term_ms),
                    fmt(r.formation_new_ms),
                    fmt(r.formation_max_ms),
                    fmt(r.cpu_sidecars_ms),
                    fmt(r.cpu_runs_ms),
                    r.idle_pct.unwrap_or(f64::NAN),
                )
                .unwrap();
            }
        }
    }
    writeln!(w, "\n### Processes\n").unwrap();
    writeln!(
        w,
        "| pods | group start → every workload of round 1 (ms) | sidecar CPU ms median / max (whole life) | sidecar peak RSS MB median / max | run peak RSS MB median / max |"
    )
    .unwrap();
    writeln!(w, "|---:|---:|---:|---:|---:|").unwrap();
    let mb = |x: Option<(f64, f64)>| {
        x.map_or("–".into(), |(m, x)| {
            format!("{:.1} / {:.1}", m / 1024.0, x / 1024.0)
        })
    };
    for res in results {
        writeln!(
            w,
            "| {} | {} | {} | {} | {} |",
            res.n,
            fmt(res.form_ms),
            res.sidecar_cpu_ms
                .map_or("–".into(), |(m, x)| format!("{m:.1} / {x:.1}")),
            mb(res.sidecar_rss_kb),
            mb(res.run_rss_kb),
        )
        .unwrap();
    }
    let notes: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.error
                .iter()
                .map(move |e| format!("{} pods: {e}", r.n))
                .chain(r.notes.iter().cloned())
        })
        .collect();
    if !notes.is_empty() {
        writeln!(w, "\n### Notes\n").unwrap();
        for n in notes {
            writeln!(w, "- {n}").unwrap();
        }
    }
    s
}

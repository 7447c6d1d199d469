//! Release-latency runs: N pods, the last one late, one contender per bed.
//!
//! The `sidecar` contender runs each pod as a pod with a native sidecar:
//! `peergate --mode barrier --serve` and `peergate await` start together
//! (the kubelet starts the next container once the sidecar has started);
//! the awaits are what gate the workload, so the release is the last
//! await's exit. After the release one pod is replaced (re-admission, see
//! [`readmit`]), then every sidecar gets SIGTERM and must exit 0.

use crate::Knobs;
use crate::report::{Readmit, Report, RunResult};
use crate::support::bed::{Bed, BedConfig, DnsQuery, PodCommand, ProcId, Tier, run_ok};
use crate::wrap::{self, Usage};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// DNS in front of the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dns {
    /// Pods query the cluster DNS directly (answers carry TTL 5 s).
    Plain,
    /// A caching tier with `--neg-ttl N` in front of the cluster DNS.
    Neg(u32),
}

impl Dns {
    pub fn parse(s: &str) -> Option<Dns> {
        match s {
            "plain" => Some(Dns::Plain),
            _ => s.strip_prefix("neg")?.parse().ok().map(Dns::Neg),
        }
    }
    pub fn neg_ttl(self) -> Option<u32> {
        match self {
            Dns::Plain => None,
            Dns::Neg(t) => Some(t),
        }
    }
    pub fn label(self) -> String {
        match self {
            Dns::Plain => "plain".into(),
            Dns::Neg(t) => format!("neg cache {t} s"),
        }
    }
    pub fn short(self) -> String {
        match self {
            Dns::Plain => "plain".into(),
            Dns::Neg(t) => format!("neg {t}s"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Contender {
    Seed,
    Ping,
    Barrier,
    Sidecar,
}

impl Contender {
    pub fn parse(s: &str) -> Option<Contender> {
        match s {
            "seed" => Some(Contender::Seed),
            "ping" => Some(Contender::Ping),
            "barrier" => Some(Contender::Barrier),
            "sidecar" => Some(Contender::Sidecar),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Contender::Seed => "seed loop",
            Contender::Ping => "peergate ping",
            Contender::Barrier => "peergate barrier",
            Contender::Sidecar => "peergate sidecar + await",
        }
    }
    /// Contenders whose early pods wait on a TCP rendezvous, not on DNS.
    pub fn rendezvous(self) -> bool {
        matches!(self, Contender::Barrier | Contender::Sidecar)
    }
}

/// One latency scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scenario {
    pub pods: usize,
    pub dns: Dns,
}

/// The bounded wait for all gates of one run, beyond the late start and the
/// negative TTL (the seed loop needs the TTL to pass).
const SLACK: Duration = Duration::from_secs(60);
/// peergate's own deadline in the runs (exit 124 with a report instead of
/// being killed by the harness).
const GATE_TIMEOUT: &str = "150s";
const RUSAGE: &str = "gate.rusage";
const SIDECAR_RUSAGE: &str = "sidecar.rusage";
const AWAIT_RUSAGE: &str = "await.rusage";
/// The pod replaced after a sidecar run released: in the tree topology
/// (more than 8 pods) an inner node, parent of 5..8, so its replacement
/// also costs its children a link.
pub const READMIT_INDEX: usize = 1;
/// Time between the deletion of the pod and its replacement's start. The
/// others notice the death at once (the killed process's sockets send FIN);
/// a lookup of the name in this gap is answered NXDOMAIN, which the
/// negative-cache tier then keeps.
pub const READMIT_GAP: Duration = Duration::from_secs(1);
/// Bound on the replacement's await, beyond the negative TTL.
const READMIT_LIMIT: Duration = Duration::from_secs(30);
/// Entries of the negative-cache tier. With the bed's default of 1000, 64
/// seed loops (A, AAAA and PTR queries, search-list variants) evict the
/// late pod's NXDOMAIN within a second, so the "negative cache" did not
/// hold it; CoreDNS's cache holds 9984 entries per kind by default.
pub const CACHE_SIZE: u32 = 10_000;
/// Bound on a sidecar's exit after SIGTERM.
const TERM_LIMIT: Duration = Duration::from_secs(10);

pub fn seed_script() -> String {
    format!("{}/tests/seed_loop.sh", env!("CARGO_MANIFEST_DIR"))
}

pub fn run_all(k: &Knobs, report: &mut Report) {
    let most = k.reps.max(k.reps_big);
    for rep in 0..most {
        for &pods in &k.pods {
            let reps = if pods >= 64 { k.reps_big } else { k.reps };
            if rep >= reps {
                continue;
            }
            for &dns in &k.dns {
                for &c in &k.contenders {
                    let sc = Scenario { pods, dns };
                    let t = Instant::now();
                    let r = run_one(k, sc, c, rep);
                    eprintln!(
                        "bench: rep {}/{reps} {pods} pods, {}, {}: {} (run took {:.1}s)",
                        rep + 1,
                        dns.label(),
                        c.label(),
                        r.describe(),
                        t.elapsed().as_secs_f64()
                    );
                    report.add_latency(sc, c, r);
                }
            }
        }
        // Keep what finished so far, should the session be cut short.
        report.save_partial(&k.out);
    }
}

fn argv(k: &Knobs, c: Contender, bed: &Bed, pods: usize, token: &str) -> Vec<String> {
    let n = pods.to_string();
    let pg = k.peergate.display().to_string();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match c {
        Contender::Seed => s(&["bash", &seed_script(), &bed.cfg.job, &bed.cfg.subdomain, &n]),
        Contender::Ping => s(&[&pg, "--peers", &n, "--timeout", GATE_TIMEOUT]),
        Contender::Barrier => s(&[
            &pg,
            "--peers",
            &n,
            "--mode",
            "barrier",
            "--token",
            token,
            "--timeout",
            GATE_TIMEOUT,
        ]),
        Contender::Sidecar => s(&[
            &pg,
            "--peers",
            &n,
            "--mode",
            "barrier",
            "--serve",
            "--token",
            token,
            "--timeout",
            GATE_TIMEOUT,
        ]),
    }
}

fn await_argv(k: &Knobs) -> Vec<String> {
    [
        &k.peergate.display().to_string(),
        "await",
        "--timeout",
        GATE_TIMEOUT,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// How long the last pod starts after the last early gate in repetition
/// `rep`: `late_s` plus a fraction of a second that differs per repetition
/// (golden-ratio steps, spread evenly over [0, 1)) and is the same for every
/// contender of that repetition. Polling loops retry once a second, so with
/// a fixed delay each contender would always meet the late pod at the same
/// phase of its retry cycle and the comparison would measure that phase.
pub fn late_delay(k: &Knobs, rep: usize) -> f64 {
    let phase = ((rep + 1) as f64 * 0.618_033_988_75).fract();
    k.late_s + if k.late_jitter { phase } else { 0.0 }
}

/// Longest wait for every early gate to ask for the late pod's name.
const ASK_LIMIT: Duration = Duration::from_secs(60);

/// Waits (bounded) until each early pod has asked the DNS tier for the late
/// pod's name at least once, i.e. every early gate is waiting for it. On a
/// 2-core machine 63 seed loops, which walk their peers one `ping` process
/// at a time, need seconds of CPU to get there; a late pod that started
/// before would not be late for them. Returns how many had not asked.
fn wait_until_asked(bed: &Bed, tier: Tier, early: &[usize], late: usize) -> Result<(), usize> {
    let prefix = format!("{}.{}.", bed.hostname(late), bed.cfg.subdomain);
    let ips: Vec<IpAddr> = early
        .iter()
        .map(|&i| bed.pod(i).expect("pod").ip())
        .collect();
    let deadline = Instant::now() + ASK_LIMIT;
    loop {
        let asked: HashSet<IpAddr> = bed
            .dns_queries(tier)
            .into_iter()
            .filter(|q| q.name.starts_with(&prefix))
            .map(|q| q.from)
            .collect();
        let missing = ips.iter().filter(|ip| !asked.contains(ip)).count();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(missing);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The progress line of a barrier that has met every pod but the last
/// (`15/16 met; waiting on ...`), logged once per interval until the release.
pub fn progress_marker(pods: usize) -> String {
    format!(" {}/{pods} met", pods - 1)
}

/// Waits until every file of `paths` contains `needle`, at most `limit`
/// (polling; each file is read from where the last read stopped, and no
/// more once it has the line: at 1000 pods rereading whole logs ten times
/// a second would take CPU from the pods). `gone(i)` says whether the
/// process writing file `i` has exited: then it never will, and the wait
/// ends. Returns the indices (into `paths`) still missing the line.
pub fn wait_for_lines(
    paths: &[PathBuf],
    needle: &str,
    limit: Duration,
    gone: impl Fn(usize) -> bool,
) -> Vec<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let deadline = Instant::now() + limit;
    // Per file: bytes read so far, and the tail of the last read (a line
    // may be cut between two reads).
    let mut read: Vec<(u64, Vec<u8>)> = vec![(0, Vec::new()); paths.len()];
    let mut missing: Vec<usize> = (0..paths.len()).collect();
    let keep = needle.len().saturating_sub(1);
    loop {
        missing.retain(|&i| {
            let (offset, tail) = &mut read[i];
            let Ok(mut f) = std::fs::File::open(&paths[i]) else {
                return true;
            };
            let mut buf = std::mem::take(tail);
            let before = buf.len();
            if f.seek(SeekFrom::Start(*offset)).is_err() || f.read_to_end(&mut buf).is_err() {
                *tail = buf;
                return true;
            }
            *offset += (buf.len() - before) as u64;
            let found = buf
                .windows(needle.len().max(1))
                .any(|w| w == needle.as_bytes());
            *tail = buf[buf.len().saturating_sub(keep)..].to_vec();
            !found
        });
        if missing.is_empty() || Instant::now() > deadline || missing.iter().any(|&i| gone(i)) {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until each of `procs` (the early pods' barrier
/// processes) has logged [`progress_marker`]: it has learnt of every early
/// pod and waits for the late one only. (In the tree topology of more than
/// 8 pods nobody resolves the late pod's name, so [`wait_until_asked`]
/// would wait in vain.) Returns how many had not.
fn wait_until_met(bed: &Bed, procs: &[ProcId], pods: usize) -> Result<(), usize> {
    let paths: Vec<PathBuf> = procs
        .iter()
        .map(|&id| bed.proc(id).stderr.clone())
        .collect();
    let missing = wait_for_lines(&paths, &progress_marker(pods), ASK_LIMIT, |i| {
        !bed.proc(procs[i]).running()
    });
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.len())
    }
}

/// MAC address of pod `i`'s eth0.
fn mac(bed: &Bed, i: usize) -> String {
    let ns = &bed.pod(i).expect("pod").ns;
    let out = run_ok("ip", &["-n", ns, "-o", "link", "show", "eth0"], None);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {out:?}"))
        .to_string()
}

/// Pins permanent neighbour entries: in pod `to`'s namespace for each pod
/// of `peers` (address and MAC). See [`pin_all`] for why.
fn pin(bed: &Bed, to: usize, peers: &[(IpAddr, String)]) {
    let me = bed.pod(to).expect("pod");
    let mut script = String::new();
    for (ip, mac) in peers.iter().filter(|(ip, _)| *ip != me.ip()) {
        writeln!(
            script,
            "neigh replace {ip} lladdr {mac} dev eth0 nud permanent"
        )
        .unwrap();
    }
    if !script.is_empty() {
        run_ok("ip", &["-n", &me.ns, "-batch", "-"], Some(&script));
    }
}

/// The kernel keeps one ARP table for all network namespaces, and its
/// garbage-collection limit (net.ipv4.neigh.default.gc_thresh3, 1024) counts
/// dynamic entries of every namespace together: a 64-pod full mesh needs
/// 64 × 63 entries, overflows it ("neighbour table overflow") and pings get
/// lost for tens of seconds. Real pods sit on many nodes with a table each,
/// so the bed gives every pod permanent entries for its peers (which the
/// limit does not count) instead of raising a host-wide sysctl.
fn pin_all(bed: &Bed, pods: &[usize], new: &[usize]) {
    let entry = |i: usize| (bed.pod(i).expect("pod").ip(), mac(bed, i));
    let all: Vec<(IpAddr, String)> = pods.iter().map(|&i| entry(i)).collect();
    let fresh: Vec<(IpAddr, String)> = new.iter().map(|&i| entry(i)).collect();
    for &i in pods {
        if new.contains(&i) {
            pin(bed, i, &all);
        } else {
            pin(bed, i, &fresh);
        }
    }
}

/// Starts pod `i`'s gate under the rusage wrapper.
fn gate(bed: &mut Bed, i: usize, argv: &[String]) -> ProcId {
    let dir = bed.pod(i).expect("pod just started").dir.clone();
    let cmd = PodCommand {
        name: "gate".into(),
        argv: wrap::wrapped(&dir.join(RUSAGE), argv),
        ..PodCommand::default()
    };
    bed.spawn(i, &cmd)
}

/// One run. The sandboxes of pods 0..N-2 are created first; by default all
/// their DNS records are published before their gates start (a job whose
/// pods came up together). Once every early gate has asked for the late
/// pod's name, and [`late_delay`] later, pod N-1 starts (sandbox, record,
/// gate). With `stagger` each early pod's gate
/// starts right after its own record, before the next pod's record exists,
/// so early gates also see early siblings missing at first (NXDOMAIN, which
/// a negative-cache tier then keeps).
pub fn run_one(k: &Knobs, sc: Scenario, c: Contender, rep: usize) -> RunResult {
    if c == Contender::Sidecar {
        return run_sidecar(k, sc, rep);
    }
    let mut bed = scenario_bed(sc);
    let token = format!("bench-{}", bed.id);
    let argv = argv(k, c, &bed, sc.pods, &token);
    let late = sc.pods - 1;
    let mut ids = Vec::with_capacity(sc.pods);
    let early: Vec<usize> = (0..late).collect();
    for &i in &early {
        bed.start_pod(i);
    }
    pin_all(&bed, &early, &early);
    if k.stagger {
        for &i in &early {
            bed.publish(i);
            ids.push(gate(&mut bed, i, &argv));
        }
    } else {
        for &i in &early {
            bed.publish(i);
        }
        for &i in &early {
            ids.push(gate(&mut bed, i, &argv));
        }
    }
    let tier = if sc.dns.neg_ttl().is_some() {
        Tier::Cache
    } else {
        Tier::Cluster
    };
    let waiting = if c.rendezvous() {
        wait_until_met(&bed, &ids, sc.pods)
    } else {
        wait_until_asked(&bed, tier, &early, late)
    };
    std::thread::sleep(Duration::from_secs_f64(late_delay(k, rep)));
    bed.start_pod(late);
    pin_all(&bed, &(0..sc.pods).collect::<Vec<_>>(), &[late]);
    bed.publish(late);
    ids.push(gate(&mut bed, late, &argv));
    let ttl = Duration::from_secs(sc.dns.neg_ttl().unwrap_or(0).into());
    let deadline = Instant::now() + ttl + SLACK;
    let mut stuck = 0;
    for &id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        if bed.proc(id).wait_for(left).is_none() {
            stuck += 1;
        }
    }
    let dirs: Vec<PathBuf> = (0..sc.pods)
        .map(|i| bed.pod(i).expect("pod").dir.clone())
        .collect();
    let usages: Vec<Option<Usage>> = dirs.iter().map(|d| Usage::read(&d.join(RUSAGE))).collect();
    let queries = pod_queries(&bed, sc.pods, tier);
    let mut r = RunResult::from_usages(&usages, &queries);
    if let Err(missing) = waiting {
        r.note = not_waiting_note(c, missing);
    }
    if stuck > 0 {
        r.fail(format!(
            "{stuck} gate(s) still running after {:?}",
            ttl + SLACK
        ));
    }
    if r.ok {
        let late_start = usages[late].expect("checked by from_usages").start_ns;
        let last_exit = usages.iter().flatten().map(|u| u.end_ns).max().unwrap_or(0);
        r.latency_s = Some(last_exit.saturating_sub(late_start) as f64 / 1e9);
    } else {
        eprintln!("bench: failed run, bed logs:\n{}", bed.dump(4));
    }
    r
}

/// A bed with the scenario's DNS setup.
fn scenario_bed(sc: Scenario) -> Bed {
    Bed::new(BedConfig {
        neg_cache_ttl: sc.dns.neg_ttl(),
        cache_size: CACHE_SIZE,
        ..BedConfig::default()
    })
}

/// The DNS queries the tier received from the job's `pods` pods.
fn pod_queries(bed: &Bed, pods: usize, tier: Tier) -> Vec<DnsQuery> {
    let ips: Vec<IpAddr> = (0..pods).map(|i| bed.pod(i).expect("pod").ip()).collect();
    bed.dns_queries(tier)
        .into_iter()
        .filter(|q| ips.contains(&q.from))
        .collect()
}

fn not_waiting_note(c: Contender, missing: usize) -> String {
    if c.rendezvous() {
        format!("{missing} early pod(s) had not met every early pod within {ASK_LIMIT:?}")
    } else {
        format!("{missing} early gate(s) had not asked for the late pod within {ASK_LIMIT:?}")
    }
}

/// The processes of one pod incarnation in a sidecar run.
#[derive(Clone, Debug)]
struct SidecarPod {
    sidecar: ProcId,
    waiter: ProcId,
    dir: PathBuf,
}

impl SidecarPod {
    fn sidecar_usage(&self) -> Option<Usage> {
        Usage::read(&self.dir.join(SIDECAR_RUSAGE))
    }
    fn await_usage(&self) -> Option<Usage> {
        Usage::read(&self.dir.join(AWAIT_RUSAGE))
    }
    /// When the pod started: its sidecar's start (it starts first).
    fn started_ns(&self) -> Option<u64> {
        wrap::started_ns(&self.dir.join(SIDECAR_RUSAGE))
    }
}

/// Starts pod `i`'s sidecar, then its await, each under the rusage wrapper.
fn start_sidecar_pod(bed: &mut Bed, k: &Knobs, i: usize, argv: &[String]) -> SidecarPod {
    let dir = bed.pod(i).expect("pod just started").dir.clone();
    let sidecar = PodCommand {
        name: "sidecar".into(),
        argv: wrap::wrapped(&dir.join(SIDECAR_RUSAGE), argv),
        ..PodCommand::default()
    };
    let waiter = PodCommand {
        name: "await".into(),
        argv: wrap::wrapped(&dir.join(AWAIT_RUSAGE), &await_argv(k)),
        ..PodCommand::default()
    };
    SidecarPod {
        sidecar: bed.spawn(i, &sidecar),
        waiter: bed.spawn(i, &waiter),
        dir,
    }
}

/// A sidecar run: like [`run_one`], each pod a sidecar plus an await; the
/// release is the last await's exit after the late pod's sidecar start.
/// Then [`readmit`] (unless PEERGATE_BENCH_READMIT=0), then SIGTERM to every
/// sidecar, each of which must exit 0. CPU and RSS are the sidecars' over
/// their whole life (the replaced pod's first sidecar, killed, excluded).
fn run_sidecar(k: &Knobs, sc: Scenario, rep: usize) -> RunResult {
    let mut bed = scenario_bed(sc);
    let token = format!("bench-{}", bed.id);
    let argv = argv(k, Contender::Sidecar, &bed, sc.pods, &token);
    let late = sc.pods - 1;
    let early: Vec<usize> = (0..late).collect();
    let mut pods: BTreeMap<usize, SidecarPod> = BTreeMap::new();
    for &i in &early {
        bed.start_pod(i);
    }
    pin_all(&bed, &early, &early);
    if k.stagger {
        for &i in &early {
            bed.publish(i);
            pods.insert(i, start_sidecar_pod(&mut bed, k, i, &argv));
        }
    } else {
        for &i in &early {
            bed.publish(i);
        }
        for &i in &early {
            pods.insert(i, start_sidecar_pod(&mut bed, k, i, &argv));
        }
    }
    let tier = if sc.dns.neg_ttl().is_some() {
        Tier::Cache
    } else {
        Tier::Cluster
    };
    let sidecars: Vec<ProcId> = pods.values().map(|p| p.sidecar).collect();
    let waiting = wait_until_met(&bed, &sidecars, sc.pods);
    std::thread::sleep(Duration::from_secs_f64(late_delay(k, rep)));
    bed.start_pod(late);
    pin_all(&bed, &(0..sc.pods).collect::<Vec<_>>(), &[late]);
    bed.publish(late);
    pods.insert(late, start_sidecar_pod(&mut bed, k, late, &argv));
    let ttl = Duration::from_secs(sc.dns.neg_ttl().unwrap_or(0).into());
    let deadline = Instant::now() + ttl + SLACK;
    let mut stuck = 0;
    for p in pods.values() {
        let left = deadline.saturating_duration_since(Instant::now());
        if bed.proc(p.waiter).wait_for(left).is_none() {
            stuck += 1;
        }
    }
    let queries = pod_queries(&bed, sc.pods, tier);
    let awaits: Vec<Option<Usage>> = pods.values().map(SidecarPod::await_usage).collect();
    let mut r = RunResult::new(&queries);
    r.check_exits("awaits", &awaits);
    if let Err(missing) = waiting {
        r.note = not_waiting_note(Contender::Sidecar, missing);
    }
    if stuck > 0 {
        r.fail(format!(
            "{stuck} await(s) still running after {:?}",
            ttl + SLACK
        ));
    }
    if r.ok {
        match pods[&late].started_ns() {
            Some(late_start) => {
                let last = awaits.iter().flatten().map(|u| u.end_ns).max().unwrap_or(0);
                r.latency_s = Some(last.saturating_sub(late_start) as f64 / 1e9);
            }
            None => r.fail("the late pod's sidecar recorded no start".into()),
        }
    }
    if r.ok && k.readmit {
        r.readmit = Some(readmit(&mut bed, k, sc, tier, &mut pods, &argv));
    }
    // The kubelet's part once the workloads are done: SIGTERM to each
    // sidecar. One that has already gone did not serve until stopped.
    let early_exits: Vec<String> = pods
        .iter()
        .filter_map(|(i, p)| {
            bed.proc(p.sidecar)
                .exit()
                .map(|e| format!("pod {i}: {}", e.describe()))
        })
        .collect();
    if !early_exits.is_empty() {
        r.fail(format!(
            "sidecar(s) gone before SIGTERM: {}",
            early_exits.join(", ")
        ));
    }
    for p in pods.values() {
        bed.proc(p.sidecar).signal(libc::SIGTERM);
    }
    let term_deadline = Instant::now() + TERM_LIMIT;
    for p in pods.values() {
        let left = term_deadline.saturating_duration_since(Instant::now());
        bed.proc(p.sidecar).wait_for(left);
    }
    let sidecar_usages: Vec<Option<Usage>> = pods.values().map(SidecarPod::sidecar_usage).collect();
    r.check_exits("sidecars after SIGTERM", &sidecar_usages);
    r.resources(&sidecar_usages);
    let readmit_failed = r.readmit.as_ref().is_some_and(|a| !a.ok);
    if !r.ok || readmit_failed {
        eprintln!("bench: failed run, bed logs:\n{}", bed.dump(6));
    }
    r
}

/// Re-admission after the release: pod [`READMIT_INDEX`] is deleted (its
/// processes killed, its record withdrawn), and [`READMIT_GAP`] later a
/// replacement starts under the same name with a new address: sandbox,
/// record, sidecar and await, as a Job's replacement pod would. The figure
/// is the replacement's sidecar start until its await exits 0.
fn readmit(
    bed: &mut Bed,
    k: &Knobs,
    sc: Scenario,
    tier: Tier,
    pods: &mut BTreeMap<usize, SidecarPod>,
    argv: &[String],
) -> Readmit {
    let i = READMIT_INDEX.min(sc.pods - 1);
    let dns_before = bed.dns_queries(tier).len();
    bed.delete_pod(i, false);
    std::thread::sleep(READMIT_GAP);
    bed.start_pod(i);
    pin_all(bed, &(0..sc.pods).collect::<Vec<_>>(), &[i]);
    bed.publish(i);
    let p = start_sidecar_pod(bed, k, i, argv);
    pods.insert(i, p.clone());
    let limit = READMIT_LIMIT + Duration::from_secs(sc.dns.neg_ttl().unwrap_or(0).into());
    let exit = bed.proc(p.waiter).wait_for(limit);
    // The others' side: every other sidecar logs `peer replaced: <name>`
    // when it learns the new incarnation (and rewrites its hand-off).
    let marker = format!("peer replaced: {}.", bed.hostname(i));
    let others: Vec<(usize, PathBuf)> = pods
        .iter()
        .filter(|(j, _)| **j != i)
        .map(|(j, q)| (*j, bed.proc(q.sidecar).stderr.clone()))
        .collect();
    let paths: Vec<PathBuf> = others.iter().map(|(_, path)| path.clone()).collect();
    let unaware = wait_for_lines(&paths, &marker, READMIT_LIMIT, |_| false);
    let mut out = Readmit {
        ok: true,
        dns: bed.dns_queries(tier).len().saturating_sub(dns_before),
        ..Readmit::default()
    };
    match (exit, p.await_usage(), p.started_ns()) {
        (None, _, _) => {
            out.ok = false;
            out.note = format!("the replacement's await still ran after {limit:?}");
        }
        (Some(_), Some(u), Some(start)) if u.code == 0 => {
            out.latency_s = Some(u.end_ns.saturating_sub(start) as f64 / 1e9);
            if unaware.is_empty() {
                let offset = realtime_minus_monotonic_ns();
                let learnt: Option<Vec<u64>> = paths
                    .iter()
                    .map(|path| first_stamp(path, &marker, offset))
                    .collect();
                out.known_s = learnt
                    .and_then(|v| v.into_iter().max())
                    .map(|last| last.saturating_sub(start) as f64 / 1e9);
            } else {
                out.ok = false;
                let who: Vec<String> = unaware
                    .iter()
                    .map(|&k| format!("pod {}", others[k].0))
                    .collect();
                out.note = format!(
                    "{} other sidecar(s) had not logged `{marker}` after {READMIT_LIMIT:?}: {}",
                    unaware.len(),
                    who.join(", ")
                );
            }
        }
        (Some(e), u, _) => {
            out.ok = false;
            out.note = format!(
                "the replacement's await ended with {} (rusage code {:?})",
                e.describe(),
                u.map(|u| u.code)
            );
        }
    }
    out
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns: turns a log line's wall
/// clock stamp into the monotonic time the wrapper records.
fn realtime_minus_monotonic_ns() -> i128 {
    let mono = wrap::now_ns() as i128;
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128;
    real - mono
}

/// The monotonic time (ns) of the first line of `path` that contains
/// `needle`, from the line's leading RFC 3339 UTC stamp
/// (`2026-11-30T15:10:28.619992Z`, peergate's text log format).
fn first_stamp(path: &std::path::Path, needle: &str, offset: i128) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.contains(needle))?;
    let real = parse_rfc3339_ns(line.split_whitespace().next()?)?;
    u64::try_from(real - offset).ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` to ns since the Unix epoch.
pub(crate) fn parse_rfc3339_ns(stamp: &str) -> Option<i128> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let digits = frac.len().min(9);
    let frac_ns = frac[..digits].parse::<i128>().ok()? * 10i128.pow(9 - digits as u32);
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(secs as i128 * 1_000_000_000 + frac_ns)
}

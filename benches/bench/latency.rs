//! Release-latency runs: N pods, the last one late, one contender per bed.

use crate::Knobs;
use crate::report::{Report, RunResult};
use crate::support::bed::{Bed, BedConfig, PodCommand, ProcId, Tier, run_ok};
use crate::wrap::{self, Usage};
use std::collections::HashSet;
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
}

impl Contender {
    pub fn parse(s: &str) -> Option<Contender> {
        match s {
            "seed" => Some(Contender::Seed),
            "ping" => Some(Contender::Ping),
            "barrier" => Some(Contender::Barrier),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Contender::Seed => "seed loop",
            Contender::Ping => "peergate ping",
            Contender::Barrier => "peergate barrier",
        }
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
    }
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
    let cfg = BedConfig {
        neg_cache_ttl: sc.dns.neg_ttl(),
        ..BedConfig::default()
    };
    let mut bed = Bed::new(cfg);
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
    let waiting = wait_until_asked(&bed, tier, &early, late);
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
    let ips: Vec<IpAddr> = (0..sc.pods)
        .map(|i| bed.pod(i).expect("pod").ip())
        .collect();
    let queries: Vec<_> = bed
        .dns_queries(tier)
        .into_iter()
        .filter(|q| ips.contains(&q.from))
        .collect();
    let mut r = RunResult::from_usages(&usages, &queries);
    if let Err(missing) = waiting {
        r.note =
            format!("{missing} early gate(s) had not asked for the late pod within {ASK_LIMIT:?}");
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

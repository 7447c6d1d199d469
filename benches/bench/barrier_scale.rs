//! Barrier mode at scale (issue 12): N barrier processes (64, 256, 1000) on
//! a lean bed, the last one late.
//!
//! ```text
//!  namespace <id>c ("cluster")            namespace <id>p0 (one "node")
//!  ┌──────────────────────────────┐       ┌───────────────────────────────────────┐
//!  │ br0, dnsmasq (cluster DNS)   │ veth  │ eth0 10.244.1.x (DNS traffic only)    │
//!  │ dnsmasq --neg-ttl 30 (cache) │───────│ lo: 10.250.a.b/32 × N, one per "pod"  │
//!  └──────────────────────────────┘       │ N × peergate --listen 10.250.a.b      │
//!                                         └───────────────────────────────────────┘
//! ```
//!
//! One network namespace per pod (the latency runs' bed) costs a veth,
//! a bridge port, neighbour entries and a mount namespace per pod; at 1000
//! pods on 2 cores that bed would measure itself. Here every "pod" is one
//! address on the loopback of a single namespace, and its peergate listens
//! on and dials from that address (`--listen`), so each process has its own
//! identity on the wire (the handshake binds both socket addresses) and its
//! own port 7470. Identity comes from flags (`--index --hostname --job
//! --subdomain --namespace --cluster-domain`; `--hosts-file /dev/null`: no
//! kubelet line), DNS from the bed's resolv.conf for that namespace, passed
//! with `--resolv-conf` (the file `ip netns exec` would bind-mount). The
//! processes are started straight into the namespace with setns(2) between
//! fork and exec rather than through `ip netns exec`: no extra process and
//! mount namespace per pod, and the start time taken before the spawn is
//! the peergate exec's, not an `ip` command's. They are forked by one small
//! launcher process whose single reaper thread collects every exit with
//! wait4(2): exit time, CPU time and peak RSS without a wrapper process or
//! a thread per process (see fleet.rs for why not from the benchmark
//! process itself: its heap would count in every child's peak RSS).
//!
//! Run: records for pods 0..N-2 (and the Service's own name with each of
//! their addresses) are published in one reload; pods 0..N-2 start; once
//! every one has logged `N-1/N met` (it has learnt of every early pod and
//! waits for the last only), the last pod's records are published and it
//! starts. *Release* = latest exit among all N − the last pod's start.
//! Every process must exit 0, else the run failed.
//!
//! What this bed leaves out, compared with pods of a real cluster:
//! * one kernel network stack: links run over loopback, with no veth,
//!   bridge, node-to-node hop, ARP/NDP, CNI or conntrack, so the round trip
//!   is loopback's (µs) instead of a pod network's (0.1–1 ms);
//! * CPU: N processes share the machine's cores (2 here), far worse
//!   contention than pods spread over nodes: 1000 pods would have hundreds
//!   of cores between them. Start-up and handshakes queue for CPU here;
//! * all DNS queries leave from the namespace's single eth0 address, so the
//!   DNS log cannot tell pods apart: per-pod counts are totals over N;
//! * dnsmasq (one cluster DNS, one caching tier with `--neg-ttl`) instead of
//!   CoreDNS replicas behind a Service VIP (and NodeLocal DNSCache); both
//!   run at raised priority, standing in for DNS servers with CPU of their
//!   own;
//! * pods start from a tight loop (the launcher runs at raised priority, as
//!   kubelets are not slowed by other nodes' pods) within seconds, not
//!   over the scheduler's and kubelets' pace; no image pull, no sandbox.

use crate::Knobs;
use crate::fleet::{Fleet, Reaped};
use crate::latency::{Dns, progress_marker, wait_for_lines};
use crate::report::{FleetResult, Report};
use crate::scale::{peer_addr, snmp};
use crate::support::bed::{Bed, BedConfig, Tier, run_ok};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// peergate's own deadline: beyond anything the harness waits for, so a
/// process that gives up says why (exit 124 and a report) before the bed
/// is torn down.
const PG_TIMEOUT: &str = "300s";
/// Bound on the early pods' convergence (all of them logging `N-1/N met`).
const CONVERGE_LIMIT: Duration = Duration::from_secs(240);
/// Bound on the release after the last pod's start.
const RELEASE_LIMIT: Duration = Duration::from_secs(60);
/// Bound on starting the early pods.
const SPAWN_LIMIT: Duration = Duration::from_secs(120);

pub fn run_all(k: &Knobs, report: &mut Report) {
    let most = k.barrier_scale_reps;
    for rep in 0..most {
        for &n in &k.barrier_scale {
            for &dns in &k.barrier_scale_dns {
                let t = Instant::now();
                let r = run_one(k, n, dns);
                eprintln!(
                    "bench: barrier scale rep {}/{most} {n} pods, {}: {} (run took {:.1}s)",
                    rep + 1,
                    dns.label(),
                    r.describe(),
                    t.elapsed().as_secs_f64()
                );
                report.add_fleet(n, dns, r);
            }
        }
        report.save_partial(&k.out);
    }
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

pub fn run_one(k: &Knobs, n: usize, dns: Dns) -> FleetResult {
    assert!(n >= 2, "PEERGATE_BENCH_BARRIER_SCALE: sizes must be >= 2");
    let mut bed = Bed::new(BedConfig {
        neg_cache_ttl: dns.neg_ttl(),
        cache_size: crate::latency::CACHE_SIZE,
        ..BedConfig::default()
    });
    prioritise_dns(&bed);
    // Pod 0's sandbox is the namespace; its own record is never published
    // (index 0 of the fleet is an address on lo, not this eth0).
    let pod = bed.start_pod(0).clone();
    let addrs: Vec<IpAddr> = (0..n).map(|i| IpAddr::V4(peer_addr(i))).collect();
    let mut script = String::new();
    for a in &addrs {
        writeln!(script, "addr add {a}/32 dev lo").unwrap();
    }
    run_ok("ip", &["-n", &pod.ns, "-batch", "-"], Some(&script));
    let records =
        |i: usize, bed: &Bed| vec![(bed.fqdn(i), addrs[i]), (bed.service_fqdn(), addrs[i])];
    let late = n - 1;
    let early_records: Vec<(String, IpAddr)> = (0..late).flat_map(|i| records(i, &bed)).collect();
    bed.add_records(&early_records);
    let tier = if dns.neg_ttl().is_some() {
        Tier::Cache
    } else {
        Tier::Cluster
    };
    let cluster_ns = bed.cluster_ns().to_string();
    let drops0 = snmp(&bed, &cluster_ns);
    let resolv = Path::new("/etc/netns").join(&pod.ns).join("resolv.conf");
    let token = format!("bench-{}", bed.id);
    let argv = |i: usize| -> Vec<String> {
        let c = &bed.cfg;
        [
            &k.peergate.display().to_string(),
            "--mode",
            "barrier",
            "--peers",
            &n.to_string(),
            "--index",
            &i.to_string(),
            "--hostname",
            &bed.hostname(i),
            "--job",
            &c.job,
            "--subdomain",
            &c.subdomain,
            "--namespace",
            &c.namespace,
            "--cluster-domain",
            &c.zone,
            "--token",
            &token,
            "--timeout",
            PG_TIMEOUT,
            "--ip-family",
            "ipv4",
            "--listen",
            &addrs[i].to_string(),
            "--hosts-file",
            "/dev/null",
            "--resolv-conf",
            &resolv.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let argvs: Vec<Vec<String>> = (0..n).map(argv).collect();
    let mut r = FleetResult {
        ok: true,
        ..FleetResult::default()
    };
    let mut fleet = match Fleet::start(&pod.ns, &bed.dir.join("fleet"), n) {
        Ok(f) => f,
        Err(e) => {
            r.fail(format!("starting the launcher: {e}"));
            return r;
        }
    };
    for (i, argv) in argvs.iter().enumerate() {
        if let Err(e) = fleet.write_argv(i, argv) {
            r.fail(format!("writing pod {i}'s argv: {e}"));
            return r;
        }
    }
    let t0 = Instant::now();
    if let Err(e) = fleet.spawn(0, late, SPAWN_LIMIT) {
        r.fail(format!("spawning the early pods: {e}"));
        return r;
    }
    r.spawn_s = t0.elapsed().as_secs_f64();
    let paths: Vec<PathBuf> = (0..late).map(|i| fleet.stderr_path(i)).collect();
    let missing = wait_for_lines(&paths, &progress_marker(n), CONVERGE_LIMIT, |i| {
        fleet.exit_of(i).is_some()
    });
    r.converge_s = Some(t0.elapsed().as_secs_f64());
    if !missing.is_empty() {
        let exited = missing
            .iter()
            .filter_map(|&i| {
                fleet
                    .exit_of(i)
                    .map(|e| format!("pod {i} exited {}", e.code))
            })
            .take(5)
            .collect::<Vec<_>>();
        r.fail(format!(
            "{} early pod(s) had not logged `{}` after {:.0} s{}",
            missing.len(),
            progress_marker(n).trim(),
            t0.elapsed().as_secs_f64(),
            if exited.is_empty() {
                String::new()
            } else {
                format!(" ({})", exited.join(", "))
            }
        ));
        dump_some(&fleet, &missing);
        return r;
    }
    let late_records = records(late, &bed);
    bed.add_records(&late_records);
    // CPU the early pods used so far, and the machine's CPU counters: with
    // the totals at the end they tell how much CPU the release took, and
    // whether the machine had any to spare meanwhile.
    let cpu_before: Vec<Option<u64>> = (0..late).map(|i| on_cpu_ns(fleet.pid(i))).collect();
    let stat_before = cpu_ticks();
    if let Err(e) = fleet.spawn(late, n, SPAWN_LIMIT) {
        r.fail(format!("spawning the last pod: {e}"));
        return r;
    }
    let done = fleet.wait_all(RELEASE_LIMIT);
    if let (Some((busy0, all0)), Some((busy1, all1))) = (stat_before, cpu_ticks())
        && all1 > all0
    {
        r.idle_frac = Some(1.0 - (busy1 - busy0) as f64 / (all1 - all0) as f64);
    }
    // dnsmasq logs synchronously; a short pause lets the last line land.
    std::thread::sleep(Duration::from_millis(100));
    let from = pod.ip();
    let queries: Vec<_> = bed
        .dns_queries(tier)
        .into_iter()
        .filter(|q| q.from == from)
        .collect();
    r.dns_total = queries.len();
    for q in &queries {
        *r.dns_by_type.entry(q.qtype.clone()).or_default() += 1;
    }
    let drops1 = snmp(&bed, &cluster_ns);
    let key = "Udp:RcvbufErrors";
    r.dns_drops = drops1.get(key).unwrap_or(&0) - drops0.get(key).unwrap_or(&0);
    let exits: Vec<Option<Reaped>> = (0..n).map(|i| fleet.exit_of(i)).collect();
    if !done {
        let running = exits.iter().filter(|e| e.is_none()).count();
        r.fail(format!(
            "{running} process(es) still running {RELEASE_LIMIT:?} after the last pod started"
        ));
    }
    let bad: Vec<String> = exits
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            e.filter(|e| e.code != 0)
                .map(|e| format!("pod {i}: {}", e.code))
        })
        .collect();
    if !bad.is_empty() {
        let shown = bad.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        r.fail(format!("{} non-zero exit(s): {shown}", bad.len()));
    }
    let got: Vec<Reaped> = exits.iter().flatten().copied().collect();
    if done && cpu_before.iter().all(Option::is_some) {
        let before: u64 = cpu_before.iter().flatten().sum();
        let total_ns: u64 = got.iter().map(|e| e.cpu_us * 1000).sum();
        r.release_cpu_s = Some(total_ns.saturating_sub(before) as f64 / 1e9);
    }
    if !got.is_empty() {
        let mut cpu: Vec<f64> = got.iter().map(|e| e.cpu_us as f64 / 1000.0).collect();
        let mut rss: Vec<f64> = got.iter().map(|e| e.maxrss_kb as f64).collect();
        r.cpu_ms_max = cpu.iter().copied().fold(0.0, f64::max);
        r.cpu_ms_median = median(&mut cpu);
        r.rss_kb_max = rss.iter().copied().fold(0.0, f64::max);
        r.rss_kb_median = median(&mut rss);
    }
    // One `peer met` line per direct link a process adopted; a `peer lost`
    // line per link that ended without a goodbye, which counts the peer
    // gone. No process of this bed dies before the release, so every such
    // line is a live peer taken for dead.
    let logs: Vec<String> = (0..n)
        .map(|i| std::fs::read_to_string(fleet.stderr_path(i)).unwrap_or_default())
        .collect();
    let count = |t: &str, needle: &str| t.lines().filter(|l| l.contains(needle)).count();
    let links: Vec<usize> = logs.iter().map(|t| count(t, "peer met")).collect();
    let lost: Vec<usize> = logs.iter().map(|t| count(t, "peer lost")).collect();
    r.lost_lines = lost.iter().sum();
    r.lost_procs = lost.iter().filter(|&&l| l > 0).count();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for q in &queries {
        *by_name.entry(q.name.as_str()).or_default() += 1;
    }
    r.dns_names = by_name.len();
    r.dns_top = by_name
        .into_iter()
        .max_by_key(|(name, c)| (*c, std::cmp::Reverse(*name)))
        .map(|(name, c)| (name.to_string(), c));
    r.links_max = links.iter().copied().max().unwrap_or(0);
    r.links_mean = links.iter().sum::<usize>() as f64 / n as f64;
    r.links_argmax = links
        .iter()
        .enumerate()
        .max_by_key(|(_, l)| **l)
        .map(|(i, _)| i);
    if r.ok {
        let last_exit = got.iter().map(|e| e.at_ns).max().unwrap_or(0);
        r.latency_s = Some(last_exit.saturating_sub(fleet.start_ns(late)) as f64 / 1e9);
        let slowest = (0..n).max_by_key(|&i| exits[i].map_or(0, |e| e.at_ns));
        r.slowest = slowest;
    } else {
        let failed: Vec<usize> = (0..n)
            .filter(|&i| exits[i].is_none_or(|e| e.code != 0))
            .collect();
        dump_some(&fleet, &failed);
    }
    r
}

/// Nice -10 for the bed's DNS servers (every process in the cluster
/// namespace: the two dnsmasq). In a cluster CoreDNS has CPU of its own;
/// here, at normal priority among a thousand starting processes, dnsmasq
/// got so little that its socket dropped tens of thousands of queries and
/// the resolvers' retries measured the bed, not peergate.
fn prioritise_dns(bed: &Bed) {
    let pids = run_ok("ip", &["netns", "pids", bed.cluster_ns()], None);
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<libc::id_t>().ok())
    {
        // SAFETY: setpriority(2) on a process the bed started.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, pid, -10) };
    }
}

/// Time process `pid` has spent on a CPU so far (/proc/<pid>/schedstat).
fn on_cpu_ns(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The machine's CPU time so far in clock ticks, all cores: (busy, total),
/// busy being everything but idle and iowait (/proc/stat).
pub(crate) fn cpu_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// The last lines of a few processes' stderr, for a failed run.
fn dump_some(fleet: &Fleet, which: &[usize]) {
    for &i in which.iter().take(3) {
        let text = std::fs::read_to_string(fleet.stderr_path(i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("bench: --- fleet pod {i} stderr (last lines)");
        for l in &lines[lines.len().saturating_sub(8)..] {
            eprintln!("  {l}");
        }
    }
}

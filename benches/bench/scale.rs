//! Scale run: one pod checks N peers that are all up.
//!
//! Topology (inside the bed, nothing in the root namespace):
//!
//! ```text
//!  pod 0 (10.244.1.10)  ── bridge ──  peer namespace <id>q (10.244.1.x on eth0)
//!  route 10.250.0.0/16 via <peer ns>                 lo: 10.250.a.b/32 × (N-1)
//! ```
//!
//! Peer i (1..N) is `<job>-<i>.<svc>.<ns>.svc.cluster.local` with an A
//! record for 10.250.<i / 200>.<i % 200 + 1> in the cluster dnsmasq; peer 0
//! is the pod itself. The peer namespace answers echo requests for every
//! address on its loopback, so one neighbour entry (the peer
//! namespace's bridge address) serves all of them.

use crate::Knobs;
use crate::report::{Report, RunResult, SCALE_CONTENDERS};
use crate::support::bed::{Bed, BedConfig, PodCommand, Tier, run_ok};
use crate::wrap::{self, Usage};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn peer_addr(i: usize) -> Ipv4Addr {
    assert!(i < 200 * 250, "scale run supports up to 50000 peers");
    Ipv4Addr::new(10, 250, (i / 200) as u8, (i % 200 + 1) as u8)
}

pub fn run_all(k: &Knobs, report: &mut Report) {
    let n = k.scale;
    assert!(n >= 2, "PEERGATE_BENCH_SCALE must be 0 (skip) or >= 2");
    let t = Instant::now();
    let mut bed = Bed::new(BedConfig {
        dns_up: false,
        ..BedConfig::default()
    });
    bed.start_pod(0);
    bed.publish(0);
    // With the DNS down each record only rewrites the hosts file; the DNS
    // reads all of them once when it starts.
    for i in 1..n {
        let name = bed.fqdn(i);
        bed.add_record(&name, IpAddr::V4(peer_addr(i)));
    }
    bed.start_dns();
    let peer_ns = format!("{}q", bed.id);
    bed.add_namespace(&peer_ns);
    let (_, gw, _) = bed.connect(&peer_ns, "eth0");
    let gw = gw.expect("the bed is IPv4");
    // This kernel has no dummy interfaces; loopback holds the addresses
    // just as well (the namespace answers for every local address).
    let mut script = String::from("link set lo up\n");
    for i in 1..n {
        writeln!(script, "addr add {}/32 dev lo", peer_addr(i)).unwrap();
    }
    run_ok("ip", &["-n", &peer_ns, "-batch", "-"], Some(&script));
    let pod_ns = bed.pod(0).expect("pod 0").ns.clone();
    run_ok(
        "ip",
        &[
            "-n",
            &pod_ns,
            "route",
            "add",
            "10.250.0.0/16",
            "via",
            &gw.to_string(),
        ],
        None,
    );
    // Warm the neighbour entries both ways, as a running pod has them.
    let warm = PodCommand::new(
        "warmup",
        &["ping", "-c", "1", "-W", "2", &peer_addr(n - 1).to_string()],
    );
    let (exit, out, err) = bed.run_in_pod(0, &warm, Duration::from_secs(10));
    assert!(
        exit.and_then(|e| e.code()) == Some(0),
        "scale bed: warm-up ping failed: {out}{err}"
    );
    eprintln!(
        "bench: scale bed with {n} peers ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    if let Some(secs) = std::env::var("PEERGATE_BENCH_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        // For profiling by hand: the bed stays up (bounded) for commands
        // such as `ip netns exec <pod ns> unshare --uts sh -c '...'`.
        eprintln!(
            "bench: holding the scale bed for {secs}s: pod namespace {pod_ns} (hostname {}, \
             JOB_COMPLETION_INDEX=0), cluster namespace {}",
            bed.hostname(0),
            bed.cluster_ns()
        );
        std::thread::sleep(Duration::from_secs(secs.min(1800)));
    }
    let names: Vec<String> = (0..n).map(|i| format!("{}.", bed.fqdn(i))).collect();
    for rep in 0..k.scale_reps {
        for (c, label) in SCALE_CONTENDERS.iter().enumerate() {
            let r = run_contender(&mut bed, k, c, rep, &names);
            eprintln!(
                "bench: scale rep {}/{} {label}: {}",
                rep + 1,
                k.scale_reps,
                r.describe()
            );
            report.add_scale(c, r);
        }
        report.save_partial(&k.out);
    }
}

fn run_contender(bed: &mut Bed, k: &Knobs, c: usize, rep: usize, names: &[String]) -> RunResult {
    let n = names.len();
    let pod = bed.pod(0).expect("pod 0").clone();
    let name = format!("scale{c}r{rep}");
    let rusage = pod.dir.join(format!("{name}.rusage"));
    let mut argv: Vec<String> = match c {
        0 => vec![
            k.peergate.display().to_string(),
            "--peers".into(),
            n.to_string(),
            "--timeout".into(),
            "100s".into(),
        ],
        1 => vec!["fping".into(), "-i".into(), "1".into()],
        2 => vec![
            "bash".into(),
            crate::latency::seed_script(),
            bed.cfg.job.clone(),
            bed.cfg.subdomain.clone(),
            n.to_string(),
        ],
        3 => vec!["fping".into()],
        // Default flags but half the concurrency: shows what the default
        // of 256 probes in flight costs (see the README's reading).
        4 => vec![
            k.peergate.display().to_string(),
            "--peers".into(),
            n.to_string(),
            "--concurrency".into(),
            "128".into(),
            "--timeout".into(),
            "100s".into(),
        ],
        _ => unreachable!("five scale contenders"),
    };
    if matches!(c, 1 | 3) {
        argv.extend(names.iter().cloned());
    }
    let before = bed.dns_queries(Tier::Cluster).len();
    let cluster_ns = bed.cluster_ns().to_string();
    let snmp0 = (snmp(bed, &cluster_ns), snmp(bed, &pod.ns));
    let cmd = PodCommand {
        name,
        argv: wrap::wrapped(&rusage, &argv),
        ..PodCommand::default()
    };
    let (exit, _, _) = bed.run_in_pod(0, &cmd, LIMIT);
    // dnsmasq logs synchronously; a short pause lets the last line land.
    std::thread::sleep(Duration::from_millis(100));
    let queries: Vec<_> = bed.dns_queries(Tier::Cluster)[before..]
        .iter()
        .filter(|q| q.from == pod.ip())
        .cloned()
        .collect();
    let snmp1 = (snmp(bed, &cluster_ns), snmp(bed, &pod.ns));
    let usage = Usage::read(&rusage);
    let mut r = RunResult::from_usages(&[usage], &queries);
    let delta = |a: &Snmp, b: &Snmp, k: &str| b.get(k).unwrap_or(&0) - a.get(k).unwrap_or(&0);
    r.counters.insert(
        "dns_rcvbuf_drops",
        delta(&snmp0.0, &snmp1.0, "Udp:RcvbufErrors"),
    );
    r.counters
        .insert("echo_out", delta(&snmp0.1, &snmp1.1, "Icmp:OutEchos"));
    r.counters.insert(
        "echo_reply_in",
        delta(&snmp0.1, &snmp1.1, "Icmp:InEchoReps"),
    );
    r.wall_s = usage.map(|u| u.wall_s());
    if exit.is_none() {
        r.fail(format!("killed after {LIMIT:?}"));
    }
    r
}

type Snmp = std::collections::BTreeMap<String, i64>;

/// Counters of /proc/net/snmp in namespace `ns` as `Proto:Name` → value
/// (UDP receive-buffer drops at the DNS server, ICMP echoes of the pod).
fn snmp(bed: &Bed, ns: &str) -> Snmp {
    let text = bed.ns_exec(ns, &["cat", "/proc/net/snmp"]);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Snmp::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let mut n = names.split_whitespace();
        let mut v = values.split_whitespace();
        let (Some(proto), Some(_)) = (n.next(), v.next()) else {
            continue;
        };
        for (name, value) in n.zip(v) {
            if let Ok(x) = value.parse() {
                out.insert(format!("{proto}{name}"), x);
            }
        }
    }
    out
}

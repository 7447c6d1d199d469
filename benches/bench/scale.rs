//! Scale run: one pod checks N peers that are all up (N from
//! PEERGATE_BENCH_SCALE, e.g. 64, 256, 1000; one bed holds the largest and
//! smaller runs use its first N peers).
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
//!
//! Contenders ([`ScaleContender`]): peergate `--peers N` (the Job way, with
//! the kubelet's hosts line), fping, the seed loop, and peergate `--hosts`
//! with the N FQDNs and `--probe icmp` (the standalone way): once with
//! `--ip-family auto` and a hosts file without a kubelet line (so `auto`
//! has to decide without one), once with `--ip-family ipv4`.

use crate::Knobs;
use crate::report::{Report, RunResult};
use crate::support::bed::{Bed, BedConfig, PodCommand, Tier, run_ok};
use crate::wrap::{self, Usage};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// One contender of the scale run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScaleContender {
    Peers,
    Fping1,
    Seed,
    Fping,
    Peers128,
    HostsAuto,
    HostsV4,
}

impl ScaleContender {
    /// Names for PEERGATE_BENCH_SCALE_CONTENDERS.
    pub fn parse(s: &str) -> Option<ScaleContender> {
        Some(match s {
            "peers" => ScaleContender::Peers,
            "fping1" => ScaleContender::Fping1,
            "seed" => ScaleContender::Seed,
            "fping" => ScaleContender::Fping,
            "peers128" => ScaleContender::Peers128,
            "hosts-auto" => ScaleContender::HostsAuto,
            "hosts-v4" => ScaleContender::HostsV4,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            ScaleContender::Peers => "peergate --peers N",
            ScaleContender::Fping1 => "fping -i 1",
            ScaleContender::Seed => "seed loop",
            ScaleContender::Fping => "fping (default -i 10)",
            ScaleContender::Peers128 => "peergate --peers N --concurrency 128",
            ScaleContender::HostsAuto => {
                "peergate --hosts (N FQDNs) --probe icmp --ip-family auto, no kubelet line"
            }
            ScaleContender::HostsV4 => "peergate --hosts (N FQDNs) --probe icmp --ip-family ipv4",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            ScaleContender::Peers => "peers",
            ScaleContender::Fping1 => "fping1",
            ScaleContender::Seed => "seed",
            ScaleContender::Fping => "fping",
            ScaleContender::Peers128 => "peers128",
            ScaleContender::HostsAuto => "hosts-auto",
            ScaleContender::HostsV4 => "hosts-v4",
        }
    }
}

/// A hosts file as on a machine outside Kubernetes: no line for this host.
const STANDALONE_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Longest single argument the kernel accepts (MAX_ARG_STRLEN).
const MAX_ARG: usize = 32 * 4096;

pub fn peer_addr(i: usize) -> Ipv4Addr {
    assert!(i < 200 * 250, "scale run supports up to 50000 peers");
    Ipv4Addr::new(10, 250, (i / 200) as u8, (i % 200 + 1) as u8)
}

pub fn run_all(k: &Knobs, report: &mut Report) {
    let Some(&n) = k.scale.iter().max() else {
        return;
    };
    assert!(
        k.scale.iter().all(|&n| n >= 2),
        "PEERGATE_BENCH_SCALE: sizes must be >= 2 (0 alone skips the scale run)"
    );
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
    let pod_dir = bed.pod(0).expect("pod 0").dir.clone();
    std::fs::write(pod_dir.join("standalone-hosts"), STANDALONE_HOSTS)
        .expect("write standalone hosts file");
    let mut sizes = k.scale.clone();
    sizes.sort();
    sizes.dedup();
    for &size in &sizes {
        let names: Vec<String> = (0..size).map(|i| format!("{}.", bed.fqdn(i))).collect();
        for rep in 0..k.scale_reps {
            for &c in &k.scale_contenders {
                let r = run_contender(&mut bed, k, c, rep, &names);
                eprintln!(
                    "bench: scale {size} peers rep {}/{} {}: {}",
                    rep + 1,
                    k.scale_reps,
                    c.label(),
                    r.describe()
                );
                report.add_scale(size, c, r);
            }
            report.save_partial(&k.out);
        }
    }
}

fn run_contender(
    bed: &mut Bed,
    k: &Knobs,
    c: ScaleContender,
    rep: usize,
    names: &[String],
) -> RunResult {
    let n = names.len();
    let pod = bed.pod(0).expect("pod 0").clone();
    let name = format!("scale{n}-{}-r{rep}", c.short());
    let rusage = pod.dir.join(format!("{name}.rusage"));
    let pg = k.peergate.display().to_string();
    let hosts = |family: &str| -> Vec<String> {
        // FQDNs as a user writes them (no trailing dot): five dots, so
        // with ndots:5 a resolver tries each name as it is first.
        let list = names
            .iter()
            .map(|n| n.trim_end_matches('.'))
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            list.len() < MAX_ARG,
            "--hosts with {n} names is {} bytes, over the kernel's limit for one argument",
            list.len()
        );
        vec![
            pg.clone(),
            "--hosts".into(),
            list,
            "--probe".into(),
            "icmp".into(),
            "--ip-family".into(),
            family.into(),
            "--hosts-file".into(),
            pod.dir.join("standalone-hosts").display().to_string(),
            "--timeout".into(),
            "100s".into(),
        ]
    };
    let mut argv: Vec<String> = match c {
        ScaleContender::Peers => vec![
            pg.clone(),
            "--peers".into(),
            n.to_string(),
            "--timeout".into(),
            "100s".into(),
        ],
        ScaleContender::Fping1 => vec!["fping".into(), "-i".into(), "1".into()],
        ScaleContender::Seed => vec![
            "bash".into(),
            crate::latency::seed_script(),
            bed.cfg.job.clone(),
            bed.cfg.subdomain.clone(),
            n.to_string(),
        ],
        ScaleContender::Fping => vec!["fping".into()],
        // Default flags but half the concurrency: shows what the default
        // of 256 probes in flight costs (see the README's reading).
        ScaleContender::Peers128 => vec![
            pg.clone(),
            "--peers".into(),
            n.to_string(),
            "--concurrency".into(),
            "128".into(),
            "--timeout".into(),
            "100s".into(),
        ],
        ScaleContender::HostsAuto => hosts("auto"),
        ScaleContender::HostsV4 => hosts("ipv4"),
    };
    if matches!(c, ScaleContender::Fping1 | ScaleContender::Fping) {
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

pub type Snmp = std::collections::BTreeMap<String, i64>;

/// Counters of /proc/net/snmp in namespace `ns` as `Proto:Name` → value
/// (UDP receive-buffer drops at the DNS server, ICMP echoes of the pod).
pub fn snmp(bed: &Bed, ns: &str) -> Snmp {
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

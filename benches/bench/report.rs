//! Results: per-run figures, medians, the markdown table and the targets.

use crate::Knobs;
use crate::latency::{Contender, Dns, Scenario};
use crate::support::bed::DnsQuery;
use crate::wrap::Usage;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Figures of one run (all pods of a latency run, or one scale contender).
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    pub ok: bool,
    pub note: String,
    /// Latency runs: late gate start to last gate exit.
    pub latency_s: Option<f64>,
    /// Scale runs: the gate's own wall time.
    pub wall_s: Option<f64>,
    pub dns_total: usize,
    pub dns_by_type: BTreeMap<String, usize>,
    pub cpu_ms_mean: f64,
    pub cpu_ms_max: f64,
    pub rss_kb_max: u64,
    /// Kernel counters over the run (scale runs): `dns_rcvbuf_drops` (UDP
    /// receive-buffer drops in the DNS namespace), `echo_out`, `echo_reply_in`.
    pub counters: BTreeMap<&'static str, i64>,
}

impl RunResult {
    /// Figures from each gate's rusage record and the DNS queries they sent.
    /// A missing record or a non-zero exit marks the run failed.
    pub fn from_usages(usages: &[Option<Usage>], queries: &[DnsQuery]) -> RunResult {
        let mut r = RunResult {
            ok: true,
            dns_total: queries.len(),
            ..RunResult::default()
        };
        for q in queries {
            *r.dns_by_type.entry(q.qtype.clone()).or_default() += 1;
        }
        let got: Vec<&Usage> = usages.iter().flatten().collect();
        if got.len() < usages.len() {
            r.fail(format!(
                "{} of {} gates left no rusage record",
                usages.len() - got.len(),
                usages.len()
            ));
        }
        let bad: Vec<String> = usages
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                u.filter(|u| u.code != 0)
                    .map(|u| format!("pod {i}: {}", u.code))
            })
            .collect();
        if !bad.is_empty() {
            r.fail(format!("non-zero exits: {}", bad.join(", ")));
        }
        if !got.is_empty() {
            let cpu: Vec<f64> = got.iter().map(|u| u.cpu_us as f64 / 1000.0).collect();
            r.cpu_ms_mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
            r.cpu_ms_max = cpu.iter().copied().fold(0.0, f64::max);
            r.rss_kb_max = got.iter().map(|u| u.maxrss_kb).max().unwrap_or(0);
        }
        r
    }

    pub fn fail(&mut self, why: String) {
        self.ok = false;
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(&why);
    }

    pub fn dns(&self, qtype: &str) -> usize {
        self.dns_by_type.get(qtype).copied().unwrap_or(0)
    }

    pub fn describe(&self) -> String {
        let time = match (self.latency_s, self.wall_s) {
            (Some(l), _) => format!("release {l:.3}s"),
            (None, Some(w)) => format!("wall {w:.3}s"),
            _ => "no time".into(),
        };
        let mut s = format!(
            "{} {time}, {} DNS queries {:?}, CPU {:.1} ms/pod, RSS {:.1} MB",
            if self.ok { "ok" } else { "FAILED" },
            self.dns_total,
            self.dns_by_type,
            self.cpu_ms_mean,
            self.rss_kb_max as f64 / 1024.0
        );
        if !self.note.is_empty() {
            write!(s, " ({})", self.note).unwrap();
        }
        s
    }
}

/// Median, min and max of some values.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// `median [min–max]` with `prec` decimals.
    pub fn show(&self, prec: usize) -> String {
        if self.n == 1 {
            return format!("{:.prec$}", self.median);
        }
        format!(
            "{:.prec$} [{:.prec$}–{:.prec$}]",
            self.median, self.min, self.max
        )
    }
}

/// Scale contenders, in the order they run.
pub const SCALE_CONTENDERS: [&str; 5] = [
    "peergate --peers N",
    "fping -i 1",
    "seed loop",
    "fping (default -i 10)",
    "peergate --peers N --concurrency 128",
];

pub struct Report {
    pub reps: usize,
    pub reps_big: usize,
    pub late_s: f64,
    pub stagger: bool,
    pub late_jitter: bool,
    pub scale_peers: usize,
    pub scale_reps: usize,
    pub latency: BTreeMap<(Scenario, Contender), Vec<RunResult>>,
    pub scale: BTreeMap<usize, Vec<RunResult>>,
    pub runtime: Option<Duration>,
    /// The PEERGATE_BENCH_* variables of this run, for the header.
    pub env: Vec<String>,
}

fn ok_runs(runs: &[RunResult]) -> impl Iterator<Item = &RunResult> {
    runs.iter().filter(|r| r.ok)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn mb(kb: f64) -> f64 {
    kb / 1024.0
}

impl Report {
    pub fn new(k: &Knobs) -> Report {
        Report {
            reps: k.reps,
            reps_big: k.reps_big,
            late_s: k.late_s,
            stagger: k.stagger,
            late_jitter: k.late_jitter,
            scale_peers: k.scale,
            scale_reps: k.scale_reps,
            latency: BTreeMap::new(),
            scale: BTreeMap::new(),
            runtime: None,
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("PEERGATE_BENCH_"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        }
    }

    pub fn add_latency(&mut self, sc: Scenario, c: Contender, r: RunResult) {
        self.latency.entry((sc, c)).or_default().push(r);
    }

    pub fn add_scale(&mut self, contender: usize, r: RunResult) {
        self.scale.entry(contender).or_default().push(r);
    }

    pub fn finish(&mut self, runtime: Duration) {
        self.runtime = Some(runtime);
    }

    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut v: Vec<Scenario> = self.latency.keys().map(|(s, _)| *s).collect();
        v.dedup();
        v
    }

    pub fn contenders(&self) -> Vec<Contender> {
        let mut v: Vec<Contender> = self.latency.keys().map(|(_, c)| *c).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn latency_stat(&self, sc: Scenario, c: Contender) -> Option<Stat> {
        let runs = self.latency.get(&(sc, c))?;
        Stat::of(ok_runs(runs).filter_map(|r| r.latency_s))
    }

    fn lat_field(&self, sc: Scenario, c: Contender, f: impl Fn(&RunResult) -> f64) -> Option<Stat> {
        let runs = self.latency.get(&(sc, c))?;
        Stat::of(ok_runs(runs).map(f))
    }

    fn scale_field(&self, c: usize, f: impl Fn(&RunResult) -> f64) -> Option<Stat> {
        Stat::of(ok_runs(self.scale.get(&c)?).map(f))
    }

    /// Writes the markdown so far (no plot) to `<out>/results.md`.
    pub fn save_partial(&self, out: &Path) {
        if std::fs::create_dir_all(out).is_ok() {
            let _ = std::fs::write(out.join("results.md"), self.markdown());
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        writeln!(w, "# peergate benchmark results\n").unwrap();
        let env = if self.env.is_empty() {
            String::new()
        } else {
            format!("{} ", self.env.join(" "))
        };
        writeln!(
            w,
            "Produced by `{env}cargo bench --bench bench` (benches/bench/, run as root on the e2e bed)."
        )
        .unwrap();
        writeln!(w, "{}\n", machine_line()).unwrap();
        if let Some(t) = self.runtime {
            writeln!(w, "Whole benchmark took {:.0} s.\n", t.as_secs_f64()).unwrap();
        }
        self.latency_table(w);
        self.scale_table(w);
        self.targets(w);
        s
    }

    fn latency_table(&self, w: &mut String) {
        if self.latency.is_empty() {
            return;
        }
        writeln!(w, "## Release latency after the last pod starts\n").unwrap();
        writeln!(
            w,
            "N pods; {} the last pod (sandbox, DNS record, gate) \
             starts once every early gate has asked DNS for its name at least once (so every \
             contender is waiting for it; 63 seed loops need seconds of CPU on 2 cores to get \
             there) and then {:.1} s{} later. *Release* is the time from the late pod's gate \
             process start until the last gate of the job exits 0. Figures are median [min–max] \
             over the successful runs (`ok` = successful/total; {} repetitions, {} for 64 pods and more). \
             *DNS* counts the queries received by the tier the pods query (the negative cache \
             when present), all pods together, per run. *CPU* is user+system time per pod (mean \
             over the pods, children such as the seed loop's `ping` included); *RSS* the largest \
             peak RSS of any pod's gate process. Ratios are against the seed loop of the same \
             scenario (medians).\n",
            if self.stagger {
                "pods 0..N-2 start one after the other, each gate right after its own sandbox \
                 and DNS record (PEERGATE_BENCH_STAGGER=1);"
            } else {
                "the sandboxes and DNS records of pods 0..N-2 are created first, then their gates \
                 start one after the other;"
            },
            self.late_s,
            if self.late_jitter {
                " plus a fraction of a second that differs per repetition (golden-ratio steps over \
                 [0, 1) s, the same for every contender of a repetition, so that no contender always \
                 meets the late pod at the same phase of its 1 s retry cycle)"
            } else {
                ""
            },
            self.reps,
            self.reps_big
        )
        .unwrap();
        writeln!(
            w,
            "| pods | DNS | contender | ok | release (s) | × seed | DNS queries | × seed | CPU ms/pod | peak RSS MB |"
        )
        .unwrap();
        writeln!(w, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|").unwrap();
        for sc in self.scenarios() {
            let seed_lat = self.latency_stat(sc, Contender::Seed);
            let seed_dns = self.lat_field(sc, Contender::Seed, |r| r.dns_total as f64);
            for c in self.contenders() {
                let Some(runs) = self.latency.get(&(sc, c)) else {
                    continue;
                };
                let ok = ok_runs(runs).count();
                let lat = self.latency_stat(sc, c);
                let dns = self.lat_field(sc, c, |r| r.dns_total as f64);
                let cpu = self.lat_field(sc, c, |r| r.cpu_ms_mean);
                let rss = self.lat_field(sc, c, |r| mb(r.rss_kb_max as f64));
                let vs = |a: Option<Stat>, b: Option<Stat>| match (a, b) {
                    (Some(a), Some(b)) if c != Contender::Seed => ratio(a.median, b.median),
                    _ => "–".into(),
                };
                let show = |x: Option<Stat>, p: usize| x.map_or("–".into(), |x| x.show(p));
                writeln!(
                    w,
                    "| {} | {} | {} | {ok}/{} | {} | {} | {} | {} | {} | {} |",
                    sc.pods,
                    sc.dns.label(),
                    c.label(),
                    runs.len(),
                    show(lat, 3),
                    vs(lat, seed_lat),
                    show(dns, 0),
                    vs(dns, seed_dns),
                    show(cpu, 1),
                    show(rss, 1),
                )
                .unwrap();
            }
        }
        writeln!(w, "\nPlot: [latency.svg](latency.svg)\n").unwrap();
        let fails: Vec<String> = self
            .latency
            .iter()
            .flat_map(|((sc, c), runs)| {
                runs.iter().filter(|r| !r.ok).map(move |r| {
                    format!(
                        "- {} pods, {}, {}: {}",
                        sc.pods,
                        sc.dns.label(),
                        c.label(),
                        r.note
                    )
                })
            })
            .collect();
        if !fails.is_empty() {
            writeln!(w, "Failed runs (excluded from the figures):\n").unwrap();
            for f in fails {
                writeln!(w, "{f}").unwrap();
            }
            writeln!(w).unwrap();
        }
    }

    fn scale_table(&self, w: &mut String) {
        if self.scale.is_empty() {
            return;
        }
        let n = self.scale_peers;
        writeln!(w, "## {n} peers, all up\n").unwrap();
        writeln!(
            w,
            "One single-stack IPv4 pod (index 0, kubelet-style hosts file and resolv.conf) checks \
             {n} peers: itself plus {} addresses on the loopback interface of a peer namespace on the \
             bridge, each with an A record in the cluster dnsmasq. *Wall* is the command's own run \
             time (process start to exit, all peers reachable); median [min–max] of {} runs. \
             fping gets the same FQDNs as peergate (trailing dot, so no search-list walk); the \
             seed loop uses its short names through the search list. DNS counts the queries the \
             cluster DNS received from the pod during the command; *DNS drops* the UDP datagrams \
             the DNS server's namespace dropped for a full receive buffer (kernel counter \
             Udp:RcvbufErrors); *echo out / replies in* the pod's ICMP echo requests sent and \
             echo replies received by its kernel (more out than peers: retries).\n",
            n - 1,
            self.scale_reps
        )
        .unwrap();
        writeln!(
            w,
            "| contender | ok | wall (s) | × peergate | CPU ms | peak RSS MB | DNS queries | A / AAAA / PTR | per peer | DNS drops | echo out / replies in |"
        )
        .unwrap();
        writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|").unwrap();
        let pg = self.scale_field(0, |r| r.wall_s.unwrap_or(f64::NAN));
        for (&c, runs) in &self.scale {
            let ok = ok_runs(runs).count();
            let wall = self.scale_field(c, |r| r.wall_s.unwrap_or(f64::NAN));
            let cpu = self.scale_field(c, |r| r.cpu_ms_mean);
            let rss = self.scale_field(c, |r| mb(r.rss_kb_max as f64));
            let dns = self.scale_field(c, |r| r.dns_total as f64);
            let typ = |t: &'static str| self.scale_field(c, move |r| r.dns(t) as f64);
            let cnt = |k: &'static str| {
                self.scale_field(c, move |r| r.counters.get(k).copied().unwrap_or(0) as f64)
            };
            let show = |x: Option<Stat>, p: usize| x.map_or("–".into(), |x| x.show(p));
            let med = |x: Option<Stat>| x.map_or("–".into(), |x| format!("{:.0}", x.median));
            let vs = match (wall, pg) {
                (Some(a), Some(b)) => ratio(a.median, b.median),
                _ => "–".into(),
            };
            writeln!(
                w,
                "| {} | {ok}/{} | {} | {vs} | {} | {} | {} | {} / {} / {} | {} | {} | {} / {} |",
                SCALE_CONTENDERS[c],
                runs.len(),
                show(wall, 3),
                show(cpu, 0),
                show(rss, 1),
                show(dns, 0),
                med(typ("A")),
                med(typ("AAAA")),
                med(typ("PTR")),
                dns.map_or("–".into(), |d| format!("{:.2}", d.median / n as f64)),
                show(cnt("dns_rcvbuf_drops"), 0),
                med(cnt("echo_out")),
                med(cnt("echo_reply_in")),
            )
            .unwrap();
        }
        for (&c, runs) in &self.scale {
            for r in runs.iter().filter(|r| !r.ok) {
                writeln!(w, "\n- failed run of {}: {}", SCALE_CONTENDERS[c], r.note).unwrap();
            }
        }
        writeln!(w).unwrap();
    }

    /// The targets of issue 7, each with the measured figure and met/missed.
    pub fn target_lines(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        for sc in self.scenarios() {
            let (Some(seed), Some(ping)) = (
                self.latency_stat(sc, Contender::Seed),
                self.latency_stat(sc, Contender::Ping),
            ) else {
                continue;
            };
            let ok = ping.median <= seed.median * 1.05;
            out.push((
                ok,
                format!(
                    "ping mode latency no worse than the seed loop ({} pods, {}): {:.3} s vs {:.3} s \
                     (× {:.2}; 5 % tolerance): {}",
                    sc.pods,
                    sc.dns.label(),
                    ping.median,
                    seed.median,
                    ping.median / seed.median,
                    verdict(ok)
                ),
            ));
            let dseed = self.lat_field(sc, Contender::Seed, |r| r.dns_total as f64);
            let dping = self.lat_field(sc, Contender::Ping, |r| r.dns_total as f64);
            if let (Some(ds), Some(dp)) = (dseed, dping) {
                let ok = dp.median * 8.0 <= ds.median;
                out.push((
                    ok,
                    format!(
                        "ping mode DNS queries <= 1/8 of the seed loop's ({} pods, {}): {:.0} vs {:.0} \
                         (1/{:.1}): {}",
                        sc.pods,
                        sc.dns.label(),
                        dp.median,
                        ds.median,
                        ds.median / dp.median.max(1.0),
                        verdict(ok)
                    ),
                ));
            }
        }
        for sc in self.scenarios() {
            if let Some(b) = self.latency_stat(sc, Contender::Barrier) {
                let ok = b.median <= 0.050;
                out.push((
                    ok,
                    format!(
                        "barrier release <= 50 ms after the last pod starts ({} pods, {}): median {:.1} ms \
                         (max {:.1} ms): {}",
                        sc.pods,
                        sc.dns.label(),
                        b.median * 1000.0,
                        b.max * 1000.0,
                        verdict(ok)
                    ),
                ));
            }
        }
        for sc in self.scenarios().into_iter().filter(|s| s.pods >= 64) {
            for c in [Contender::Barrier, Contender::Ping] {
                if c == Contender::Ping && sc.dns != Dns::Plain {
                    continue; // bounded by the cache TTL by design; reported above
                }
                if let Some(l) = self.latency_stat(sc, c) {
                    let ok = l.median <= 0.5;
                    out.push((
                        ok,
                        format!(
                            "{} pods released <= 0.5 s after the last starts ({}, {}): median {:.3} s: {}",
                            sc.pods,
                            c.label(),
                            sc.dns.label(),
                            l.median,
                            verdict(ok)
                        ),
                    ));
                }
            }
        }
        if let Some(pg) = self.scale.get(&0) {
            let n = self.scale_peers as f64;
            let wall = Stat::of(ok_runs(pg).filter_map(|r| r.wall_s));
            let rss = Stat::of(ok_runs(pg).map(|r| r.rss_kb_max as f64));
            let dns = Stat::of(ok_runs(pg).map(|r| r.dns_total as f64));
            let ptr = Stat::of(ok_runs(pg).map(|r| r.dns("PTR") as f64));
            if let Some(wall) = wall {
                let ok = wall.median <= 0.25;
                out.push((
                    ok,
                    format!(
                        "{n} peers all up <= 0.25 s wall: {:.3} s: {}",
                        wall.median,
                        verdict(ok)
                    ),
                ));
                for (c, name) in [(2usize, "the seed loop"), (1, "fping -i 1")] {
                    if let Some(o) = self.scale_field(c, |r| r.wall_s.unwrap_or(f64::NAN)) {
                        let ok = o.median >= 5.0 * wall.median;
                        out.push((
                            ok,
                            format!(
                                "{n} peers >= 5x faster than {name}: {:.3} s vs {:.3} s (x {:.1}): {}",
                                wall.median,
                                o.median,
                                o.median / wall.median,
                                verdict(ok)
                            ),
                        ));
                    }
                }
            }
            if let Some(rss) = rss {
                let ok = rss.median <= 10.0 * 1024.0;
                out.push((
                    ok,
                    format!(
                        "{n} peers <= 10 MB (MiB) peak RSS: {:.1} MB: {}",
                        mb(rss.median),
                        verdict(ok)
                    ),
                ));
            }
            if let (Some(dns), Some(ptr)) = (dns, ptr) {
                let ok = dns.median <= n;
                out.push((
                    ok,
                    format!(
                        "{n} peers <= 1 DNS query per peer: {:.0} queries ({:.2}/peer): {}",
                        dns.median,
                        dns.median / n,
                        verdict(ok)
                    ),
                ));
                let ok = ptr.max == 0.0;
                out.push((
                    ok,
                    format!(
                        "{n} peers, no reverse lookups: {:.0} PTR queries (max over runs): {}",
                        ptr.max,
                        verdict(ok)
                    ),
                ));
            }
        }
        out
    }

    fn targets(&self, w: &mut String) {
        let lines = self.target_lines();
        if lines.is_empty() {
            return;
        }
        writeln!(w, "## Targets (issue 7)\n").unwrap();
        for (_, l) in lines {
            writeln!(w, "- {l}").unwrap();
        }
        writeln!(w).unwrap();
    }
}

/// Machine, kernel, peergate commit and date, for the header.
fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let src = match git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ]) {
        s if s.is_empty() => "",
        s if s == "?" => ", working tree unknown",
        _ => " plus uncommitted changes in src/ or Cargo files",
    };
    format!(
        "Run {date} on {cpu}, {cores} cores, Linux {kernel}; peergate at commit {}{src} \
         (release build).",
        git(&["rev-parse", "--short", "HEAD"])
    )
}

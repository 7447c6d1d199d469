//! Results: per-run figures, medians, the markdown table and the targets.

use crate::Knobs;
use crate::latency::{Contender, Dns, Scenario};
use crate::scale::ScaleContender;
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
    /// Sidecar runs: one pod replaced after the release.
    pub readmit: Option<Readmit>,
}

/// Re-admission of a replaced pod after a sidecar run released.
#[derive(Clone, Debug, Default)]
pub struct Readmit {
    pub ok: bool,
    pub note: String,
    /// The replacement's sidecar start until its await exits 0.
    pub latency_s: Option<f64>,
    /// The replacement's sidecar start until every other sidecar has
    /// logged `peer replaced` for it (its hand-off follows).
    pub known_s: Option<f64>,
    /// DNS queries from the deletion until the replacement's await exited
    /// (every pod, the tier the pods query).
    pub dns: usize,
}

impl RunResult {
    /// A successful run so far, with the DNS queries it sent.
    pub fn new(queries: &[DnsQuery]) -> RunResult {
        let mut r = RunResult {
            ok: true,
            dns_total: queries.len(),
            ..RunResult::default()
        };
        for q in queries {
            *r.dns_by_type.entry(q.qtype.clone()).or_default() += 1;
        }
        r
    }

    /// Figures from each gate's rusage record and the DNS queries they sent.
    /// A missing record or a non-zero exit marks the run failed.
    pub fn from_usages(usages: &[Option<Usage>], queries: &[DnsQuery]) -> RunResult {
        let mut r = RunResult::new(queries);
        r.check_exits("gates", usages);
        r.resources(usages);
        r
    }

    /// Fails the run when one of `usages` (processes called `what`, one per
    /// pod index) left no record or exited non-zero.
    pub fn check_exits(&mut self, what: &str, usages: &[Option<Usage>]) {
        let got = usages.iter().flatten().count();
        if got < usages.len() {
            self.fail(format!(
                "{} of {} {what} left no rusage record",
                usages.len() - got,
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
            self.fail(format!("non-zero exits of {what}: {}", bad.join(", ")));
        }
    }

    /// CPU (mean and max per process) and the largest peak RSS of the
    /// processes that left a record.
    pub fn resources(&mut self, usages: &[Option<Usage>]) {
        let got: Vec<&Usage> = usages.iter().flatten().collect();
        if !got.is_empty() {
            let cpu: Vec<f64> = got.iter().map(|u| u.cpu_us as f64 / 1000.0).collect();
            self.cpu_ms_mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
            self.cpu_ms_max = cpu.iter().copied().fold(0.0, f64::max);
            self.rss_kb_max = got.iter().map(|u| u.maxrss_kb).max().unwrap_or(0);
        }
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
        if let Some(a) = &self.readmit {
            match (a.ok, a.latency_s) {
                (true, Some(l)) => write!(
                    s,
                    "; re-admission {l:.3}s, known to all {}, {} DNS queries",
                    a.known_s.map_or("–".into(), |k| format!("{k:.3}s")),
                    a.dns
                ),
                _ => write!(s, "; re-admission FAILED ({})", a.note),
            }
            .unwrap();
        }
        s
    }
}

/// Figures of one barrier-scale run (N processes on the lean bed).
#[derive(Clone, Debug, Default)]
pub struct FleetResult {
    pub ok: bool,
    pub note: String,
    /// Latest exit among all N minus the last pod's start.
    pub latency_s: Option<f64>,
    /// Index of the process that exited last.
    pub slowest: Option<usize>,
    /// Time to spawn the N-1 early processes.
    pub spawn_s: f64,
    /// First early spawn until every early pod had logged `N-1/N met`.
    pub converge_s: Option<f64>,
    pub dns_total: usize,
    pub dns_by_type: BTreeMap<String, usize>,
    /// UDP datagrams dropped for a full receive buffer in the DNS namespace.
    pub dns_drops: i64,
    /// Distinct names asked for, and the most asked one with its count.
    pub dns_names: usize,
    pub dns_top: Option<(String, usize)>,
    /// `peer lost` lines (a link ended without a goodbye: the peer counted
    /// gone) in all logs, and how many processes logged one.
    pub lost_lines: usize,
    pub lost_procs: usize,
    /// `peer met` lines (direct links adopted) per process: max, mean, and
    /// the index with the most.
    pub links_max: usize,
    pub links_mean: f64,
    pub links_argmax: Option<usize>,
    pub cpu_ms_median: f64,
    pub cpu_ms_max: f64,
    pub rss_kb_median: f64,
    pub rss_kb_max: f64,
    /// CPU all N processes used from the last pod's start to the end.
    pub release_cpu_s: Option<f64>,
    /// Share of the machine's CPU time left idle meanwhile (every process
    /// of the machine counts, other users' too).
    pub idle_frac: Option<f64>,
}

impl FleetResult {
    pub fn fail(&mut self, why: String) {
        self.ok = false;
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(&why);
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} release {}, spawned in {:.1}s, converged after {}, {} DNS queries {:?} \
             ({} dropped), links/pod max {} (pod {}) mean {:.1}, CPU ms/pod median {:.1} max {:.1}, \
             RSS MB median {:.1} max {:.1}, CPU after the last start {} (machine idle {}), \
             {} names asked (most: {}), {} `peer lost` lines in {} processes",
            if self.ok { "ok" } else { "FAILED" },
            self.latency_s.map_or("–".into(), |l| format!(
                "{l:.3}s (last exit: pod {:?})",
                self.slowest
            )),
            self.spawn_s,
            self.converge_s.map_or("–".into(), |c| format!("{c:.1}s")),
            self.dns_total,
            self.dns_by_type,
            self.dns_drops,
            self.links_max,
            self.links_argmax.map_or("–".into(), |i| i.to_string()),
            self.links_mean,
            self.cpu_ms_median,
            self.cpu_ms_max,
            self.rss_kb_median / 1024.0,
            self.rss_kb_max / 1024.0,
            self.release_cpu_s
                .map_or("–".into(), |c| format!("{c:.3}s")),
            self.idle_frac
                .map_or("–".into(), |f| format!("{:.0} %", f * 100.0)),
            self.dns_names,
            self.dns_top
                .as_ref()
                .map_or("–".into(), |(n, c)| format!("{n} × {c}")),
            self.lost_lines,
            self.lost_procs,
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

fn show(x: Option<Stat>, prec: usize) -> String {
    x.map_or("–".into(), |x| x.show(prec))
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

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// `median 12.0 ms (met), worst 80.0 ms (MISSED)` against an upper bound
/// `limit` (seconds), shown in ms below 1 s. Failed runs are worst of all:
/// with any, the worst is MISSED.
fn median_and_worst(s: Stat, limit: f64, failed: usize) -> (bool, String) {
    let t = |v: f64| {
        if limit < 1.0 {
            format!("{:.1} ms", v * 1000.0)
        } else {
            format!("{v:.3} s")
        }
    };
    let worst_ok = s.max <= limit && failed == 0;
    let failed_note = if failed > 0 {
        format!(", and {failed} failed run(s)")
    } else {
        String::new()
    };
    (
        s.median <= limit && worst_ok,
        format!(
            "median {} ({}), worst {} ({}) over {} run(s){failed_note}",
            t(s.median),
            verdict(s.median <= limit),
            t(s.max),
            verdict(worst_ok),
            s.n
        ),
    )
}

pub struct Report {
    pub reps: usize,
    pub reps_big: usize,
    pub late_s: f64,
    pub stagger: bool,
    pub late_jitter: bool,
    pub scale_reps: usize,
    pub latency: BTreeMap<(Scenario, Contender), Vec<RunResult>>,
    pub scale: BTreeMap<(usize, ScaleContender), Vec<RunResult>>,
    pub fleet: BTreeMap<(usize, Dns), Vec<FleetResult>>,
    pub runtime: Option<Duration>,
    /// The PEERGATE_BENCH_* variables of this run, for the header.
    pub env: Vec<String>,
    /// Which peergate binary was measured, and where it came from.
    pub binary: String,
    pub load_start: String,
    pub load_end: Option<String>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

impl Report {
    pub fn new(k: &Knobs) -> Report {
        Report {
            reps: k.reps,
            reps_big: k.reps_big,
            late_s: k.late_s,
            stagger: k.stagger,
            late_jitter: k.late_jitter,
            scale_reps: k.scale_reps,
            latency: BTreeMap::new(),
            scale: BTreeMap::new(),
            fleet: BTreeMap::new(),
            runtime: None,
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("PEERGATE_BENCH_"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            binary: binary_line(&k.peergate, &k.bin_origin),
            load_start: loadavg(),
            load_end: None,
        }
    }

    pub fn add_latency(&mut self, sc: Scenario, c: Contender, r: RunResult) {
        self.latency.entry((sc, c)).or_default().push(r);
    }

    pub fn add_scale(&mut self, peers: usize, c: ScaleContender, r: RunResult) {
        self.scale.entry((peers, c)).or_default().push(r);
    }

    pub fn add_fleet(&mut self, pods: usize, dns: Dns, r: FleetResult) {
        self.fleet.entry((pods, dns)).or_default().push(r);
    }

    pub fn finish(&mut self, runtime: Duration) {
        self.runtime = Some(runtime);
        self.load_end = Some(loadavg());
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

    fn failed(&self, sc: Scenario, c: Contender) -> usize {
        self.latency
            .get(&(sc, c))
            .map_or(0, |runs| runs.iter().filter(|r| !r.ok).count())
    }

    fn lat_field(&self, sc: Scenario, c: Contender, f: impl Fn(&RunResult) -> f64) -> Option<Stat> {
        let runs = self.latency.get(&(sc, c))?;
        Stat::of(ok_runs(runs).map(f))
    }

    fn scale_field(
        &self,
        n: usize,
        c: ScaleContender,
        f: impl Fn(&RunResult) -> f64,
    ) -> Option<Stat> {
        Stat::of(ok_runs(self.scale.get(&(n, c))?).map(f))
    }

    fn scale_sizes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.scale.keys().map(|(n, _)| *n).collect();
        v.dedup();
        v
    }

    fn fleet_field(
        &self,
        key: (usize, Dns),
        f: impl Fn(&FleetResult) -> Option<f64>,
    ) -> Option<Stat> {
        Stat::of(self.fleet.get(&key)?.iter().filter(|r| r.ok).filter_map(f))
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
        writeln!(w, "{}\n", self.binary).unwrap();
        write!(
            w,
            "Load average (1, 5, 15 min) when the benchmark started: {}",
            self.load_start
        )
        .unwrap();
        match &self.load_end {
            Some(end) => writeln!(w, "; when it ended: {end}.").unwrap(),
            None => writeln!(w, " (partial results: still running).").unwrap(),
        }
        if let Some(t) = self.runtime {
            writeln!(w, "Whole benchmark took {:.0} s.", t.as_secs_f64()).unwrap();
        }
        writeln!(
            w,
            "\nEvery figure is `median [min–max]` over the successful runs of its row (`ok` = \
             successful/total runs); for times and sizes the max is the worst run. Failed runs are \
             listed under each table and count against every \"every run\" target.\n"
        )
        .unwrap();
        self.latency_table(w);
        self.readmit_table(w);
        self.fleet_table(w);
        self.scale_tables(w);
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
            "N pods, one network namespace each; {} the last pod (sandbox, DNS record, gate) \
             starts once every early pod is waiting for it only: for the seed loop and ping mode, \
             every early gate has asked DNS for the late pod's name at least once; for barrier \
             and sidecar, every early pod has logged `N-1/N met`. It then starts {:.1} s{} later. \
             *Release* is the time from the late pod's first process start (gate, or sidecar) \
             until the last gate (or `peergate await`) of the job exits 0. {} repetitions, {} \
             for 64 pods and more. The negative cache is a dnsmasq with `--neg-ttl` and {} \
             entries in front of the cluster DNS. *DNS* counts the queries received by the tier \
             the pods query (the negative cache when present), all pods together, per run, until \
             the release. \
             *CPU* is user+system time per pod (mean over the pods, children such as the seed \
             loop's `ping` included; for the sidecar, the sidecar process over its whole life up \
             to SIGTERM); *RSS* the largest peak RSS of any pod's gate (or sidecar) process. \
             Ratios are against the seed loop of the same scenario (medians).\n",
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
            self.reps_big,
            crate::latency::CACHE_SIZE
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
        let notes: Vec<String> = self
            .latency
            .iter()
            .flat_map(|((sc, c), runs)| {
                runs.iter()
                    .filter(|r| r.ok && !r.note.is_empty())
                    .map(move |r| {
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
        if !notes.is_empty() {
            writeln!(
                w,
                "Runs that succeeded with a note (the late pod may not have been late for all):\n"
            )
            .unwrap();
            for n in notes {
                writeln!(w, "{n}").unwrap();
            }
            writeln!(w).unwrap();
        }
    }

    /// Re-admissions of the sidecar runs, per scenario.
    fn readmits(&self, sc: Scenario) -> Vec<&Readmit> {
        self.latency
            .get(&(sc, Contender::Sidecar))
            .map_or(Vec::new(), |runs| {
                runs.iter().filter_map(|r| r.readmit.as_ref()).collect()
            })
    }

    fn readmit_table(&self, w: &mut String) {
        let rows: Vec<(Scenario, Vec<&Readmit>)> = self
            .scenarios()
            .into_iter()
            .map(|sc| (sc, self.readmits(sc)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if rows.is_empty() {
            return;
        }
        writeln!(w, "## Re-admission of a replaced pod (sidecar)\n").unwrap();
        writeln!(
            w,
            "After a sidecar run has released (every await passed), pod {} is deleted (its \
             processes killed, its DNS record withdrawn) and {:.1} s later a replacement starts \
             under the same name with a new address: sandbox, record, then its sidecar and await. \
             *Re-admission* is the replacement's sidecar start until its await exits 0; *known \
             to all* until every other sidecar has logged `peer replaced` for it (the time stamp \
             of that log line; from then on its hand-off lists the new address); a sidecar that \
             never logs it fails the re-admission. *DNS* counts the queries of every pod from the \
             deletion until the await passed. Afterwards every sidecar gets SIGTERM and must \
             exit 0.\n",
            crate::latency::READMIT_INDEX,
            crate::latency::READMIT_GAP.as_secs_f64()
        )
        .unwrap();
        writeln!(
            w,
            "| pods | DNS | ok | re-admission (s) | known to all (s) | DNS queries |"
        )
        .unwrap();
        writeln!(w, "|---:|---|---:|---:|---:|---:|").unwrap();
        for (sc, v) in &rows {
            let ok: Vec<&&Readmit> = v.iter().filter(|a| a.ok).collect();
            let lat = Stat::of(ok.iter().filter_map(|a| a.latency_s));
            let known = Stat::of(ok.iter().filter_map(|a| a.known_s));
            let dns = Stat::of(ok.iter().map(|a| a.dns as f64));
            writeln!(
                w,
                "| {} | {} | {}/{} | {} | {} | {} |",
                sc.pods,
                sc.dns.label(),
                ok.len(),
                v.len(),
                show(lat, 3),
                show(known, 3),
                show(dns, 0)
            )
            .unwrap();
        }
        for (sc, v) in &rows {
            for a in v.iter().filter(|a| !a.ok) {
                writeln!(
                    w,
                    "\n- failed re-admission, {} pods, {}: {}",
                    sc.pods,
                    sc.dns.label(),
                    a.note
                )
                .unwrap();
            }
        }
        writeln!(w).unwrap();
    }

    fn fleet_table(&self, w: &mut String) {
        if self.fleet.is_empty() {
            return;
        }
        writeln!(
            w,
            "## Barrier mode at scale: N processes in one namespace\n"
        )
        .unwrap();
        writeln!(
            w,
            "The lean bed of `benches/bench/barrier_scale.rs`: one network namespace with one \
             address per pod on its loopback, N `peergate --mode barrier` processes, each with \
             `--listen <its address>` and its identity from flags; DNS as in the latency runs \
             (records for every pod and the Service's own name). The last pod's record is \
             published and the last pod started once every early pod has logged `N-1/N met`. \
             *Release* is the latest exit among all N minus the last pod's start; every process \
             must exit 0. *Converged* is the time from the first early spawn until every early \
             pod had logged that line (includes spawning them and up to one 1 s progress \
             interval). *DNS* counts every query the tier the pods query received during the run \
             (all pods share one source address, so *per pod* is the total over N); *drops* are \
             UDP datagrams the DNS namespace dropped for a full receive buffer. *Links/pod* counts \
             the `peer met` lines of each process (one per direct link it adopted): the run's \
             largest and its mean. *CPU* and *RSS* are per process (wait4 rusage), as the run's \
             median and its maximum. *Peer lost* counts the `peer lost` lines of all processes \
             (a link ended without a goodbye, so the peer was counted gone and everybody waited \
             for its replacement) and the processes that logged one: no process of this bed dies \
             before the release, so each is a live peer taken for dead. *Release CPU* is the CPU time all N processes used from the \
             last pod's start until the last exit (their totals at exit minus what the early ones \
             had used before, from /proc/<pid>/schedstat), and *idle* the share of the machine's \
             CPU time ({} core(s)) nobody used meanwhile: release CPU ÷ cores close to the \
             release time, with no idle left, means the release waited for CPU. What this bed leaves out compared with real pods is listed \
             at the top of that file and in the summary below the targets.\n",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )
        .unwrap();
        writeln!(
            w,
            "| pods | DNS | ok | release (s) | release CPU (s) | idle | converged (s) | DNS queries | per pod | DNS drops | peer lost: lines | peer lost: processes | links/pod max | links/pod mean | CPU ms/pod median | CPU ms/pod max | RSS MB median | RSS MB max |"
        )
        .unwrap();
        writeln!(
            w,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )
        .unwrap();
        for (&key, runs) in &self.fleet {
            let (n, dns) = key;
            let ok = runs.iter().filter(|r| r.ok).count();
            let f = |g: fn(&FleetResult) -> Option<f64>| self.fleet_field(key, g);
            let per_pod = self.fleet_field(key, |r| Some(r.dns_total as f64 / n as f64));
            writeln!(
                w,
                "| {n} | {} | {ok}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                dns.label(),
                runs.len(),
                show(f(|r| r.latency_s), 3),
                show(f(|r| r.release_cpu_s), 3),
                self.fleet_field(key, |r| r.idle_frac.map(|f| f * 100.0))
                    .map_or("–".into(), |s| format!("{} %", s.show(0))),
                show(f(|r| r.converge_s), 1),
                show(f(|r| Some(r.dns_total as f64)), 0),
                show(per_pod, 2),
                show(f(|r| Some(r.dns_drops as f64)), 0),
                show(f(|r| Some(r.lost_lines as f64)), 0),
                show(f(|r| Some(r.lost_procs as f64)), 0),
                show(f(|r| Some(r.links_max as f64)), 0),
                show(f(|r| Some(r.links_mean)), 1),
                show(f(|r| Some(r.cpu_ms_median)), 1),
                show(f(|r| Some(r.cpu_ms_max)), 1),
                show(f(|r| Some(mb(r.rss_kb_median))), 1),
                show(f(|r| Some(mb(r.rss_kb_max))), 1),
            )
            .unwrap();
        }
        writeln!(
            w,
            "\nEach run (how long starting the early pods took, who had the most links, who \
             exited last, which name DNS was asked most):\n"
        )
        .unwrap();
        for (&(n, dns), runs) in &self.fleet {
            for (i, r) in runs.iter().enumerate() {
                let at = |x: Option<usize>| x.map_or("–".into(), |i| format!("pod {i}"));
                writeln!(
                    w,
                    "- {n} pods, {}, run {}: {}{}; early pods started within {:.1} s; most links: \
                     {} ({}); last exit: {}; {} distinct names asked, most: {}",
                    dns.label(),
                    i + 1,
                    if r.ok { "ok" } else { "FAILED: " },
                    if r.ok { "" } else { r.note.as_str() },
                    r.spawn_s,
                    at(r.links_argmax),
                    r.links_max,
                    at(r.slowest),
                    r.dns_names,
                    r.dns_top
                        .as_ref()
                        .map_or("–".into(), |(name, c)| format!("`{name}` × {c}")),
                )
                .unwrap();
            }
        }
        writeln!(w).unwrap();
    }

    fn scale_tables(&self, w: &mut String) {
        for n in self.scale_sizes() {
            self.scale_table(w, n);
        }
    }

    fn scale_table(&self, w: &mut String, n: usize) {
        writeln!(w, "## Ping mode: one pod, {n} peers, all up\n").unwrap();
        writeln!(
            w,
            "One single-stack IPv4 pod (index 0, kubelet-style hosts file and resolv.conf) checks \
             {n} peers: itself plus {} addresses on the loopback interface of a peer namespace on the \
             bridge, each with an A record in the cluster dnsmasq. *Wall* is the command's own run \
             time (process start to exit, all peers reachable); {} repetitions. \
             fping gets the same FQDNs as peergate (trailing dot, so no search-list walk); the \
             seed loop uses its short names through the search list. The `--hosts` runs get the \
             {n} FQDNs without a trailing dot, `--probe icmp`, and a hosts file without a line for \
             the pod (as outside Kubernetes). DNS counts the queries the \
             cluster DNS received from the pod during the command; *DNS drops* the UDP datagrams \
             the DNS server's namespace dropped for a full receive buffer (kernel counter \
             Udp:RcvbufErrors); *echo out / replies in* the pod's ICMP echo requests sent and \
             echo replies received by its kernel (median; more out than peers: retries).\n",
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
        let pg = self.scale_field(n, ScaleContender::Peers, |r| r.wall_s.unwrap_or(f64::NAN));
        for (&(size, c), runs) in &self.scale {
            if size != n {
                continue;
            }
            let ok = ok_runs(runs).count();
            let wall = self.scale_field(n, c, |r| r.wall_s.unwrap_or(f64::NAN));
            let cpu = self.scale_field(n, c, |r| r.cpu_ms_mean);
            let rss = self.scale_field(n, c, |r| mb(r.rss_kb_max as f64));
            let dns = self.scale_field(n, c, |r| r.dns_total as f64);
            let typ = |t: &'static str| self.scale_field(n, c, move |r| r.dns(t) as f64);
            let cnt = |k: &'static str| {
                self.scale_field(n, c, move |r| {
                    r.counters.get(k).copied().unwrap_or(0) as f64
                })
            };
            let med = |x: Option<Stat>| x.map_or("–".into(), |x| format!("{:.0}", x.median));
            let vs = match (wall, pg) {
                (Some(a), Some(b)) => ratio(a.median, b.median),
                _ => "–".into(),
            };
            writeln!(
                w,
                "| {} | {ok}/{} | {} | {vs} | {} | {} | {} | {} / {} / {} | {} | {} | {} / {} |",
                c.label(),
                runs.len(),
                show(wall, 3),
                show(cpu, 0),
                show(rss, 1),
                show(dns, 0),
                show(typ("A"), 0),
                show(typ("AAAA"), 0),
                show(typ("PTR"), 0),
                dns.map_or("–".into(), |d| format!("{:.2}", d.median / n as f64)),
                show(cnt("dns_rcvbuf_drops"), 0),
                med(cnt("echo_out")),
                med(cnt("echo_reply_in")),
            )
            .unwrap();
        }
        for (&(size, c), runs) in &self.scale {
            if size != n {
                continue;
            }
            for r in runs.iter().filter(|r| !r.ok) {
                writeln!(w, "\n- failed run of {}: {}", c.label(), r.note).unwrap();
            }
        }
        writeln!(w).unwrap();
    }

    /// The targets of issue 7, each with the measured figure and met/missed.
    pub fn target_lines(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
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
                     (× {:.2}; 5 % tolerance; medians; worst {:.3} s vs {:.3} s): {}",
                    sc.pods,
                    sc.dns.label(),
                    ping.median,
                    seed.median,
                    ping.median / seed.median,
                    ping.max,
                    seed.max,
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
                         (1/{:.1}; medians): {}",
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
                let (ok, text) = median_and_worst(b, 0.050, self.failed(sc, Contender::Barrier));
                out.push((
                    ok,
                    format!(
                        "barrier release <= 50 ms after the last pod starts ({} pods, {}): {text}",
                        sc.pods,
                        sc.dns.label(),
                    ),
                ));
            }
        }
        for sc in self.scenarios().into_iter().filter(|s| s.pods >= 64) {
            for c in [Contender::Barrier, Contender::Sidecar, Contender::Ping] {
                if c == Contender::Ping && sc.dns != Dns::Plain {
                    continue; // bounded by the cache TTL by design; reported above
                }
                if let Some(l) = self.latency_stat(sc, c) {
                    let (ok, text) = median_and_worst(l, 0.5, self.failed(sc, c));
                    out.push((
                        ok,
                        format!(
                            "{} pods released <= 0.5 s after the last starts ({}, {}): {text}",
                            sc.pods,
                            c.label(),
                            sc.dns.label(),
                        ),
                    ));
                }
            }
        }
        // The ping-mode scale targets of issue 7 were set for 1000 peers.
        let Some(n) = self.scale_sizes().into_iter().max() else {
            return out;
        };
        let nf = n as f64;
        let pg = |f: fn(&RunResult) -> Option<f64>| {
            self.scale
                .get(&(n, ScaleContender::Peers))
                .and_then(|runs| Stat::of(ok_runs(runs).filter_map(f)))
        };
        let wall = pg(|r| r.wall_s);
        let rss = pg(|r| Some(r.rss_kb_max as f64));
        let dns = pg(|r| Some(r.dns_total as f64));
        let ptr = pg(|r| Some(r.dns("PTR") as f64));
        if let Some(wall) = wall {
            let ok = wall.median <= 0.25;
            out.push((
                ok,
                format!(
                    "{n} peers all up <= 0.25 s wall (`--peers N`): median {:.3} s, worst {:.3} s: {}",
                    wall.median,
                    wall.max,
                    verdict(ok)
                ),
            ));
            for (c, name) in [
                (ScaleContender::Seed, "the seed loop"),
                (ScaleContender::Fping1, "fping -i 1"),
            ] {
                if let Some(o) = self.scale_field(n, c, |r| r.wall_s.unwrap_or(f64::NAN)) {
                    let ok = o.median >= 5.0 * wall.median;
                    out.push((
                        ok,
                        format!(
                            "{n} peers >= 5x faster than {name}: {:.3} s vs {:.3} s (x {:.1}; medians): {}",
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
                    "{n} peers <= 10 MB (MiB) peak RSS (`--peers N`): median {:.1} MB, worst {:.1} MB: {}",
                    mb(rss.median),
                    mb(rss.max),
                    verdict(ok)
                ),
            ));
        }
        if let (Some(dns), Some(ptr)) = (dns, ptr) {
            let ok = dns.median <= nf;
            out.push((
                ok,
                format!(
                    "{n} peers <= 1 DNS query per peer (`--peers N`): median {:.0} queries ({:.2}/peer), worst {:.0}: {}",
                    dns.median,
                    dns.median / nf,
                    dns.max,
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
        out
    }

    /// The targets of issues 11 (sidecar) and 12 (scale).
    pub fn target_lines_11_12(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        for sc in self.scenarios().into_iter().filter(|s| s.pods <= 16) {
            if let Some(l) = self.latency_stat(sc, Contender::Sidecar) {
                let (ok, text) = median_and_worst(l, 0.050, self.failed(sc, Contender::Sidecar));
                out.push((
                    ok,
                    format!(
                        "issue 11: sidecar + await release <= 50 ms after the last arrival ({} pods, {}): {text}",
                        sc.pods,
                        sc.dns.label()
                    ),
                ));
            }
        }
        for sc in self.scenarios() {
            let v = self.readmits(sc);
            if v.is_empty() {
                continue;
            }
            let failed = v.iter().filter(|a| !a.ok).count();
            if let Some(s) = Stat::of(v.iter().filter(|a| a.ok).filter_map(|a| a.known_s)) {
                let (ok, text) = median_and_worst(s, 1.0, failed);
                out.push((
                    ok,
                    format!(
                        "issue 11: replacement known to every other sidecar <= 1 s after it \
                         starts ({} pods, {}): {text}",
                        sc.pods,
                        sc.dns.label()
                    ),
                ));
            }
            if let Some(s) = Stat::of(v.iter().filter(|a| a.ok).filter_map(|a| a.latency_s)) {
                let (ok, text) = median_and_worst(s, 1.0, failed);
                out.push((
                    ok,
                    format!(
                        "issue 11: replacement admitted <= 1 s after it starts ({} pods, {}): {text}",
                        sc.pods,
                        sc.dns.label()
                    ),
                ));
            } else {
                out.push((
                    false,
                    format!(
                        "issue 11: replacement admitted <= 1 s after it starts ({} pods, {}): \
                         no successful re-admission in {} run(s): MISSED",
                        sc.pods,
                        sc.dns.label(),
                        v.len()
                    ),
                ));
            }
        }
        for (&(n, dns), runs) in &self.fleet {
            let failed = runs.iter().filter(|r| !r.ok).count();
            let limit = if n >= 256 {
                Some(0.5)
            } else if n == 64 {
                Some(0.2)
            } else {
                None
            };
            let lat = self.fleet_field((n, dns), |r| r.latency_s);
            if let Some(limit) = limit {
                let line = match lat {
                    Some(l) => {
                        let (_, text) = median_and_worst(l, limit, failed);
                        let ok = l.max <= limit && failed == 0;
                        (
                            ok,
                            format!(
                                "issue 12: {n} pods released <= {limit} s after the last pod \
                                 starts, every run (barrier, {}): {text}",
                                dns.label()
                            ),
                        )
                    }
                    None => (
                        false,
                        format!(
                            "issue 12: {n} pods released <= {limit} s after the last pod starts \
                             (barrier, {}): no successful run of {}: MISSED",
                            dns.label(),
                            runs.len()
                        ),
                    ),
                };
                out.push(line);
            }
            if let Some(l) = self.fleet_field((n, dns), |r| Some(r.lost_procs as f64)) {
                let ok = l.max == 0.0;
                out.push((
                    ok,
                    format!(
                        "protocol.md (no dead peer counted, and no live one): no live peer taken \
                         for dead ({n} pods, barrier, {}): processes that logged `peer lost`, \
                         median {:.0}, worst {:.0}: {}",
                        dns.label(),
                        l.median,
                        l.max,
                        verdict(ok)
                    ),
                ));
            }
            if let Some(d) = self.fleet_field((n, dns), |r| Some(r.dns_total as f64)) {
                let ok = d.max <= 8.0 * n as f64;
                out.push((
                    ok,
                    format!(
                        "issue 12: DNS queries per Job run <= 8 × N = {} ({n} pods, barrier, {}): \
                         median {:.0} ({:.2}/pod), worst {:.0} ({:.2}/pod): {}",
                        8 * n,
                        dns.label(),
                        d.median,
                        d.median / n as f64,
                        d.max,
                        d.max / n as f64,
                        verdict(ok)
                    ),
                ));
            }
        }
        // Connections per pod: bounded by a constant or log N means the
        // largest count grows no faster than log N between the smallest and
        // the largest size measured.
        let mut by_n: BTreeMap<usize, f64> = BTreeMap::new();
        for (&(n, _), runs) in &self.fleet {
            for r in runs.iter().filter(|r| r.ok) {
                let e = by_n.entry(n).or_insert(0.0);
                *e = e.max(r.links_max as f64);
            }
        }
        if let (Some((&n0, &l0)), Some((&n1, &l1))) = (by_n.iter().next(), by_n.iter().next_back())
        {
            let list = by_n
                .iter()
                .map(|(n, l)| format!("{n} pods: {l:.0}"))
                .collect::<Vec<_>>()
                .join(", ");
            if n1 > n0 {
                let allowed = l0 * (n1 as f64).ln() / (n0 as f64).ln();
                let ok = l1 <= allowed;
                out.push((
                    ok,
                    format!(
                        "issue 12: connections per pod bounded by a constant or log N (largest \
                         `peer met` count of any process over all runs: {list}; log growth from \
                         {n0} to {n1} pods would allow {allowed:.1}): {}",
                        verdict(ok)
                    ),
                ));
            } else {
                out.push((
                    true,
                    format!(
                        "issue 12: connections per pod (largest `peer met` count of any process): \
                         {list} (one size only: no growth to judge)"
                    ),
                ));
            }
        }
        // Ping mode with --hosts at scale: the targets are set for 1000 peers.
        for (c, what) in [
            (
                ScaleContender::HostsAuto,
                "--ip-family auto, no kubelet line",
            ),
            (ScaleContender::HostsV4, "--ip-family ipv4"),
        ] {
            for n in self.scale_sizes() {
                let Some(runs) = self.scale.get(&(n, c)) else {
                    continue;
                };
                if n != 1000 {
                    continue;
                }
                let failed = runs.iter().filter(|r| !r.ok).count();
                let stat = |f: fn(&RunResult) -> Option<f64>| Stat::of(ok_runs(runs).filter_map(f));
                if let Some(d) = stat(|r| Some(r.dns_total as f64)) {
                    let ok = d.min == n as f64 && d.max == n as f64 && failed == 0;
                    let a = stat(|r| Some(r.dns("A") as f64));
                    let aaaa = stat(|r| Some(r.dns("AAAA") as f64));
                    out.push((
                        ok,
                        format!(
                            "issue 12: `--hosts` {what}: exactly N = {n} DNS queries, every run: \
                             {} (A {}, AAAA {}): {}",
                            d.show(0),
                            show(a, 0),
                            show(aaaa, 0),
                            verdict(ok)
                        ),
                    ));
                }
                if let Some(wall) = stat(|r| r.wall_s) {
                    let (ok, text) = median_and_worst(wall, 0.1, failed);
                    out.push((
                        ok,
                        format!("issue 12: `--hosts` {what}: {n} peers <= 0.1 s wall: {text}"),
                    ));
                }
                if let Some(rss) = stat(|r| Some(r.rss_kb_max as f64)) {
                    let ok = rss.max <= 8.0 * 1024.0 && failed == 0;
                    out.push((
                        ok,
                        format!(
                            "issue 12: `--hosts` {what}: {n} peers <= 8 MB (MiB) peak RSS: median \
                             {:.1} MB, worst {:.1} MB: {}",
                            mb(rss.median),
                            mb(rss.max),
                            verdict(ok)
                        ),
                    ));
                }
            }
        }
        out
    }

    fn targets(&self, w: &mut String) {
        for (title, lines) in [
            ("## Targets (issue 7)\n", self.target_lines()),
            (
                "## Targets (issues 11 and 12: sidecar, scale)\n",
                self.target_lines_11_12(),
            ),
        ] {
            if lines.is_empty() {
                continue;
            }
            writeln!(w, "{title}").unwrap();
            for (_, l) in lines {
                writeln!(w, "- {l}").unwrap();
            }
            writeln!(w).unwrap();
        }
        if !self.fleet.is_empty() {
            writeln!(
                w,
                "What the barrier scale bed leaves out, compared with pods of a real cluster: one \
                 kernel network stack (links over loopback: no veth, bridge or node-to-node hop, \
                 no ARP, no CNI or conntrack, so loopback's round trip instead of a pod \
                 network's); all N processes share this machine's {} core(s), far worse CPU \
                 contention than pods spread over nodes; one source address for every DNS query; \
                 dnsmasq (a cluster DNS and a `--neg-ttl` cache tier, both at raised priority to \
                 stand in for DNS servers with CPU of their own) instead of CoreDNS replicas \
                 and NodeLocal DNSCache; pods started from a tight loop (a launcher at raised \
                 priority) within seconds, without scheduling, image pulls or sandboxes.\n",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            )
            .unwrap();
        }
    }
}

/// Date, CPU, cores and kernel: `2026-12-04 19:31 UTC, AMD EPYC, 2 cores,
/// Linux 6.1`.
pub(crate) fn machine() -> String {
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
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{date}, {cpu}, {cores} cores, Linux {kernel}")
}

/// Machine, kernel, peergate commit and date, for the header.
fn machine_line() -> String {
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
    let (date, rest) = machine()
        .split_once(", ")
        .map(|(d, r)| (d.to_owned(), r.to_owned()))
        .unwrap_or_default();
    format!(
        "Run {date} on {rest}; source tree at commit {}{src}.",
        git(&["rev-parse", "--short", "HEAD"])
    )
}

fn git(args: &[&str]) -> String {
    std::process::Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// Whether an ELF executable asks for a program interpreter (PT_INTERP):
/// a dynamically linked one does, a static one does not. None if the file
/// is not a 64-bit little-endian ELF file.
fn elf_dynamic(path: &Path) -> Option<bool> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .take_while(|&o| o + 4 <= b.len())
        .any(|o| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 3)
        .into()
}

/// What binary was measured: path, static or not, size, its `--version`,
/// where it came from (see main.rs), and the tree it was built from.
fn binary_line(path: &Path, origin: &str) -> String {
    let linking = match elf_dynamic(path) {
        Some(false) => "statically linked",
        Some(true) => "dynamically linked",
        None => "not an ELF file this harness can read",
    };
    let size = std::fs::metadata(path).map_or("?".into(), |m| format!("{} bytes", m.len()));
    let version = std::process::Command::new(path)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into());
    format!(
        "Binary measured: `{}` ({linking}, {size}, `--version`: {version}); {origin}.",
        path.display()
    )
}

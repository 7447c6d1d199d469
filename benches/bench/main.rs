//! Benchmark of issues 7, 11 and 12: peergate against the tutorial's seed
//! loop and fping, on the e2e bed (network namespaces, a bridge, dnsmasq
//! tiers), and peergate's barrier at scale.
//!
//! Run as root with the bed's Debian tools plus fping:
//!
//! ```text
//! cargo bench --bench bench
//! ```
//!
//! It measures, every contender in the same run:
//!
//! * Release latency (latency.rs): N pods (3, 16, 64) of which the last
//!   starts late (2 s plus a per-repetition fraction of a second after the
//!   others are all waiting for it; their sandboxes and DNS records exist
//!   before the first gate starts), with plain cluster DNS and behind a
//!   negative-cache tier of 5 s and of 30 s. Contenders: the seed loop
//!   (tests/seed_loop.sh), peergate ping mode (`--peers N`, default flags),
//!   peergate barrier mode (`--mode barrier --token T`), and peergate as a
//!   native sidecar (`--mode barrier --serve` plus `peergate await`, the
//!   release being the last await's exit). Per run: time from the late
//!   pod's first process start until the last gate (await) exits 0, DNS
//!   queries received by the tier the pods talk to, CPU time and peak RSS.
//!   Sidecar runs then replace one pod and time its re-admission, and stop
//!   every sidecar with SIGTERM (each must exit 0).
//! * Ping mode at scale (scale.rs): one pod checking N peers that are all
//!   up (N addresses in a peer namespace behind the bridge, N records in
//!   dnsmasq): peergate `--peers N`, fping (default and `-i 1`), the seed
//!   loop, and peergate `--hosts` with the N FQDNs (`--ip-family auto`
//!   without a kubelet line, and `ipv4`).
//! * Barrier at scale (barrier_scale.rs): N barrier processes (64, 256,
//!   1000) on a lean bed (one namespace, one loopback address per pod), the
//!   last one late: release latency, DNS queries, links per pod, CPU, RSS.
//! * Rounds (rounds.rs): N serving sidecars with `peergate run` (16, 64) on
//!   the same kind of lean bed: the time from a replacement's start until
//!   every other pod's workload restarted, and from one workload's failure
//!   until every other workload got SIGTERM. Its section is printed on
//!   stdout (and written to PEERGATE_BENCH_ROUNDS_OUT), not to results.md;
//!   when only this part runs, results.md and latency.svg are left alone.
//! * Workload API (exchange.rs): N serving sidecars (64) on the same bed:
//!   how soon a named barrier passes everywhere after its last member
//!   entered, and `get --all` answers everywhere after the last `put`.
//!   Printed (and written to PEERGATE_BENCH_EXCHANGE_OUT) like the rounds.
//! * Soak (soak.rs, only when PEERGATE_BENCH_SOAK is set): N serving
//!   sidecars in the e2e bed for PEERGATE_BENCH_SOAK_MINUTES under churn
//!   (replacements, a stranger, scrapes, DNS restarts): RSS, open FDs and
//!   CPU of the sidecars that live through it.
//!
//! Every gate of the latency runs runs under a small rusage wrapper (this
//! binary re-executed with `--rusage-wrap`), which records CLOCK_MONOTONIC
//! start and end, user and system CPU time and peak RSS from wait4(2).
//!
//! The binary measured is, unless PEERGATE_BENCH_BIN says otherwise, the
//! static release binary of the image, built from this tree by
//! `images/static-build.sh` when the benchmark starts (cargo rebuilds it
//! only when the tree changed). results.md names the binary, whether it is
//! static, its `--version`, and the commit of the tree.
//!
//! Knobs (environment):
//!
//! | variable                      | default          | meaning                                   |
//! |-------------------------------|------------------|-------------------------------------------|
//! | PEERGATE_BENCH_REPS           | 5                | repetitions per scenario and contender    |
//! | PEERGATE_BENCH_REPS_64        | PEERGATE_BENCH_REPS | repetitions for scenarios of >= 64 pods |
//! | PEERGATE_BENCH_PODS           | 3,16,64          | job sizes of the latency runs (empty: skip them) |
//! | PEERGATE_BENCH_DNS            | plain,neg5,neg30 | DNS setups (`negN`: N s negative cache)   |
//! | PEERGATE_BENCH_CONTENDERS     | seed,ping,barrier,sidecar | latency contenders               |
//! | PEERGATE_BENCH_READMIT        | 1                | 0: sidecar runs skip the re-admission of a replaced pod |
//! | PEERGATE_BENCH_LATE           | 2                | seconds the last pod starts late (plus the jitter) |
//! | PEERGATE_BENCH_JITTER         | 1                | 0: no per-repetition fraction of a second added to the late start |
//! | PEERGATE_BENCH_STAGGER        | 0                | 1: each early gate starts before the next pod exists |
//! | PEERGATE_BENCH_BARRIER_SCALE  | 64,256,1000      | pods of the barrier scale runs (0: skip them) |
//! | PEERGATE_BENCH_BARRIER_SCALE_REPS | PEERGATE_BENCH_REPS | repetitions of each barrier scale size |
//! | PEERGATE_BENCH_BARRIER_SCALE_DNS | neg30         | DNS setups of the barrier scale runs      |
//! | PEERGATE_BENCH_SCALE          | 64,256,1000      | peers of the ping scale runs (0: skip them) |
//! | PEERGATE_BENCH_SCALE_REPS     | PEERGATE_BENCH_REPS | repetitions of each ping scale size    |
//! | PEERGATE_BENCH_SCALE_CONTENDERS | peers,fping1,seed,fping,peers128,hosts-auto,hosts-v4 | ping scale contenders |
//! | PEERGATE_BENCH_ROUNDS         | 16,64            | pods of the rounds runs: replacement restarts (rounds.rs; 0: skip them) |
//! | PEERGATE_BENCH_ROUNDS_FAIL    | 16               | pods of the rounds runs where one workload fails (0: skip them) |
//! | PEERGATE_BENCH_ROUNDS_REPS    | 6                | repetitions of each rounds figure         |
//! | PEERGATE_BENCH_ROUNDS_GAP_MS  | 250              | ms between the other workloads' SIGTERM and the replacement's start |
//! | PEERGATE_BENCH_ROUNDS_OUT     | unset            | also write the rounds section (markdown) to this file |
//! | PEERGATE_BENCH_EXCHANGE       | 64               | pods of the workload API runs: barrier and get --all (exchange.rs; 0: skip them) |
//! | PEERGATE_BENCH_EXCHANGE_REPS  | 6                | repetitions of each workload API figure   |
//! | PEERGATE_BENCH_EXCHANGE_OUT   | unset            | also write the workload API section (markdown) to this file |
//! | PEERGATE_BENCH_SOAK           | 0                | pods of the soak run (soak.rs; 0: skip it) |
//! | PEERGATE_BENCH_SOAK_MINUTES   | 30               | how long the soak runs                    |
//! | PEERGATE_BENCH_SOAK_REPLACE_S | 20               | seconds between two replacements in the soak |
//! | PEERGATE_BENCH_SOAK_OUT       | unset            | also write the soak section (markdown) to this file |
//! | PEERGATE_BENCH_HOLD           | unset            | keep the ping scale bed up N s before its runs (profiling by hand) |
//! | PEERGATE_BENCH_OUT            | docs/bench       | where results.md and latency.svg go       |
//! | PEERGATE_BENCH_BIN            | the static release build | peergate binary to measure: a path, or `cargo` for cargo's build of this bench (`CARGO_BIN_EXE_peergate`, dynamically linked) |
//!
//! Not a test: nothing here asserts a time. Targets are reported with the
//! median and the worst run.

#[path = "../../tests/support/mod.rs"]
mod support;

mod barrier_scale;
mod exchange;
mod fleet;
mod latency;
mod netns;
mod plot;
mod report;
mod rounds;
mod scale;
mod soak;
mod wrap;

use std::path::PathBuf;
use std::time::Instant;

/// Settings from the environment.
pub struct Knobs {
    pub reps: usize,
    pub reps_big: usize,
    pub pods: Vec<usize>,
    pub dns: Vec<latency::Dns>,
    pub contenders: Vec<latency::Contender>,
    pub late_s: f64,
    pub stagger: bool,
    pub late_jitter: bool,
    pub readmit: bool,
    pub barrier_scale: Vec<usize>,
    pub barrier_scale_reps: usize,
    pub barrier_scale_dns: Vec<latency::Dns>,
    pub scale: Vec<usize>,
    pub scale_reps: usize,
    pub scale_contenders: Vec<scale::ScaleContender>,
    pub rounds: Vec<usize>,
    pub rounds_fail: Vec<usize>,
    pub rounds_reps: usize,
    pub rounds_gap_ms: u64,
    pub rounds_out: Option<PathBuf>,
    pub exchange: Vec<usize>,
    pub exchange_reps: usize,
    pub exchange_out: Option<PathBuf>,
    pub soak: usize,
    pub soak_minutes: f64,
    pub soak_replace_s: u64,
    pub soak_out: Option<PathBuf>,
    pub out: PathBuf,
    pub peergate: PathBuf,
    /// Where the binary came from, for the report.
    pub bin_origin: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn parse_list<T>(name: &str, default: &str, f: impl Fn(&str) -> Option<T>) -> Vec<T> {
    env_or(name, default)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| f(s).unwrap_or_else(|| panic!("{name}: cannot parse {s:?}")))
        .collect()
}

fn parse_num<T: std::str::FromStr>(name: &str, default: &str) -> T {
    let v = env_or(name, default);
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}: not a number: {v:?}"))
}

impl Knobs {
    fn from_env() -> Knobs {
        let reps: usize = parse_num("PEERGATE_BENCH_REPS", "5");
        let reps_s = reps.to_string();
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Knobs {
            reps,
            reps_big: parse_num("PEERGATE_BENCH_REPS_64", &reps_s),
            pods: sizes("PEERGATE_BENCH_PODS", "3,16,64"),
            dns: parse_list(
                "PEERGATE_BENCH_DNS",
                "plain,neg5,neg30",
                latency::Dns::parse,
            ),
            contenders: parse_list(
                "PEERGATE_BENCH_CONTENDERS",
                "seed,ping,barrier,sidecar",
                latency::Contender::parse,
            ),
            late_s: parse_num("PEERGATE_BENCH_LATE", "2"),
            stagger: env_or("PEERGATE_BENCH_STAGGER", "0") == "1",
            late_jitter: env_or("PEERGATE_BENCH_JITTER", "1") == "1",
            readmit: env_or("PEERGATE_BENCH_READMIT", "1") != "0",
            barrier_scale: sizes("PEERGATE_BENCH_BARRIER_SCALE", "64,256,1000"),
            barrier_scale_reps: parse_num("PEERGATE_BENCH_BARRIER_SCALE_REPS", &reps_s),
            barrier_scale_dns: parse_list(
                "PEERGATE_BENCH_BARRIER_SCALE_DNS",
                "neg30",
                latency::Dns::parse,
            ),
            scale: sizes("PEERGATE_BENCH_SCALE", "64,256,1000"),
            scale_reps: parse_num("PEERGATE_BENCH_SCALE_REPS", &reps_s),
            scale_contenders: parse_list(
                "PEERGATE_BENCH_SCALE_CONTENDERS",
                "peers,fping1,seed,fping,peers128,hosts-auto,hosts-v4",
                scale::ScaleContender::parse,
            ),
            rounds: sizes("PEERGATE_BENCH_ROUNDS", "16,64"),
            rounds_fail: sizes("PEERGATE_BENCH_ROUNDS_FAIL", "16"),
            rounds_reps: parse_num("PEERGATE_BENCH_ROUNDS_REPS", "6"),
            rounds_gap_ms: parse_num("PEERGATE_BENCH_ROUNDS_GAP_MS", "250"),
            rounds_out: std::env::var_os("PEERGATE_BENCH_ROUNDS_OUT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            exchange: sizes("PEERGATE_BENCH_EXCHANGE", "64"),
            exchange_reps: parse_num("PEERGATE_BENCH_EXCHANGE_REPS", "6"),
            exchange_out: std::env::var_os("PEERGATE_BENCH_EXCHANGE_OUT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            soak: parse_num("PEERGATE_BENCH_SOAK", "0"),
            soak_minutes: env_or("PEERGATE_BENCH_SOAK_MINUTES", "30")
                .parse()
                .expect("PEERGATE_BENCH_SOAK_MINUTES: a number of minutes"),
            soak_replace_s: parse_num("PEERGATE_BENCH_SOAK_REPLACE_S", "20"),
            soak_out: std::env::var_os("PEERGATE_BENCH_SOAK_OUT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            out: std::env::var_os("PEERGATE_BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| manifest.join("docs/bench")),
            peergate: PathBuf::new(),
            bin_origin: String::new(),
        }
    }
}

/// A list of sizes; `0` alone (or an empty list) means none.
fn sizes(name: &str, default: &str) -> Vec<usize> {
    let v: Vec<usize> = parse_list(name, default, |s| s.parse().ok());
    if v == [0] {
        return Vec::new();
    }
    assert!(
        v.iter().all(|&n| n >= 2),
        "{name}: sizes must be >= 2 (or 0 alone to skip)"
    );
    v
}

/// The peergate binary to measure and where it came from. Default: the
/// static release binary, built from this tree by images/static-build.sh
/// (the one the image ships). If that build fails the benchmark stops:
/// figures of another binary must be asked for (PEERGATE_BENCH_BIN).
fn choose_binary() -> (PathBuf, String) {
    match std::env::var("PEERGATE_BENCH_BIN") {
        Ok(v) if v == "cargo" => (
            PathBuf::from(env!("CARGO_BIN_EXE_peergate")),
            "cargo's build of this benchmark's tree (PEERGATE_BENCH_BIN=cargo; \
             not the image's static binary)"
                .into(),
        ),
        Ok(v) if !v.is_empty() => (
            PathBuf::from(v),
            "given by PEERGATE_BENCH_BIN (not checked against the tree)".into(),
        ),
        _ => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("images/static-build.sh");
            eprintln!(
                "bench: building the static release binary ({})",
                script.display()
            );
            let out = std::process::Command::new(&script)
                .stderr(std::process::Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("bench: cannot run {}: {e}", script.display()));
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(
                out.status.success() && !path.is_empty(),
                "bench: {} failed ({}); set PEERGATE_BENCH_BIN to a binary, or to `cargo`",
                script.display(),
                out.status
            );
            (
                PathBuf::from(path),
                "built from this tree by images/static-build.sh when the benchmark started".into(),
            )
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(rounds::CMD_FLAG) {
        rounds::cmd_main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(wrap::FLAG) {
        wrap::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(fleet::FLAG) {
        fleet::launcher_main(&args[2..]);
    }
    if let Some(why) = support::prereq::missing().or_else(|| {
        support::prereq::which("fping")
            .is_none()
            .then(|| "missing tool: fping (package fping)".to_string())
    }) {
        if support::ci::under_ci() {
            panic!("bench: prerequisites missing under CI: {why}");
        }
        eprintln!("SKIPPED bench: {why}");
        return;
    }
    let mut knobs = Knobs::from_env();
    (knobs.peergate, knobs.bin_origin) = choose_binary();
    eprintln!(
        "bench: peergate binary {} ({})",
        knobs.peergate.display(),
        knobs.bin_origin
    );
    let started = Instant::now();
    let mut report = report::Report::new(&knobs);
    if !knobs.pods.is_empty() {
        latency::run_all(&knobs, &mut report);
    }
    if !knobs.rounds.is_empty() || !knobs.rounds_fail.is_empty() {
        rounds::run_all(&knobs, &report.binary);
    }
    if !knobs.exchange.is_empty() {
        exchange::run_all(&knobs, &report.binary);
    }
    if knobs.soak > 0 {
        assert!(knobs.soak >= 2, "PEERGATE_BENCH_SOAK: at least 2 pods");
        soak::run(&knobs, &report.binary);
    }
    // The ping scale runs (tens of milliseconds) before the barrier scale
    // runs, whose thousand processes and namespace the kernel keeps
    // tearing down for a while after each run.
    if !knobs.scale.is_empty() {
        scale::run_all(&knobs, &mut report);
    }
    if !knobs.barrier_scale.is_empty() {
        barrier_scale::run_all(&knobs, &mut report);
    }
    report.finish(started.elapsed());
    if knobs.pods.is_empty() && knobs.scale.is_empty() && knobs.barrier_scale.is_empty() {
        eprintln!(
            "bench: only the rounds and workload API parts ran; results.md and latency.svg left \
             as they were"
        );
        return;
    }
    let md = report.markdown();
    println!("{md}");
    std::fs::create_dir_all(&knobs.out).expect("create output dir");
    let md_path = knobs.out.join("results.md");
    std::fs::write(&md_path, &md).expect("write results.md");
    let svg_path = knobs.out.join("latency.svg");
    plot::latency_svg(&report, &svg_path).expect("draw latency.svg");
    eprintln!(
        "bench: wrote {} and {}",
        md_path.display(),
        svg_path.display()
    );
}

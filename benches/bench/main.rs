//! Benchmark of issue 7: peergate against the tutorial's seed loop and fping,
//! on the e2e bed (network namespaces, a bridge, dnsmasq tiers).
//!
//! Run as root with the bed's Debian tools plus fping:
//!
//! ```text
//! cargo bench --bench bench
//! ```
//!
//! It measures two things, every contender in the same run:
//!
//! * Release latency: N pods (3, 16, 64) of which the last starts late (2 s
//!   plus a per-repetition fraction of a second after the others' gates have all started; their sandboxes and DNS
//!   records exist before the first gate starts), with plain cluster DNS and behind a
//!   negative-cache tier of 5 s and of 30 s. Contenders: the seed loop
//!   (tests/seed_loop.sh), peergate ping mode (`--peers N`, default flags),
//!   peergate barrier mode (`--mode barrier --token T`). Per run: time from
//!   the late pod's gate process start until the last gate exits 0, DNS
//!   queries received by the tier the pods talk to, CPU time and peak RSS.
//! * Scale: one pod checking 1000 peers that are all up (1000 addresses in a
//!   peer namespace behind the bridge, 1000 records in dnsmasq): peergate
//!   `--peers 1000`, fping (default and `-i 1`) and the seed loop.
//!
//! Every gate runs under a small rusage wrapper (this binary re-executed with
//! `--rusage-wrap`), which records CLOCK_MONOTONIC start and end, user and
//! system CPU time and peak RSS from wait4(2).
//!
//! Knobs (environment):
//!
//! | variable                      | default          | meaning                                   |
//! |-------------------------------|------------------|-------------------------------------------|
//! | PEERGATE_BENCH_REPS           | 5                | repetitions per scenario and contender    |
//! | PEERGATE_BENCH_REPS_64        | PEERGATE_BENCH_REPS | repetitions for scenarios of >= 64 pods |
//! | PEERGATE_BENCH_PODS           | 3,16,64          | job sizes                                 |
//! | PEERGATE_BENCH_DNS            | plain,neg5,neg30 | DNS setups (`negN`: N s negative cache)   |
//! | PEERGATE_BENCH_CONTENDERS     | seed,ping,barrier| latency contenders                        |
//! | PEERGATE_BENCH_LATE           | 2                | seconds the last pod starts late (plus the jitter) |
//! | PEERGATE_BENCH_JITTER         | 1                | 0: no per-repetition fraction of a second added to the late start |
//! | PEERGATE_BENCH_STAGGER        | 0                | 1: each early gate starts before the next pod exists |
//! | PEERGATE_BENCH_SCALE          | 1000             | peers of the scale run (0: skip it)       |
//! | PEERGATE_BENCH_SCALE_REPS     | PEERGATE_BENCH_REPS | repetitions of the scale run           |
//! | PEERGATE_BENCH_HOLD           | unset            | keep the scale bed up N s before its runs (profiling by hand) |
//! | PEERGATE_BENCH_OUT            | docs/bench       | where results.md and latency.svg go       |
//! | PEERGATE_BENCH_BIN            | cargo's build for the host | peergate binary to measure (the image's static one: `images/static-build.sh` prints its path) |
//!
//! Not a test: nothing here asserts a time. Targets are reported as ratios.

#[path = "../../tests/support/mod.rs"]
mod support;

mod latency;
mod plot;
mod report;
mod scale;
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
    pub scale: usize,
    pub scale_reps: usize,
    pub out: PathBuf,
    pub peergate: PathBuf,
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
            pods: parse_list("PEERGATE_BENCH_PODS", "3,16,64", |s| {
                s.parse().ok().filter(|&n: &usize| n >= 2)
            }),
            dns: parse_list(
                "PEERGATE_BENCH_DNS",
                "plain,neg5,neg30",
                latency::Dns::parse,
            ),
            contenders: parse_list(
                "PEERGATE_BENCH_CONTENDERS",
                "seed,ping,barrier",
                latency::Contender::parse,
            ),
            late_s: parse_num("PEERGATE_BENCH_LATE", "2"),
            stagger: env_or("PEERGATE_BENCH_STAGGER", "0") == "1",
            late_jitter: env_or("PEERGATE_BENCH_JITTER", "1") == "1",
            scale: parse_num("PEERGATE_BENCH_SCALE", "1000"),
            scale_reps: parse_num("PEERGATE_BENCH_SCALE_REPS", &reps_s),
            out: std::env::var_os("PEERGATE_BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| manifest.join("docs/bench")),
            peergate: std::env::var_os("PEERGATE_BENCH_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_peergate"))),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(wrap::FLAG) {
        wrap::main(&args[2..]);
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
    let knobs = Knobs::from_env();
    eprintln!("bench: peergate binary {}", knobs.peergate.display());
    let started = Instant::now();
    let mut report = report::Report::new(&knobs);
    latency::run_all(&knobs, &mut report);
    if knobs.scale > 0 {
        scale::run_all(&knobs, &mut report);
    }
    report.finish(started.elapsed());
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

//! A sidecar that lasts: N serving sidecars in the e2e bed (a network
//! namespace per pod, the real dnsmasq) for many minutes, with what a
//! cluster does to them compressed into that time:
//!
//! * a replacement every [`Knobs::soak_replace_s`] seconds (20 s by
//!   default), cycling through the upper half of the pods (deleted with
//!   SIGKILL, a new sandbox and address, the same name); the lower half
//!   lives the whole run and is what is measured;
//! * a stranger in a namespace of its own that, every second, opens a TCP
//!   connection to every pod's barrier port and sends garbage, and holds
//!   one idle connection per pod for a few seconds;
//! * `/metrics` scraped from every pod's health port every second;
//! * the cluster DNS stopped for 5 s and started again three times.
//!
//! Every [`SAMPLE`] the harness reads each sidecar's RSS (`VmRSS`), open
//! file descriptors (`/proc/<pid>/fd`) and CPU time (`utime + stime`).
//! After the warm-up (the first fifth of the run), it reports per
//! surviving sidecar the first and last RSS and FD counts, a least-squares
//! slope, and the CPU per second. Targets from issue 22: RSS and FDs
//! flat (growth at most 1 % after the warm-up), and CPU at most 0.2 ms per
//! second per sidecar when idle: after the churn the run stays quiet for a
//! minute ([`IDLE`]), and the CPU over that minute is the idle figure (the
//! one under churn is reported beside it). With PEERGATE_BENCH_SOAK_OUT,
//! every sample also goes to a CSV beside the markdown.
//!
//! Nothing asserts: the section is printed (and written to
//! PEERGATE_BENCH_SOAK_OUT). Every wait is bounded, and the bed's drop
//! kills what is left and removes its namespaces.

use crate::Knobs;
use crate::rounds::{loadavg, tree_line};
use crate::support::bed::{Bed, BedConfig, PodCommand, ProcId};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HEALTH_PORT: u16 = 7472;
const BARRIER_PORT: u16 = 7470;
/// How often the sidecars are sampled.
const SAMPLE: Duration = Duration::from_secs(10);
/// DNS outages over the run, each this long.
const DNS_OUTAGES: u32 = 3;
const DNS_OUTAGE: Duration = Duration::from_secs(5);
/// The quiet minute after the churn, over which idle CPU is measured.
const IDLE: Duration = Duration::from_secs(60);

/// One sample of one sidecar.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: f64,
    rss_kb: u64,
    fds: u64,
    cpu_ticks: u64,
}

fn sample(pid: i32, at: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name in parentheses: utime is the 14th
    // field of the line, stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Sample {
        at,
        rss_kb,
        fds,
        cpu_ticks: utime + stime,
    })
}

/// Least-squares slope of `y` over `x`, per second.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

fn sidecar_command(peergate: &str, n: usize) -> PodCommand {
    let mut c = PodCommand::new(
        "sidecar",
        &[
            peergate,
            "--peers",
            &n.to_string(),
            "--mode",
            "barrier",
            "--serve",
            "--token",
            "soak-uid",
            "--health-port",
            &HEALTH_PORT.to_string(),
            "--timeout",
            "0",
        ],
    );
    c.env.push(("PEERGATE_LOG_LEVEL".into(), "warn".into()));
    c
}

/// The stranger and the scraper, from a namespace of their own.
fn churn_threads(
    ns_path: std::path::PathBuf,
    targets: Arc<std::sync::Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let join = |path: &std::path::Path| crate::netns::join(path).is_ok();
    let (p1, t1, s1) = (ns_path.clone(), Arc::clone(&targets), Arc::clone(&stop));
    let stranger = std::thread::spawn(move || {
        if !join(&p1) {
            return;
        }
        let mut idle: Vec<(Instant, TcpStream)> = Vec::new();
        while !s1.load(Ordering::Relaxed) {
            let ips = t1.lock().unwrap().clone();
            for ip in ips {
                let addr = SocketAddr::new(ip, BARRIER_PORT);
                if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    let _ = s.write_all(b"PGBR\x04\x03\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n");
                    drop(s);
                }
                if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    idle.push((Instant::now(), s));
                }
            }
            idle.retain(|(t, _)| t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let (p2, t2, s2) = (ns_path, targets, stop);
    let scraper = std::thread::spawn(move || {
        if !join(&p2) {
            return;
        }
        while !s2.load(Ordering::Relaxed) {
            let ips = t2.lock().unwrap().clone();
            for ip in ips {
                let addr = SocketAddr::new(ip, HEALTH_PORT);
                if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: p\r\n\r\n")
                        .is_ok()
                    {
                        let mut body = Vec::new();
                        if s.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                            scrapes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    vec![stranger, scraper]
}

pub fn run(k: &Knobs, binary: &str) {
    let n = k.soak;
    let minutes = k.soak_minutes;
    let started = Instant::now();
    let load_start = loadavg();
    let run_for = Duration::from_secs_f64(minutes * 60.0);
    let bin = k.peergate.display().to_string();
    let mut bed = Bed::new(BedConfig::default());
    let mut sidecars: Vec<ProcId> = Vec::new();
    for i in 0..n {
        bed.start_pod(i);
        bed.publish(i);
        sidecars.push(bed.spawn(i, &sidecar_command(&bin, n)));
    }
    let stranger_ns = format!("{}s", bed.id);
    bed.add_namespace(&stranger_ns);
    bed.connect(&stranger_ns, "eth0");
    let targets = Arc::new(std::sync::Mutex::new(
        (0..n)
            .map(|i| bed.pod(i).expect("pod").ip())
            .collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let threads = churn_threads(
        std::path::Path::new("/run/netns").join(&stranger_ns),
        Arc::clone(&targets),
        Arc::clone(&stop),
        Arc::clone(&scrapes),
    );
    let t0 = Instant::now();
    let survivors: Vec<usize> = (0..n / 2).collect();
    let churned: Vec<usize> = (n / 2..n).collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); n];
    let mut next_sample = t0;
    let replace_every = Duration::from_secs(k.soak_replace_s);
    let mut next_replace = t0 + replace_every;
    let mut replaced = 0u32;
    let outage_every = run_for / (DNS_OUTAGES + 1);
    let mut outages = Vec::new();
    let mut next_outage = t0 + outage_every;
    let mut dns_down_since: Option<Instant> = None;
    let mut notes = Vec::new();
    while t0.elapsed() < run_for {
        let now = Instant::now();
        if now >= next_sample {
            let at = t0.elapsed().as_secs_f64();
            for &i in &survivors {
                let pid = bed.proc(sidecars[i]).pid;
                match sample(pid, at) {
                    Some(s) => samples[i].push(s),
                    None => notes.push(format!("pod {i}'s sidecar gone at {at:.0}s")),
                }
            }
            next_sample += SAMPLE;
        }
        if now >= next_replace && !churned.is_empty() {
            let i = churned[replaced as usize % churned.len()];
            bed.delete_pod(i, false);
            bed.start_pod(i);
            bed.publish(i);
            sidecars[i] = bed.spawn(i, &sidecar_command(&bin, n));
            targets.lock().unwrap()[i] = bed.pod(i).expect("pod").ip();
            replaced += 1;
            next_replace += replace_every;
        }
        match dns_down_since {
            None if now >= next_outage && (outages.len() as u32) < DNS_OUTAGES => {
                bed.stop_dns();
                dns_down_since = Some(now);
                outages.push(t0.elapsed().as_secs_f64());
            }
            Some(since) if since.elapsed() >= DNS_OUTAGE => {
                bed.start_dns();
                dns_down_since = None;
                next_outage += outage_every;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if dns_down_since.is_some() {
        bed.start_dns();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // Then a quiet minute: no replacement, no stranger, no scrape. The
    // sidecars' CPU over it is what they cost idle.
    let quiet: Vec<Option<Sample>> = survivors
        .iter()
        .map(|&i| sample(bed.proc(sidecars[i]).pid, t0.elapsed().as_secs_f64()))
        .collect();
    std::thread::sleep(IDLE);
    let idle: Vec<Option<f64>> = survivors
        .iter()
        .zip(&quiet)
        .map(|(&i, before)| {
            let after = sample(bed.proc(sidecars[i]).pid, t0.elapsed().as_secs_f64())?;
            let before = (*before)?;
            Some(
                (after.cpu_ticks - before.cpu_ticks) as f64 / 100.0 * 1000.0
                    / (after.at - before.at).max(1.0),
            )
        })
        .collect();
    if let Some(path) = &k.soak_out {
        let mut csv = String::from("pod,seconds,rss_kb,fds,cpu_ticks\n");
        for &i in &survivors {
            for s in &samples[i] {
                writeln!(
                    csv,
                    "{i},{:.1},{},{},{}",
                    s.at, s.rss_kb, s.fds, s.cpu_ticks
                )
                .unwrap();
            }
        }
        let csv_path = path.with_extension("csv");
        if let Err(e) = std::fs::write(&csv_path, csv) {
            eprintln!("bench: cannot write {}: {e}", csv_path.display());
        }
    }
    // The survivors must still serve: every one answers /readyz from the
    // bed's cluster side, and each saw the run's replacements.
    let alive = survivors
        .iter()
        .filter(|&&i| bed.proc(sidecars[i]).exit().is_none())
        .count();
    let md = markdown(
        k,
        binary,
        &load_start,
        started.elapsed(),
        &samples,
        &survivors,
        replaced,
        &outages,
        scrapes.load(Ordering::Relaxed),
        alive,
        &idle,
        &notes,
    );
    crate::rounds::print_section(&md, k.soak_out.as_deref());
}

#[allow(clippy::too_many_arguments)]
fn markdown(
    k: &Knobs,
    binary: &str,
    load_start: &str,
    took: Duration,
    samples: &[Vec<Sample>],
    survivors: &[usize],
    replaced: u32,
    outages: &[f64],
    scrapes: u64,
    alive: usize,
    idle: &[Option<f64>],
    notes: &[String],
) -> String {
    let ticks = 100.0; // USER_HZ
    let mut s = String::new();
    let w = &mut s;
    writeln!(w, "## Soak: serving sidecars under churn (generated)\n").unwrap();
    writeln!(
        w,
        "{binary} Tree: {}. {} sidecars for {:.1} min ({:.0} s with setup), load average {load_start} \
         at the start, {} at the end. Churn: {replaced} replacements (one every {} s, pods {}..{}), \
         DNS stopped for {} s at {:?} s, {scrapes} `/metrics` scrapes answered, a stranger on \
         every barrier port every second. Survivors still running at the end: {alive} of {}.\n",
        tree_line(),
        k.soak,
        k.soak_minutes,
        took.as_secs_f64(),
        loadavg(),
        k.soak_replace_s,
        k.soak / 2,
        k.soak - 1,
        DNS_OUTAGE.as_secs(),
        outages.iter().map(|t| t.round() as u64).collect::<Vec<_>>(),
        survivors.len()
    )
    .unwrap();
    writeln!(
        w,
        "| pod | samples | RSS after warm-up → end (kB) | RSS growth | RSS slope (kB/h) | FDs after \
         warm-up → end | FD slope (/h) | CPU under churn (ms per s) | CPU idle (ms per s) |\n\
         |---:|---:|---|---:|---:|---|---:|---:|---:|"
    )
    .unwrap();
    for (n, &i) in survivors.iter().enumerate() {
        let idle_ms = idle
            .get(n)
            .copied()
            .flatten()
            .map_or("–".to_owned(), |c| format!("{c:.3}"));
        let v = &samples[i];
        if v.len() < 3 {
            writeln!(w, "| {i} | {} | – | – | – | – | – | – | – |", v.len()).unwrap();
            continue;
        }
        let warm = v.len() / 5;
        let rest = &v[warm..];
        let (first, last) = (rest[0], rest[rest.len() - 1]);
        let growth = (last.rss_kb as f64 - first.rss_kb as f64) / first.rss_kb as f64 * 100.0;
        let rss: Vec<(f64, f64)> = rest.iter().map(|s| (s.at, s.rss_kb as f64)).collect();
        let fds: Vec<(f64, f64)> = rest.iter().map(|s| (s.at, s.fds as f64)).collect();
        let cpu_ms_per_s = (last.cpu_ticks - first.cpu_ticks) as f64 / ticks * 1000.0
            / (last.at - first.at).max(1.0);
        writeln!(
            w,
            "| {i} | {} | {} → {} | {growth:+.1} % | {:+.1} | {} → {} | {:+.2} | {cpu_ms_per_s:.3} | \
             {idle_ms} |",
            v.len(),
            first.rss_kb,
            last.rss_kb,
            slope(&rss) * 3600.0,
            first.fds,
            last.fds,
            slope(&fds) * 3600.0,
        )
        .unwrap();
    }
    for note in notes {
        writeln!(w, "\n{note}").unwrap();
    }
    s
}

//! Scenarios as data (`tests/scenarios/<name>.toml`) and the one runner.
//!
//! A scenario names the job (pod count, address family, DNS tiers), what
//! every pod runs, per-pod overrides (start time, never started, faults,
//! privileges, arguments), timed events (link down/up, delete/recreate,
//! signals, DNS down/up, firewall) and expectations (exit code per pod,
//! bounds relative to named instants, lines the logs must contain). The
//! format is documented in docs/testing.md ("Scenario files").
//!
//! Strings in `args`, `env` and expectations may use `${...}` placeholders:
//! `${job}`, `${svc}`, `${ns}`, `${zone}`, `${pods}`, `${index}` (the pod the
//! string belongs to), `${repo}` (the source tree), `${podN.ip}`, `${podN.v4}`, `${podN.v6}` (latest
//! incarnation of pod N at the time of use), `${podN.fqdn}`, `${podN.host}`.

use super::bed::{Bed, BedConfig, Family, PodCommand, ProcId};
use super::proc::signal_number;
use serde::Deserialize;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub description: String,
    /// Every process must have exited this long after the scenario start;
    /// stragglers are killed and fail their expectation.
    #[serde(with = "dur")]
    pub deadline: Duration,
    #[serde(default)]
    pub job: JobSpec,
    #[serde(default)]
    pub run: RunSpec,
    #[serde(default, rename = "pod")]
    pub pods: Vec<PodSpec>,
    #[serde(default, rename = "event")]
    pub events: Vec<EventSpec>,
    #[serde(default, rename = "expect")]
    pub expects: Vec<ExpectSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSpec {
    pub pods: usize,
    pub name: String,
    pub subdomain: String,
    pub namespace: String,
    pub family: Family,
    pub dns_ttl: u32,
    pub neg_cache_ttl: Option<u32>,
    /// The cluster DNS is down (not running) until this instant.
    #[serde(with = "opt_dur")]
    pub dns_start: Option<Duration>,
}

impl Default for JobSpec {
    fn default() -> Self {
        let b = BedConfig::default();
        JobSpec {
            pods: 3,
            name: b.job,
            subdomain: b.subdomain,
            namespace: b.namespace,
            family: b.family,
            dns_ttl: b.dns_ttl,
            neg_cache_ttl: None,
            dns_start: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Range {
    Open,
    Closed,
}

/// What every pod runs unless its `[[pod]]` entry overrides it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// `peergate` (the binary under test), `seed` (tests/seed_loop.sh under
    /// bash), `none` (sandbox only), or any other program name or path.
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub unprivileged: bool,
    pub ping_group_range: Option<Range>,
    /// Wrap every program in `/usr/bin/time -v` (benchmarks: CPU, peak RSS
    /// in `<pod dir>/main.time`). Signals then reach time, not the program.
    pub time_v: bool,
    /// Arguments of a peergate native sidecar. When set, every pod runs
    /// like a kubelet runs a pod with a native sidecar: the sidecar starts
    /// first, then `peergate await` (an init container), then the program
    /// (the workload) once the await exited 0. When the workload exits the
    /// sidecar gets SIGTERM; when the sidecar has exited the pod has ended
    /// and its DNS record goes (a Succeeded pod leaves the endpoints).
    pub sidecar: Vec<String>,
    /// Arguments of `peergate await` after `await` itself.
    #[serde(rename = "await")]
    pub await_args: Vec<String>,
    /// `resources.limits` of every peergate container (the sidecar, the
    /// await, and the program when it is peergate): a cgroup each.
    pub limits: Option<LimitsSpec>,
}

/// A container's `resources.limits`: `cpu = "50m"`, `memory = "16Mi"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

impl LimitsSpec {
    fn limits(&self) -> super::cgroups::Limits {
        super::cgroups::Limits {
            cpu_millis: self
                .cpu
                .as_deref()
                .map(|c| super::cgroups::parse_cpu(c).unwrap_or_else(|e| panic!("limits: {e}"))),
            memory_bytes: self
                .memory
                .as_deref()
                .map(|m| super::cgroups::parse_memory(m).unwrap_or_else(|e| panic!("limits: {e}"))),
        }
    }
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            program: "peergate".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            unprivileged: false,
            ping_group_range: None,
            time_v: false,
            sidecar: Vec::new(),
            await_args: Vec::new(),
            limits: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    pub indices: Vec<usize>,
    /// Sandbox creation time (default 0).
    #[serde(default, with = "opt_dur")]
    pub start: Option<Duration>,
    /// Never started (no sandbox, no DNS record).
    #[serde(default)]
    pub never: bool,
    /// The DNS record appears this long after the sandbox.
    #[serde(default, with = "opt_dur")]
    pub publish_delay: Option<Duration>,
    /// The program starts this long after the sandbox.
    #[serde(default, with = "opt_dur")]
    pub run_delay: Option<Duration>,
    pub program: Option<String>,
    /// Replaces `run.args`.
    pub args: Option<Vec<String>>,
    /// Appended to the arguments.
    #[serde(default)]
    pub extra_args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub unprivileged: Option<bool>,
    pub ping_group_range: Option<Range>,
    /// Drop incoming ICMP echo requests from the start (nftables).
    #[serde(default)]
    pub drop_icmp: bool,
    /// The link starts down (cluster-side veth).
    #[serde(default)]
    pub link_down: bool,
    /// Replaces `run.limits` for these pods.
    pub limits: Option<LimitsSpec>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    LinkDown,
    LinkUp,
    DropIcmp,
    AllowIcmp,
    /// Delete the pod (kill its processes, remove its namespace).
    Delete,
    /// Start the pod (again: a replacement with a new IP, same name).
    Start,
    Signal,
    DnsUp,
    DnsDown,
    Publish,
    Unpublish,
    /// Drop every packet between the listed pods and `peer`, both ways,
    /// from now on (nftables on the cluster's bridge): a broken path
    /// between two nodes that neither end hears of.
    BlackHole,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    #[serde(with = "dur")]
    pub at: Duration,
    pub action: Action,
    /// Name to refer to the instant from an expectation's `after`.
    pub name: Option<String>,
    #[serde(default)]
    pub pods: Vec<usize>,
    /// For `signal`: TERM, INT, ...
    pub signal: Option<String>,
    /// For `signal`: which process of the pod gets it, the latest of its
    /// kind: `main` (default: the program, or the workload of a pod with a
    /// sidecar), `await` or `sidecar` (only with `[run] sidecar`).
    #[serde(default)]
    pub proc: ProcKind,
    /// For `delete`: leave the DNS record (stale) until the next start.
    #[serde(default)]
    pub keep_record: bool,
    /// For `black_hole`: the pod the listed pods lose every packet to and
    /// from.
    pub peer: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// Pods this applies to (default: every pod that ran a program). The
    /// latest process of each pod is checked.
    #[serde(default)]
    pub pods: Vec<usize>,
    pub exit: i32,
    /// Reference instant for the bounds: `podN.start`, `podN.publish`,
    /// `podN.run`, `dns.up`, an event name, or `self.run` (default).
    pub after: Option<String>,
    /// Exit no later than this after the reference.
    #[serde(default, with = "opt_dur")]
    pub within: Option<Duration>,
    /// Exit no earlier than this after the reference.
    #[serde(default, with = "opt_dur")]
    pub not_before: Option<Duration>,
    /// Each entry: some stderr line contains all of these strings.
    #[serde(default)]
    pub stderr: Vec<Vec<String>>,
    /// Each entry: no stderr line contains all of these strings.
    #[serde(default)]
    pub stderr_not: Vec<Vec<String>>,
    /// Each entry: some stdout line contains all of these strings.
    #[serde(default)]
    pub stdout: Vec<Vec<String>>,
    /// Each entry: no stdout line contains all of these strings.
    #[serde(default)]
    pub stdout_not: Vec<Vec<String>>,
    /// At most this many stderr lines (a log flood fails it).
    pub stderr_max_lines: Option<usize>,
    /// Which process of the pod: `main` (default), `await` or `sidecar`.
    #[serde(default)]
    pub proc: ProcKind,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ProcKind {
    #[default]
    Main,
    Await,
    Sidecar,
}

/// How often a pod with a sidecar is looked at (the kubelet's reaction time).
const REAP_EVERY: Duration = Duration::from_millis(10);

/// Durations as strings: "2s", "1.5s", "200ms", "1m".
mod dur {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let (num, unit) = s
            .find(|c: char| c.is_ascii_alphabetic())
            .map_or((s, ""), |i| s.split_at(i));
        let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            _ => return Err(format!("duration {s:?} needs a unit (ms, s, m)")),
        };
        if !(0.0..=3600.0).contains(&secs) {
            return Err(format!("duration {s:?} out of range"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod opt_dur {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::dur::parse(&String::deserialize(d)?)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Per-pod settings after merging `[run]` with the pod's overrides.
#[derive(Clone, Debug)]
struct PodPlan {
    start: Option<Duration>,
    publish_delay: Duration,
    run_delay: Duration,
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    unprivileged: bool,
    ping_group_range: Option<Range>,
    drop_icmp: bool,
    link_down: bool,
    limits: super::cgroups::Limits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    DnsUp,
    PodStart(usize),
    PodPublish(usize),
    PodRun(usize),
    /// Watches a pod with a sidecar: starts its workload after the await,
    /// stops the sidecar after the workload, ends the pod after the sidecar.
    Reap(usize),
    Event(usize),
}

/// Where a pod with a sidecar is in its life.
#[derive(Clone, Copy, Debug)]
struct SidecarPod {
    sidecar: ProcId,
    await_proc: ProcId,
    main: Option<ProcId>,
    stopping: bool,
}

/// The state after a scenario ran: the bed (still up, for extra checks such
/// as DNS query counts), the named instants and each pod's programs.
pub struct Run {
    pub bed: Bed,
    pub t0: Instant,
    pub marks: BTreeMap<String, Instant>,
    pub main: BTreeMap<usize, Vec<ProcId>>,
    pub sidecars: BTreeMap<usize, Vec<ProcId>>,
    pub awaits: BTreeMap<usize, Vec<ProcId>>,
    /// The latest incarnation of each pod that runs a sidecar.
    life: BTreeMap<usize, SidecarPod>,
}

impl Run {
    /// The latest program started in pod `index`.
    pub fn last_proc(&self, index: usize) -> Option<ProcId> {
        self.main.get(&index).and_then(|v| v.last().copied())
    }

    /// The latest process of `kind` started in pod `index`.
    pub fn last_of(&self, kind: ProcKind, index: usize) -> Option<ProcId> {
        let map = match kind {
            ProcKind::Main => &self.main,
            ProcKind::Await => &self.awaits,
            ProcKind::Sidecar => &self.sidecars,
        };
        map.get(&index).and_then(|v| v.last().copied())
    }
}

pub fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

impl Scenario {
    pub fn load(name: &str) -> Scenario {
        let path = scenario_dir().join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let sc: Scenario =
            toml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        sc.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        sc
    }

    fn validate(&self) -> Result<(), String> {
        let n = self.job.pods;
        let check = |what: &str, list: &[usize]| -> Result<(), String> {
            match list.iter().find(|&&i| i >= n) {
                Some(i) => Err(format!("{what}: pod {i} out of range (job has {n} pods)")),
                None => Ok(()),
            }
        };
        for p in &self.pods {
            if p.indices.is_empty() {
                return Err("[[pod]] without indices".into());
            }
            check("[[pod]]", &p.indices)?;
        }
        for e in &self.events {
            check("[[event]]", &e.pods)?;
            let needs_pods = !matches!(e.action, Action::DnsUp | Action::DnsDown);
            if needs_pods && e.pods.is_empty() {
                return Err(format!("event {:?} needs pods", e.action));
            }
            if e.action == Action::Signal && e.signal.as_deref().and_then(signal_number).is_none() {
                return Err(format!("signal event needs a known signal: {:?}", e.signal));
            }
            if (e.action == Action::BlackHole) != e.peer.is_some() {
                return Err(format!(
                    "event {:?}: `peer` goes with black_hole events, and they need it",
                    e.action
                ));
            }
            if let Some(p) = e.peer {
                check("[[event]] peer", &[p])?;
            }
            if e.proc != ProcKind::Main && e.action != Action::Signal {
                return Err(format!("event {:?}: `proc` is for signal events", e.action));
            }
            if e.proc != ProcKind::Main && self.run.sidecar.is_empty() {
                return Err(format!(
                    "signal event to the {:?} process needs [run] sidecar",
                    e.proc
                ));
            }
        }
        for x in &self.expects {
            check("[[expect]]", &x.pods)?;
        }
        if self.expects.is_empty() {
            return Err("a scenario needs at least one [[expect]]".into());
        }
        Ok(())
    }

    /// The programs by name this scenario runs besides peergate and the
    /// seed loop (`python3` for tests/strangers.py): they are prerequisites
    /// too. Paths are left to fail loudly.
    pub fn own_programs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::iter::once(&self.run.program)
            .chain(self.pods.iter().filter_map(|p| p.program.as_ref()))
            .filter(|p| !matches!(p.as_str(), "peergate" | "seed" | "none") && !p.contains('/'))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn plan(&self, index: usize) -> PodPlan {
        let mut plan = PodPlan {
            start: Some(Duration::ZERO),
            publish_delay: Duration::ZERO,
            run_delay: Duration::ZERO,
            program: self.run.program.clone(),
            args: self.run.args.clone(),
            env: self.run.env.clone(),
            unprivileged: self.run.unprivileged,
            ping_group_range: self.run.ping_group_range,
            drop_icmp: false,
            link_down: false,
            limits: self
                .run
                .limits
                .as_ref()
                .map(LimitsSpec::limits)
                .unwrap_or_default(),
        };
        for p in self.pods.iter().filter(|p| p.indices.contains(&index)) {
            if p.never {
                plan.start = None;
            } else if let Some(s) = p.start {
                plan.start = Some(s);
            }
            plan.publish_delay = p.publish_delay.unwrap_or(plan.publish_delay);
            plan.run_delay = p.run_delay.unwrap_or(plan.run_delay);
            if let Some(prog) = &p.program {
                plan.program = prog.clone();
            }
            if let Some(args) = &p.args {
                plan.args = args.clone();
            }
            plan.args.extend(p.extra_args.iter().cloned());
            plan.env.extend(p.env.clone());
            plan.unprivileged = p.unprivileged.unwrap_or(plan.unprivileged);
            plan.ping_group_range = p.ping_group_range.or(plan.ping_group_range);
            plan.drop_icmp |= p.drop_icmp;
            plan.link_down |= p.link_down;
            if let Some(l) = &p.limits {
                plan.limits = l.limits();
            }
        }
        plan
    }

    fn bed_config(&self) -> BedConfig {
        BedConfig {
            job: self.job.name.clone(),
            subdomain: self.job.subdomain.clone(),
            namespace: self.job.namespace.clone(),
            family: self.job.family,
            dns_ttl: self.job.dns_ttl,
            neg_cache_ttl: self.job.neg_cache_ttl,
            dns_up: self.job.dns_start.is_none_or(|d| d.is_zero()),
            ..BedConfig::default()
        }
    }

    /// Builds the bed and plays the schedule; returns once every program
    /// exited or the deadline passed (stragglers killed).
    pub fn execute(&self) -> Run {
        let bed = Bed::new(self.bed_config());
        let plans: Vec<PodPlan> = (0..self.job.pods).map(|i| self.plan(i)).collect();
        let mut run = Run {
            bed,
            t0: Instant::now(),
            marks: BTreeMap::new(),
            main: BTreeMap::new(),
            sidecars: BTreeMap::new(),
            awaits: BTreeMap::new(),
            life: BTreeMap::new(),
        };
        let mut seq = 0u64;
        // Min-heap on (time, seq) through Reverse ordering.
        let mut queue: BinaryHeap<std::cmp::Reverse<(Duration, u64, Step)>> = BinaryHeap::new();
        let mut push = |q: &mut BinaryHeap<_>, at: Duration, step: Step| {
            seq += 1;
            q.push(std::cmp::Reverse((at, seq, step)));
        };
        if let Some(d) = self.job.dns_start.filter(|d| !d.is_zero()) {
            push(&mut queue, d, Step::DnsUp);
        } else {
            run.marks.insert("dns.up".into(), run.t0);
        }
        for (i, plan) in plans.iter().enumerate() {
            if let Some(s) = plan.start {
                push(&mut queue, s, Step::PodStart(i));
            }
        }
        for (k, e) in self.events.iter().enumerate() {
            push(&mut queue, e.at, Step::Event(k));
        }
        let deadline = run.t0 + self.deadline;
        while let Some(std::cmp::Reverse((at, _, step))) = queue.pop() {
            let when = run.t0 + at;
            if when > deadline {
                break;
            }
            sleep_until(when);
            let now = run.t0.elapsed();
            for (at, next) in self.step(&mut run, &plans, step, now) {
                push(&mut queue, at, next);
            }
        }
        // Wait (bounded) for every program, then kill what is left.
        for ids in run
            .main
            .values()
            .chain(run.sidecars.values())
            .chain(run.awaits.values())
        {
            for id in ids {
                let p = run.bed.proc(*id);
                let left = deadline.saturating_duration_since(Instant::now());
                if p.wait_for(left).is_none() {
                    p.kill();
                }
            }
        }
        run
    }

    /// Executes one step; returns follow-up steps (absolute times).
    fn step(
        &self,
        run: &mut Run,
        plans: &[PodPlan],
        step: Step,
        now: Duration,
    ) -> Vec<(Duration, Step)> {
        let mut next = Vec::new();
        let mark = |run: &mut Run, name: String| {
            run.marks.insert(name, Instant::now());
        };
        match step {
            Step::DnsUp => {
                run.bed.start_dns();
                mark(run, "dns.up".into());
            }
            Step::PodStart(i) => {
                let plan = &plans[i];
                run.bed.start_pod(i);
                if let Some(r) = plan.ping_group_range {
                    run.bed.set_ping_group_range(i, r == Range::Open);
                }
                if plan.drop_icmp {
                    run.bed.drop_icmp(i, true);
                }
                if plan.link_down {
                    run.bed.set_link(i, false);
                }
                mark(run, format!("pod{i}.start"));
                if plan.publish_delay.is_zero() {
                    next.extend(self.step(run, plans, Step::PodPublish(i), now));
                } else {
                    next.push((now + plan.publish_delay, Step::PodPublish(i)));
                }
                if plan.run_delay.is_zero() {
                    next.extend(self.step(run, plans, Step::PodRun(i), now));
                } else {
                    next.push((now + plan.run_delay, Step::PodRun(i)));
                }
            }
            Step::PodPublish(i) => {
                if run.bed.pod(i).is_some_and(|p| p.alive) {
                    run.bed.publish(i);
                    mark(run, format!("pod{i}.publish"));
                }
            }
            Step::PodRun(i) if !self.run.sidecar.is_empty() => {
                if run.bed.pod(i).is_some_and(|p| p.alive) {
                    let x = |s: &String| expand(s, &run.bed, self, Some(i));
                    let peergate = env!("CARGO_BIN_EXE_peergate").to_string();
                    let limits = self.plan(i).limits;
                    let mut sidecar = PodCommand::new("sidecar", &[]);
                    sidecar.argv = std::iter::once(peergate.clone())
                        .chain(self.run.sidecar.iter().map(x))
                        .collect();
                    sidecar.limits = limits;
                    let mut waiter = PodCommand::new("await", &[]);
                    waiter.limits = limits;
                    waiter.argv = [peergate, "await".into()]
                        .into_iter()
                        .chain(self.run.await_args.iter().map(x))
                        .collect();
                    let sidecar = run.bed.spawn(i, &sidecar);
                    let await_proc = run.bed.spawn(i, &waiter);
                    run.sidecars.entry(i).or_default().push(sidecar);
                    run.awaits.entry(i).or_default().push(await_proc);
                    run.life.insert(
                        i,
                        SidecarPod {
                            sidecar,
                            await_proc,
                            main: None,
                            stopping: false,
                        },
                    );
                    mark(run, format!("pod{i}.run"));
                    next.push((now + REAP_EVERY, Step::Reap(i)));
                }
            }
            Step::Reap(i) => {
                let Some(mut life) = run.life.get(&i).copied() else {
                    return next;
                };
                let exited = |id: ProcId| run.bed.proc(id).exit();
                if exited(life.sidecar).is_some() {
                    // The pod has ended: a Succeeded pod leaves the
                    // Service's endpoints.
                    if run.bed.pod(i).is_some_and(|p| p.alive) {
                        run.bed.unpublish(i);
                        mark(run, format!("pod{i}.end"));
                    }
                    run.life.remove(&i);
                    return next;
                }
                match (exited(life.await_proc), life.main) {
                    (Some(e), None) if e.code() == Some(0) && !life.stopping => {
                        let plan = &plans[i];
                        if plan.program == "none" {
                            // No workload: the pod keeps running.
                        } else {
                            let cmd = self.command(&run.bed, i, plan);
                            let id = run.bed.spawn(i, &cmd);
                            run.main.entry(i).or_default().push(id);
                            life.main = Some(id);
                            mark(run, format!("pod{i}.main"));
                        }
                    }
                    (Some(_), None) if !life.stopping => {
                        // The init container failed: the kubelet stops the pod.
                        run.bed.proc(life.sidecar).signal(libc::SIGTERM);
                        life.stopping = true;
                    }
                    (_, Some(main)) if exited(main).is_some() && !life.stopping => {
                        run.bed.proc(life.sidecar).signal(libc::SIGTERM);
                        life.stopping = true;
                    }
                    _ => {}
                }
                run.life.insert(i, life);
                next.push((now + REAP_EVERY, Step::Reap(i)));
            }
            Step::PodRun(i) => {
                let plan = &plans[i];
                if plan.program != "none" && run.bed.pod(i).is_some_and(|p| p.alive) {
                    let cmd = self.command(&run.bed, i, plan);
                    let id = run.bed.spawn(i, &cmd);
                    run.main.entry(i).or_default().push(id);
                    mark(run, format!("pod{i}.run"));
                }
            }
            Step::Event(k) => {
                let e = &self.events[k];
                for &i in &e.pods {
                    match e.action {
                        Action::LinkDown => run.bed.set_link(i, false),
                        Action::LinkUp => run.bed.set_link(i, true),
                        Action::DropIcmp => run.bed.drop_icmp(i, true),
                        Action::AllowIcmp => run.bed.drop_icmp(i, false),
                        Action::BlackHole => {
                            let peer = e.peer.expect("validated");
                            let to = run.bed.pod(peer).expect("the peer pod exists").ip();
                            let from = run.bed.pod(i).expect("the pod exists").ip();
                            run.bed.black_hole(from, to);
                        }
                        Action::Delete => run.bed.delete_pod(i, e.keep_record),
                        Action::Start => {
                            next.extend(self.step(run, plans, Step::PodStart(i), now));
                        }
                        Action::Publish => run.bed.publish(i),
                        Action::Unpublish => run.bed.unpublish(i),
                        Action::Signal => {
                            let sig = e.signal.as_deref().and_then(signal_number).unwrap();
                            if let Some(id) = run.last_of(e.proc, i) {
                                run.bed.proc(id).signal(sig);
                            }
                        }
                        Action::DnsUp | Action::DnsDown => {}
                    }
                }
                match e.action {
                    Action::DnsUp => {
                        run.bed.start_dns();
                        mark(run, "dns.up".into());
                    }
                    Action::DnsDown => run.bed.stop_dns(),
                    _ => {}
                }
                if let Some(name) = &e.name {
                    mark(run, name.clone());
                }
            }
        }
        next
    }

    fn command(&self, bed: &Bed, index: usize, plan: &PodPlan) -> PodCommand {
        let x = |s: &str| expand(s, bed, self, Some(index));
        let mut argv: Vec<String> = match plan.program.as_str() {
            "peergate" => vec![env!("CARGO_BIN_EXE_peergate").to_string()],
            "seed" => vec![
                "bash".to_string(),
                format!("{}/tests/seed_loop.sh", env!("CARGO_MANIFEST_DIR")),
            ],
            other => vec![other.to_string()],
        };
        argv.extend(plan.args.iter().map(|a| x(a)));
        PodCommand {
            name: "main".into(),
            argv,
            env: plan.env.iter().map(|(k, v)| (k.clone(), x(v))).collect(),
            unprivileged: plan.unprivileged,
            time_v: self.run.time_v,
            // The workload's own limits are the workload's: only a
            // peergate program is one of peergate's containers.
            limits: if plan.program == "peergate" {
                plan.limits
            } else {
                Default::default()
            },
        }
    }

    /// Checks every expectation; returns the failures (empty = pass).
    pub fn verify(&self, run: &Run) -> Vec<String> {
        let mut fails = Vec::new();
        for x in &self.expects {
            let pods: Vec<usize> = if x.pods.is_empty() {
                run.main.keys().copied().collect()
            } else {
                x.pods.clone()
            };
            for i in pods {
                if let Err(why) = self.check_pod(run, x, i) {
                    fails.push(format!("pod {i}: {why}"));
                }
            }
        }
        fails
    }

    fn check_pod(&self, run: &Run, x: &ExpectSpec, i: usize) -> Result<(), String> {
        let id = run
            .last_of(x.proc, i)
            .ok_or_else(|| "no program ran in this pod".to_string())?;
        let p = run.bed.proc(id);
        let exit = p
            .exit()
            .ok_or_else(|| format!("still running at the deadline ({:?})", self.deadline))?;
        // A process killed by signal n exits 128 + n, as the kubelet
        // reports a container's (137: SIGKILL, e.g. OOM-killed).
        let code = exit.code().or_else(|| exit.signal().map(|n| 128 + n));
        if code != Some(x.exit) {
            return Err(format!("expected exit {}, got {}", x.exit, exit.describe()));
        }
        if x.within.is_some() || x.not_before.is_some() {
            let reference = x.after.as_deref().unwrap_or("self.run");
            let key = match reference {
                "self.run" => format!("pod{i}.run"),
                other => other.to_string(),
            };
            let t_ref = *run
                .marks
                .get(&key)
                .ok_or_else(|| format!("reference instant {key:?} never happened"))?;
            let took = exit.at.saturating_duration_since(t_ref);
            let early = exit.at < t_ref;
            if let Some(w) = x.within
                && took > w
            {
                return Err(format!("exited {took:?} after {key}, bound {w:?}"));
            }
            if let Some(nb) = x.not_before
                && (early || took < nb)
            {
                let when = if early {
                    format!("{:?} before", t_ref - exit.at)
                } else {
                    format!("{took:?} after")
                };
                return Err(format!(
                    "exited {when} {key}, expected at least {nb:?} after"
                ));
            }
        }
        let stderr = p.read_stderr();
        let stdout = p.read_stdout();
        for (want, text, label) in [
            (&x.stderr, &stderr, "stderr"),
            (&x.stdout, &stdout, "stdout"),
        ] {
            for words in want {
                let words: Vec<String> = words
                    .iter()
                    .map(|w| expand(w, &run.bed, self, Some(i)))
                    .collect();
                if !text
                    .lines()
                    .any(|l| words.iter().all(|w| l.contains(w.as_str())))
                {
                    return Err(format!("no {label} line contains all of {words:?}"));
                }
            }
        }
        if let Some(max) = x.stderr_max_lines {
            let n = stderr.lines().count();
            if n > max {
                return Err(format!("{n} stderr lines, at most {max} expected"));
            }
        }
        for (unwanted, text, label) in [
            (&x.stderr_not, &stderr, "stderr"),
            (&x.stdout_not, &stdout, "stdout"),
        ] {
            for words in unwanted {
                let words: Vec<String> = words
                    .iter()
                    .map(|w| expand(w, &run.bed, self, Some(i)))
                    .collect();
                if let Some(l) = text
                    .lines()
                    .find(|l| words.iter().all(|w| l.contains(w.as_str())))
                {
                    return Err(format!("{label} line {l:?} contains all of {words:?}"));
                }
            }
        }
        Ok(())
    }

    /// One line per pod: exit and timing relative to the scenario start.
    pub fn summary(&self, run: &Run) -> String {
        let mut s = String::new();
        let rel = |t: Instant| t.saturating_duration_since(run.t0).as_secs_f64();
        let mut marks: Vec<_> = run.marks.iter().collect();
        marks.sort_by_key(|(_, t)| **t);
        for (name, t) in marks {
            writeln!(s, "  t={:7.3}s  {name}", rel(*t)).unwrap();
        }
        for (label, map) in [
            ("", &run.main),
            (" sidecar", &run.sidecars),
            (" await", &run.awaits),
        ] {
            for (i, ids) in map {
                for id in ids {
                    let p = run.bed.proc(*id);
                    let end = p.exit().map_or("running".into(), |e| {
                        format!("{} at t={:.3}s", e.describe(), rel(e.at))
                    });
                    let usage = match run.bed.usage(*id) {
                        Some(u) => format!(
                            "; peak memory {}{}",
                            u.peak
                                .map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
                            u.throttled.map_or(String::new(), |(n, t)| format!(
                                ", CPU throttled {n} times, {:.3}s in all",
                                t.as_secs_f64()
                            ))
                        ),
                        None => String::new(),
                    };
                    writeln!(
                        s,
                        "  pod {i}{label}: started t={:.3}s, {end}{usage}",
                        rel(p.started)
                    )
                    .unwrap();
                }
            }
        }
        s
    }
}

/// Expands `${...}` placeholders (see the module docs). Unknown ones panic.
pub fn expand(s: &str, bed: &Bed, sc: &Scenario, index: Option<usize>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed placeholder in {s:?}"))
            + start;
        let key = &rest[start + 2..end];
        out.push_str(
            &lookup(key, bed, sc, index).unwrap_or_else(|| {
                panic!("unknown or unavailable placeholder ${{{key}}} in {s:?}")
            }),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn lookup(key: &str, bed: &Bed, sc: &Scenario, index: Option<usize>) -> Option<String> {
    Some(match key {
        "job" => sc.job.name.clone(),
        "svc" => sc.job.subdomain.clone(),
        "ns" => sc.job.namespace.clone(),
        "zone" => bed.cfg.zone.clone(),
        "pods" => sc.job.pods.to_string(),
        "index" => index?.to_string(),
        "repo" => env!("CARGO_MANIFEST_DIR").to_string(),
        _ => {
            let (pod, field) = key.strip_prefix("pod")?.split_once('.')?;
            let i: usize = pod.parse().ok()?;
            match field {
                "fqdn" => bed.fqdn(i),
                "host" => bed.hostname(i),
                "ip" => bed.pod(i)?.ip().to_string(),
                "v4" => bed.pod(i)?.v4?.to_string(),
                "v6" => bed.pod(i)?.v6?.to_string(),
                _ => return None,
            }
        }
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Loads, runs and checks scenario `name`; panics with a report on failure.
/// Skips (returns) when prerequisites are missing, unless under CI.
pub fn run_named(name: &str) {
    let sc = Scenario::load(name);
    let programs = sc.own_programs();
    let programs: Vec<&str> = programs.iter().map(String::as_str).collect();
    if !super::prereq::ready_with(name, &programs) {
        return;
    }
    let limited = sc.run.limits.is_some() || sc.pods.iter().any(|p| p.limits.is_some());
    if limited && let Some(why) = super::cgroups::unavailable() {
        super::prereq::skip(name, &format!("no CPU and memory limits: {why}"));
        return;
    }
    let started = Instant::now();
    let run = sc.execute();
    let fails = sc.verify(&run);
    let summary = sc.summary(&run);
    println!(
        "scenario {name}: {}\n{summary}  ran in {:.1}s",
        sc.description,
        started.elapsed().as_secs_f64()
    );
    if !fails.is_empty() {
        panic!(
            "scenario {name} failed ({}):\n  {}\ntimeline:\n{summary}logs:\n{}",
            sc.description,
            fails.join("\n  "),
            run.bed.dump(40)
        );
    }
}

#[cfg(test)]
mod tests {
    /// The hostile-peer scenarios need python3, so without it they skip
    /// (or fail under CI) instead of failing on a missing program.
    #[test]
    fn scenarios_that_run_strangers_py_need_python3() {
        for name in [
            "b06_barrier_stranger_reads",
            "b07_barrier_relay_and_reflection",
            "b08_barrier_flood",
        ] {
            assert_eq!(
                super::Scenario::load(name).own_programs(),
                ["python3"],
                "{name}"
            );
        }
        assert!(
            super::Scenario::load("s01_seed_parity")
                .own_programs()
                .is_empty()
        );
    }

    /// An event's `proc` names a process of a pod with a sidecar, and only
    /// a signal goes to one.
    #[test]
    fn an_event_proc_needs_a_signal_and_a_sidecar() {
        let check = |run: &str, event: &str| {
            let text = format!(
                "description = \"x\"\ndeadline = \"1s\"\n{run}\n[[event]]\nat = \"1s\"\npods = [0]\n\
                 {event}\n[[expect]]\nexit = 0\n"
            );
            toml::from_str::<super::Scenario>(&text)
                .map_err(|e| e.to_string())
                .and_then(|sc| sc.validate())
        };
        let sidecar = "[run]\nsidecar = [\"--serve\"]";
        let stop = "action = \"signal\"\nsignal = \"STOP\"";
        assert_eq!(
            check(sidecar, &format!("{stop}\nproc = \"sidecar\"")),
            Ok(())
        );
        assert_eq!(check(sidecar, &format!("{stop}\nproc = \"await\"")), Ok(()));
        assert_eq!(check("", &format!("{stop}\nproc = \"main\"")), Ok(()));
        assert!(check("", &format!("{stop}\nproc = \"sidecar\"")).is_err());
        assert!(check(sidecar, "action = \"delete\"\nproc = \"sidecar\"").is_err());
        assert!(check(sidecar, &format!("{stop}\nproc = \"workload\"")).is_err());
    }
}

//! `--dry-run`: what a run would do, printed instead of done.
//!
//! The [`Config`] comes from the same `Config::build` as a real run's, so
//! every configuration error is the one a run would stop at (exit 2). What
//! `run` sets up before it waits is set up here too, short of using the
//! network: the resolver is built (it sends nothing until asked), the probe
//! is opened the way `auto` opens it (opening an ICMP socket is local). No
//! query, probe or dial is sent, no port is bound, no file is written.
//!
//! What depends on the machine rather than on the configuration (whether
//! ICMP is permitted, whether the hostfile's directory exists) is reported
//! as a warning, not as a failure: a dry run on a laptop or in CI checks a
//! manifest's configuration, and a dry run in the pod shows what that pod
//! would meet.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::cli::{AwaitArgs, one_line};
use crate::config::{BarrierPlan, Config, DnsSettings, Plan};
use crate::dns::Dns;
use crate::duration::human;
use crate::handoff;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::{Peer, Target};
use crate::probe::{Opened, Prober};
use crate::rendezvous::topology::{MESH_MAX, Topology, UPLINKS};
use crate::run::Exit;
use crate::values::{Family, HostfileFormat, LogFormat, Mode, ProbeKind};

/// Most names a text line lists before it abbreviates to the first few,
/// a count and the last.
const LISTED: usize = 5;
/// Names kept before the count when a list is abbreviated.
const HEAD: usize = 3;

/// What a run would do, as far as it can be known without the network:
/// one set of facts, written as text or as one JSON object (its fields are
/// the JSON keys; `serde_json::Value` sorts them).
#[derive(Debug, Serialize)]
struct DryRun {
    dry_run: bool,
    #[serde(serialize_with = "display")]
    mode: Mode,
    pod: Pod,
    peers: Vec<PeerEntry>,
    /// Ping mode: the probe `auto` (or the flag) gives on this machine.
    probe: Option<ProbeEntry>,
    barrier: Option<BarrierEntry>,
    dns: Option<DnsEntry>,
    #[serde(rename = "interval_ms", serialize_with = "millis")]
    interval: Duration,
    #[serde(rename = "timeout_ms", serialize_with = "opt_millis")]
    timeout: Option<Duration>,
    concurrency: usize,
    handoff: Handoff,
    /// The inputs' warnings, then what would fail on this machine.
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Pod {
    index: Option<u32>,
    member: bool,
    hostname: Option<String>,
    job: Option<String>,
    subdomain: Option<String>,
    namespace: Option<String>,
    zone: Option<String>,
    /// This pod's own name as its peers ask for it.
    name: Option<String>,
    addrs: Vec<IpAddr>,
}

#[derive(Debug, Serialize)]
struct PeerEntry {
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<IpAddr>,
}

#[derive(Debug, Serialize)]
struct ProbeEntry {
    #[serde(serialize_with = "probe_kind")]
    kind: ProbeKind,
    #[serde(rename = "timeout_ms", serialize_with = "millis")]
    timeout: Duration,
    #[serde(flatten)]
    opened: OpenedEntry,
}

/// Which probe opening it gave; `Err` when a run here would stop at it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OpenedEntry {
    Icmp {
        uses: &'static str,
        socket: &'static str,
    },
    Tcp {
        uses: &'static str,
        port: u16,
        fallback: Option<String>,
    },
    Dns {
        uses: &'static str,
    },
    Failed {
        uses: Option<&'static str>,
        error: String,
    },
}

#[derive(Debug, Serialize)]
struct BarrierEntry {
    job: String,
    world: u32,
    #[serde(serialize_with = "topology")]
    topology: Topology,
    port: u16,
    listen: Option<IpAddr>,
    token: bool,
    announce: Vec<IpAddr>,
    service: Option<String>,
    #[serde(rename = "connect_timeout_ms", serialize_with = "millis")]
    connect_timeout: Duration,
    serve: bool,
    await_port: Option<u16>,
    health_port: Option<u16>,
}

#[derive(Debug, Serialize)]
struct DnsEntry {
    nameservers: Vec<IpAddr>,
    search: Vec<String>,
    ndots: usize,
    #[serde(rename = "families", serialize_with = "display")]
    family: Family,
    #[serde(rename = "timeout_ms", serialize_with = "millis")]
    timeout: Duration,
}

#[derive(Debug, Serialize)]
struct Handoff {
    hostfile: Option<HostfileEntry>,
    command: Option<Vec<String>>,
    /// The hand-off's variables in the order a run sets them; `None` for a
    /// value only the run learns.
    #[serde(serialize_with = "as_map")]
    env: Vec<(String, Option<String>)>,
}

#[derive(Debug, Serialize)]
struct HostfileEntry {
    #[serde(serialize_with = "path")]
    path: PathBuf,
    #[serde(serialize_with = "display")]
    format: HostfileFormat,
    slots: u32,
}

/// `peergate await --dry-run`'s facts.
#[derive(Debug, Serialize)]
struct AwaitDryRun {
    dry_run: bool,
    #[serde(rename = "await")]
    wait: AwaitEntry,
}

#[derive(Debug, Serialize)]
struct AwaitEntry {
    port: u16,
    #[serde(rename = "timeout_ms", serialize_with = "opt_millis")]
    timeout: Option<Duration>,
    command: Option<Vec<String>>,
}

/// Prints what a run with `config` would do, as text or one JSON object on
/// stdout, and returns the exit code: 0, or 2 when a run would stop before
/// waiting for a reason that lies in the configuration. Must run inside
/// the runtime (the ICMP clients spawn their receive tasks).
pub fn run(config: &Config, format: LogFormat) -> Exit {
    let preview = match DryRun::new(config) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{}", one_line(&e));
            return Exit::Usage;
        }
    };
    print(&match format {
        LogFormat::Text => preview.text(),
        LogFormat::Json => json(&preview),
    })
}

/// `peergate await --dry-run`: its arguments parsed, what it would do.
pub fn run_await(args: &AwaitArgs) -> Exit {
    let preview = AwaitDryRun {
        dry_run: true,
        wait: AwaitEntry {
            port: args.port,
            timeout: args.timeout.0,
            command: command(&args.command),
        },
    };
    print(&match args.log_format {
        LogFormat::Text => preview.text(),
        LogFormat::Json => json(&preview),
    })
}

/// One JSON object, keys sorted.
fn json(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .map(|v| v.to_string())
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Writes `text` to stdout, ending in a newline.
fn print(text: &str) -> Exit {
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    let mut stdout = std::io::stdout().lock();
    match write!(stdout, "{text}{newline}").and_then(|()| stdout.flush()) {
        Ok(()) => Exit::Passed,
        Err(e) => {
            tracing::error!("cannot write to stdout: {e}");
            Exit::Failure
        }
    }
}

impl AwaitDryRun {
    fn text(&self) -> String {
        let w = &self.wait;
        let then = match &w.command {
            None => "exit 0".to_owned(),
            Some(cmd) => format!(
                "exec {} with the hand-off variables (same PID)",
                shell_words(cmd)
            ),
        };
        format!(
            "peergate await --dry-run: what it would do (nothing was sent)\n\
             wait      for the release of the sidecar's barrier, asking 127.0.0.1:{} \
             (its --await-port), {}\n\
             then      {then}\n",
            w.port,
            w.timeout.map_or_else(
                || "with no time limit".into(),
                |d| format!("for at most {} (then exit 124)", human(d))
            ),
        )
    }
}

impl DryRun {
    /// Sets up what `run::run` sets up before it waits, short of the
    /// network, and gathers the facts. `Err` is the line a run would exit 2
    /// with.
    fn new(config: &Config) -> Result<Self, String> {
        let mut warnings = config.warnings.clone();
        let here = |e: &dyn std::fmt::Display| format!("on this machine a run would exit 2: {e}");
        if let Some(spec) = &config.hostfile
            && let Err(e) = handoff::inspect_destination(&spec.path)
        {
            warnings.push(here(&e));
        }
        if let Some(settings) = &config.dns {
            // Built as a run builds it, and dropped: it sends nothing until
            // asked for a name.
            Dns::new(settings).map_err(|e| e.to_string())?;
        }
        let (probe, barrier) = match &config.plan {
            // Ping mode opens its probe; the barrier's handshake is its own.
            Plan::Ping(ping) => {
                let opened = match Prober::open_quietly(&ping.probe) {
                    Ok((_prober, Opened::Icmp { socket, .. })) => OpenedEntry::Icmp {
                        uses: "icmp",
                        socket,
                    },
                    Ok((_prober, Opened::Tcp { port, fallback })) => OpenedEntry::Tcp {
                        uses: "tcp",
                        port,
                        fallback,
                    },
                    Ok((_prober, Opened::Dns)) => OpenedEntry::Dns { uses: "dns" },
                    Err(e) => {
                        warnings.push(here(&e));
                        OpenedEntry::Failed {
                            uses: None,
                            error: e.to_string(),
                        }
                    }
                };
                let probe = ProbeEntry {
                    kind: ping.probe.kind,
                    timeout: ping.probe.timeout,
                    opened,
                };
                (Some(probe), None)
            }
            Plan::Barrier(plan) => (None, Some(barrier_entry(plan))),
        };
        let id = &config.identity;
        Ok(DryRun {
            dry_run: true,
            mode: config.mode(),
            pod: Pod {
                index: id.index,
                member: config.self_index().is_some(),
                hostname: id.hostname.clone(),
                job: id.vars.job.clone(),
                subdomain: id.vars.subdomain.clone(),
                namespace: id.vars.namespace.clone(),
                zone: id.vars.zone.clone(),
                name: id.target.as_ref().map(target_text),
                addrs: id.addrs.clone(),
            },
            peers: config.peers().iter().map(peer_entry).collect(),
            probe,
            barrier,
            dns: config.dns.as_ref().map(dns_entry),
            interval: config.interval(),
            timeout: config.deadline,
            concurrency: config.concurrency(),
            handoff: Handoff {
                hostfile: config.hostfile.as_ref().map(|h| HostfileEntry {
                    path: h.path.clone(),
                    format: h.format,
                    slots: h.slots,
                }),
                command: command(&config.command),
                env: handoff_env(config),
            },
            warnings,
        })
    }

    /// This pod's index when it is one of the peers.
    fn self_index(&self) -> Option<u32> {
        self.pod.index.filter(|_| self.pod.member)
    }

    fn text(&self) -> String {
        let mut out = String::from("peergate --dry-run: what a run would do (nothing was sent)\n");
        let mut line = |label: &str, text: String| {
            let _ = writeln!(out, "{label:<9} {}", one_line(&text));
        };
        line("pod", self.pod_text());
        line("peers", self.peers_text());
        if let Some(probe) = &self.probe {
            line(
                "probe",
                format!(
                    "{}; each missing peer every {}, answer within {}, {} at a time",
                    probe_text(probe),
                    human(self.interval),
                    human(probe.timeout),
                    self.concurrency
                ),
            );
        }
        if let Some(b) = &self.barrier {
            line("barrier", self.barrier_text(b));
            line("serve", serve_text(b));
        }
        line(
            "dns",
            match &self.dns {
                Some(d) => dns_text(d),
                None => "none needed: every peer is an address".into(),
            },
        );
        line(
            "timeout",
            match self.timeout {
                Some(d) => format!("{}, then exit 124 naming every missing peer", human(d)),
                None => "never (waits until every peer is there)".into(),
            },
        );
        line("hand-off", self.handoff_text());
        let env = self.handoff.env.iter().map(|(k, v)| match v {
            None => format!("{k}=<learned by the run>"),
            Some(v) if k == handoff::ENV_PEER_NAMES && self.peers.len() > LISTED => {
                let names: Vec<String> = v.split(' ').map(str::to_owned).collect();
                format!("{k}=<{} names: {}>", names.len(), abbreviated(&names))
            }
            Some(v) => format!("{k}={v}"),
        });
        line("env", env.collect::<Vec<_>>().join(" "));
        for w in &self.warnings {
            line("warning", w.clone());
        }
        out
    }

    fn pod_text(&self) -> String {
        let pod = &self.pod;
        let mut parts = vec![match (pod.index, pod.member) {
            (Some(i), true) => format!("index {i}"),
            (Some(i), false) => format!("index {i} (not one of the peers)"),
            (None, _) => "no index (not one of the peers)".into(),
        }];
        parts.push(match &pod.hostname {
            Some(h) => format!("hostname {h}"),
            None => "hostname unknown".into(),
        });
        if let Some(job) = &pod.job {
            parts.push(format!("Job {job}"));
        }
        if let Some(name) = &pod.name {
            parts.push(format!("name {name}"));
        }
        if !pod.addrs.is_empty() {
            parts.push(format!("addresses {}", join(&pod.addrs)));
        }
        parts.join(", ")
    }

    fn peers_text(&self) -> String {
        let names: Vec<String> = self.peers.iter().map(PeerEntry::text).collect();
        let whose = match (self.self_index(), self.pod.index) {
            (Some(i), _) if self.peers.iter().any(|p| p.index == Some(i)) => ", this pod included",
            (None, Some(_)) => ", this pod not among them",
            _ => "",
        };
        format!("{}{whose}: {}", names.len(), abbreviated(&names))
    }

    fn barrier_text(&self, b: &BarrierEntry) -> String {
        let topology = match b.topology {
            Topology::Mesh => format!("a full mesh (up to {MESH_MAX} pods)"),
            Topology::Tree => format!(
                "a tree (more than {MESH_MAX} pods), {UPLINKS} links up per pod, records flooded"
            ),
        };
        let announce = if b.announce.is_empty() {
            "announces the address its first link sees".into()
        } else {
            format!("announces {}", join(&b.announce))
        };
        let mut parts = vec![
            format!("Job {}, {} pods in {topology}", b.job, b.world),
            format!(
                "port {} on {}",
                b.port,
                b.listen
                    .map_or_else(|| "all addresses".into(), |ip| ip.to_string())
            ),
            if b.token {
                "token set".into()
            } else {
                "no token (--insecure-no-token: anyone who reaches the port can join)".into()
            },
            announce,
            format!(
                "dials every {}, connect timeout {}",
                human(self.interval),
                human(b.connect_timeout)
            ),
        ];
        if let Some(s) = &b.service {
            parts.push(format!(
                "Service {s} as the way in while no peer name resolves"
            ));
        }
        parts.join("; ")
    }

    fn handoff_text(&self) -> String {
        let serve = self.barrier.as_ref().is_some_and(|b| b.serve);
        let mut parts = Vec::new();
        if let Some(h) = &self.handoff.hostfile {
            let slots = match h.format {
                HostfileFormat::Openmpi | HostfileFormat::Mpich => {
                    format!(", {} slot(s) per host", h.slots)
                }
                _ => String::new(),
            };
            parts.push(format!(
                "write {} (format {}{slots}) {}",
                h.path.display(),
                h.format,
                if serve {
                    "at the release, again on every change"
                } else {
                    "once the gate opens"
                }
            ));
        }
        if let Some(cmd) = &self.handoff.command {
            parts.push(format!(
                "then exec {} with the variables below (same PID)",
                shell_words(cmd)
            ));
        }
        match (parts.is_empty(), serve) {
            (true, true) => {
                "none written; `peergate await -- COMMAND` gets the variables below".into()
            }
            (true, false) => "none: exit 0 once the gate opens".into(),
            _ => parts.join("; "),
        }
    }
}

fn barrier_entry(plan: &BarrierPlan) -> BarrierEntry {
    let s = &plan.settings;
    let world = s.peers.len() as u32;
    let serving = plan.serving();
    BarrierEntry {
        job: s.job.clone(),
        world,
        topology: Topology::for_world(world),
        port: s.port,
        listen: s.listen,
        token: s.token.is_some(),
        announce: s.announce.clone(),
        service: s.service.clone(),
        connect_timeout: s.connect_timeout,
        serve: serving.is_some(),
        await_port: serving.map(|p| p.await_port),
        health_port: serving.and_then(|p| p.health_port),
    }
}

fn dns_entry(d: &DnsSettings) -> DnsEntry {
    DnsEntry {
        nameservers: d.nameservers.clone(),
        search: d.search.clone(),
        ndots: d.ndots,
        family: d.family,
        timeout: d.timeout,
    }
}

fn peer_entry(p: &Peer) -> PeerEntry {
    let (name, addr) = match &p.target {
        Target::Name(n) => (Some(n.clone()), None),
        Target::Addr(a) => (None, Some(*a)),
    };
    PeerEntry {
        index: p.index,
        name,
        addr,
    }
}

impl PeerEntry {
    /// As it is asked for: a name with its trailing dot, if it has one
    /// (absolute: one query), or the address.
    fn text(&self) -> String {
        match (&self.name, self.addr) {
            (Some(n), _) => n.clone(),
            (None, Some(a)) => a.to_string(),
            (None, None) => String::new(),
        }
    }
}

/// The hand-off variables as a run would set them, from the peers' names;
/// `None` for `PEERGATE_COORDINATOR_ADDR` when only the run learns it.
fn handoff_env(config: &Config) -> Vec<(String, Option<String>)> {
    let outcome = GateOutcome {
        self_index: config.self_index(),
        peers: config
            .peers()
            .iter()
            .map(|p| PeerOutcome {
                index: p.index,
                name: p.display_name(),
                addrs: Vec::new(),
                reachable_via: None,
                elapsed: None,
            })
            .collect(),
    };
    let mut env: Vec<(String, Option<String>)> = handoff::env_vars(&outcome)
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    let coordinator = env.iter().position(|(k, _)| k == handoff::ENV_COORDINATOR);
    let has_addr = env.iter().any(|(k, _)| k == handoff::ENV_COORDINATOR_ADDR);
    if let (Some(pos), false) = (coordinator, has_addr) {
        env.insert(pos + 1, (handoff::ENV_COORDINATOR_ADDR.to_owned(), None));
    }
    env
}

fn probe_text(probe: &ProbeEntry) -> String {
    let prefix = if probe.kind == ProbeKind::Auto {
        "auto: "
    } else {
        ""
    };
    match &probe.opened {
        OpenedEntry::Icmp { socket, .. } => format!("{prefix}icmp echo ({socket} opened here)"),
        OpenedEntry::Tcp {
            port,
            fallback: Some(why),
            ..
        } => format!("auto: tcp connect to port {port} (no ICMP here: {why})"),
        OpenedEntry::Tcp { port, .. } => {
            format!("tcp connect to port {port} (accepted or refused: the host is up)")
        }
        OpenedEntry::Dns { .. } => "dns: a peer counts once its name resolves".into(),
        OpenedEntry::Failed { .. } => "icmp, which cannot be opened here (see the warning)".into(),
    }
}

fn serve_text(b: &BarrierEntry) -> String {
    let Some(await_port) = b.await_port.filter(|_| b.serve) else {
        return "no: exits once released".into();
    };
    let health = b.health_port.map_or_else(
        || "no health endpoints".into(),
        |p| format!("/livez /readyz /peers /metrics on port {p}"),
    );
    format!(
        "stays after the release: `peergate await` on 127.0.0.1:{await_port}, {health}; exit 0 \
         on SIGTERM"
    )
}

fn dns_text(d: &DnsEntry) -> String {
    let records = match d.family {
        Family::V4 => "A",
        Family::V6 => "AAAA",
        Family::Dual => "A and AAAA",
    };
    let search = if d.search.is_empty() {
        "none".to_owned()
    } else {
        d.search.join(" ")
    };
    format!(
        "nameservers {}; search {search}; ndots {}; {} ({records}); query timeout {}",
        join(&d.nameservers),
        d.ndots,
        d.family,
        human(d.timeout)
    )
}

/// A peer as it is asked for (see [`PeerEntry::text`]).
fn target_text(t: &Target) -> String {
    match t {
        Target::Name(n) => n.clone(),
        Target::Addr(a) => a.to_string(),
    }
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn display<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn path<S: Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn opt_millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => millis(d, s),
        None => s.serialize_none(),
    }
}

fn probe_kind<S: Serializer>(kind: &ProbeKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

fn topology<S: Serializer>(t: &Topology, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

fn as_map<S: Serializer>(pairs: &[(String, Option<String>)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// `a, b, c`, or `a, b, c, ... (+95 more), z` for a long list.
fn abbreviated(names: &[String]) -> String {
    if names.len() <= LISTED {
        return names.join(", ");
    }
    format!(
        "{}, ... (+{} more), {}",
        names[..HEAD].join(", "),
        names.len() - HEAD - 1,
        names[names.len() - 1]
    )
}

/// The command after `--`, when there is one.
fn command(args: &[OsString]) -> Option<Vec<String>> {
    (!args.is_empty()).then(|| {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    })
}

/// A command as a shell would need it typed: words with spaces or quotes
/// in single quotes.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                w.clone()
            } else {
                handoff::shell_quote(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_keep_the_first_few_a_count_and_the_last() {
        let names: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        assert_eq!(abbreviated(&names), "p0, p1, p2, p3, p4");
        let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        assert_eq!(abbreviated(&names), "p0, p1, p2, ... (+96 more), p99");
    }

    #[test]
    fn commands_are_shown_as_a_shell_would_take_them() {
        let cmd: Vec<String> = ["bash", "-c", "echo \"$(hostname)\" it's", "--x=1"]
            .map(Into::into)
            .to_vec();
        assert_eq!(
            shell_words(&cmd),
            r#"bash -c 'echo "$(hostname)" it'\''s' --x=1"#
        );
        assert_eq!(shell_words(&["".into()]), "''");
    }
}

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
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

mod text;

use crate::cli::{AwaitArgs, RunArgs, one_line};
use crate::config::{BarrierPlan, Config, DnsSettings, Plan};
use crate::dns::Dns;
use crate::handoff;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::{Peer, Target};
use crate::probe::{Opened, Prober};
use crate::rendezvous::topology::Topology;
use crate::run::Exit;
use crate::values::{Family, HostfileFormat, LogFormat, Mode, ProbeKind};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    install: Option<PathBuf>,
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
struct RunDryRun {
    dry_run: bool,
    run: RunEntry,
}

#[derive(Debug, Serialize)]
struct RunEntry {
    port: u16,
    #[serde(rename = "grace_ms", serialize_with = "millis")]
    grace: Duration,
    max_restarts: u32,
    #[serde(rename = "timeout_ms", serialize_with = "opt_millis")]
    timeout: Option<Duration>,
    command: Vec<String>,
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

/// `peergate run --dry-run`: what it would do, without contacting the
/// sidecar.
pub fn run_run(args: &RunArgs) -> Exit {
    let preview = RunDryRun {
        dry_run: true,
        run: RunEntry {
            port: args.port,
            grace: args.grace,
            max_restarts: args.max_restarts,
            timeout: args.timeout.0,
            command: command(&args.command).unwrap_or_default(),
        },
    };
    print(&match args.log_format {
        LogFormat::Text => preview.text(),
        LogFormat::Json => json(&preview),
    })
}

/// `peergate barrier|put|get --dry-run`'s facts.
#[derive(Debug, Serialize)]
struct ExchangeDryRun {
    dry_run: bool,
    exchange: ExchangeEntry,
}

#[derive(Debug, Serialize)]
struct ExchangeEntry {
    /// `barrier`, `put` or `get`.
    command: &'static str,
    port: u16,
    /// The round it is pinned to; none: the live round.
    round: Option<u32>,
    /// The key or barrier name.
    name: String,
    /// put: the value's bytes (none: from stdin).
    value_bytes: Option<usize>,
    /// get: the index read (none: every member).
    index: Option<u32>,
    /// get: `text`, `json` or `known-hosts`.
    format: Option<&'static str>,
    /// barrier: --timeout; get: --wait (none: without end).
    #[serde(rename = "wait_ms", serialize_with = "opt_millis")]
    wait: Option<Duration>,
}

/// What `peergate barrier`, `put` or `get` was asked to do.
pub enum Exchange<'a> {
    Barrier {
        name: &'a str,
        timeout: Option<Duration>,
    },
    Put {
        key: &'a str,
        value: Option<&'a str>,
    },
    Get {
        key: &'a str,
        index: Option<u32>,
        wait: Option<Duration>,
        format: crate::sidecar::exchange_client::GetFormat,
    },
}

/// `peergate barrier|put|get --dry-run`: the arguments checked against
/// the limits as a run checks them, and what it would do.
pub fn run_exchange(what: &Exchange<'_>, port: u16, round: Option<u32>, format: LogFormat) -> Exit {
    use crate::sidecar::exchange_client::GetFormat;
    use crate::sidecar::exchange_commands::{checked, checked_value};
    let (command, name) = match what {
        Exchange::Barrier { name, .. } => ("barrier", *name),
        Exchange::Put { key, .. } => ("put", *key),
        Exchange::Get { key, .. } => ("get", *key),
    };
    let what_name = if command == "barrier" {
        "barrier name"
    } else {
        "key"
    };
    if let Err(exit) = checked(what_name, name) {
        return exit;
    }
    if let Exchange::Put { value: Some(v), .. } = what
        && let Err(exit) = checked_value(name, v)
    {
        return exit;
    }
    let entry = ExchangeEntry {
        command,
        port,
        round,
        name: name.to_owned(),
        value_bytes: match what {
            Exchange::Put { value, .. } => value.map(str::len),
            _ => None,
        },
        index: match what {
            Exchange::Get { index, .. } => *index,
            _ => None,
        },
        format: match what {
            Exchange::Get { format, .. } => Some(match format {
                GetFormat::Text => "text",
                GetFormat::Json => "json",
                GetFormat::KnownHosts => "known-hosts",
            }),
            _ => None,
        },
        wait: match what {
            Exchange::Barrier { timeout, .. } => *timeout,
            Exchange::Get { wait, .. } => *wait,
            Exchange::Put { .. } => Some(Duration::ZERO),
        },
    };
    let preview = ExchangeDryRun {
        dry_run: true,
        exchange: entry,
    };
    print(&match format {
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
        await_port: serving.as_ref().map(|p| p.await_port),
        health_port: serving.as_ref().and_then(|p| p.health_port),
        install: serving.and_then(|p| p.install),
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
        round: None,
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

/// A peer as it is asked for (see [`PeerEntry::text`]).
fn target_text(t: &Target) -> String {
    match t {
        Target::Name(n) => n.clone(),
        Target::Addr(a) => a.to_string(),
    }
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

/// The command after `--`, when there is one.
fn command(args: &[OsString]) -> Option<Vec<String>> {
    (!args.is_empty()).then(|| {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    })
}

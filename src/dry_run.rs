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

use serde_json::{Value, json};

use crate::cli::{AwaitArgs, LogFormat, Mode, one_line};
use crate::config::{BarrierSettings, Config, DnsSettings, Family};
use crate::dns::Dns;
use crate::duration::human;
use crate::handoff;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::{Peer, Target};
use crate::probe::{Opened, Prober};
use crate::rendezvous::topology::{MESH_MAX, Topology, UPLINKS};
use crate::run::{Exit, announce};
use crate::values::HostfileFormat;
use crate::values::ProbeKind;

/// Most names a text line lists before it abbreviates to the first few,
/// a count and the last.
const LISTED: usize = 5;
/// Names kept before the count when a list is abbreviated.
const HEAD: usize = 3;

/// What a run would do, as far as it can be known without the network.
struct Preview<'a> {
    config: &'a Config,
    /// Ping mode: the probe `auto` (or the flag) gives on this machine;
    /// `Err` when a run here would stop at it.
    probe: Option<Result<Opened, String>>,
    /// The hand-off's variables; `None` for a value only the run learns.
    env: Vec<(String, Option<String>)>,
    /// The inputs' warnings, then what would fail on this machine.
    warnings: Vec<String>,
}

/// Prints what a run with `config` would do, as text or one JSON object on
/// stdout, and returns the exit code: 0, or 2 when a run would stop before
/// waiting for a reason that lies in the configuration. Must run inside
/// the runtime (the ICMP clients spawn their receive tasks).
pub fn run(config: &Config, format: LogFormat) -> Exit {
    let preview = match Preview::new(config) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{}", one_line(&e));
            return Exit::Usage;
        }
    };
    let out = match format {
        LogFormat::Text => preview.text(),
        LogFormat::Json => preview.json().to_string(),
    };
    print(&out)
}

/// `peergate await --dry-run`: its arguments parsed, what it would do.
pub fn run_await(args: &AwaitArgs) -> Exit {
    let command = (!args.command.is_empty()).then(|| strings(&args.command));
    let out = match args.log_format {
        LogFormat::Text => {
            let then = match &args.command[..] {
                [] => "exit 0".to_owned(),
                cmd => format!(
                    "exec {} with the hand-off variables (same PID)",
                    shell_words(cmd)
                ),
            };
            format!(
                "peergate await --dry-run: what it would do (nothing was sent)\n\
                 wait      for the release of the sidecar's barrier, asking 127.0.0.1:{} \
                 (its --await-port), {}\n\
                 then      {then}\n",
                args.port,
                args.timeout.0.map_or_else(
                    || "with no time limit".into(),
                    |d| format!("for at most {} (then exit 124)", human(d))
                ),
            )
        }
        LogFormat::Json => json!({
            "dry_run": true,
            "await": {
                "port": args.port,
                "timeout_ms": args.timeout.0.map(|d| d.as_millis() as u64),
                "command": command,
            },
        })
        .to_string(),
    };
    print(&out)
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

impl<'a> Preview<'a> {
    /// Sets up what `run::run` sets up before it waits, short of the
    /// network. `Err` is the line a run would exit 2 with.
    fn new(config: &'a Config) -> Result<Self, String> {
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
        // Ping mode opens its probe; the barrier's handshake is its own.
        let probe =
            (config.mode == Mode::Ping).then(|| match Prober::open_quietly(&config.probe) {
                Ok((_prober, opened)) => Ok(opened),
                Err(e) => {
                    warnings.push(here(&e));
                    Err(e.to_string())
                }
            });
        Ok(Preview {
            config,
            probe,
            env: handoff_env(config),
            warnings,
        })
    }

    fn text(&self) -> String {
        let c = self.config;
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
                    probe_text(probe, c.probe.kind == ProbeKind::Auto),
                    human(c.interval),
                    human(c.probe.timeout),
                    c.concurrency
                ),
            );
        }
        if let Some(b) = &c.barrier {
            line("barrier", self.barrier_text(b));
            line("serve", serve_text(b));
        }
        line(
            "dns",
            match &c.dns {
                Some(d) => dns_text(d),
                None => "none needed: every peer is an address".into(),
            },
        );
        line(
            "timeout",
            match c.deadline {
                Some(d) => format!("{}, then exit 124 naming every missing peer", human(d)),
                None => "never (waits until every peer is there)".into(),
            },
        );
        line("hand-off", self.handoff_text());
        let env = self.env.iter().map(|(k, v)| match v {
            None => format!("{k}=<learned by the run>"),
            Some(v) if k == handoff::ENV_PEER_NAMES && c.peers.len() > LISTED => {
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
        let c = self.config;
        let id = &c.identity;
        let mut parts = Vec::new();
        match (id.index, c.self_index) {
            (Some(i), Some(_)) => parts.push(format!("index {i}")),
            (Some(i), None) => parts.push(format!("index {i} (not one of the peers)")),
            (None, Some(i)) => parts.push(format!("index {i}")),
            (None, None) => parts.push("no index (not one of the peers)".into()),
        }
        parts.push(match &id.hostname {
            Some(h) => format!("hostname {h}"),
            None => "hostname unknown".into(),
        });
        if let Some(job) = &id.job {
            parts.push(format!("Job {job}"));
        }
        if let Some(t) = &c.self_target {
            parts.push(format!("name {}", target_text(t)));
        }
        if !c.self_addrs.is_empty() {
            parts.push(format!("addresses {}", join(&c.self_addrs)));
        }
        parts.join(", ")
    }

    fn peers_text(&self) -> String {
        let c = self.config;
        let names: Vec<String> = c.peers.iter().map(|p| target_text(&p.target)).collect();
        let whose = match (c.self_index, c.identity.index) {
            (Some(i), _) if c.peers.iter().any(|p| p.index == Some(i)) => ", this pod included",
            (None, Some(_)) => ", this pod not among them",
            _ => "",
        };
        format!("{}{whose}: {}", names.len(), abbreviated(&names))
    }

    fn barrier_text(&self, b: &BarrierSettings) -> String {
        let c = self.config;
        let world = c.peers.len() as u32;
        let topology = match Topology::for_world(world) {
            Topology::Mesh => format!("a full mesh (up to {MESH_MAX} pods)"),
            Topology::Tree => format!(
                "a tree (more than {MESH_MAX} pods), {UPLINKS} links up per pod, records flooded"
            ),
        };
        let announce = match c.self_index.map(|i| announce(c, b, i)) {
            Some(a) if !a.is_empty() => format!("announces {}", join(&a)),
            _ => "announces the address its first link sees".into(),
        };
        let mut parts = vec![
            format!("Job {}, {world} pods in {topology}", b.job),
            format!(
                "port {} on {}",
                b.port,
                b.listen
                    .map_or_else(|| "all addresses".into(), |ip| ip.to_string())
            ),
            match b.token {
                Some(_) => "token set".into(),
                None => {
                    "no token (--insecure-no-token: anyone who reaches the port can join)".into()
                }
            },
            announce,
            format!(
                "dials every {}, connect timeout {}",
                human(c.interval),
                human(c.probe.timeout)
            ),
        ];
        if let Some(s) = &c.service {
            parts.push(format!(
                "Service {s} as the way in while no peer name resolves"
            ));
        }
        parts.join("; ")
    }

    fn handoff_text(&self) -> String {
        let c = self.config;
        let serve = c.barrier.as_ref().is_some_and(|b| b.serve);
        let mut parts = Vec::new();
        if let Some(h) = &c.hostfile {
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
        if !c.command.is_empty() {
            parts.push(format!(
                "then exec {} with the variables below (same PID)",
                shell_words(&c.command)
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

    fn json(&self) -> Value {
        let c = self.config;
        let id = &c.identity;
        let peers: Vec<Value> = c.peers.iter().map(peer_json).collect();
        let probe = self.probe.as_ref().map(|p| {
            let kind = c.probe.kind.name();
            let mut v = match p {
                Ok(Opened::Icmp { socket, .. }) => json!({ "uses": "icmp", "socket": socket }),
                Ok(Opened::Tcp { port, fallback }) => {
                    json!({ "uses": "tcp", "port": port, "fallback": fallback })
                }
                Ok(Opened::Dns) => json!({ "uses": "dns" }),
                Err(e) => json!({ "uses": null, "error": e }),
            };
            v["kind"] = json!(kind);
            v["timeout_ms"] = json!(c.probe.timeout.as_millis() as u64);
            v
        });
        let dns = c.dns.as_ref().map(|d| {
            json!({
                "nameservers": d.nameservers,
                "search": d.search,
                "ndots": d.ndots,
                "families": d.family.to_string(),
                "timeout_ms": d.timeout.as_millis() as u64,
            })
        });
        let barrier = c.barrier.as_ref().map(|b| {
            let world = c.peers.len() as u32;
            json!({
                "job": b.job,
                "world": world,
                "topology": Topology::for_world(world).name(),
                "port": b.port,
                "listen": b.listen,
                "token": b.token.is_some(),
                "announce": c.self_index.map(|i| announce(c, b, i)).unwrap_or_default(),
                "service": c.service,
                "connect_timeout_ms": c.probe.timeout.as_millis() as u64,
                "serve": b.serve,
                "await_port": b.serve.then_some(b.await_port),
                "health_port": b.health_port,
            })
        });
        let hostfile = c.hostfile.as_ref().map(|h| {
            json!({
                "path": h.path.display().to_string(),
                "format": h.format.to_string(),
                "slots": h.slots,
            })
        });
        let env: serde_json::Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "dry_run": true,
            "mode": c.mode.to_string(),
            "pod": {
                "index": id.index,
                "member": c.self_index.is_some(),
                "hostname": id.hostname,
                "job": id.job,
                "subdomain": id.subdomain,
                "namespace": id.namespace,
                "zone": id.zone,
                "name": c.self_target.as_ref().map(target_text),
                "addrs": c.self_addrs,
            },
            "peers": peers,
            "probe": probe,
            "barrier": barrier,
            "dns": dns,
            "interval_ms": c.interval.as_millis() as u64,
            "timeout_ms": c.deadline.map(|d| d.as_millis() as u64),
            "concurrency": c.concurrency,
            "handoff": {
                "hostfile": hostfile,
                "command": (!c.command.is_empty()).then(|| strings(&c.command)),
                "env": env,
            },
            "warnings": self.warnings,
        })
    }
}

/// The hand-off variables as a run would set them, from the peers' names;
/// `None` for `PEERGATE_COORDINATOR_ADDR` when only the run learns it.
fn handoff_env(config: &Config) -> Vec<(String, Option<String>)> {
    let outcome = GateOutcome {
        self_index: config.self_index,
        peers: config
            .peers
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

fn probe_text(probe: &Result<Opened, String>, auto: bool) -> String {
    let prefix = if auto { "auto: " } else { "" };
    match probe {
        Ok(Opened::Icmp { socket, .. }) => format!("{prefix}icmp echo ({socket} opened here)"),
        Ok(Opened::Tcp {
            port,
            fallback: Some(why),
        }) => format!("auto: tcp connect to port {port} (no ICMP here: {why})"),
        Ok(Opened::Tcp { port, .. }) => {
            format!("tcp connect to port {port} (accepted or refused: the host is up)")
        }
        Ok(Opened::Dns) => "dns: a peer counts once its name resolves".into(),
        Err(_) => "icmp, which cannot be opened here (see the warning)".into(),
    }
}

fn serve_text(b: &BarrierSettings) -> String {
    if !b.serve {
        return "no: exits once released".into();
    }
    let health = b.health_port.map_or_else(
        || "no health endpoints".into(),
        |p| format!("/livez /readyz /peers /metrics on port {p}"),
    );
    format!(
        "stays after the release: `peergate await` on 127.0.0.1:{}, {health}; exit 0 on SIGTERM",
        b.await_port
    )
}

fn dns_text(d: &DnsSettings) -> String {
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

fn peer_json(p: &Peer) -> Value {
    match &p.target {
        Target::Name(n) => json!({ "index": p.index, "name": n }),
        Target::Addr(a) => json!({ "index": p.index, "addr": a }),
    }
}

/// A peer as it is asked for: a name with its trailing dot, if it has one
/// (absolute: one query), or the address.
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

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// A command as a shell would need it typed: words with spaces or quotes
/// in single quotes.
fn shell_words(args: &[OsString]) -> String {
    strings(args)
        .iter()
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
        let cmd: Vec<OsString> = ["bash", "-c", "echo \"$(hostname)\" it's", "--x=1"]
            .map(Into::into)
            .to_vec();
        assert_eq!(
            shell_words(&cmd),
            r#"bash -c 'echo "$(hostname)" it'\''s' --x=1"#
        );
        assert_eq!(shell_words(&["".into()]), "''");
    }
}

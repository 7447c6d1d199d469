//! Turns parsed arguments plus the pod's environment into a validated
//! [`Config`]. The pod is seen through [`Environment`], so every rule here is
//! testable without a pod; [`SystemEnvironment`] is the real one.
//!
//! [`Config::build`] reads in the order of the concerns: the hand-off and
//! the probe (flags only), the pod ([`pod`]: identity from variables, the
//! hostname and the kubelet's files), the peers ([`plan`]), DNS and the
//! barrier.

mod env;
mod plan;
mod pod;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use env::{Environment, SystemEnvironment};

use crate::cli::{Args, Mode};
use crate::error::ConfigError;
use crate::peers::{Peer, Target};
pub use crate::probe::ProbeSettings;
use crate::values::HostfileFormat;
use plan::PeerPlan;
use pod::{PodView, non_empty};

/// Address families to ask for and probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Dual,
}

/// As `--ip-family` spells them: `ipv4`, `ipv6`, `dual`.
impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
            Family::Dual => "dual",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub family: Family,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostfileSpec {
    pub path: PathBuf,
    pub format: HostfileFormat,
    pub slots: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrierSettings {
    pub port: u16,
    /// `None` only with --insecure-no-token.
    pub token: Option<String>,
    /// Identifies the group of pods; part of every hello.
    pub job: String,
    /// Listen on and dial from this address only.
    pub listen: Option<IpAddr>,
    /// Stay after the release (native sidecar).
    pub serve: bool,
    /// Loopback port of `peergate await` (with `serve`).
    pub await_port: u16,
    /// HTTP health endpoints (with `serve`).
    pub health_port: Option<u16>,
}

/// What this pod is, as far as the run derived it: what `--dry-run` shows
/// next to the names built from it. Nothing here is read for this alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The hostname (`--hostname`, else the kernel's), when one is known.
    pub hostname: Option<String>,
    /// The completion index (`--index`, else `JOB_COMPLETION_INDEX`), also
    /// when this pod is not one of the peers.
    pub index: Option<u32>,
    /// Job name and the other placeholder values, as far as known.
    pub job: Option<String>,
    pub subdomain: Option<String>,
    pub namespace: Option<String>,
    pub zone: Option<String>,
}

/// Longest accepted --token (any length works as an HMAC key; this only
/// catches a value that is not what was meant, e.g. a whole file).
pub const MAX_TOKEN: usize = 1024;

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: Identity,
    pub peers: Vec<Peer>,
    /// This pod's completion index, when this pod is one of the pods the
    /// peers are named from (its own name is the template's name for its
    /// index); `None` outside an indexed Job or when the template names
    /// another Job's pods.
    pub self_index: Option<u32>,
    /// This pod's own name as the peers resolve it, when known: the subject
    /// of the `publishNotReadyAddresses` diagnosis.
    pub self_target: Option<Target>,
    /// This pod's own addresses from the kubelet's hosts line (barrier
    /// hellos announce them); empty when unknown.
    pub self_addrs: Vec<IpAddr>,
    pub mode: Mode,
    pub probe: ProbeSettings,
    /// `None` when every peer is an IP literal and nothing needs resolving.
    pub dns: Option<DnsSettings>,
    pub interval: Duration,
    pub deadline: Option<Duration>,
    pub concurrency: usize,
    pub barrier: Option<BarrierSettings>,
    /// The headless Service's own name (`<subdomain>.<ns>.svc.<zone>.`),
    /// when every part of it is known: the barrier's way in when no peer's
    /// name resolves yet.
    pub service: Option<String>,
    pub hostfile: Option<HostfileSpec>,
    pub command: Vec<OsString>,
    /// Inputs that were read but partly ignored (one line each), logged as
    /// warnings when the run starts.
    pub warnings: Vec<String>,
}

/// Longest default probe timeout; a longer interval keeps this unless
/// --probe-timeout says otherwise.
const MAX_DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Config {
    /// Validates `args` against the pod seen through `env`.
    pub fn build(args: Args, env: &dyn Environment) -> Result<Config, ConfigError> {
        let hostfile = hostfile(&args)?;
        let probe = probe_settings(&args);
        let mut pod = PodView::new(&args, env);
        pod.check_given_files()?;
        let PeerPlan {
            peers,
            self_index,
            self_target,
            job,
            vars,
            explicit_hosts,
            service,
        } = plan::plan(&args, &mut pod)?;
        let dns = dns_settings(&args, &mut pod, &peers)?;
        let (barrier, peers) = barrier_settings(&args, peers, self_index, explicit_hosts, job)?;
        // For --dry-run; what the run did not need stays unknown, and no
        // error arises here that did not above.
        let identity = Identity {
            hostname: pod.hostname().ok(),
            index: pod.optional_index().ok().flatten(),
            job: vars.job,
            subdomain: vars.subdomain,
            namespace: vars.namespace,
            zone: vars.zone,
        };
        Ok(Config {
            identity,
            peers,
            self_index,
            self_target,
            self_addrs: pod.self_addrs(),
            mode: args.mode,
            probe,
            dns,
            interval: args.interval,
            deadline: args.timeout.0,
            concurrency: args.concurrency,
            barrier,
            service,
            hostfile,
            warnings: pod.warnings(),
            command: args.command,
        })
    }
}

/// `--probe`; `tcp` without a port probes `--port`.
fn probe_settings(args: &Args) -> ProbeSettings {
    ProbeSettings {
        kind: args.probe.kind,
        tcp_port: args.probe.port.unwrap_or(args.port),
        timeout: args
            .probe_timeout
            .unwrap_or_else(|| args.interval.min(MAX_DEFAULT_PROBE_TIMEOUT)),
    }
}

/// `--write-hostfile` with its format and slots. A format or slots given
/// without a file to write, or slots for a format without slots, would be
/// silently ignored: they are errors.
fn hostfile(args: &Args) -> Result<Option<HostfileSpec>, ConfigError> {
    let Some(path) = args.write_hostfile.clone() else {
        if let Some(id) = ["hostfile_format", "slots"]
            .into_iter()
            .find(|id| args.given(id))
        {
            return Err(ConfigError::Conflict(format!(
                "{} is set but no hostfile is written: add --write-hostfile PATH, or drop it",
                args.name(id)
            )));
        }
        return Ok(None);
    };
    let format = args.hostfile_format;
    if args.given("slots") && !matches!(format, HostfileFormat::Openmpi | HostfileFormat::Mpich) {
        return Err(ConfigError::Conflict(format!(
            "{} applies to openmpi and mpich hostfiles only, not to {} {format}",
            args.name("slots"),
            args.name("hostfile_format")
        )));
    }
    Ok(Some(HostfileSpec {
        path,
        format,
        slots: args.slots,
    }))
}

/// The resolver's settings, when some peer is a name.
fn dns_settings(
    args: &Args,
    pod: &mut PodView<'_>,
    peers: &[Peer],
) -> Result<Option<DnsSettings>, ConfigError> {
    if !peers.iter().any(|p| matches!(p.target, Target::Name(_))) {
        return Ok(None);
    }
    let conf = pod.resolv()?.clone();
    Ok(Some(DnsSettings {
        family: pod.family()?,
        nameservers: conf.nameservers,
        search: conf.search,
        ndots: conf.ndots,
        timeout: args.dns_timeout,
    }))
}

/// Flags that only the barrier reads: given in ping mode they would be
/// silently ignored.
const BARRIER_ONLY: [&str; 6] = [
    "token",
    "insecure_no_token",
    "listen",
    "serve",
    "await_port",
    "health_port",
];

/// `--mode barrier`: its settings, and the peers with an index each (with
/// `--hosts`, a peer's index is its position in the list). The barrier
/// needs a token (or the explicit opt-out), this pod's index, a Job name the
/// protocol can carry, and no `--indices`: it releases every pod at once,
/// so every pod must wait for the same set.
fn barrier_settings(
    args: &Args,
    mut peers: Vec<Peer>,
    self_index: Option<u32>,
    hosts_given: bool,
    job: String,
) -> Result<(Option<BarrierSettings>, Vec<Peer>), ConfigError> {
    if args.mode == Mode::Ping {
        if let Some(id) = BARRIER_ONLY.into_iter().find(|id| args.given(id)) {
            return Err(ConfigError::Conflict(format!(
                "{} applies to --mode barrier only: drop it, or add --mode barrier",
                args.name(id)
            )));
        }
        return Ok((None, peers));
    }
    if args.given("probe") {
        return Err(ConfigError::Conflict(format!(
            "{} applies to ping mode only: the barrier's handshake is its probe",
            args.name("probe")
        )));
    }
    let token = non_empty(args.token.as_ref());
    match (&token, args.insecure_no_token) {
        (None, false) => {
            return Err(ConfigError::Conflict(
                "--mode barrier needs --token (or PEERGATE_TOKEN): a secret every pod of the Job \
                 shares, such as the Job's controller-uid label; --insecure-no-token runs \
                 without one"
                    .into(),
            ));
        }
        (Some(_), true) => {
            return Err(ConfigError::Conflict(format!(
                "{} conflicts with {}: give one or the other",
                args.name("insecure_no_token"),
                args.name("token")
            )));
        }
        (Some(t), false) if t.len() > MAX_TOKEN => {
            return Err(ConfigError::Other(format!(
                "invalid {}: {} bytes is longer than the {MAX_TOKEN} allowed",
                args.name("token"),
                t.len()
            )));
        }
        _ => {}
    }
    if args.given("indices") {
        return Err(ConfigError::Conflict(format!(
            "{} cannot be used with --mode barrier: the barrier releases every pod at once, so \
             every pod waits for all --peers; for a one-sided wait on some pods use ping mode",
            args.name("indices")
        )));
    }
    if job.is_empty() || job.len() > crate::rendezvous::proto::MAX_JOB {
        return Err(ConfigError::Other(format!(
            "invalid --job for the barrier: `{job}` must be 1 to {} bytes",
            crate::rendezvous::proto::MAX_JOB
        )));
    }
    let Some(i) = self_index else {
        return Err(ConfigError::Other(
            "--mode barrier needs this pod's index (JOB_COMPLETION_INDEX or --index; with \
             --hosts, the position of this instance in the list)"
                .into(),
        ));
    };
    if args.serve {
        for (id, p) in [
            ("await_port", Some(args.await_port)),
            ("health_port", args.health_port),
        ] {
            if p == Some(args.port) {
                return Err(ConfigError::Conflict(format!(
                    "{} {} is also the barrier's {}: give them different ports",
                    args.name(id),
                    args.port,
                    args.name("port")
                )));
            }
        }
        if args.health_port == Some(args.await_port) {
            return Err(ConfigError::Conflict(format!(
                "{} and {} are both {}: give them different ports",
                args.name("health_port"),
                args.name("await_port"),
                args.await_port
            )));
        }
        if !args.command.is_empty() {
            return Err(ConfigError::Conflict(
                "--serve runs on after the release, so it cannot exec a command: run the \
                 workload in its own container after `peergate await`"
                    .into(),
            ));
        }
    } else if let Some(id) = ["await_port", "health_port"]
        .into_iter()
        .find(|id| args.given(id))
    {
        return Err(ConfigError::Conflict(format!(
            "{} applies to --serve only: add --serve, or drop it",
            args.name(id)
        )));
    }
    // With --hosts, a peer's index is its position in the list.
    for (pos, peer) in peers.iter_mut().enumerate() {
        peer.index.get_or_insert(pos as u32);
    }
    if !peers.iter().any(|p| p.index == Some(i)) && hosts_given {
        return Err(ConfigError::Index(format!(
            "--index {i} is not a position in --hosts (0..{})",
            peers.len()
        )));
    }
    let settings = BarrierSettings {
        port: args.port,
        token,
        job,
        listen: args.listen,
        serve: args.serve,
        await_port: args.await_port,
        health_port: args.health_port,
    };
    Ok((Some(settings), peers))
}

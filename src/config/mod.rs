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

use crate::cli::{Args, BarrierOnly, HostfileOptions, Mode, PingOnly, ServeOnly};
use crate::error::ConfigError;
use crate::peers::{Peer, Target, TemplateVars};
pub use crate::probe::ProbeSettings;
use crate::rendezvous;
use crate::rendezvous::proto::MAX_JOB;
use crate::values::HostfileFormat;
pub use crate::values::{DnsSettings, Family};
use plan::PeerPlan;
use pod::{PodView, non_empty};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostfileSpec {
    pub path: PathBuf,
    pub format: HostfileFormat,
    pub slots: u32,
}

/// What this pod is, as far as the run derived it: what `--dry-run` shows
/// next to the names built from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The hostname (`--hostname`, else the kernel's), when one is known.
    pub hostname: Option<String>,
    /// The completion index (`--index`, else `JOB_COMPLETION_INDEX`), also
    /// when this pod is not one of the peers.
    pub index: Option<u32>,
    /// The Job name and the other placeholder values, as far as known.
    pub vars: TemplateVars,
    /// This pod's own name as the peers resolve it, when known: the subject
    /// of the `publishNotReadyAddresses` diagnosis.
    pub target: Option<Target>,
    /// This pod's own addresses from the kubelet's hosts line; empty when
    /// unknown.
    pub addrs: Vec<IpAddr>,
}

/// What a run does: one mode, with everything only that mode reads. Built
/// by [`Config::build`] alone, so no later code can fall back to the other.
#[derive(Debug, Clone)]
pub enum Plan {
    Ping(PingPlan),
    Barrier(BarrierPlan),
}

/// `--mode ping`: resolve and probe every peer.
#[derive(Debug, Clone)]
pub struct PingPlan {
    pub peers: Vec<Peer>,
    /// Whether this pod is one of the peers (its own name is the template's
    /// name for its index); its index is then [`Identity::index`].
    pub member: bool,
    pub probe: ProbeSettings,
    pub interval: Duration,
    pub concurrency: usize,
}

/// `--mode barrier`: the rendezvous engine's settings, and the sidecar's
/// ports when it serves (`settings.serve`).
#[derive(Debug, Clone)]
pub struct BarrierPlan {
    pub settings: rendezvous::Settings,
    sidecar: SidecarPlan,
}

/// The loopback port of `peergate await` and the health port of a serving
/// barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarPlan {
    pub await_port: u16,
    pub health_port: Option<u16>,
    /// Where to copy this binary before serving (`--install`).
    pub install: Option<PathBuf>,
}

impl BarrierPlan {
    /// The sidecar's ports, with `--serve`.
    pub fn serving(&self) -> Option<SidecarPlan> {
        self.settings.serve.then(|| self.sidecar.clone())
    }
}

/// Longest accepted --token (any length works as an HMAC key; this only
/// catches a value that is not what was meant, e.g. a whole file).
pub const MAX_TOKEN: usize = 1024;

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: Identity,
    pub plan: Plan,
    /// `None` when every peer is an IP literal and nothing needs resolving.
    pub dns: Option<DnsSettings>,
    pub deadline: Option<Duration>,
    pub hostfile: Option<HostfileSpec>,
    pub command: Vec<OsString>,
    /// Inputs that were read but partly ignored (one line each), logged as
    /// warnings when the run starts.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn mode(&self) -> Mode {
        match self.plan {
            Plan::Ping(_) => Mode::Ping,
            Plan::Barrier(_) => Mode::Barrier,
        }
    }

    /// Every peer, in order (the barrier's: index order).
    pub fn peers(&self) -> &[Peer] {
        match &self.plan {
            Plan::Ping(p) => &p.peers,
            Plan::Barrier(b) => &b.settings.peers,
        }
    }

    /// This pod's completion index, when this pod is one of the peers;
    /// `None` outside an indexed Job or when the template names another
    /// Job's pods. The barrier always has one.
    pub fn self_index(&self) -> Option<u32> {
        match &self.plan {
            Plan::Ping(p) => self.identity.index.filter(|_| p.member),
            Plan::Barrier(b) => Some(b.settings.index),
        }
    }

    /// Time between attempts (probes, or the barrier's dials).
    pub fn interval(&self) -> Duration {
        match &self.plan {
            Plan::Ping(p) => p.interval,
            Plan::Barrier(b) => b.settings.interval,
        }
    }

    pub fn concurrency(&self) -> usize {
        match &self.plan {
            Plan::Ping(p) => p.concurrency,
            Plan::Barrier(b) => b.settings.concurrency,
        }
    }
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
        let peer_plan = plan::plan(&args, &mut pod)?;
        let dns = dns_settings(&args, &mut pod, &peer_plan.peers)?;
        let addrs = pod.self_addrs();
        let (plan, vars, target) = match args.mode {
            Mode::Ping => {
                ping_only(&args)?;
                let ping = PingPlan {
                    member: peer_plan.self_index.is_some(),
                    peers: peer_plan.peers,
                    probe,
                    interval: args.interval,
                    concurrency: args.concurrency,
                };
                (Plan::Ping(ping), peer_plan.vars, peer_plan.self_target)
            }
            Mode::Barrier => {
                let (barrier, vars, target) =
                    barrier_plan(&args, peer_plan, &addrs, probe.timeout)?;
                (Plan::Barrier(barrier), vars, target)
            }
        };
        // For --dry-run; what the run did not need stays unknown, and no
        // error arises here that did not above.
        let identity = Identity {
            hostname: pod.hostname().ok(),
            index: pod.optional_index().ok().flatten(),
            vars,
            target,
            addrs,
        };
        Ok(Config {
            identity,
            plan,
            dns,
            deadline: args.timeout.0,
            hostfile,
            warnings: pod.warnings(),
            command: args.command,
        })
    }
}

/// `--probe`; `tcp` without a port probes `--port`.
fn probe_settings(args: &Args) -> ProbeSettings {
    ProbeSettings {
        kind: args.ping.probe.kind,
        tcp_port: args.ping.probe.port.unwrap_or(args.port),
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
        if let Some(id) = args.first_given::<HostfileOptions>() {
            return Err(ConfigError::Conflict(format!(
                "{} is set but no hostfile is written: add --write-hostfile PATH, or drop it",
                args.name(&id)
            )));
        }
        return Ok(None);
    };
    let format = args.hostfile.hostfile_format;
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
        slots: args.hostfile.slots,
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

/// `--mode ping`: no barrier-only flag.
fn ping_only(args: &Args) -> Result<(), ConfigError> {
    // Given in ping mode they would be silently ignored.
    let barrier_only = args
        .first_given::<BarrierOnly>()
        .or_else(|| args.first_given::<ServeOnly>());
    match barrier_only {
        Some(id) => Err(ConfigError::Conflict(format!(
            "{} applies to --mode barrier only: drop it, or add --mode barrier",
            args.name(&id)
        ))),
        None => Ok(()),
    }
}

/// `--mode barrier`: the engine's settings, with the peers given an index
/// each (with `--hosts`, a peer's index is its position in the list). The
/// barrier needs a token (or the explicit opt-out), this pod's index, a Job
/// name the protocol can carry, and no `--indices`: it releases every pod
/// at once, so every pod must wait for the same set.
fn barrier_plan(
    args: &Args,
    plan: PeerPlan,
    self_addrs: &[IpAddr],
    connect_timeout: Duration,
) -> Result<(BarrierPlan, TemplateVars, Option<Target>), ConfigError> {
    if let Some(id) = args.first_given::<PingOnly>() {
        return Err(ConfigError::Conflict(format!(
            "{} applies to ping mode only: the barrier's handshake is its probe",
            args.name(&id)
        )));
    }
    let token = non_empty(args.barrier.token.as_ref());
    match (&token, args.barrier.insecure_no_token) {
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
    let PeerPlan {
        mut peers,
        self_index,
        self_target,
        job,
        vars,
        explicit_hosts,
        service,
    } = plan;
    if job.is_empty() || job.len() > MAX_JOB {
        return Err(ConfigError::Other(format!(
            "invalid --job for the barrier: `{job}` must be 1 to {MAX_JOB} bytes"
        )));
    }
    let Some(index) = self_index else {
        return Err(ConfigError::Other(
            "--mode barrier needs this pod's index (JOB_COMPLETION_INDEX or --index; with \
             --hosts, the position of this instance in the list)"
                .into(),
        ));
    };
    let sidecar = sidecar_ports(args)?;
    // With --hosts, a peer's index is its position in the list.
    for (pos, peer) in peers.iter_mut().enumerate() {
        peer.index.get_or_insert(pos as u32);
    }
    if !peers.iter().any(|p| p.index == Some(index)) && explicit_hosts {
        return Err(ConfigError::Index(format!(
            "--index {index} is not a position in --hosts (0..{})",
            peers.len()
        )));
    }
    let announce = announce(self_addrs, args.barrier.listen, &peers, index);
    let settings = rendezvous::Settings {
        token,
        job,
        index,
        peers,
        announce,
        listen: args.barrier.listen,
        port: args.port,
        interval: args.interval,
        connect_timeout,
        concurrency: args.concurrency,
        serve: args.barrier.serve,
        service,
    };
    Ok((BarrierPlan { settings, sidecar }, vars, self_target))
}

/// The ports of `--serve`, checked against each other and the barrier's;
/// without `--serve`, given at all they would be ignored: an error.
fn sidecar_ports(args: &Args) -> Result<SidecarPlan, ConfigError> {
    if !args.barrier.serve {
        if let Some(id) = args.first_given::<ServeOnly>() {
            return Err(ConfigError::Conflict(format!(
                "{} applies to --serve only: add --serve, or drop it",
                args.name(&id)
            )));
        }
    } else {
        for (id, p) in [
            ("await_port", Some(args.sidecar.await_port)),
            ("health_port", args.sidecar.health_port),
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
        if args.sidecar.health_port == Some(args.sidecar.await_port) {
            return Err(ConfigError::Conflict(format!(
                "{} and {} are both {}: give them different ports",
                args.name("health_port"),
                args.name("await_port"),
                args.sidecar.await_port
            )));
        }
        if !args.command.is_empty() {
            return Err(ConfigError::Conflict(
                "--serve runs on after the release, so it cannot exec a command: run the \
                 workload in its own container after `peergate await`"
                    .into(),
            ));
        }
    }
    Ok(SidecarPlan {
        await_port: args.sidecar.await_port,
        health_port: args.sidecar.health_port,
        install: args.sidecar.install.clone(),
    })
}

/// The addresses this pod announces to the barrier: the kubelet's for it,
/// else the one it listens on, else its own --hosts entry; empty when none
/// is known (the first link then tells).
pub fn announce(
    self_addrs: &[IpAddr],
    listen: Option<IpAddr>,
    peers: &[Peer],
    index: u32,
) -> Vec<IpAddr> {
    if !self_addrs.is_empty() {
        return self_addrs.to_vec();
    }
    if let Some(ip) = listen.filter(|ip| !ip.is_unspecified()) {
        return vec![ip];
    }
    match peers.get(index as usize).map(|p| &p.target) {
        Some(Target::Addr(ip)) => vec![*ip],
        _ => Vec::new(),
    }
}

//! How a resolved peer is checked: ICMP echo, a TCP connect, or nothing
//! (resolution alone). `auto` picks ICMP when this process may open an ICMP
//! socket and TCP otherwise, and says once which it chose and why.

mod check;
pub mod icmp;
pub mod tcp;

pub use check::Probe;

use std::net::IpAddr;
use std::time::Duration;

use tracing::{info, warn};

use crate::cause::Cause;
use crate::error::ConfigError;
use crate::values::ProbeKind;

/// What `Prober::open` needs: the probe, its port and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    pub kind: ProbeKind,
    /// Port for TCP probes (explicit `tcp:PORT`, else `--port`).
    pub tcp_port: u16,
    pub timeout: Duration,
}

/// The probe chosen for this run.
pub enum Prober {
    Icmp(icmp::IcmpProber),
    Tcp(tcp::TcpProber),
    /// Resolution alone counts.
    Dns,
}

/// Which probe [`Prober::open`] settled on, and why: what it logs, and
/// what `--dry-run` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// ICMP echo over this kind of socket; `by_auto` when `auto` chose it.
    Icmp { socket: &'static str, by_auto: bool },
    /// TCP connect to `port`; `fallback` is why `auto` did not take ICMP.
    Tcp { port: u16, fallback: Option<String> },
    /// Resolution alone counts.
    Dns,
}

impl Prober {
    /// Opens the probe `settings` ask for and says which it is. Must run
    /// inside the runtime (the ICMP clients spawn their receive tasks).
    pub fn open(settings: &ProbeSettings) -> Result<Prober, ConfigError> {
        let (prober, opened) = Self::open_quietly(settings)?;
        match &opened {
            Opened::Dns => info!(
                probe = "dns",
                "probe: dns (a peer counts as reachable once it resolves)"
            ),
            Opened::Tcp {
                port,
                fallback: None,
            } => info!(probe = "tcp", port, "probe: tcp connect to port {port}"),
            // The reason is in the message only: as a field too it printed
            // twice on one line.
            Opened::Tcp {
                port,
                fallback: Some(e),
            } => warn!(
                probe = "tcp",
                port, "probe: tcp connect to port {port} (auto fallback: {e})"
            ),
            Opened::Icmp { socket, by_auto } => info!(
                probe = "icmp",
                socket,
                "probe: icmp ({socket}){}",
                if *by_auto { ", chosen by auto" } else { "" }
            ),
        }
        Ok(prober)
    }

    /// [`open`](Self::open) without the log line. Opening a socket sends
    /// nothing.
    pub fn open_quietly(settings: &ProbeSettings) -> Result<(Prober, Opened), ConfigError> {
        let tcp = |fallback| {
            (
                Prober::Tcp(tcp::TcpProber::new(settings.tcp_port, settings.timeout)),
                Opened::Tcp {
                    port: settings.tcp_port,
                    fallback,
                },
            )
        };
        let icmp = |p: icmp::IcmpProber, by_auto| {
            let socket = p.socket_kind();
            (Prober::Icmp(p), Opened::Icmp { socket, by_auto })
        };
        match settings.kind {
            ProbeKind::Dns => Ok((Prober::Dns, Opened::Dns)),
            ProbeKind::Tcp => Ok(tcp(None)),
            ProbeKind::Icmp => match icmp::IcmpProber::open(settings.timeout) {
                Ok(p) => Ok(icmp(p, false)),
                Err(e) => Err(ConfigError::Other(format!(
                    "--probe icmp: {e}; use --probe tcp or --probe auto instead"
                ))),
            },
            ProbeKind::Auto => match icmp::IcmpProber::open(settings.timeout) {
                Ok(p) => Ok(icmp(p, true)),
                Err(e) => Ok(tcp(Some(e))),
            },
        }
    }
}

impl Probe for Prober {
    async fn probe(&self, addr: IpAddr) -> Result<Duration, Cause> {
        match self {
            Prober::Icmp(p) => p.probe(addr).await,
            Prober::Tcp(p) => p.probe(addr).await,
            Prober::Dns => Ok(Duration::ZERO),
        }
    }
}

//! How a resolved peer is checked: ICMP echo, a TCP connect, or nothing
//! (resolution alone). `auto` picks ICMP when this process may open an ICMP
//! socket and TCP otherwise, and says once which it chose and why.

pub mod icmp;
pub mod tcp;

use std::net::IpAddr;
use std::time::Duration;

use tracing::{info, warn};

use crate::cause::Cause;
use crate::config::{ProbeKind, ProbeSettings};
use crate::error::ConfigError;

/// Something that checks one address; the gate is generic over it so its
/// timing can be tested without a network.
pub trait Probe: Send + Sync + 'static {
    /// `Ok` with the round-trip time when the address proves the host up.
    fn probe(
        &self,
        addr: IpAddr,
    ) -> impl std::future::Future<Output = Result<Duration, Cause>> + Send;
}

/// The probe chosen for this run.
pub enum Prober {
    Icmp(icmp::IcmpProber),
    Tcp(tcp::TcpProber),
    /// Resolution alone counts.
    Dns,
}

impl Prober {
    /// Opens the probe `settings` ask for. Must run inside the runtime (the
    /// ICMP clients spawn their receive tasks).
    pub fn open(settings: &ProbeSettings) -> Result<Prober, ConfigError> {
        let tcp = || tcp::TcpProber::new(settings.tcp_port, settings.timeout);
        match settings.kind {
            ProbeKind::Dns => {
                info!(
                    probe = "dns",
                    "probe: dns (a peer counts as reachable once it resolves)"
                );
                Ok(Prober::Dns)
            }
            ProbeKind::Tcp => {
                info!(
                    probe = "tcp",
                    port = settings.tcp_port,
                    "probe: tcp connect to port {}",
                    settings.tcp_port
                );
                Ok(Prober::Tcp(tcp()))
            }
            ProbeKind::Icmp => match icmp::IcmpProber::open(settings.timeout) {
                Ok(p) => {
                    info!(
                        probe = "icmp",
                        socket = p.socket_kind(),
                        "probe: icmp ({})",
                        p.socket_kind()
                    );
                    Ok(Prober::Icmp(p))
                }
                Err(e) => Err(ConfigError::Other(format!(
                    "--probe icmp: {e}; use --probe tcp or --probe auto instead"
                ))),
            },
            ProbeKind::Auto => match icmp::IcmpProber::open(settings.timeout) {
                Ok(p) => {
                    info!(
                        probe = "icmp",
                        socket = p.socket_kind(),
                        "probe: icmp ({}), chosen by auto",
                        p.socket_kind()
                    );
                    Ok(Prober::Icmp(p))
                }
                Err(e) => {
                    warn!(
                        probe = "tcp",
                        port = settings.tcp_port,
                        reason = %e,
                        "probe: tcp connect to port {} (auto fallback: {e})",
                        settings.tcp_port
                    );
                    Ok(Prober::Tcp(tcp()))
                }
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Prober::Icmp(_) => "icmp",
            Prober::Tcp(_) => "tcp",
            Prober::Dns => "dns",
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

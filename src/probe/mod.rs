//! How a resolved peer is checked: ICMP echo, a TCP connect, or nothing
//! (resolution alone). `auto` picks ICMP when this process may open an ICMP
//! socket and TCP otherwise, and says once which it chose and why.

pub mod icmp;
pub mod tcp;

use std::net::IpAddr;
use std::time::Duration;

use tracing::{info, warn};

use crate::cause::Cause;
use crate::config::ProbeSettings;
use crate::error::ConfigError;

/// How peers are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Auto,
    Icmp,
    Tcp,
    Dns,
}

/// `--probe` as given: a kind and, for `tcp:PORT`, a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub port: Option<u16>,
}

/// The `--probe` values, for messages.
pub const PROBE_FORMS: &str = "auto, icmp, tcp, tcp:PORT, dns";

impl ProbeSpec {
    /// Parses `auto`, `icmp`, `tcp`, `tcp:PORT` or `dns`.
    pub fn parse(text: &str) -> Result<ProbeSpec, String> {
        let text = text.trim();
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        let kind = match name {
            "auto" => ProbeKind::Auto,
            "icmp" => ProbeKind::Icmp,
            "tcp" => ProbeKind::Tcp,
            "dns" => ProbeKind::Dns,
            _ => return Err(format!("expected one of {PROBE_FORMS}")),
        };
        let port = match port {
            None => None,
            Some(p) if kind == ProbeKind::Tcp => Some(tcp_port(p)?),
            Some(_) => {
                return Err(format!(
                    "only tcp takes a port; expected one of {PROBE_FORMS}"
                ));
            }
        };
        Ok(ProbeSpec { kind, port })
    }
}

/// Parses a TCP port, 1-65535.
pub fn tcp_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("`{}` is not a TCP port (1-65535)", text.trim())),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_specs() {
        let spec = |kind, port| Ok(ProbeSpec { kind, port });
        assert_eq!(ProbeSpec::parse("auto"), spec(ProbeKind::Auto, None));
        assert_eq!(ProbeSpec::parse(" icmp "), spec(ProbeKind::Icmp, None));
        assert_eq!(ProbeSpec::parse("tcp"), spec(ProbeKind::Tcp, None));
        assert_eq!(
            ProbeSpec::parse("tcp:8080"),
            spec(ProbeKind::Tcp, Some(8080))
        );
        assert_eq!(ProbeSpec::parse("dns"), spec(ProbeKind::Dns, None));
        for bad in ["udp", "", "TCP", "icmp:1"] {
            let err = ProbeSpec::parse(bad).unwrap_err();
            assert!(err.contains(PROBE_FORMS), "{bad:?}: {err}");
        }
        for bad in ["tcp:", "tcp:0", "tcp:65536", "tcp:x"] {
            let err = ProbeSpec::parse(bad).unwrap_err();
            assert!(
                err.contains("is not a TCP port (1-65535)"),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(tcp_port("65535"), Ok(65535));
        assert_eq!(tcp_port("1"), Ok(1));
    }
}

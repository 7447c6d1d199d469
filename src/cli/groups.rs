//! The flags that only some modes or options read, one struct each: the
//! lists of flags that config checks against the mode are these structs'
//! fields ([`super::ids_of`]), so a renamed field cannot drop out of a check.
//! Flattened into [`super::Args`] in the order `--help` shows them.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::FalseyValueParser;

use crate::peers::{self, IndexList};
use crate::values::{HostfileFormat, HostfileFormatParser, ProbeSpec, tcp_port};
use crate::values::{ip_address, slots};

/// The flags that name an indexed Job's pods to wait for (conflict with
/// `--hosts`).
#[derive(Debug, Clone, clap::Args)]
pub struct JobPeers {
    /// Number of pods in the Job: wait for indices 0..N, this pod included.
    #[arg(
        long,
        env = "PEERGATE_PEERS",
        value_name = "N",
        value_parser = peers::peer_count,
        help_heading = "Peers"
    )]
    pub peers: Option<u32>,

    /// Wait only for these indices, e.g. `0` (the leader) or `0-3,7`.
    #[arg(
        long,
        env = "PEERGATE_INDICES",
        value_name = "LIST",
        value_parser = peers::index_list,
        help_heading = "Peers"
    )]
    pub indices: Option<IndexList>,

    /// Peer name template. Placeholders: {job} {index} {subdomain} {namespace}
    /// {zone}; {index} is required for more than one peer. Default:
    /// `{job}-{index}.{subdomain}.{namespace}.svc.{zone}.` when all parts are
    /// known, else `{job}-{index}.{subdomain}`.
    #[arg(
        long,
        env = "PEERGATE_TEMPLATE",
        value_name = "TEMPLATE",
        help_heading = "Peers"
    )]
    pub template: Option<String>,
}

/// The parts of the pods' DNS names besides the Job's (conflict with
/// `--hosts`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceNaming {
    /// Headless Service name, the pod's `subdomain` [default: from the hosts file].
    #[arg(
        long,
        env = "PEERGATE_SUBDOMAIN",
        value_name = "SERVICE",
        help_heading = "Identity"
    )]
    pub subdomain: Option<String>,

    /// Namespace [default: from the hosts file, else resolv.conf's search list].
    #[arg(
        long,
        env = "PEERGATE_NAMESPACE",
        value_name = "NS",
        help_heading = "Identity"
    )]
    pub namespace: Option<String>,

    /// Cluster DNS zone [default: from the hosts file, else resolv.conf's search list].
    #[arg(
        long,
        env = "PEERGATE_CLUSTER_DOMAIN",
        value_name = "ZONE",
        help_heading = "Identity"
    )]
    pub cluster_domain: Option<String>,
}

/// Flags only ping mode reads.
#[derive(Debug, Clone, clap::Args)]
pub struct PingOnly {
    /// How to tell a peer is up: `auto` (ICMP if a socket can be opened,
    /// else TCP), `icmp`, `tcp[:PORT]` (an accepted or a refused connection
    /// both prove the host is up), or `dns` (resolution is enough).
    #[arg(
        long,
        env = "PEERGATE_PROBE",
        value_name = "PROBE",
        default_value = "auto",
        value_parser = ProbeSpec::parse,
        help_heading = "Probing"
    )]
    pub probe: ProbeSpec,
}

/// Flags only `--mode barrier` reads.
#[derive(Debug, Clone, clap::Args)]
pub struct BarrierOnly {
    /// Shared secret of this Job's barrier (e.g. the Job's controller-uid):
    /// every handshake proves knowledge of it without sending it. Required
    /// in barrier mode unless --insecure-no-token.
    #[arg(
        long,
        env = "PEERGATE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        help_heading = "Barrier"
    )]
    pub token: Option<String>,

    /// Run the barrier without a token: anyone who can reach the port can
    /// join it or hold it up. For trusted test networks only.
    #[arg(
        long,
        env = "PEERGATE_INSECURE_NO_TOKEN",
        value_parser = FalseyValueParser::new(),
        default_value_t = false,
        help_heading = "Barrier"
    )]
    pub insecure_no_token: bool,

    /// Address the barrier listens on and dials from [default: all
    /// addresses]. Lets several instances share one host.
    #[arg(
        long,
        env = "PEERGATE_LISTEN",
        value_name = "ADDR",
        value_parser = ip_address,
        help_heading = "Barrier"
    )]
    pub listen: Option<IpAddr>,

    /// Keep the barrier running after the release, as a native sidecar:
    /// admit late and replaced peers, keep the hand-off file current, answer
    /// `peergate await`; exit 0 on SIGTERM.
    #[arg(
        long,
        env = "PEERGATE_SERVE",
        value_parser = FalseyValueParser::new(),
        default_value_t = false,
        help_heading = "Barrier"
    )]
    pub serve: bool,
}

/// Flags only `--serve` reads.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOnly {
    /// With --serve: loopback port where `peergate await` learns of the
    /// release (127.0.0.1 only; other pods cannot reach it).
    #[arg(
        long,
        env = "PEERGATE_AWAIT_PORT",
        value_name = "PORT",
        default_value = "7471",
        value_parser = tcp_port,
        help_heading = "Barrier"
    )]
    pub await_port: u16,

    /// With --serve: serve /livez, /readyz, /peers and /metrics over HTTP on
    /// this port, on all addresses (for kubelet probes) [default: off].
    #[arg(
        long,
        env = "PEERGATE_HEALTH_PORT",
        value_name = "PORT",
        value_parser = tcp_port,
        help_heading = "Barrier"
    )]
    pub health_port: Option<u16>,

    /// With --serve: copy this peergate binary to PATH (mode 0755, replaced
    /// atomically) before serving, so a workload container without
    /// peergate can run `PATH run -- COMMAND` from a shared emptyDir.
    #[arg(
        long,
        env = "PEERGATE_INSTALL",
        value_name = "PATH",
        value_parser = clap::value_parser!(PathBuf),
        help_heading = "Barrier"
    )]
    pub install: Option<PathBuf>,
}

/// How the hostfile is written (need `--write-hostfile`).
#[derive(Debug, Clone, clap::Args)]
pub struct HostfileOptions {
    /// Hostfile format (needs --write-hostfile).
    #[arg(
        long,
        env = "PEERGATE_HOSTFILE_FORMAT",
        value_name = "FORMAT",
        default_value = "hosts",
        value_parser = HostfileFormatParser,
        help_heading = "Hand-off"
    )]
    pub hostfile_format: HostfileFormat,

    /// Slots per host in openmpi and mpich hostfiles (needs --write-hostfile
    /// and one of those formats).
    #[arg(
        long,
        env = "PEERGATE_SLOTS",
        value_name = "N",
        default_value = "1",
        value_parser = slots,
        help_heading = "Hand-off"
    )]
    pub slots: u32,
}

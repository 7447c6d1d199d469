//! Command-line interface. Every flag can also be set with a `PEERGATE_*`
//! environment variable, so a Job manifest can configure peergate with
//! `env:` alone. Values are kept as text here and validated in `config`,
//! which gives every mistake one precise line.

use std::ffi::OsString;

use clap::{Parser, ValueEnum};

use crate::logging::LogSpec;

const ABOUT: &str =
    "Wait until every peer of a Kubernetes Indexed Job resolves and answers, then exit 0.";

const LONG_ABOUT: &str = "\
Wait until every peer of a Kubernetes Indexed Job resolves and answers, then exit 0.

Inside an Indexed Job pod nothing needs configuring but the number of pods:
the index comes from JOB_COMPLETION_INDEX, the Job name from the hostname
(<job>-<index>), the headless Service, namespace and cluster domain from the
kubelet's line in /etc/hosts. Peers are <job>-<i>.<service> for i in 0..N, this
pod included. Each unreachable peer is resolved and probed again every
--interval until all answer or --timeout passes.

The headless Service must set `publishNotReadyAddresses: true` when peergate
runs as an init container: a pod in its init containers is not Ready, and
without that setting its DNS record does not exist yet.";

const AFTER_HELP: &str = "\
Examples:
  peergate --peers 3                      # in each pod of a 3-pod Indexed Job
  peergate --peers 8 --indices 0          # wait for the leader only
  peergate --hosts 10.0.0.5,db-1.example  # standalone, explicit peers
  peergate --peers 4 --write-hostfile /shared/hostfile --hostfile-format openmpi
  peergate --peers 3 -- python train.py   # exec the workload once the gate opens

Exit codes: 0 all peers reachable, 124 timeout, 2 usage or configuration
error, 126/127 the command after `--` cannot be run, 130/143 interrupted by
SIGINT/SIGTERM.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Resolve and probe every peer until all answer.
    Ping,
    /// Rendezvous over TCP: release once every peer and this pod have met.
    Barrier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpFamily {
    /// The families of this pod's own addresses in the hosts file; both
    /// when that tells nothing.
    Auto,
    /// A records only.
    Ipv4,
    /// AAAA records only.
    Ipv6,
    /// A and AAAA.
    Dual,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "peergate",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Args {
    /// Number of pods in the Job: wait for indices 0..N, this pod included.
    #[arg(long, env = "PEERGATE_PEERS", value_name = "N", help_heading = "Peers")]
    pub peers: Option<String>,

    /// Wait only for these indices, e.g. `0` (the leader) or `0-3,7`.
    #[arg(
        long,
        env = "PEERGATE_INDICES",
        value_name = "LIST",
        help_heading = "Peers"
    )]
    pub indices: Option<String>,

    /// Peer name template. Placeholders: {job} {index} {subdomain} {namespace}
    /// {zone}. Default: `{job}-{index}.{subdomain}.{namespace}.svc.{zone}.` when
    /// all parts are known, else `{job}-{index}.{subdomain}`.
    #[arg(
        long,
        env = "PEERGATE_TEMPLATE",
        value_name = "TEMPLATE",
        help_heading = "Peers"
    )]
    pub template: Option<String>,

    /// Explicit peers instead of an indexed Job: comma-separated names or IP
    /// addresses. Conflicts with --peers, --indices and --template.
    #[arg(
        long,
        env = "PEERGATE_HOSTS",
        value_name = "A,B,...",
        help_heading = "Peers"
    )]
    pub hosts: Option<String>,

    /// This pod's completion index [default: $JOB_COMPLETION_INDEX].
    #[arg(
        long,
        env = "PEERGATE_INDEX",
        value_name = "N",
        help_heading = "Identity"
    )]
    pub index: Option<String>,

    /// This pod's hostname [default: the kernel hostname].
    #[arg(
        long,
        env = "PEERGATE_HOSTNAME",
        value_name = "NAME",
        help_heading = "Identity"
    )]
    pub hostname: Option<String>,

    /// Job name [default: the hostname without its `-<index>` suffix].
    #[arg(
        long,
        env = "PEERGATE_JOB",
        value_name = "NAME",
        help_heading = "Identity"
    )]
    pub job: Option<String>,

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

    /// Hosts file holding the kubelet's line for this pod.
    #[arg(
        long,
        env = "PEERGATE_HOSTS_FILE",
        value_name = "PATH",
        default_value = "/etc/hosts",
        help_heading = "Identity"
    )]
    pub hosts_file: String,

    /// resolv.conf giving nameservers, search list and ndots.
    #[arg(
        long,
        env = "PEERGATE_RESOLV_CONF",
        value_name = "PATH",
        default_value = "/etc/resolv.conf",
        help_heading = "Identity"
    )]
    pub resolv_conf: String,

    /// `ping` probes every peer; `barrier` is a TCP rendezvous that releases
    /// once this pod has met every peer and every peer has met it (see
    /// --port, --token).
    #[arg(
        long,
        env = "PEERGATE_MODE",
        value_enum,
        default_value = "ping",
        help_heading = "Probing"
    )]
    pub mode: Mode,

    /// How to tell a peer is up: `auto` (ICMP if a socket can be opened,
    /// else TCP), `icmp`, `tcp[:PORT]` (an accepted or a refused connection
    /// both prove the host is up), or `dns` (resolution is enough).
    #[arg(
        long,
        env = "PEERGATE_PROBE",
        value_name = "PROBE",
        default_value = "auto",
        help_heading = "Probing"
    )]
    pub probe: String,

    /// Time between attempts for each unreachable peer.
    #[arg(
        long,
        env = "PEERGATE_INTERVAL",
        value_name = "DURATION",
        default_value = "1s",
        help_heading = "Probing"
    )]
    pub interval: String,

    /// Give up after this long and exit 124 (`0` or `never`: wait forever).
    #[arg(
        long,
        env = "PEERGATE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m",
        help_heading = "Probing"
    )]
    pub timeout: String,

    /// How long one probe waits for an answer [default: the interval, at most 2s].
    #[arg(
        long,
        env = "PEERGATE_PROBE_TIMEOUT",
        value_name = "DURATION",
        help_heading = "Probing"
    )]
    pub probe_timeout: Option<String>,

    /// How long one DNS query waits for an answer.
    #[arg(
        long,
        env = "PEERGATE_DNS_TIMEOUT",
        value_name = "DURATION",
        default_value = "1s",
        help_heading = "Probing"
    )]
    pub dns_timeout: String,

    /// Address families to resolve and probe.
    #[arg(
        long,
        env = "PEERGATE_IP_FAMILY",
        value_enum,
        default_value = "auto",
        help_heading = "Probing"
    )]
    pub ip_family: IpFamily,

    /// Most peers checked at the same time (bounds sockets and DNS load).
    #[arg(
        long,
        env = "PEERGATE_CONCURRENCY",
        value_name = "N",
        default_value = "256",
        help_heading = "Probing"
    )]
    pub concurrency: String,

    /// TCP port of the barrier, and of `--probe tcp` without a port.
    #[arg(
        long,
        env = "PEERGATE_PORT",
        value_name = "PORT",
        default_value = "7470",
        help_heading = "Barrier"
    )]
    pub port: String,

    /// Shared secret identifying this Job's barrier (e.g. the Job's
    /// controller-uid); hellos with another token are rejected.
    #[arg(
        long,
        env = "PEERGATE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        help_heading = "Barrier"
    )]
    pub token: Option<String>,

    /// After the gate opens, atomically write the peer list to this file.
    #[arg(
        long,
        env = "PEERGATE_WRITE_HOSTFILE",
        value_name = "PATH",
        help_heading = "Hand-off"
    )]
    pub write_hostfile: Option<String>,

    /// Hostfile format: hosts, openmpi, mpich, json or env.
    #[arg(
        long,
        env = "PEERGATE_HOSTFILE_FORMAT",
        value_name = "FORMAT",
        default_value = "hosts",
        help_heading = "Hand-off"
    )]
    pub hostfile_format: String,

    /// Slots per host in openmpi and mpich hostfiles.
    #[arg(
        long,
        env = "PEERGATE_SLOTS",
        value_name = "N",
        default_value = "1",
        help_heading = "Hand-off"
    )]
    pub slots: String,

    /// Log format.
    #[arg(
        long,
        env = "PEERGATE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        help_heading = "Output"
    )]
    pub log_format: LogFormat,

    /// peergate's log level (error, warn, info, debug, trace, off), optionally
    /// with TARGET=LEVEL directives: `debug` shows every failed attempt with
    /// its cause, `debug,hickory=debug` also the DNS traffic. Other
    /// libraries log at most `info` unless named; peergate's errors always
    /// show. [default: info, plus RUST_LOG's TARGET=LEVEL directives (its
    /// bare level is the workload's)]
    #[arg(
        long,
        env = "PEERGATE_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = LogSpec::parse_flag,
        help_heading = "Output"
    )]
    pub log_level: Option<LogSpec>,

    /// Command to exec once the gate opens (same PID), with PEERGATE_WORLD_SIZE,
    /// PEERGATE_RANK, PEERGATE_COORDINATOR, PEERGATE_COORDINATOR_ADDR and PEERGATE_PEER_NAMES set.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

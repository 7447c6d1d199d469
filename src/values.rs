//! The value types that the command line, the configuration, the probe,
//! the hand-off and logging share, with their parsers. A leaf: it imports
//! nothing from the crate, so every module that reads a flag's value can
//! depend on it without depending on the others.

use std::ffi::OsStr;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use clap::builder::{PossibleValue, TypedValueParser};

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

/// As the flag spells it (`ping`, `barrier`).
impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpFamily {
    /// The families of this pod's own addresses in the hosts file, else
    /// those the host has addresses for (an up IPv4 route, a global IPv6
    /// address), else both.
    Auto,
    /// A records only.
    Ipv4,
    /// AAAA records only.
    Ipv6,
    /// A and AAAA.
    Dual,
}

/// How peers are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Auto,
    Icmp,
    Tcp,
    Dns,
}

impl ProbeKind {
    /// As `--probe` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            ProbeKind::Auto => "auto",
            ProbeKind::Icmp => "icmp",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Dns => "dns",
        }
    }
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
        let kind = [
            ProbeKind::Auto,
            ProbeKind::Icmp,
            ProbeKind::Tcp,
            ProbeKind::Dns,
        ]
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| format!("expected one of {PROBE_FORMS}"))?;
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

/// The file formats `--write-hostfile` can produce; the variants are the
/// one list of them (help, parsing, `Display`, messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum HostfileFormat {
    /// `/etc/hosts` syntax: `<address>\t<name>`, one line per address.
    Hosts,
    /// Open MPI hostfile: `<name> slots=<n>`.
    Openmpi,
    /// MPICH (Hydra) hostfile: `<name>:<n>`.
    Mpich,
    /// One JSON document describing every peer.
    Json,
    /// A POSIX sh file exporting the `PEERGATE_*` hand-off variables.
    Env,
}

impl HostfileFormat {
    /// Every format, in the order help text lists them.
    pub fn all() -> &'static [HostfileFormat] {
        HostfileFormat::value_variants()
    }
}

impl fmt::Display for HostfileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(self, f)
    }
}

/// An unknown `--hostfile-format` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFormatError {
    pub given: String,
}

impl fmt::Display for ParseFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid: Vec<String> = HostfileFormat::all()
            .iter()
            .map(|h| h.to_string())
            .collect();
        write!(
            f,
            "unknown hostfile format {:?} (valid formats: {})",
            self.given,
            valid.join(", ")
        )
    }
}

impl std::error::Error for ParseFormatError {}

impl FromStr for HostfileFormat {
    type Err = ParseFormatError;

    /// Accepts the formats' names, ignoring ASCII case and surrounding
    /// whitespace (values often come from environment variables).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <HostfileFormat as ValueEnum>::from_str(s.trim(), true).map_err(|_| ParseFormatError {
            given: s.to_owned(),
        })
    }
}

/// Address families to ask for and probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Dual,
}

/// As `--ip-family` spells them: `ipv4`, `ipv6`, `dual`.
impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
            Family::Dual => "dual",
        })
    }
}

/// What the resolver is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub family: Family,
}

/// `--hostfile-format`'s parser: [`HostfileFormat`]'s `FromStr` (trims,
/// ignores case), with the variants as the possible values help lists.
#[derive(Debug, Clone, Copy)]
pub struct HostfileFormatParser;

impl TypedValueParser for HostfileFormatParser {
    type Value = HostfileFormat;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<HostfileFormat, clap::Error> {
        let parse = |text: &str| text.parse::<HostfileFormat>();
        parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            HostfileFormat::all()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

/// Writes a `ValueEnum` variant's name as the flag spells it.
fn write_name<T: ValueEnum + fmt::Debug>(value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match value.to_possible_value() {
        Some(v) => f.write_str(v.get_name()),
        None => fmt::Debug::fmt(value, f),
    }
}

/// `--hostfile-slots`: a whole number above zero.
pub fn slots(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("not a whole number above 0".into()),
    }
}

/// An IP address, not a name (nothing is resolved while parsing).
pub fn ip_address(text: &str) -> Result<IpAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| "not an IP address (names are not resolved here)".to_owned())
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

    #[test]
    fn format_names_round_trip_and_errors_list_them_all() {
        for &format in HostfileFormat::all() {
            assert_eq!(format.to_string().parse::<HostfileFormat>(), Ok(format));
        }
        let names: Vec<String> = HostfileFormat::all()
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(names.join("|"), "hosts|openmpi|mpich|json|env");
        assert_eq!(" OpenMPI ".parse(), Ok(HostfileFormat::Openmpi));
        assert_eq!("ENV".parse(), Ok(HostfileFormat::Env));
        let error = "slurm".parse::<HostfileFormat>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown hostfile format \"slurm\" (valid formats: hosts, openmpi, mpich, json, env)"
        );
        assert!("".parse::<HostfileFormat>().is_err());
        assert!("host".parse::<HostfileFormat>().is_err());
        assert_eq!(Mode::Barrier.to_string(), "barrier");
        assert_eq!(ProbeKind::Tcp.name(), "tcp");
    }
}

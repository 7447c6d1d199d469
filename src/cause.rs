//! Why a peer is not reachable (yet). One vocabulary for DNS, probes and the
//! barrier, used in progress lines and in the final report.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The first attempt has not finished yet.
    Pending,
    /// The name does not exist (yet): the pod has not started, or its record
    /// is not published (`publishNotReadyAddresses`), or a negative cache
    /// still holds an old answer.
    NxDomain,
    /// The name exists but has no address of the families asked for.
    NoRecords,
    /// The DNS server answered with an error code such as SERVFAIL.
    DnsFailure(String),
    /// No DNS answer within --dns-timeout.
    DnsTimeout,
    /// The DNS server could not be reached at all.
    DnsUnreachable(String),
    /// Any other resolution error.
    Dns(String),
    /// Resolved, but no address answered the probe in time.
    NoReply,
    /// The kernel has no route to the address (or an ICMP unreachable came back).
    NoRoute,
    /// A TCP connection was refused (barrier: nobody listens yet).
    Refused,
    /// Any other probe error.
    Probe(String),
    /// Barrier: the peer is up but has not met us, or we have not met it.
    NotMet(String),
}

impl Cause {
    /// Whether a DNS server answered at all: NXDOMAIN and empty answers are
    /// answers, so the DNS path itself works.
    pub fn is_dns_answer(&self) -> bool {
        matches!(self, Cause::NxDomain | Cause::NoRecords)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Pending => f.write_str("first attempt under way"),
            Cause::NxDomain => f.write_str("NXDOMAIN"),
            Cause::NoRecords => f.write_str("no address records"),
            Cause::DnsFailure(code) => write!(f, "DNS server failure ({code})"),
            Cause::DnsTimeout => f.write_str("DNS timeout"),
            Cause::DnsUnreachable(why) => write!(f, "DNS server unreachable ({why})"),
            Cause::Dns(why) => write!(f, "DNS error ({why})"),
            Cause::NoReply => f.write_str("no reply"),
            Cause::NoRoute => f.write_str("no route"),
            Cause::Refused => f.write_str("refused"),
            Cause::Probe(why) => write!(f, "probe error ({why})"),
            Cause::NotMet(why) => f.write_str(why),
        }
    }
}

/// Maps an OS error from a probe or a barrier connection to a cause.
pub fn io_cause(err: &std::io::Error) -> Cause {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Cause::NoRoute,
        ErrorKind::ConnectionRefused => Cause::Refused,
        ErrorKind::TimedOut => Cause::NoReply,
        _ => match err.raw_os_error() {
            // EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL (no source address of that family)
            Some(113) | Some(101) | Some(99) => Cause::NoRoute,
            _ => Cause::Probe(err.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn os_errors_become_causes() {
        assert_eq!(io_cause(&Error::from_raw_os_error(113)), Cause::NoRoute);
        assert_eq!(io_cause(&Error::from_raw_os_error(101)), Cause::NoRoute);
        // EADDRNOTAVAIL: no source address of the peer's family.
        assert_eq!(io_cause(&Error::from_raw_os_error(99)), Cause::NoRoute);
        assert_eq!(
            io_cause(&Error::from(ErrorKind::ConnectionRefused)),
            Cause::Refused
        );
        assert_eq!(io_cause(&Error::from(ErrorKind::TimedOut)), Cause::NoReply);
        assert!(matches!(
            io_cause(&Error::from_raw_os_error(24)),
            Cause::Probe(why) if why.contains("Too many open files")
        ));
    }
}

//! ICMP echo through surge-ping: one client (socket) per address family,
//! an unprivileged DGRAM socket first and RAW when that is not permitted.
//! On DGRAM sockets the kernel rewrites the echo identifier, so replies are
//! matched on (address, sequence): one sequence counter for the whole
//! process keeps concurrent pings to one address from colliding.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};

use super::check::Probe;
use crate::cause::{Cause, io_cause};

pub struct IcmpProber {
    v4: Option<Client>,
    v6: Option<Client>,
    kind: &'static str,
    timeout: Duration,
    ident: u16,
    seq: AtomicU16,
}

const PAYLOAD: &[u8] = b"peergate";

/// Receive buffer asked for on each ICMP socket. All echo replies of a burst
/// (up to --concurrency of them) arrive at once and wait there until the
/// receive task runs; the default buffer (net.core.rmem_default, 208 KiB)
/// holds about 200 and drops the rest, which then cost a retry an interval
/// later. The kernel caps the request at net.core.rmem_max.
const RECV_BUFFER: usize = 4 << 20;

fn open_client(kind: ICMP) -> io::Result<(Client, &'static str)> {
    let config = Config::builder()
        .kind(kind)
        .sock_type_hint(socket2::Type::DGRAM)
        .build();
    let client = Client::new(&config)?;
    let fd = client.get_socket().get_native_sock();
    // SAFETY: `fd` belongs to the client's socket, which `client` keeps open
    // for longer than this borrow lasts.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Err(e) = socket2::SockRef::from(&borrowed).set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!("cannot enlarge the ICMP receive buffer: {e}");
    }
    let label = if client.get_socket().get_type() == socket2::Type::DGRAM {
        "unprivileged DGRAM socket"
    } else {
        "RAW socket"
    };
    Ok((client, label))
}

impl IcmpProber {
    /// Opens the IPv4 and IPv6 clients. Fails when neither can be opened,
    /// with a message that names the fix.
    pub fn open(timeout: Duration) -> Result<Self, String> {
        let v4 = open_client(ICMP::V4);
        let v6 = open_client(ICMP::V6);
        let kind = match (&v4, &v6) {
            (Ok((_, k)), _) | (Err(_), Ok((_, k))) => *k,
            (Err(e), Err(_)) => return Err(explain(e)),
        };
        Ok(Self {
            v4: v4.ok().map(|(c, _)| c),
            v6: v6.ok().map(|(c, _)| c),
            kind,
            timeout,
            ident: echo_identifier(),
            seq: AtomicU16::new(0),
        })
    }

    pub fn socket_kind(&self) -> &'static str {
        self.kind
    }
}

/// The echo identifier of RAW sockets (the kernel picks its own on DGRAM
/// ones). Random: the pid, the usual choice, is 1 in every container, and
/// the containers of a pod share the network namespace but not the PID
/// one, so two peergates there would match each other's replies (every
/// RAW ICMP socket sees every reply).
fn echo_identifier() -> u16 {
    rand::random()
}

/// ICMP type of an echo reply: 0 for IPv4, 129 for ICMPv6.
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REPLY_V6: u8 = 129;
/// Destination unreachable: 3 for IPv4, 1 for ICMPv6.
const UNREACHABLE_V4: u8 = 3;
const UNREACHABLE_V6: u8 = 1;

fn classify_reply(packet: &IcmpPacket) -> Result<(), Cause> {
    let (kind, echo, unreachable) = match packet {
        IcmpPacket::V4(p) => (p.get_icmp_type().0, ECHO_REPLY_V4, UNREACHABLE_V4),
        IcmpPacket::V6(p) => (p.get_icmpv6_type().0, ECHO_REPLY_V6, UNREACHABLE_V6),
    };
    reply_cause(kind, echo, unreachable)
}

/// Maps an ICMP message type to the probe's result.
fn reply_cause(kind: u8, echo: u8, unreachable: u8) -> Result<(), Cause> {
    if kind == echo {
        Ok(())
    } else if kind == unreachable {
        Err(Cause::NoRoute)
    } else {
        Err(Cause::Probe(format!(
            "ICMP type {kind} instead of an echo reply"
        )))
    }
}

fn explain(err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::PermissionDenied
        || matches!(err.raw_os_error(), Some(1) | Some(13))
    {
        let gid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Gid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
            })
            .unwrap_or_else(|| "?".into());
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
            .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        format!(
            "ICMP socket not permitted (permission denied): no CAP_NET_RAW, and \
             net.ipv4.ping_group_range \"{range}\" does not include gid {gid}; set the pod sysctl \
             net.ipv4.ping_group_range=\"0 2147483647\""
        )
    } else {
        format!("cannot open an ICMP socket: {err}")
    }
}

impl Probe for IcmpProber {
    async fn probe(&self, addr: IpAddr) -> Result<Duration, Cause> {
        let client = match addr {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        };
        let Some(client) = client else {
            return Err(Cause::Probe(format!(
                "no ICMP socket for {addr}'s address family"
            )));
        };
        let seq = PingSequence(self.seq.fetch_add(1, Ordering::Relaxed));
        let mut pinger = client.pinger(addr, PingIdentifier(self.ident)).await;
        pinger.timeout(self.timeout);
        match pinger.ping(seq, PAYLOAD).await {
            // surge-ping also hands over ICMP errors that quote our request
            // (host unreachable once ARP gives up): only an echo reply
            // proves the peer is up.
            Ok((packet, rtt)) => classify_reply(&packet).map(|()| rtt),
            Err(SurgeError::Timeout { .. }) => Err(Cause::NoReply),
            Err(SurgeError::IOError(e)) => Err(io_cause(&e)),
            Err(e) => Err(Cause::Probe(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_identifiers_are_random_not_the_pid() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| echo_identifier()).collect();
        // 64 draws from 65536 values: a repeat is likely, one value is not.
        assert!(ids.len() > 32, "{ids:?}");
    }

    #[test]
    fn only_echo_replies_prove_a_peer_up() {
        assert_eq!(
            reply_cause(ECHO_REPLY_V4, ECHO_REPLY_V4, UNREACHABLE_V4),
            Ok(())
        );
        assert_eq!(
            reply_cause(ECHO_REPLY_V6, ECHO_REPLY_V6, UNREACHABLE_V6),
            Ok(())
        );
        assert_eq!(
            reply_cause(3, ECHO_REPLY_V4, UNREACHABLE_V4),
            Err(Cause::NoRoute)
        );
        assert_eq!(
            reply_cause(1, ECHO_REPLY_V6, UNREACHABLE_V6),
            Err(Cause::NoRoute)
        );
        assert!(matches!(
            reply_cause(11, ECHO_REPLY_V4, UNREACHABLE_V4),
            Err(Cause::Probe(_))
        ));
    }
}

//! Socket helpers shared by the barrier and the sidecar's servers: binding
//! a listener, dialing from a chosen source, and the options every barrier
//! link carries. Nothing here knows the protocol.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Idle time before the kernel probes a link, the time between probes, and
/// how many unanswered probes end it: a vanished host is noticed in about
/// 11 s. A stalled process still answers (its kernel does).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_PROBES: u32 = 3;
/// How long written data may stay unacknowledged before the kernel gives
/// up on a link.
const USER_TIMEOUT: Duration = Duration::from_secs(15);

/// Binds a TCP listener on `addr`, or on all addresses (`[::]`, dual-stack,
/// when the host has IPv6; `0.0.0.0` otherwise).
pub fn listen(addr: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    let bind = |addr: SocketAddr| -> io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            socket.set_only_v6(false)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    match addr {
        Some(ip) => bind(SocketAddr::new(ip, port)),
        None => bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
            .or_else(|_| bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))),
    }
}

/// Connects to `remote`, from `source` when one is given for its family (a
/// standalone barrier of several instances on one host: each dials from its
/// own address).
pub async fn connect(remote: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == remote.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(remote).await
}

/// Sets what a barrier link needs (no Nagle delay, keepalives, a user
/// timeout) and returns its (local, remote) addresses, IPv4-mapped ones
/// written as IPv4.
pub fn tune_link(stream: &TcpStream) -> io::Result<(SocketAddr, SocketAddr)> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    sock.set_tcp_user_timeout(Some(USER_TIMEOUT))?;
    Ok((
        canonical(stream.local_addr()?),
        canonical(stream.peer_addr()?),
    ))
}

/// `addr` with an IPv4-mapped IPv6 address written as IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_unmaps_v4_mapped_addresses() {
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:4000".parse().unwrap();
        assert_eq!(canonical(mapped), "10.0.0.7:4000".parse().unwrap());
        let v6: SocketAddr = "[fd00::7]:4000".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[tokio::test]
    async fn dials_from_the_given_source_and_tunes_the_link() {
        let listener = listen(Some(Ipv4Addr::LOCALHOST.into()), 0).expect("bind loopback");
        let remote = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.2".parse().unwrap();
        let (dialed, accepted) = tokio::join!(connect(remote, Some(source)), listener.accept());
        let dialed = dialed.expect("connect");
        let (_, from) = accepted.expect("accept");
        assert_eq!(from.ip(), source);
        let (local, peer) = tune_link(&dialed).expect("tune");
        assert_eq!(local.ip(), source);
        assert_eq!(peer, remote);
        assert!(dialed.nodelay().unwrap());
    }
}

//! Free TCP ports for tests that start a peergate listening on one.
//!
//! The kernel picks them: bind 127.0.0.1:0, read the port it gave, close.
//! A port derived from the process id is shared by every test of one test
//! binary, so two tests running in parallel threads would meet each other;
//! a port from the kernel is one nobody held a moment ago. It is free, not
//! reserved: between the close and peergate's bind another process could
//! take it, which is unlikely because the kernel starts its search for a
//! free ephemeral port at a random place in the range.
//!
//! Self-contained (no `super::`), so a test binary that does not use the
//! whole support tree can include it alone:
//! `#[path = "support/ports.rs"] mod ports;`

use std::net::{Ipv4Addr, TcpListener};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct TCP ports on 127.0.0.1 that were free a moment ago (all
/// bound at once, so no two are the same).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 for a free port: {e}"))
        })
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = super::free_ports(3);
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p != 0));
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        let p = super::free_port();
        std::net::TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
    }
}

//! What the barrier is told by the configuration.

use std::net::IpAddr;
use std::time::Duration;

use crate::peers::Peer;

/// Everything the barrier needs, validated by `config`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token: Option<String>,
    pub job: String,
    pub index: u32,
    /// Every member in index order (`peers[i].index == Some(i)`); the world
    /// size is their number.
    pub peers: Vec<Peer>,
    /// This pod's own addresses, announced to the others; learned from the
    /// first link when empty.
    pub announce: Vec<IpAddr>,
    /// The address to listen on and dial from; all addresses when `None`.
    pub listen: Option<IpAddr>,
    pub port: u16,
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub concurrency: usize,
    /// Stay after the release (a native sidecar).
    pub serve: bool,
    /// The headless Service's own name, whose record lists every pod: the
    /// way in when no peer's name resolves yet (a negative cache).
    pub service: Option<String>,
}

//! What the gate learned about each peer once it finished: the input of the
//! final report, the hostfile writers and the `-- COMMAND` environment.

use std::net::IpAddr;
use std::time::Duration;

/// One peer as the gate saw it when it stopped waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOutcome {
    /// Completion index, when the peer came from `--peers`/`--indices`.
    /// `None` for peers given with `--hosts`.
    pub index: Option<u32>,
    /// The name as the user would write it (no trailing dot), or the IP
    /// literal for `--hosts` entries that are addresses.
    pub name: String,
    /// Every address the last successful resolution returned (or learned
    /// from a barrier hello), in the resolver's order. Empty when the name
    /// never resolved.
    pub addrs: Vec<IpAddr>,
    /// The address that answered the probe, when the peer was reached.
    pub reachable_via: Option<IpAddr>,
    /// Time from the gate's start until the peer was reached.
    pub elapsed: Option<Duration>,
}

/// The whole result of a gate run, in peer order (ascending index for
/// indexed peers, command-line order for `--hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateOutcome {
    /// This pod's own completion index, when known.
    pub self_index: Option<u32>,
    /// The round this hand-off is of (a serving sidecar's; `None` for a
    /// gate or a barrier that leaves).
    pub round: Option<u32>,
    pub peers: Vec<PeerOutcome>,
}

//! What peergate tells the user about a wait, shared by the ping gate and
//! the barrier: the start line, the progress line, and the final report
//! (one line per missing peer, then how the wait ended).

use std::fmt::Display;
use std::net::IpAddr;

use tracing::{error, info};

/// How many missing peers a progress line names before "+N more".
const PROGRESS_NAMES: usize = 3;

/// `1 peer`, `3 peers`.
pub fn peers(n: usize) -> String {
    if n == 1 {
        "1 peer".into()
    } else {
        format!("{n} peers")
    }
}

/// `2/3 reachable; waiting on a: NXDOMAIN` (ping) or
/// `2/3 met; waiting on a: refused` (barrier).
pub fn progress_line<N: Display, C: Display>(
    done: usize,
    total: usize,
    word: &str,
    missing: &[(N, C)],
) -> String {
    let mut line = format!("{done}/{total} {word}");
    if !missing.is_empty() {
        let named: Vec<String> = missing
            .iter()
            .take(PROGRESS_NAMES)
            .map(|(name, cause)| format!("{name}: {cause}"))
            .collect();
        line.push_str("; waiting on ");
        line.push_str(&named.join(", "));
        if missing.len() > PROGRESS_NAMES {
            line.push_str(&format!(" (+{} more)", missing.len() - PROGRESS_NAMES));
        }
    }
    line
}

/// A peer the ping gate could not reach, with its last cause.
pub fn unreachable(peer: &dyn Display, cause: &dyn Display, attempts: u32, addrs: &[IpAddr]) {
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    error!(
        peer = %peer,
        cause = %cause,
        attempts,
        addrs = %addrs.join(","),
        "peer unreachable: {peer}: {cause}"
    );
}

/// A peer the barrier did not meet, with its last cause.
pub fn not_met(peer: &dyn Display, cause: &dyn Display, attempts: u32) {
    error!(
        peer = %peer,
        cause = %cause,
        attempts,
        "peer not met: {peer}: {cause}"
    );
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Passed,
    TimedOut,
    /// By the named signal.
    Interrupted(&'static str),
}

/// The last line of a wait: `all 3 peers reachable after 1.20s`,
/// `timed out after 10.00s: 2/3 peers met`.
pub fn end_line(end: End, done: usize, total: usize, word: &str, elapsed: &str) -> String {
    match end {
        End::Passed if total == 1 => format!("1 peer {word} after {elapsed}"),
        End::Passed => format!("all {total} peers {word} after {elapsed}"),
        End::TimedOut => format!("timed out after {elapsed}: {done}/{} {word}", peers(total)),
        End::Interrupted(signal) => {
            format!("interrupted by {signal}: {done}/{} {word}", peers(total))
        }
    }
}

/// Logs the last line: info when the wait passed, an error otherwise.
pub fn end(end: End, done: usize, total: usize, word: &str, elapsed: &str) {
    let line = end_line(end, done, total, word, elapsed);
    match end {
        End::Passed => info!(peers = total, elapsed = %elapsed, "{line}"),
        End::TimedOut | End::Interrupted(_) => error!(reachable = done, peers = total, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_most_three_missing_peers() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(progress_line(3, 3, "met", &none), "3/3 met");
        let missing = [
            ("a", "NXDOMAIN"),
            ("b", "no reply"),
            ("c", "refused"),
            ("d", "x"),
            ("e", "y"),
        ];
        assert_eq!(
            progress_line(1, 6, "reachable", &missing),
            "1/6 reachable; waiting on a: NXDOMAIN, b: no reply, c: refused (+2 more)"
        );
    }

    #[test]
    fn one_peer_is_singular() {
        assert_eq!(peers(1), "1 peer");
        assert_eq!(peers(0), "0 peers");
        assert_eq!(peers(2), "2 peers");
        assert_eq!(
            end_line(End::Passed, 1, 1, "reachable", "5ms"),
            "1 peer reachable after 5ms"
        );
        assert_eq!(
            end_line(End::Passed, 3, 3, "met", "1.20s"),
            "all 3 peers met after 1.20s"
        );
        assert_eq!(
            end_line(End::TimedOut, 0, 1, "reachable", "3.00s"),
            "timed out after 3.00s: 0/1 peer reachable"
        );
        assert_eq!(
            end_line(End::Interrupted("SIGTERM"), 2, 3, "met", "1.00s"),
            "interrupted by SIGTERM: 2/3 peers met"
        );
    }
}

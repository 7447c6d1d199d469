//! How a run ends: its exit code, and the signals that can end it. A leaf
//! that the gate's run and the sidecar's share.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::error;

/// Process exit codes (documented in the README; users script against them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every peer reachable.
    Passed,
    /// Something failed at run time that is neither a timeout nor a usage
    /// error (e.g. the runtime could not start).
    Failure,
    /// Usage or configuration error.
    Usage,
    /// `--timeout` passed with peers unreachable.
    Timeout,
    /// The hand-off failed with this code (126/127 for the command, 2 for
    /// the hostfile).
    Handoff(u8),
    Interrupted,
    Terminated,
    /// `peergate put`, `get`, `barrier`: no live round to act in (it
    /// ended while the command waited, or `PEERGATE_ROUND` is over).
    RoundOver,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Timeout => 124,
            Exit::Handoff(code) => code,
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
            Exit::RoundOver => 5,
        }
    }
}

/// How a signal ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
}

/// SIGTERM and SIGINT, installed before the wait starts.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs both handlers, or logs why not.
    pub fn install() -> Option<Signals> {
        let install = |kind, name| {
            signal(kind)
                .map_err(|e| error!("cannot install the {name} handler: {e}"))
                .ok()
        };
        Some(Signals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// The next of them to arrive.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.int.recv() => Stop::Int,
        }
    }
}

//! One run, start to finish: open the probe and the resolver, wait under the
//! deadline and the signals, report, hand off to the workload.

use std::sync::Arc;

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::sleep;
use tracing::{error, info, warn};

use crate::barrier::{self, Barrier};
use crate::config::Config;
use crate::dns::{Dns, Resolve};
use crate::duration::human;
use crate::gate::Gate;
use crate::handoff;
use crate::outcome::GateOutcome;
use crate::probe::{Probe, Prober};

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
        }
    }
}

/// How the wait ended.
enum Ending {
    Passed,
    TimedOut,
    Signal(Exit),
}

/// What the ping gate and the barrier have in common, as seen from here.
trait Waiter {
    /// Runs until done; cancel-safe.
    async fn wait(&mut self);
    /// (done, total) peers.
    fn counts(&self) -> (usize, usize);
    /// What "done" means for a peer: "reachable" or "met".
    fn done_word(&self) -> &'static str;
    fn elapsed(&self) -> Duration;
    /// One error line per peer still missing, with its last cause.
    fn report_missing(&self);
    fn outcome(&self, self_index: Option<u32>) -> GateOutcome;
}

impl<R: Resolve, P: Probe> Waiter for Gate<R, P> {
    async fn wait(&mut self) {
        self.run().await
    }
    fn counts(&self) -> (usize, usize) {
        (self.reachable_count(), self.peer_count())
    }
    fn done_word(&self) -> &'static str {
        "reachable"
    }
    fn elapsed(&self) -> Duration {
        Gate::elapsed(self)
    }
    fn report_missing(&self) {
        for t in self.peers().filter(|t| !t.is_reached()) {
            let addrs: Vec<String> = t.addrs.iter().map(ToString::to_string).collect();
            error!(
                peer = %t.peer,
                cause = %t.last_cause,
                attempts = t.attempts,
                addrs = %addrs.join(","),
                "peer unreachable: {}: {}",
                t.peer,
                t.last_cause
            );
        }
    }
    fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        Gate::outcome(self, self_index)
    }
}

impl<R: Resolve> Waiter for Barrier<R> {
    async fn wait(&mut self) {
        self.run().await
    }
    fn counts(&self) -> (usize, usize) {
        (self.met_count(), self.peer_count())
    }
    fn done_word(&self) -> &'static str {
        "met"
    }
    fn elapsed(&self) -> Duration {
        Barrier::elapsed(self)
    }
    fn report_missing(&self) {
        for m in self.members().iter().filter(|m| !m.is_met()) {
            error!(
                peer = %m.peer,
                cause = %m.last_cause,
                attempts = m.attempts,
                "peer not met: {}: {}",
                m.peer,
                m.last_cause
            );
        }
    }
    fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        Barrier::outcome(self, self_index)
    }
}

/// Runs the gate described by `config` and returns the exit code. When a
/// command follows `--` and the gate passed, this does not return: the
/// command replaces the process.
pub async fn run(config: Config) -> Exit {
    let mut sigterm = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install the SIGTERM handler: {e}");
            return Exit::Failure;
        }
    };
    let mut sigint = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install the SIGINT handler: {e}");
            return Exit::Failure;
        }
    };

    if let Some(spec) = &config.hostfile
        && let Err(e) = handoff::check_destination(&spec.path)
    {
        error!("{e}");
        return Exit::Usage;
    }

    let resolver = match &config.dns {
        Some(settings) => match Dns::new(settings) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                error!("{e}");
                return Exit::Usage;
            }
        },
        None => None,
    };

    for warning in &config.warnings {
        warn!("{warning}");
    }
    info!(
        mode = %config.mode,
        peers = config.peers.len(),
        self_index = config.self_index,
        interval = %human(config.interval),
        timeout = %config.deadline.map(human).unwrap_or_else(|| "never".into()),
        ip_family = %config.dns.as_ref().map_or_else(|| "none".into(), |d| d.family.to_string()),
        "waiting for {} peers",
        config.peers.len()
    );

    match (&config.barrier, config.self_index) {
        (Some(settings), Some(self_index)) => {
            let listener = match barrier::listen(settings.port) {
                Ok(l) => l,
                Err(e) => {
                    error!("cannot listen on TCP port {}: {e}", settings.port);
                    return Exit::Failure;
                }
            };
            info!(
                port = settings.port,
                "barrier: listening on port {}", settings.port
            );
            let mut barrier = Barrier::new(
                settings.clone(),
                self_index,
                config.self_addrs.clone(),
                config.peers.clone(),
                listener,
                resolver,
                config.interval,
                config.probe.timeout,
                config.concurrency,
            );
            drive(&mut barrier, &config, &mut sigterm, &mut sigint).await
        }
        _ => {
            let prober = match Prober::open(&config.probe) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    error!("{e}");
                    return Exit::Usage;
                }
            };
            let mut gate = Gate::new(
                config.peers.clone(),
                config.self_target.clone(),
                resolver,
                prober,
                config.interval,
                config.concurrency,
            );
            drive(&mut gate, &config, &mut sigterm, &mut sigint).await
        }
    }
}

/// Waits under the deadline and the signals, reports, hands off.
async fn drive<W: Waiter>(
    waiter: &mut W,
    config: &Config,
    sigterm: &mut Signal,
    sigint: &mut Signal,
) -> Exit {
    let deadline = async {
        match config.deadline {
            Some(d) => sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        _ = waiter.wait() => Ending::Passed,
        _ = deadline => Ending::TimedOut,
        _ = sigterm.recv() => Ending::Signal(Exit::Terminated),
        _ = sigint.recv() => Ending::Signal(Exit::Interrupted),
    };
    let (done, total) = waiter.counts();
    let elapsed = human(waiter.elapsed());
    let word = waiter.done_word();
    match ending {
        Ending::Passed => {
            info!(peers = total, elapsed = %elapsed, "all {total} peers {word} after {elapsed}");
            let outcome = waiter.outcome(config.self_index);
            hand_off(config, &outcome)
        }
        Ending::TimedOut => {
            waiter.report_missing();
            error!(
                reachable = done,
                peers = total,
                "timed out after {elapsed}: {done}/{total} peers {word}"
            );
            Exit::Timeout
        }
        Ending::Signal(exit) => {
            let name = if exit == Exit::Terminated {
                "SIGTERM"
            } else {
                "SIGINT"
            };
            error!(
                reachable = done,
                peers = total,
                "interrupted by {name}: {done}/{total} peers {word}"
            );
            exit
        }
    }
}

/// Writes the hostfile and execs the command, as configured.
fn hand_off(config: &Config, outcome: &GateOutcome) -> Exit {
    if let Some(spec) = &config.hostfile {
        let text = handoff::render(spec.format, outcome, spec.slots);
        if let Err(e) = handoff::write_atomic(&spec.path, &text) {
            error!("{e}");
            return Exit::Handoff(e.exit_code());
        }
        info!(path = %spec.path.display(), format = %spec.format, "hostfile written");
    }
    if !config.command.is_empty() {
        let env = handoff::env_vars(outcome);
        info!(command = %config.command[0].to_string_lossy(), "gate open; exec");
        let err = handoff::exec(&config.command, &env);
        error!("{err}");
        return Exit::Handoff(err.exit_code());
    }
    Exit::Passed
}

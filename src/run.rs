//! One run, start to finish: open the probe and the resolver, wait under the
//! deadline and the signals, report, hand off to the workload.

use std::sync::Arc;

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::sleep;
use tracing::{error, info};

use crate::barrier::{self, Barrier};
use crate::config::Config;
use crate::dns::{Dns, Resolve};
use crate::duration::human;
use crate::gate::Gate;
use crate::handoff;
use crate::outcome::GateOutcome;
use crate::probe::{Probe, Prober};
use crate::report::{self, End};

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
            report::unreachable(&t.peer, &t.last_cause, t.attempts, &t.addrs);
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
            report::not_met(&m.peer, &m.last_cause, m.attempts);
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

    report::start(&config);

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
    let (end, exit) = tokio::select! {
        _ = waiter.wait() => (End::Passed, Exit::Passed),
        _ = deadline => (End::TimedOut, Exit::Timeout),
        _ = sigterm.recv() => (End::Interrupted("SIGTERM"), Exit::Terminated),
        _ = sigint.recv() => (End::Interrupted("SIGINT"), Exit::Interrupted),
    };
    let (done, total) = waiter.counts();
    let elapsed = human(waiter.elapsed());
    if end == End::TimedOut {
        waiter.report_missing();
    }
    report::end(end, done, total, waiter.done_word(), &elapsed);
    match end {
        End::Passed => hand_off(config, &waiter.outcome(config.self_index)),
        End::TimedOut | End::Interrupted(_) => exit,
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

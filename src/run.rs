//! One run, start to finish: open the probe and the resolver, wait under the
//! deadline and the signals, report, hand off to the workload.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::sleep;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::config::Config;
use crate::dns::Dns;
use crate::duration::human;
use crate::gate::Gate;
use crate::handoff;
use crate::outcome::GateOutcome;
use crate::probe::Prober;

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

/// Logs go to stderr: text (ANSI colours only on a terminal) or one JSON
/// object per line. The level comes from `--log-level`, else `RUST_LOG`,
/// else `info`.
pub fn init_logging(format: LogFormat, level: Option<&str>) -> Result<(), String> {
    let spec = level
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&spec)
        .map_err(|e| format!("invalid --log-level / RUST_LOG `{spec}`: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => {
            use std::io::IsTerminal;
            builder.with_ansi(std::io::stderr().is_terminal()).init();
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}

/// How the wait ended.
enum Ending {
    Passed,
    TimedOut,
    Signal(Exit),
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
    if config.barrier.is_some() {
        error!("--mode barrier is not available in this build");
        return Exit::Usage;
    }

    let prober = match Prober::open(&config.probe) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            error!("{e}");
            return Exit::Usage;
        }
    };
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

    info!(
        peers = config.peers.len(),
        self_index = config.self_index,
        interval = %human(config.interval),
        timeout = %config.deadline.map(human).unwrap_or_else(|| "never".into()),
        "waiting for {} peers",
        config.peers.len()
    );

    let mut gate = Gate::new(
        config.peers.clone(),
        config.self_target.clone(),
        resolver,
        prober,
        config.interval,
        config.concurrency,
    );
    let deadline = async {
        match config.deadline {
            Some(d) => sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        _ = gate.run() => Ending::Passed,
        _ = deadline => Ending::TimedOut,
        _ = sigterm.recv() => Ending::Signal(Exit::Terminated),
        _ = sigint.recv() => Ending::Signal(Exit::Interrupted),
    };

    match ending {
        Ending::Passed => {
            info!(
                peers = gate.peer_count(),
                elapsed = %human(gate.elapsed()),
                "all {} peers reachable after {}",
                gate.peer_count(),
                human(gate.elapsed())
            );
            let outcome = gate.outcome(config.self_index);
            drop(gate);
            hand_off(&config, &outcome)
        }
        Ending::TimedOut => {
            report_unreachable(&gate);
            error!(
                reachable = gate.reachable_count(),
                peers = gate.peer_count(),
                "timed out after {}: {}/{} peers reachable",
                human(gate.elapsed()),
                gate.reachable_count(),
                gate.peer_count()
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
                reachable = gate.reachable_count(),
                peers = gate.peer_count(),
                "interrupted by {name}: {}/{} peers reachable",
                gate.reachable_count(),
                gate.peer_count()
            );
            exit
        }
    }
}

/// One line per unreachable peer with its last cause.
fn report_unreachable<R: crate::dns::Resolve, P: crate::probe::Probe>(gate: &Gate<R, P>) {
    for t in gate.peers().filter(|t| !t.is_reached()) {
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

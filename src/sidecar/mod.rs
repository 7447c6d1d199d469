//! The barrier as a native sidecar (`--mode barrier --serve`) and the
//! container that waits for it (`peergate await`): the HTTP they speak
//! ([`http`]), what the sidecar answers ([`serve`]), the client of its
//! `/await` ([`await_client`]), and the one answer both ends agree on
//! ([`AwaitAnswer`]), and the two runs: the sidecar's ([`run`]) and
//! `peergate await`'s ([`wait_for_sidecar`]).

mod answer;
pub mod await_client;
mod endpoints;
pub mod exchange;
pub mod exchange_client;
pub mod exchange_commands;
pub mod http;
pub mod lease;
pub mod serve;
pub mod workload;
mod writer;

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::sleep;
use tracing::{error, info};

use crate::config::{Config, SidecarPlan};
use crate::dns::Resolve;
use crate::duration::human;
use crate::exit::{Exit, Signals, Stop};
use crate::handoff;
use crate::rendezvous::Rendezvous;
use crate::report::{self, End};
use writer::HostfileWriter;

/// How long a leaving sidecar gives its links to deliver its goodbye.
const LEAVE_GRACE: Duration = Duration::from_secs(1);

/// `--serve`: the barrier as a native sidecar. Releases like an init
/// container would, then stays: admits late and replaced peers, rewrites
/// the hand-off file when a live address changes, answers `peergate await`
/// and the health endpoints. SIGTERM (the kubelet ending the pod once its
/// workload finished) makes it leave and exit 0. Before the release,
/// --timeout still ends it with 124.
pub(crate) async fn run<R: Resolve>(
    mut barrier: Rendezvous<R>,
    config: &Config,
    ports: SidecarPlan,
    signals: &mut Signals,
) -> Exit {
    if let Some(path) = &ports.install {
        match crate::install::install_self(path) {
            Ok(size) => info!(
                path = %path.display(),
                bytes = size,
                "installed peergate at {} for `{} run`",
                path.display(),
                path.display()
            ),
            Err(e) => {
                error!("{e}");
                return Exit::Failure;
            }
        }
    }
    let await_port = ports.await_port;
    let await_listener = match crate::net::listen(Some(Ipv4Addr::LOCALHOST.into()), await_port) {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen for peergate await on 127.0.0.1:{await_port}: {e}");
            return Exit::Failure;
        }
    };
    let health_listener = match ports.health_port {
        Some(port) => match crate::net::listen(None, port)
            .map_err(|e| format!("cannot listen for health checks on port {port}: {e}"))
        {
            Ok(l) => Some(l),
            Err(e) => {
                error!("{e}");
                return Exit::Failure;
            }
        },
        None => None,
    };
    let mut servers = tokio::task::JoinSet::new();
    let status = barrier.status();
    // With a hostfile, the endpoints see a round released once its
    // hand-off is written.
    let mut written = None;
    if let Some(spec) = config.hostfile.clone() {
        let (writer, on_change) = HostfileWriter::new(spec);
        written = Some(writer.status());
        barrier.on_change(on_change);
        servers.spawn(writer.run());
    }
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(16);
    barrier.control(control_rx);
    let endpoints = serve::Endpoints {
        control: control_tx,
        status: status.clone(),
        changes: barrier.changes(),
        exchange_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(endpoints::MAX_EXCHANGE)),
        written,
    };
    servers.spawn(serve::serve(await_listener, endpoints.clone(), true));
    if let Some(l) = health_listener {
        servers.spawn(serve::serve(l, endpoints, false));
    }
    info!(
        await_port = ports.await_port,
        health_port = ports.health_port,
        "serving: `peergate await` on 127.0.0.1:{}{}",
        ports.await_port,
        ports
            .health_port
            .map(|p| format!(", health checks on port {p}"))
            .unwrap_or_default()
    );
    let deadline = async {
        match config.deadline {
            Some(d) => {
                sleep(d).await;
                if status.borrow().released {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        _ = barrier.run() => {
            error!("the serving barrier stopped unexpectedly");
            Exit::Failure
        }
        _ = deadline => {
            for (peer, cause, attempts) in barrier.missing() {
                report::not_met(&peer, &cause, attempts);
            }
            let total = barrier.world() as usize;
            report::end(End::TimedOut, barrier.met_count(), total, "met", &human(barrier.elapsed()));
            Exit::Timeout
        }
        stop = signals.next() => match stop {
            Stop::Term => {
                barrier.leave(LEAVE_GRACE).await;
                info!("SIGTERM: left the barrier");
                Exit::Passed
            }
            Stop::Int => {
                error!("interrupted by SIGINT");
                Exit::Interrupted
            }
        },
    };
    servers.abort_all();
    exit
}

/// `peergate await`: waits for the local sidecar's release, then exits 0
/// or execs the command with the hand-off variables.
pub async fn wait_for_sidecar(
    port: u16,
    deadline: Option<Duration>,
    command: &[std::ffi::OsString],
) -> Exit {
    let mut sigterm = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install the SIGTERM handler: {e}");
            return Exit::Failure;
        }
    };
    let until = deadline.map(|d| tokio::time::Instant::now() + d);
    let outcome = tokio::select! {
        r = await_client::wait(port, until) => r,
        _ = sigterm.recv() => return Exit::Terminated,
    };
    match outcome {
        Err(e @ await_client::AwaitError::Timeout { .. }) => {
            error!("{e}");
            Exit::Timeout
        }
        Err(e) => {
            error!("{e}");
            Exit::Failure
        }
        Ok(outcome) if command.is_empty() => {
            let _ = outcome;
            Exit::Passed
        }
        Ok(outcome) => {
            let env = handoff::env_vars(&outcome);
            let err = handoff::exec(command, &env);
            error!("{err}");
            Exit::Handoff(err.exit_code())
        }
    }
}

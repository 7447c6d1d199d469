//! One run, start to finish: open the probe and the resolver, wait under the
//! deadline and the signals, report, hand off to the workload.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::sleep;
use tracing::{error, info, warn};

use crate::config::{BarrierPlan, Config, Plan, SidecarPorts};
use crate::dns::{Dns, Resolve};
use crate::duration::human;
use crate::gate::Gate;
use crate::handoff;
use crate::outcome::GateOutcome;
use crate::probe::{Probe, Prober};
use crate::rendezvous::Rendezvous;
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
    /// Whether the gate has opened although `wait` has not returned yet
    /// (the barrier, confirming its release with the peers it links to).
    fn released(&self) -> bool {
        false
    }
    /// Warns about what `wait` was still waiting for after the release.
    fn report_unconfirmed(&self) {}
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

impl<R: Resolve> Waiter for Rendezvous<R> {
    async fn wait(&mut self) {
        self.run().await
    }
    fn counts(&self) -> (usize, usize) {
        (self.met_count(), self.world() as usize)
    }
    fn done_word(&self) -> &'static str {
        "met"
    }
    fn elapsed(&self) -> Duration {
        Rendezvous::elapsed(self)
    }
    fn report_missing(&self) {
        for (peer, cause, attempts) in self.missing() {
            report::not_met(&peer, &cause, attempts);
        }
    }
    fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        Rendezvous::outcome(self, self_index)
    }
    fn released(&self) -> bool {
        self.is_released()
    }
    fn report_unconfirmed(&self) {
        let waiting = self.unconfirmed();
        if !waiting.is_empty() {
            warn!(
                peers = %waiting.join(","),
                "released, but {} linked peer(s) had not confirmed their own release by the \
                 deadline: {}",
                waiting.len(),
                waiting.join(", ")
            );
        }
    }
}

/// How a signal ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Term,
    Int,
}

/// SIGTERM and SIGINT, installed before the wait starts.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs both handlers, or logs why not.
    fn install() -> Option<Signals> {
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
    async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.int.recv() => Stop::Int,
        }
    }
}

/// Runs the gate described by `config` and returns the exit code. When a
/// command follows `--` and the gate passed, this does not return: the
/// command replaces the process.
pub async fn run(config: Config) -> Exit {
    let Some(mut signals) = Signals::install() else {
        return Exit::Failure;
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

    start(&config);

    match &config.plan {
        Plan::Barrier(plan) => barrier(plan, &config, resolver, &mut signals).await,
        Plan::Ping(plan) => {
            let prober = match Prober::open(&plan.probe) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    error!("{e}");
                    return Exit::Usage;
                }
            };
            let mut gate = Gate::new(
                plan.peers.clone(),
                config.identity.target.clone(),
                resolver,
                prober,
                plan.interval,
                plan.concurrency,
            );
            drive(&mut gate, &config, signals.next()).await
        }
    }
}

/// The warnings about the inputs, then what the wait is about.
fn start(config: &Config) {
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let peers = config.peers().len();
    info!(
        mode = %config.mode(),
        peers,
        self_index = config.self_index(),
        interval = %human(config.interval()),
        timeout = %config.deadline.map(human).unwrap_or_else(|| "never".into()),
        ip_family = %config.dns.as_ref().map_or_else(|| "none".into(), |d| d.family.to_string()),
        "waiting for {}",
        report::peers(peers)
    );
}

/// `--mode barrier`: binds its port, then waits like the ping gate, or
/// serves as a sidecar.
async fn barrier(
    plan: &BarrierPlan,
    config: &Config,
    resolver: Option<Arc<Dns>>,
    signals: &mut Signals,
) -> Exit {
    let settings = &plan.settings;
    let listener = match crate::net::listen(settings.listen, settings.port) {
        Ok(l) => l,
        Err(e) => {
            let addr = settings
                .listen
                .map_or_else(|| "all addresses".to_owned(), |ip| ip.to_string());
            error!("cannot listen on TCP port {} ({addr}): {e}", settings.port);
            return Exit::Failure;
        }
    };
    if settings.token.is_none() {
        warn!(
            "barrier without a token (--insecure-no-token): anyone who can reach port {} \
             can join this barrier or hold it up",
            settings.port
        );
    }
    let mut barrier = match Rendezvous::new(settings.clone(), listener, resolver) {
        Ok(b) => b,
        Err(e) => {
            error!("{e}");
            return Exit::Usage;
        }
    };
    info!(
        port = settings.port,
        topology = barrier.topology().name(),
        instance = %barrier.instance().short(),
        "barrier: listening on port {}",
        settings.port
    );
    if let Some(ports) = plan.serving() {
        return serve(barrier, config, ports, signals).await;
    }
    let exit = drive(&mut barrier, config, signals.next()).await;
    // The process exits next: the table of every peer is left to the
    // kernel rather than freed record by record (at 1000 pods that was a
    // visible share of the release's CPU).
    std::mem::forget(barrier);
    exit
}

/// Waits under the deadline and `stop` (the signals), reports, hands off.
async fn drive<W: Waiter>(
    waiter: &mut W,
    config: &Config,
    stop: impl Future<Output = Stop>,
) -> Exit {
    let deadline = async {
        match config.deadline {
            Some(d) => sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let (end, exit) = tokio::select! {
        _ = waiter.wait() => (End::Passed, Exit::Passed),
        _ = deadline => {
            if waiter.released() {
                waiter.report_unconfirmed();
                (End::Passed, Exit::Passed)
            } else {
                (End::TimedOut, Exit::Timeout)
            }
        }
        stop = stop => match stop {
            Stop::Term => (End::Interrupted("SIGTERM"), Exit::Terminated),
            Stop::Int => (End::Interrupted("SIGINT"), Exit::Interrupted),
        },
    };
    let (done, total) = waiter.counts();
    let elapsed = human(waiter.elapsed());
    if end == End::TimedOut {
        waiter.report_missing();
    }
    report::end(end, done, total, waiter.done_word(), &elapsed);
    match end {
        // The outcome is a list as long as the Job: built only for a
        // hand-off that reads it.
        End::Passed if config.hostfile.is_none() && config.command.is_empty() => Exit::Passed,
        End::Passed => hand_off(config, &waiter.outcome(config.self_index())),
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

/// How long a leaving sidecar gives its links to deliver its goodbye.
const LEAVE_GRACE: Duration = Duration::from_secs(1);

/// `--serve`: the barrier as a native sidecar. Releases like an init
/// container would, then stays: admits late and replaced peers, rewrites
/// the hand-off file when a live address changes, answers `peergate await`
/// and the health endpoints. SIGTERM (the kubelet ending the pod once its
/// workload finished) makes it leave and exit 0. Before the release,
/// --timeout still ends it with 124.
async fn serve<R: Resolve>(
    mut barrier: Rendezvous<R>,
    config: &Config,
    ports: SidecarPorts,
    signals: &mut Signals,
) -> Exit {
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
    if let Some(spec) = config.hostfile.clone() {
        barrier.on_change(Box::new(move |outcome| {
            let text = handoff::render(spec.format, outcome, spec.slots);
            match handoff::write_atomic(&spec.path, &text) {
                Ok(()) => {
                    info!(path = %spec.path.display(), format = %spec.format, "hostfile written")
                }
                Err(e) => error!("{e}"),
            }
        }));
    }
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(16);
    barrier.control(control_rx);
    let status = barrier.status();
    let endpoints = crate::sidecar::serve::Endpoints {
        control: control_tx,
        status: status.clone(),
    };
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(crate::sidecar::serve::serve(
        await_listener,
        endpoints.clone(),
        true,
    ));
    if let Some(l) = health_listener {
        servers.spawn(crate::sidecar::serve::serve(l, endpoints, false));
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
            Waiter::report_missing(&barrier);
            let (met, total) = Waiter::counts(&barrier);
            report::end(End::TimedOut, met, total, "met", &human(barrier.elapsed()));
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
        r = crate::sidecar::await_client::wait(port, until) => r,
        _ = sigterm.recv() => return Exit::Terminated,
    };
    match outcome {
        Err(e @ crate::sidecar::await_client::AwaitError::Timeout { .. }) => {
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

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::ffi::OsString;
    use std::future::pending;
    use std::net::IpAddr;

    use tokio::time::Instant;

    use super::*;
    use crate::config::{HostfileSpec, Identity, PingPlan, ProbeSettings};
    use crate::handoff::test_dir::TestDir;
    use crate::outcome::PeerOutcome;
    use crate::peers::{Peer, Target};
    use crate::values::{HostfileFormat, ProbeKind};

    /// A waiter whose wait ends (or never ends) at a set time, and which
    /// records what `drive` asked of it.
    struct Fake {
        start: Instant,
        /// When `wait` returns; never when `None`.
        done_after: Option<Duration>,
        /// From when on `released` says yes (the barrier confirming).
        released_after: Option<Duration>,
        missing_reported: Cell<bool>,
        unconfirmed_reported: Cell<bool>,
        outcome_for: RefCell<Vec<Option<u32>>>,
    }

    impl Fake {
        fn new(done_after: Option<Duration>, released_after: Option<Duration>) -> Fake {
            Fake {
                start: Instant::now(),
                done_after,
                released_after,
                missing_reported: Cell::new(false),
                unconfirmed_reported: Cell::new(false),
                outcome_for: RefCell::new(Vec::new()),
            }
        }
    }

    impl Waiter for Fake {
        async fn wait(&mut self) {
            match self.done_after {
                Some(d) => tokio::time::sleep_until(self.start + d).await,
                None => pending().await,
            }
        }
        fn counts(&self) -> (usize, usize) {
            (1, 2)
        }
        fn done_word(&self) -> &'static str {
            "met"
        }
        fn elapsed(&self) -> Duration {
            self.start.elapsed()
        }
        fn report_missing(&self) {
            self.missing_reported.set(true);
        }
        fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
            self.outcome_for.borrow_mut().push(self_index);
            GateOutcome {
                self_index,
                peers: (0..2)
                    .map(|i| PeerOutcome {
                        index: Some(i),
                        name: format!("job-{i}.svc."),
                        addrs: vec![IpAddr::from([10, 0, 0, i as u8 + 1])],
                        reachable_via: Some(IpAddr::from([10, 0, 0, i as u8 + 1])),
                        elapsed: None,
                    })
                    .collect(),
            }
        }
        fn released(&self) -> bool {
            self.released_after
                .is_some_and(|r| self.start.elapsed() >= r)
        }
        fn report_unconfirmed(&self) {
            self.unconfirmed_reported.set(true);
        }
    }

    /// A ping config for pod 1 of two, with a 10s deadline.
    fn config() -> Config {
        let peers = (0..2)
            .map(|i| Peer {
                index: Some(i),
                target: Target::Name(format!("job-{i}.svc.")),
            })
            .collect();
        Config {
            identity: Identity {
                index: Some(1),
                ..Identity::default()
            },
            plan: Plan::Ping(PingPlan {
                peers,
                member: true,
                probe: ProbeSettings {
                    kind: ProbeKind::Dns,
                    tcp_port: 7470,
                    timeout: Duration::from_secs(1),
                },
                interval: Duration::from_secs(1),
                concurrency: 1,
            }),
            dns: None,
            deadline: Some(Duration::from_secs(10)),
            hostfile: None,
            command: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[tokio::test(start_paused = true)]
    async fn passed_without_a_handoff_exits_0_and_builds_no_outcome() {
        let mut fake = Fake::new(secs(3), None);
        let exit = drive(&mut fake, &config(), pending()).await;
        assert_eq!(exit, Exit::Passed);
        assert_eq!(fake.start.elapsed(), Duration::from_secs(3));
        assert!(fake.outcome_for.borrow().is_empty());
        assert!(!fake.missing_reported.get());
    }

    #[tokio::test(start_paused = true)]
    async fn passed_with_a_hostfile_writes_it_for_this_pods_rank() {
        let dir = TestDir::new();
        let path = dir.join("hosts");
        let mut config = config();
        config.hostfile = Some(HostfileSpec {
            path: path.clone(),
            format: HostfileFormat::Openmpi,
            slots: 2,
        });
        let mut fake = Fake::new(secs(1), None);
        assert_eq!(drive(&mut fake, &config, pending()).await, Exit::Passed);
        assert_eq!(*fake.outcome_for.borrow(), [Some(1)]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "job-0.svc slots=2\njob-1.svc slots=2\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_that_cannot_be_run_is_127() {
        let mut config = config();
        config.command = vec![OsString::from("/nonexistent/peergate-test-command")];
        let mut fake = Fake::new(secs(1), None);
        assert_eq!(
            drive(&mut fake, &config, pending()).await,
            Exit::Handoff(127)
        );
        assert_eq!(*fake.outcome_for.borrow(), [Some(1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_before_the_release_is_124_and_reports_the_missing() {
        let dir = TestDir::new();
        let mut config = config();
        config.hostfile = Some(HostfileSpec {
            path: dir.join("hosts"),
            format: HostfileFormat::Hosts,
            slots: 1,
        });
        let mut fake = Fake::new(None, None);
        assert_eq!(drive(&mut fake, &config, pending()).await, Exit::Timeout);
        assert_eq!(fake.start.elapsed(), Duration::from_secs(10));
        assert!(fake.missing_reported.get());
        assert!(!fake.unconfirmed_reported.get());
        assert!(
            fake.outcome_for.borrow().is_empty(),
            "no hand-off on a timeout"
        );
        assert!(dir.entries().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_after_the_release_passes_and_warns_of_the_unconfirmed() {
        // Released at 4s, still confirming with its links at the deadline.
        let mut fake = Fake::new(None, secs(4));
        assert_eq!(drive(&mut fake, &config(), pending()).await, Exit::Passed);
        assert!(fake.unconfirmed_reported.get());
        assert!(!fake.missing_reported.get());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_released_just_too_late_is_still_a_timeout() {
        let mut fake = Fake::new(None, secs(11));
        assert_eq!(drive(&mut fake, &config(), pending()).await, Exit::Timeout);
        assert!(fake.missing_reported.get());
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_waits_as_long_as_it_takes() {
        let mut config = config();
        config.deadline = None;
        let mut fake = Fake::new(Some(Duration::from_secs(86_400 * 60)), None);
        assert_eq!(drive(&mut fake, &config, pending()).await, Exit::Passed);
        assert_eq!(fake.start.elapsed(), Duration::from_secs(86_400 * 60));
    }

    #[tokio::test(start_paused = true)]
    async fn signals_map_to_143_and_130_and_hand_nothing_off() {
        for (stop, exit) in [
            (Stop::Term, Exit::Terminated),
            (Stop::Int, Exit::Interrupted),
        ] {
            let mut config = config();
            config.command = vec![OsString::from("/nonexistent/peergate-test-command")];
            let mut fake = Fake::new(secs(5), None);
            let signal = async move {
                sleep(Duration::from_secs(2)).await;
                stop
            };
            assert_eq!(drive(&mut fake, &config, signal).await, exit);
            assert_eq!(fake.start.elapsed(), Duration::from_secs(2));
            assert!(fake.outcome_for.borrow().is_empty());
            assert!(!fake.missing_reported.get());
        }
        assert_eq!(
            (Exit::Terminated.code(), Exit::Interrupted.code()),
            (143, 130)
        );
    }
}

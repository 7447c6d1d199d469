//! One run, start to finish: open the probe and the resolver, wait under the
//! deadline and the signals, report, hand off to the workload.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use tracing::{error, info, warn};

use crate::config::{BarrierPlan, Config, Plan};
use crate::dns::{Dns, Resolve};
use crate::duration::human;
use crate::gate::Gate;
use crate::handoff;
use crate::outcome::GateOutcome;
use crate::probe::{Probe, Prober};
use crate::rendezvous::Rendezvous;
use crate::report::{self, End};

pub use crate::exit::Exit;
use crate::exit::{Signals, Stop};
pub use crate::sidecar::exchange_commands as exchange;
pub use crate::sidecar::wait_for_sidecar;
pub use crate::sidecar::workload::{RunPlan, run as run_workload};

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
        return crate::sidecar::run(barrier, config, ports, signals).await;
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
                round: None,
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

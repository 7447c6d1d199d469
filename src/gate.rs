//! The ping-mode gate: one small state machine per peer, driven by one
//! scheduler loop.
//!
//! Every unreachable peer gets an attempt every `interval`: resolve its name
//! afresh (a replacement pod has a new address) and probe every address the
//! answer holds; the peer is reachable as soon as one address answers, and
//! is never probed again. At most `concurrency` attempts run at once, so a
//! thousand peers neither exhaust sockets nor flood the DNS server. Only the
//! attempts in flight exist as tasks; waiting peers are entries in a heap.
//!
//! The loop never decides when to give up: the caller runs [`Gate::run`]
//! under its own deadline and signal handling, drops the future, and reads
//! the trackers for the report.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cause::Cause;
use crate::dns::{self, Resolve};
use crate::duration::human;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::{Peer, Target};
use crate::probe::Probe;
use crate::report;
use crate::schedule::{Scheduler, Wake};

/// Failed lookups of this pod's own name, with DNS answering, after which
/// the `publishNotReadyAddresses` diagnosis is logged.
pub const DIAGNOSE_AFTER: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A peer the gate waits for.
    Peer,
    /// Only this pod's own name, looked up for the diagnosis when the pod is
    /// not among the peers (e.g. `--indices 0` on a worker).
    SelfCheck,
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutput {
    /// The addresses the name resolved to (`None` when it did not resolve,
    /// or the target is an address).
    pub resolved: Option<Vec<IpAddr>>,
    /// The answering address and its round-trip time, or why none answered.
    pub result: Result<(IpAddr, Duration), Cause>,
}

/// One peer's state.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub peer: Peer,
    role: Role,
    /// Attempts completed so far.
    pub attempts: u32,
    /// Why the last attempt failed; `Pending` before the first.
    pub last_cause: Cause,
    /// Addresses from the last successful resolution (kept when a later
    /// lookup fails, for the report).
    pub addrs: Vec<IpAddr>,
    /// The answering address and the time since the gate started.
    pub reached: Option<(IpAddr, Duration)>,
}

impl Tracker {
    fn new(peer: Peer, role: Role) -> Self {
        let addrs = match &peer.target {
            Target::Addr(a) => vec![*a],
            Target::Name(_) => Vec::new(),
        };
        Self {
            peer,
            role,
            attempts: 0,
            last_cause: Cause::Pending,
            addrs,
            reached: None,
        }
    }

    /// Applies one attempt's output; `elapsed` is the time since the gate
    /// started. Returns true when this made the peer reachable.
    pub fn record(&mut self, out: AttemptOutput, elapsed: Duration) -> bool {
        self.attempts += 1;
        if let Some(addrs) = out.resolved {
            self.addrs = addrs;
        }
        match out.result {
            Ok((addr, _rtt)) => {
                self.reached = Some((addr, elapsed));
                true
            }
            Err(cause) => {
                self.last_cause = cause;
                false
            }
        }
    }

    pub fn is_reached(&self) -> bool {
        self.reached.is_some()
    }
}

/// The gate over a resolver `R` and a probe `P`.
pub struct Gate<R, P> {
    resolver: Option<Arc<R>>,
    prober: Arc<P>,
    interval: Duration,
    concurrency: usize,
    start: Instant,
    trackers: Vec<Tracker>,
    /// The tracker that stands for this pod's own name, if any.
    self_tracker: Option<usize>,
    diagnosed: bool,
}

impl<R: Resolve, P: Probe> Gate<R, P> {
    /// `self_target` is this pod's own name; when it is not among `peers`, it
    /// is looked up on the side (resolution only) for the diagnosis.
    pub fn new(
        peers: Vec<Peer>,
        self_target: Option<Target>,
        resolver: Option<Arc<R>>,
        prober: Arc<P>,
        interval: Duration,
        concurrency: usize,
    ) -> Self {
        let mut trackers: Vec<Tracker> = peers
            .into_iter()
            .map(|p| Tracker::new(p, Role::Peer))
            .collect();
        let mut self_tracker = None;
        if let Some(target @ Target::Name(_)) = self_target {
            self_tracker = trackers.iter().position(|t| t.peer.target == target);
            if self_tracker.is_none() && resolver.is_some() {
                trackers.push(Tracker::new(
                    Peer {
                        index: None,
                        target,
                    },
                    Role::SelfCheck,
                ));
                self_tracker = Some(trackers.len() - 1);
            }
        }
        Self {
            resolver,
            prober,
            interval,
            concurrency: concurrency.max(1),
            start: Instant::now(),
            trackers,
            self_tracker,
            diagnosed: false,
        }
    }

    /// The peers' trackers, in peer order.
    pub fn peers(&self) -> impl Iterator<Item = &Tracker> {
        self.trackers.iter().filter(|t| t.role == Role::Peer)
    }

    pub fn reachable_count(&self) -> usize {
        self.peers().filter(|t| t.is_reached()).count()
    }

    pub fn peer_count(&self) -> usize {
        self.peers().count()
    }

    pub fn all_reached(&self) -> bool {
        self.peers().all(Tracker::is_reached)
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether the `publishNotReadyAddresses` warning was given.
    #[cfg(test)]
    pub fn diagnosed(&self) -> bool {
        self.diagnosed
    }

    /// Runs until every peer is reachable. Cancel-safe: dropping the future
    /// aborts the attempts in flight and leaves the trackers as they were.
    pub async fn run(&mut self) {
        let mut schedule = Scheduler::new(self.concurrency, self.start, self.interval);
        for i in 0..self.trackers.len() {
            schedule.schedule(i, self.start);
        }
        while !self.all_reached() {
            let now = Instant::now();
            while let Some(i) = schedule.next_due(now) {
                let tracker = &self.trackers[i];
                let target = tracker.peer.target.clone();
                let resolve_only = tracker.role == Role::SelfCheck;
                let resolver = self.resolver.clone();
                let prober = Arc::clone(&self.prober);
                schedule.start(i, now, attempt(target, resolver, prober, resolve_only));
            }
            match schedule.wait().await {
                Wake::Done {
                    key,
                    started,
                    output,
                } => {
                    if self.apply(key, output) {
                        schedule.schedule(key, started + self.interval);
                    }
                }
                Wake::Due => {}
                Wake::Tick => self.log_progress(),
            }
        }
    }

    /// Records an attempt; returns whether tracker `i` needs another one.
    fn apply(&mut self, i: usize, out: AttemptOutput) -> bool {
        let elapsed = self.start.elapsed();
        let tracker = &mut self.trackers[i];
        let reached = tracker.record(out, elapsed);
        if reached {
            if tracker.role == Role::Peer {
                let (addr, after) = tracker.reached.expect("just reached");
                info!(
                    peer = %tracker.peer,
                    addr = %addr,
                    after = %human(after),
                    attempts = tracker.attempts,
                    "peer reachable"
                );
            }
            return false;
        }
        debug!(
            peer = %tracker.peer,
            cause = %tracker.last_cause,
            attempt = tracker.attempts,
            "attempt {} for {} failed: {}",
            tracker.attempts,
            tracker.peer,
            tracker.last_cause
        );
        let is_self = self.self_tracker == Some(i);
        if is_self && !self.diagnosed {
            let tracker = &self.trackers[i];
            if tracker.attempts >= DIAGNOSE_AFTER && tracker.last_cause.is_dns_answer() {
                self.diagnosed = true;
                warn!(
                    name = %tracker.peer,
                    attempts = tracker.attempts,
                    cause = %tracker.last_cause,
                    "this pod's own name does not resolve although DNS answers: check that the \
                     headless Service sets `publishNotReadyAddresses: true` (needed while pods \
                     run init containers), that the pod template's `subdomain` equals the \
                     Service name, and that the Service selector matches the Job's pods"
                );
                if self.trackers[i].role == Role::SelfCheck {
                    return false;
                }
            }
        }
        true
    }

    /// The progress line: `2/3 reachable; waiting on a: NXDOMAIN`.
    pub fn progress_line(&self) -> String {
        let missing: Vec<(&Peer, &Cause)> = self
            .peers()
            .filter(|t| !t.is_reached())
            .map(|t| (&t.peer, &t.last_cause))
            .collect();
        report::progress_line(
            self.reachable_count(),
            self.peer_count(),
            "reachable",
            &missing,
        )
    }

    fn log_progress(&self) {
        info!(
            reachable = self.reachable_count(),
            peers = self.peer_count(),
            "{}",
            self.progress_line()
        );
    }

    /// What the gate knows now, in peer order.
    pub fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        GateOutcome {
            self_index,
            round: None,
            peers: self
                .peers()
                .map(|t| PeerOutcome {
                    index: t.peer.index,
                    name: t.peer.display_name(),
                    addrs: t.addrs.clone(),
                    reachable_via: t.reached.map(|(a, _)| a),
                    elapsed: t.reached.map(|(_, d)| d),
                })
                .collect(),
        }
    }
}

/// One attempt: resolve (unless the target is an address), then probe every
/// address concurrently; the first that answers wins.
pub async fn attempt<R: Resolve, P: Probe>(
    target: Target,
    resolver: Option<Arc<R>>,
    prober: Arc<P>,
    resolve_only: bool,
) -> AttemptOutput {
    let addrs = match dns::addresses(&target, resolver.as_deref()).await {
        Ok(addrs) => addrs,
        Err(cause) => {
            return AttemptOutput {
                resolved: None,
                result: Err(cause),
            };
        }
    };
    let resolved = matches!(target, Target::Name(_)).then(|| addrs.clone());
    if resolve_only {
        let result = addrs
            .first()
            .map(|a| (*a, Duration::ZERO))
            .ok_or(Cause::NoRecords);
        return AttemptOutput { result, resolved };
    }
    let result = probe_any(&addrs, prober).await;
    AttemptOutput { resolved, result }
}

/// Probes all `addrs` at once and returns the first that answers. When none
/// does, "no reply" wins over other errors: silence from one address says
/// more about a pod that is still starting than an error from another.
async fn probe_any<P: Probe>(
    addrs: &[IpAddr],
    prober: Arc<P>,
) -> Result<(IpAddr, Duration), Cause> {
    match addrs {
        [] => return Err(Cause::NoRecords),
        [only] => return prober.probe(*only).await.map(|rtt| (*only, rtt)),
        _ => {}
    }
    let mut probes = JoinSet::new();
    for &addr in addrs {
        let prober = Arc::clone(&prober);
        probes.spawn(async move { (addr, prober.probe(addr).await) });
    }
    let mut saw_no_reply = false;
    let mut first_error = None;
    while let Some(joined) = probes.join_next().await {
        let (addr, result) = joined.expect("probe tasks do not panic");
        match result {
            Ok(rtt) => return Ok((addr, rtt)),
            Err(Cause::NoReply) => saw_no_reply = true,
            Err(other) => {
                first_error.get_or_insert(other);
            }
        }
    }
    match first_error {
        Some(e) if !saw_no_reply => Err(e),
        _ => Err(Cause::NoReply),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Names appear in DNS at given times after the test starts, optionally
    /// with different addresses later (a replacement pod).
    struct FakeDns {
        start: Instant,
        /// name -> [(from, addrs)], ordered by `from`.
        records: HashMap<String, Vec<(Duration, Vec<IpAddr>)>>,
        queries: AtomicUsize,
    }

    impl FakeDns {
        fn new(records: &[(&str, Duration, &str)]) -> Self {
            let mut map: HashMap<String, Vec<(Duration, Vec<IpAddr>)>> = HashMap::new();
            for (name, from, addrs) in records {
                let addrs = addrs.split(',').map(|a| a.parse().unwrap()).collect();
                map.entry(name.to_string())
                    .or_default()
                    .push((*from, addrs));
            }
            Self {
                start: Instant::now(),
                records: map,
                queries: AtomicUsize::new(0),
            }
        }
    }

    impl Resolve for FakeDns {
        async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Cause> {
            self.queries.fetch_add(1, Ordering::Relaxed);
            let now = self.start.elapsed();
            self.records
                .get(name)
                .and_then(|versions| versions.iter().rev().find(|(from, _)| *from <= now))
                .map(|(_, addrs)| addrs.clone())
                .ok_or(Cause::NxDomain)
        }
    }

    /// Addresses answer from given times on; counts probes per address and
    /// the most probes ever in flight.
    struct FakeProbe {
        start: Instant,
        up_from: HashMap<IpAddr, Duration>,
        latency: Duration,
        probes: Mutex<HashMap<IpAddr, usize>>,
        inflight: AtomicUsize,
        max_inflight: AtomicUsize,
    }

    impl FakeProbe {
        fn new(up: &[(&str, Duration)], latency: Duration) -> Self {
            Self {
                start: Instant::now(),
                up_from: up.iter().map(|(a, d)| (a.parse().unwrap(), *d)).collect(),
                latency,
                probes: Mutex::new(HashMap::new()),
                inflight: AtomicUsize::new(0),
                max_inflight: AtomicUsize::new(0),
            }
        }

        fn count(&self, addr: &str) -> usize {
            let addr: IpAddr = addr.parse().unwrap();
            self.probes.lock().unwrap().get(&addr).copied().unwrap_or(0)
        }
    }

    impl Probe for FakeProbe {
        async fn probe(&self, addr: IpAddr) -> Result<Duration, Cause> {
            *self.probes.lock().unwrap().entry(addr).or_default() += 1;
            let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_inflight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.latency).await;
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            match self.up_from.get(&addr) {
                Some(from) if self.start.elapsed() >= *from => Ok(self.latency),
                _ => Err(Cause::NoReply),
            }
        }
    }

    fn named(i: u32) -> Peer {
        Peer {
            index: Some(i),
            target: Target::Name(format!("job-{i}.svc.")),
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_appears_at_t_is_reached_by_t_plus_interval() {
        for appear_ms in [0u64, 1, 999, 1000, 2300, 4999] {
            let appear = Duration::from_millis(appear_ms);
            let dns = Arc::new(FakeDns::new(&[
                ("job-0.svc.", Duration::ZERO, "10.0.0.1"),
                ("job-1.svc.", appear, "10.0.0.2"),
            ]));
            let probe = Arc::new(FakeProbe::new(
                &[("10.0.0.1", Duration::ZERO), ("10.0.0.2", Duration::ZERO)],
                Duration::ZERO,
            ));
            let mut gate = Gate::new(vec![named(0), named(1)], None, Some(dns), probe, SEC, 8);
            gate.run().await;
            let late = gate.peers().nth(1).unwrap();
            let (_, after) = late.reached.unwrap();
            assert!(
                after >= appear,
                "reached before it existed: {after:?} < {appear:?}"
            );
            assert!(
                after <= appear + SEC,
                "appeared at {appear:?}, reached at {after:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reachable_peers_are_not_probed_again() {
        let dns = Arc::new(FakeDns::new(&[
            ("job-0.svc.", Duration::ZERO, "10.0.0.1"),
            ("job-1.svc.", Duration::from_secs(5), "10.0.0.2"),
        ]));
        let probe = Arc::new(FakeProbe::new(
            &[("10.0.0.1", Duration::ZERO), ("10.0.0.2", Duration::ZERO)],
            Duration::from_millis(3),
        ));
        let mut gate = Gate::new(
            vec![named(0), named(1)],
            None,
            Some(Arc::clone(&dns)),
            Arc::clone(&probe),
            SEC,
            8,
        );
        gate.run().await;
        assert_eq!(probe.count("10.0.0.1"), 1);
        assert_eq!(probe.count("10.0.0.2"), 1);
        // One query per attempt: job-0 once, job-1 at 0,1,2,3,4,5 s.
        assert_eq!(dns.queries.load(Ordering::Relaxed), 7);
        assert_eq!(gate.peers().nth(1).unwrap().attempts, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replacement_pod_is_found_at_its_new_address() {
        // job-1 first resolves to an address that never answers (the old
        // pod), then to the replacement's address.
        let dns = Arc::new(FakeDns::new(&[
            ("job-1.svc.", Duration::ZERO, "10.0.0.9"),
            ("job-1.svc.", Duration::from_millis(2500), "10.0.0.2"),
        ]));
        let probe = Arc::new(FakeProbe::new(
            &[("10.0.0.2", Duration::ZERO)],
            Duration::ZERO,
        ));
        let mut gate = Gate::new(vec![named(1)], None, Some(dns), Arc::clone(&probe), SEC, 8);
        gate.run().await;
        let t = gate.peers().next().unwrap();
        assert_eq!(t.reached.unwrap().0, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert!(t.reached.unwrap().1 <= Duration::from_millis(3500));
        assert_eq!(probe.count("10.0.0.9"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn any_answering_address_makes_the_peer_reachable() {
        let dns = Arc::new(FakeDns::new(&[(
            "job-0.svc.",
            Duration::ZERO,
            "10.0.0.1,fd00::1",
        )]));
        let probe = Arc::new(FakeProbe::new(
            &[("fd00::1", Duration::ZERO)],
            Duration::ZERO,
        ));
        let mut gate = Gate::new(vec![named(0)], None, Some(dns), probe, SEC, 8);
        gate.run().await;
        let t = gate.peers().next().unwrap();
        assert_eq!(t.reached.unwrap().0, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(t.addrs.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_attempts_stay_within_the_concurrency_bound() {
        let peers: Vec<Peer> = (0..1000u32)
            .map(|i| Peer {
                index: Some(i),
                target: Target::Addr(IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8])),
            })
            .collect();
        let up: Vec<(String, Duration)> = (0..1000u32)
            .map(|i| (format!("10.1.{}.{}", i / 256, i % 256), Duration::ZERO))
            .collect();
        let up_refs: Vec<(&str, Duration)> = up.iter().map(|(a, d)| (a.as_str(), *d)).collect();
        let probe = Arc::new(FakeProbe::new(&up_refs, Duration::from_millis(10)));
        let mut gate: Gate<FakeDns, FakeProbe> =
            Gate::new(peers, None, None, Arc::clone(&probe), SEC, 64);
        gate.run().await;
        assert!(gate.all_reached());
        assert_eq!(probe.max_inflight.load(Ordering::SeqCst), 64);
        // 1000 peers, 64 at a time, 10 ms each: 16 rounds.
        assert!(
            gate.elapsed() <= Duration::from_millis(170),
            "{:?}",
            gate.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn progress_and_causes_while_waiting() {
        let dns = Arc::new(FakeDns::new(&[("job-0.svc.", Duration::ZERO, "10.0.0.1")]));
        let probe = Arc::new(FakeProbe::new(&[], Duration::ZERO));
        let mut gate = Gate::new(vec![named(0), named(1)], None, Some(dns), probe, SEC, 8);
        let _ = tokio::time::timeout(Duration::from_millis(2500), gate.run()).await;
        assert_eq!(
            gate.progress_line(),
            "0/2 reachable; waiting on job-0.svc: no reply, job-1.svc: NXDOMAIN"
        );
        let t0 = gate.peers().next().unwrap();
        assert_eq!(t0.attempts, 3);
        assert_eq!(t0.addrs, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test(start_paused = true)]
    async fn own_name_missing_from_dns_is_diagnosed() {
        let dns = Arc::new(FakeDns::new(&[("job-1.svc.", Duration::ZERO, "10.0.0.2")]));
        let probe = Arc::new(FakeProbe::new(
            &[("10.0.0.2", Duration::ZERO)],
            Duration::ZERO,
        ));
        // This pod is job-0, which never resolves; it waits only for job-1
        // (as with --indices), so its name is looked up on the side.
        let mut gate = Gate::new(
            vec![named(1)],
            Some(named(0).target),
            Some(Arc::clone(&dns)),
            probe,
            SEC,
            8,
        );
        let run = tokio::time::timeout(Duration::from_secs(3), gate.run()).await;
        assert!(run.is_ok(), "the side lookup must not hold the gate");
        assert!(
            !gate.diagnosed(),
            "3 s is fewer than {DIAGNOSE_AFTER} attempts"
        );

        let dns = Arc::new(FakeDns::new(&[]));
        let probe = Arc::new(FakeProbe::new(&[], Duration::ZERO));
        let mut gate = Gate::new(
            vec![named(0), named(1)],
            Some(named(0).target),
            Some(dns),
            probe,
            SEC,
            8,
        );
        let _ = tokio::time::timeout(Duration::from_millis(4500), gate.run()).await;
        assert!(gate.diagnosed(), "5 NXDOMAIN answers for our own name");
    }

    #[test]
    fn tracker_keeps_addresses_and_cause() {
        let mut t = Tracker::new(named(0), Role::Peer);
        assert_eq!(t.last_cause, Cause::Pending);
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!t.record(
            AttemptOutput {
                resolved: Some(vec![addr]),
                result: Err(Cause::NoReply)
            },
            SEC
        ));
        assert!(!t.record(
            AttemptOutput {
                resolved: None,
                result: Err(Cause::NxDomain)
            },
            SEC
        ));
        assert_eq!(
            t.addrs,
            vec![addr],
            "a failed lookup keeps the last addresses"
        );
        assert_eq!(t.last_cause, Cause::NxDomain);
        assert!(t.record(
            AttemptOutput {
                resolved: Some(vec![addr]),
                result: Ok((addr, Duration::ZERO))
            },
            3 * SEC
        ));
        assert_eq!(t.reached, Some((addr, 3 * SEC)));
        assert_eq!(t.attempts, 3);
    }
}

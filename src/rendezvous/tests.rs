//! The engine under paused time, with pods linked by in-memory pipes: what
//! happens when a peer stalls, dies, is replaced, or is reached only
//! through others. No packet leaves the process (names never resolve; each
//! engine's listener is bound on loopback and never dialed).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf, duplex};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};

use super::*;
use proto::{Reject, Sealed, State};
use session::Role;
use sim::ip;

/// Names never resolve: every dial fails without touching the network.
/// The names asked for are kept.
#[derive(Default)]
struct NoDns {
    asked: Mutex<Vec<String>>,
}

impl Resolve for NoDns {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Cause> {
        self.asked.lock().unwrap().push(name.to_string());
        Err(Cause::NxDomain)
    }
}

/// How many times `r` looked `name` up.
fn asked(r: &Rendezvous<NoDns>, name: &str) -> usize {
    let resolver = r.resolver.as_ref().expect("a resolver");
    let asked = resolver.asked.lock().unwrap();
    asked.iter().filter(|n| *n == name).count()
}

const SEC: Duration = Duration::from_secs(1);

fn pod(index: u32, world: u32, generation: u8) -> Rendezvous<NoDns> {
    pod_with_service(index, world, generation, None)
}

fn pod_with_service(
    index: u32,
    world: u32,
    generation: u8,
    service: Option<&str>,
) -> Rendezvous<NoDns> {
    let settings = Settings {
        listen: Some(IpAddr::from([127, 0, 0, 1])),
        port: 0,
        service: service.map(str::to_string),
        ..sim::settings(index, world, generation, false)
    };
    let listener = crate::net::listen(settings.listen, 0).expect("bind loopback");
    // A later generation started later, as a replacement pod does.
    Rendezvous::with_clock(
        settings,
        listener,
        Some(Arc::new(NoDns::default())),
        sim::instance(index, generation),
        1_000 * u64::from(generation),
    )
    .unwrap()
}

/// A pipe end whose reads can be held up, as if its process were frozen.
struct Pausable {
    inner: DuplexStream,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    paused: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
}

impl AsyncRead for Pausable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.gate.paused.load(Ordering::SeqCst) {
            *self.gate.waker.lock().unwrap() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pausable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn sock(r: &Rendezvous<NoDns>, port: u16) -> SocketAddr {
    SocketAddr::new(r.core.members.me().addrs[0], port)
}

/// Items queued in `r`'s channels: events, and frames in every outbox.
fn queued(r: &Rendezvous<NoDns>) -> usize {
    let outboxes: usize = r.outboxes.values().map(link::queued).sum();
    r.events_rx.len() + outboxes
}

/// Who dialed the link `r` holds to `index`.
fn dialer_of(r: &Rendezvous<NoDns>, index: u32) -> (u32, u16) {
    let id = r.core.links.of(index).expect("a link");
    r.core.links.get(id).unwrap().dialer
}

/// Links `a` (dialing) and `b` over a pipe; `a`'s reads go through `gate`.
async fn link(a: &mut Rendezvous<NoDns>, b: &mut Rendezvous<NoDns>, gate: Option<Arc<Gate>>) {
    link_through(a, b, gate, 1 << 20).await;
}

/// [`link`] over a pipe that buffers `bytes` each way.
async fn link_through(
    a: &mut Rendezvous<NoDns>,
    b: &mut Rendezvous<NoDns>,
    gate: Option<Arc<Gate>>,
    bytes: usize,
) {
    let (x, y) = duplex(bytes);
    let (la, lb) = (Arc::clone(&a.local), Arc::clone(&b.local));
    let (sa, sb) = (sock(a, 40_000), sock(b, 7470));
    let expect = b.core.settings.index;
    let x = Pausable {
        inner: x,
        gate: gate.unwrap_or_default(),
    };
    let (ra, rb) = tokio::join!(
        handshake_stream(
            x,
            Role::Dialer {
                expect: Some(expect)
            },
            &la,
            sa,
            sb
        ),
        handshake_stream(y, Role::Listener, &lb, sb, sa)
    );
    a.adopt(ra.expect("dialer handshake"), true);
    b.adopt(rb.expect("listener handshake"), false);
}

/// Runs `r`, which cannot finish, for half a second.
async fn for_a_while(r: &mut Rendezvous<NoDns>) {
    tokio::select! {
        _ = r.run() => unreachable!("this world never completes"),
        _ = sleep(SEC / 2) => {}
    }
}

/// Runs `a` and `b`, which cannot finish, for `d`.
async fn both_for(a: &mut Rendezvous<NoDns>, b: &mut Rendezvous<NoDns>, d: Duration) {
    tokio::select! {
        _ = a.run() => unreachable!("this world never completes"),
        _ = b.run() => unreachable!("this world never completes"),
        _ = sleep(d) => {}
    }
}

/// Runs `r` until it finishes; returns when, relative to `t0`.
async fn finish(r: &mut Rendezvous<NoDns>, t0: Instant) -> Duration {
    r.run().await;
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_stalled_peer_is_awaited_never_abandoned() {
    // The case protocol v1 got wrong: a stalls right after the handshake
    // (its reads are frozen for 10 s, far past any handshake deadline). b
    // must neither drop the link nor leave before a has read b's
    // confirmation; both must end released.
    let t0 = Instant::now();
    let (mut a, mut b) = (pod(0, 2, 1), pod(1, 2, 1));
    let gate = Arc::new(Gate::default());
    link(&mut a, &mut b, Some(Arc::clone(&gate))).await;
    gate.pause();
    let resume = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            sleep(10 * SEC).await;
            gate.resume();
        })
    };
    let (ta, tb) = tokio::join!(finish(&mut a, t0), finish(&mut b, t0));
    resume.await.unwrap();
    assert!(a.is_released() && b.is_released());
    assert!(
        tb >= 10 * SEC,
        "b left at {tb:?}, before the stalled peer read its confirmation"
    );
    assert!(ta >= 10 * SEC && ta < 11 * SEC, "a finished at {ta:?}");
    // Nobody was declared dead on the way (b, released and unconfirmed,
    // may have announced its release: `left`).
    assert_ne!(a.core.members.current(1).unwrap().state, State::Dead);
    assert_eq!(b.core.members.current(0).unwrap().state, State::Alive);
}

#[tokio::test(start_paused = true)]
async fn records_flood_so_a_chain_releases_everyone() {
    // 0 - 1 - 2 - 3: nobody links to more than two others, and no name
    // ever resolves, yet everyone learns of everyone.
    let t0 = Instant::now();
    let mut pods: Vec<_> = (0..4).map(|i| pod(i, 4, 1)).collect();
    for i in 0..3 {
        let (left, right) = pods.split_at_mut(i + 1);
        link(&mut left[i], &mut right[0], None).await;
    }
    let [p0, p1, p2, p3] = &mut pods[..] else {
        unreachable!()
    };
    let times = tokio::join!(
        finish(p0, t0),
        finish(p1, t0),
        finish(p2, t0),
        finish(p3, t0)
    );
    for (i, t) in [times.0, times.1, times.2, times.3].into_iter().enumerate() {
        assert!(t < SEC, "pod {i} took {t:?}");
    }
    for p in &pods {
        let outcome = p.outcome(Some(p.core.settings.index));
        let addrs: Vec<IpAddr> = outcome.peers.iter().map(|o| o.addrs[0]).collect();
        assert_eq!(addrs, (0..4).map(|i| ip(i, 1)).collect::<Vec<_>>());
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_peer_is_not_counted_and_its_replacement_is_met_at_its_new_address() {
    let t0 = Instant::now();
    let mut a = pod(0, 3, 1);
    let mut b = pod(1, 3, 1);
    link(&mut a, &mut b, None).await;
    // b runs for a while, then its process dies: its end of the link goes
    // away without a goodbye.
    let (kill, killed) = oneshot::channel::<()>();
    let b_task = async move {
        tokio::select! {
            _ = b.run() => panic!("b cannot finish: pod 2 never came"),
            _ = killed => {}
        }
        drop(b);
    };
    let replace = async {
        sleep(SEC).await;
        kill.send(()).unwrap();
        sleep(SEC).await;
        // The replacement: same index, new instance, new address.
        pod(1, 3, 2)
    };
    let (_, mut b2, ()) = tokio::join!(
        async {
            tokio::select! {
                _ = a.run() => panic!("a released without pod 2"),
                _ = sleep(3 * SEC) => {}
            }
        },
        replace,
        b_task
    );
    assert_eq!(
        a.core.members.current(1).unwrap().state,
        State::Dead,
        "the link's end declared b dead"
    );
    assert_eq!(a.met_count(), 1);
    link(&mut b2, &mut a, None).await;
    let mut c = pod(2, 3, 1);
    link(&mut c, &mut a, None).await;
    let (ta, tb, tc) = tokio::join!(finish(&mut a, t0), finish(&mut b2, t0), finish(&mut c, t0));
    assert!(ta < 4 * SEC && tb < 4 * SEC && tc < 4 * SEC);
    for p in [&a, &b2, &c] {
        let outcome = p.outcome(Some(p.core.settings.index));
        assert_eq!(
            outcome.peers[1].addrs,
            [ip(1, 2)],
            "pod {} lists the live incarnation",
            p.core.settings.index
        );
    }
}

#[tokio::test(start_paused = true)]
async fn two_links_between_one_pair_leave_one_and_nobody_is_declared_dead() {
    let t0 = Instant::now();
    let (mut a, mut b, mut c) = (pod(0, 3, 1), pod(1, 3, 1), pod(2, 3, 1));
    // a and b dial each other at the same time.
    link(&mut a, &mut b, None).await;
    link(&mut b, &mut a, None).await;
    assert_eq!(a.core.links.linked_count(), 1);
    assert_eq!(b.core.links.linked_count(), 1);
    let kept_a = dialer_of(&a, 1);
    let kept_b = dialer_of(&b, 0);
    assert_eq!(kept_a, kept_b, "both keep the same link");
    assert_eq!(kept_a.0, 0, "the one pod 0 dialed");
    link(&mut c, &mut b, None).await;
    tokio::join!(finish(&mut a, t0), finish(&mut b, t0), finish(&mut c, t0));
    for p in [&a, &b, &c] {
        for i in 0..3 {
            assert_eq!(p.core.members.current(i).unwrap().state, State::Alive);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_newer_incarnation_supersedes_a_live_one_and_the_old_is_turned_away() {
    let (mut a, mut old) = (pod(0, 3, 1), pod(1, 3, 1));
    link(&mut a, &mut old, None).await;
    let mut new = pod(1, 3, 2);
    link(&mut new, &mut a, None).await;
    assert_eq!(a.core.members.current(1).unwrap().instance, new.instance());
    assert_eq!(
        a.core.links.linked_count(),
        1,
        "the old incarnation's link was closed"
    );
    // The old one dials again: stale.
    let (x, y) = duplex(1 << 16);
    let (lo, la) = (Arc::clone(&old.local), Arc::clone(&a.local));
    let (so, sa) = (sock(&old, 40_000), sock(&a, 7470));
    let (ro, ra) = tokio::join!(
        handshake_stream(x, Role::Dialer { expect: Some(0) }, &lo, so, sa),
        handshake_stream(y, Role::Listener, &la, sa, so)
    );
    a.adopt(ra.unwrap(), false);
    assert_eq!(a.core.links.linked_count(), 1);
    let (_, mut reader, _) = {
        let l = ro.unwrap();
        (l.peer, l.reader, l.writer)
    };
    assert!(matches!(
        reader.next().await.unwrap(),
        Some(Sealed::Reject(Reject::StaleIncarnation, _))
    ));
}

#[tokio::test(start_paused = true)]
async fn progress_names_missing_peers_and_their_causes() {
    let mut a = pod(0, 3, 1);
    tokio::select! {
        _ = a.run() => unreachable!(),
        _ = sleep(2500 * Duration::from_millis(1)) => {}
    }
    assert_eq!(
        a.core.progress_line(),
        "1/3 met; waiting on job-1.svc: NXDOMAIN, job-2.svc: NXDOMAIN"
    );
    assert!(!a.is_released());
    // Mesh: every peer is dialed once per interval.
    assert_eq!(a.core.dialing.peers[1].attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_link_the_peer_never_finished_is_no_death() {
    // The dialer finished its handshake; the listener gave up on it (its
    // deadline passed under load) and dropped the connection before
    // sending a single frame. The dialer must not declare it dead.
    let (mut a, b) = (pod(0, 3, 1), pod(1, 3, 1));
    let (x, y) = duplex(1 << 20);
    let (la, lb) = (Arc::clone(&a.local), Arc::clone(&b.local));
    let (sa, sb) = (sock(&a, 40_000), sock(&b, 7470));
    let (ra, rb) = tokio::join!(
        handshake_stream(x, Role::Dialer { expect: Some(1) }, &la, sa, sb),
        handshake_stream(y, Role::Listener, &lb, sb, sa)
    );
    a.adopt(ra.unwrap(), true);
    drop(rb);
    tokio::select! {
        _ = a.run() => unreachable!("pod 2 never comes"),
        _ = sleep(SEC) => {}
    }
    assert!(a.core.links.is_empty(), "the dead link is gone");
    assert_eq!(
        a.core.members.current(1).unwrap().state,
        State::Alive,
        "no obituary for a peer that never finished its handshake"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tree_pod_sheds_the_fallback_links_it_dialed_once_its_uplinks_exist() {
    // World 20 (a tree): pod 9's parent is 2, its grandparent 0. It first
    // got in through pod 5 (a fallback), then reached its ancestors.
    let mut p9 = pod(9, 20, 1);
    let mut p5 = pod(5, 20, 1);
    let mut p2 = pod(2, 20, 1);
    let mut p0 = pod(0, 20, 1);
    link(&mut p9, &mut p5, None).await;
    link(&mut p9, &mut p2, None).await;
    link(&mut p9, &mut p0, None).await;
    tokio::join!(
        for_a_while(&mut p9),
        for_a_while(&mut p5),
        for_a_while(&mut p2),
        for_a_while(&mut p0)
    );
    let mut kept: Vec<u32> = p9.core.links.linked().collect();
    kept.sort_unstable();
    assert_eq!(kept, [0, 2], "the fallback link to pod 5 was shed");
    assert!(!p5.core.links.has(9));
    assert_eq!(
        p5.core.members.current(9).unwrap().state,
        State::Alive,
        "a shed link is a goodbye, not a death"
    );
}

#[tokio::test(start_paused = true)]
async fn each_group_sweeps_the_service_once_through_its_lowest_pod() {
    // World 20 (a tree), top late: 2 and 5 linked; 17 and 18 linked to
    // each other only, an island nobody's names lead to (their ancestors'
    // names and theirs are negatively cached). Each group's lowest pod
    // looks the Service up once it has led for an interval; the others
    // never do, and nobody waits to be alone for that.
    const SVC: &str = "svc.";
    let mut pods: Vec<_> = [2, 5, 17, 18]
        .into_iter()
        .map(|i| pod_with_service(i, 20, 1, Some(SVC)))
        .collect();
    let [p2, p5, p17, p18] = &mut pods[..] else {
        unreachable!()
    };
    link(p5, p2, None).await;
    link(p18, p17, None).await;
    tokio::join!(
        for_a_while(p2),
        for_a_while(p5),
        for_a_while(p17),
        for_a_while(p18)
    );
    // 0.5 s: nobody has led for an interval yet.
    assert_eq!(asked(p2, SVC) + asked(p17, SVC), 0);
    for _ in 0..2 {
        tokio::join!(
            for_a_while(p2),
            for_a_while(p5),
            for_a_while(p17),
            for_a_while(p18)
        );
    }
    // 1.5 s: one sweep each, the next due at 2 s.
    assert_eq!(asked(p2, SVC), 1, "the job's leader sweeps");
    assert_eq!(asked(p17, SVC), 1, "the island's leader sweeps");
    assert_eq!(asked(p5, SVC) + asked(p18, SVC), 0, "the others do not");
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_for_an_hour_costs_a_few_frames_then_gets_the_latest() {
    // b stops reading (its process frozen; the pipe holds 2 KiB) while
    // a's record changes every 5 s for an hour. a's queues stay a few
    // frames; once b reads again it gets a's latest record.
    let (mut a, mut b) = (pod(0, 3, 1), pod(1, 3, 1));
    let gate = Arc::new(Gate::default());
    link_through(&mut b, &mut a, Some(Arc::clone(&gate)), 2048).await;
    both_for(&mut a, &mut b, SEC).await;
    gate.pause();
    let mut most = 0;
    for round in 1..=720u32 {
        let addr = IpAddr::from([10, 9, (round >> 8) as u8, round as u8]);
        a.core.members.set_own_addrs(vec![addr], Duration::ZERO);
        both_for(&mut a, &mut b, 5 * SEC).await;
        most = most.max(queued(&a));
    }
    assert!(
        most <= core::RECORD_FRAMES + core::CONTROL_FRAMES + link::EVENTS,
        "{most} items queued in a"
    );
    gate.resume();
    both_for(&mut a, &mut b, 3 * SEC).await;
    let seen = b.core.members.current(0).unwrap();
    assert_eq!(
        seen.addrs,
        [IpAddr::from([10, 9, 2, 208])],
        "720 = 2 * 256 + 208"
    );
    assert_eq!(seen.state, State::Alive);
    assert_eq!(a.core.links.linked_count(), 1, "the link lived through it");
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_frames_waits_in_bounded_queues_while_the_engine_is_busy() {
    // a's engine does not run while b sends a frame per change, 1000
    // times: a's link task stops at a full events channel, the pipe
    // fills, and b's records wait in its change log. Nothing deadlocks:
    // once a runs again both sides drain and a has b's latest record.
    let (mut a, mut b) = (pod(0, 3, 1), pod(1, 3, 1));
    link_through(&mut b, &mut a, None, 4096).await;
    both_for(&mut a, &mut b, SEC).await;
    for round in 1..=1000u32 {
        let addr = IpAddr::from([10, 8, (round >> 8) as u8, round as u8]);
        b.core.members.set_own_addrs(vec![addr], Duration::ZERO);
        for_a_while(&mut b).await;
    }
    assert_eq!(
        a.events_rx.len(),
        link::EVENTS,
        "the events channel is full"
    );
    assert!(queued(&b) <= core::RECORD_FRAMES + core::CONTROL_FRAMES + link::EVENTS);
    both_for(&mut a, &mut b, 3 * SEC).await;
    let seen = a.core.members.current(1).unwrap();
    assert_eq!(
        seen.addrs,
        [IpAddr::from([10, 8, 3, 232])],
        "1000 = 3 * 256 + 232"
    );
    assert!(queued(&a) < link::EVENTS, "a drained its events");
}

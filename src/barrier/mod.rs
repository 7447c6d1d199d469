//! Barrier mode: a rendezvous over TCP that releases on arrival.
//!
//! Every instance listens on `--port` and keeps dialing the peers it has
//! not met, resolving names exactly as the ping gate does. On a connection,
//! whichever side opened it, both send a HELLO (protocol version, token,
//! job, index, own addresses), check the other's, send an ACK ("I recorded
//! you") and read the other's ACK. A peer is *met* once its HELLO and its
//! ACK arrived: then we know it and it knows us. One connection per pair is
//! enough, so an early pod never needs to resolve a late pod's name (the
//! late pod's arrival reaches it directly, whatever a negative DNS cache
//! still says).
//!
//! An instance leaves only when it has met every peer. By then every peer
//! has our HELLO and our ACK too: both were written on the connection before
//! we read the peer's ACK, and TCP delivers them even after we exit (the
//! peer sends nothing after its ACK, so our close is a clean FIN, never a
//! reset). Nobody is stranded: a peer we met no longer needs us, and a peer
//! we have not met keeps us here.
//!
//! Hostile input is contained: frames are size-limited and read under a
//! deadline, at most [`MAX_CONNECTIONS`] incoming connections are served at
//! once, and a rejected HELLO (wrong token or job, unknown index, garbage)
//! is logged and never counted.

pub mod proto;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout};
use tracing::{debug, info, warn};

use crate::cause::Cause;
use crate::config::BarrierSettings;
use crate::dns::Resolve;
use crate::duration::human;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::{Peer, Target};
use crate::report;
use proto::{Decoded, Frame, Hello, ProtoError};

/// Incoming connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a peer has to send each frame.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(2);

/// One peer as the barrier sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub peer: Peer,
    index: u32,
    hello: Option<Hello>,
    /// The address the HELLO came from.
    remote: Option<IpAddr>,
    acked: bool,
    pub last_cause: Cause,
    pub attempts: u32,
    /// Addresses the last resolution returned.
    resolved: Vec<IpAddr>,
    /// Addresses other peers told us (their ACK directories): a way to reach
    /// this peer while its name does not resolve here yet.
    learned: Vec<IpAddr>,
    /// Time since start when the peer was met.
    pub met_at: Option<Duration>,
}

impl Member {
    pub fn is_met(&self) -> bool {
        self.met_at.is_some()
    }

    /// Best addresses for the hand-off: what the peer announced, else what
    /// we saw, else what DNS said.
    fn addrs(&self) -> Vec<IpAddr> {
        match (&self.hello, self.remote) {
            (Some(h), _) if !h.addrs.is_empty() => h.addrs.clone(),
            (_, Some(r)) => vec![r],
            _ if !self.resolved.is_empty() => self.resolved.clone(),
            _ => self.learned.clone(),
        }
    }
}

#[derive(Debug, Error)]
enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no frame within {}", human(FRAME_DEADLINE))]
    Timeout,
    #[error("connection closed mid-handshake")]
    Closed,
    #[error("{0}")]
    Protocol(#[from] ProtoError),
    #[error("{0}")]
    Rejected(String),
}

impl HandshakeError {
    fn cause(&self) -> Cause {
        match self {
            HandshakeError::Io(e) => crate::cause::io_cause(e),
            HandshakeError::Timeout => Cause::NoReply,
            other => Cause::NotMet(format!("handshake failed: {other}")),
        }
    }
}

/// State shared by the listener, the dialer and the connection tasks.
struct Shared {
    settings: BarrierSettings,
    self_index: u32,
    self_addrs: Vec<IpAddr>,
    start: Instant,
    members: Mutex<Vec<Member>>,
    by_index: BTreeMap<u32, usize>,
    changed: Notify,
    /// Unmet peers for which a new address was learned: dial them now.
    wake: Mutex<Vec<usize>>,
}

impl Shared {
    fn hello_bytes(&self, local: Option<IpAddr>) -> Vec<u8> {
        let addrs = if self.self_addrs.is_empty() {
            local.into_iter().collect()
        } else {
            self.self_addrs.clone()
        };
        proto::encode(&Frame::Hello(Hello {
            index: self.self_index,
            token: self.settings.token.clone(),
            job: self.settings.job.clone(),
            addrs,
        }))
        .expect("settings were validated against the protocol limits")
    }

    fn check(&self, hello: &Hello) -> Result<usize, HandshakeError> {
        if hello.token != self.settings.token {
            return Err(HandshakeError::Rejected("token mismatch".into()));
        }
        if hello.job != self.settings.job {
            return Err(HandshakeError::Rejected(format!(
                "job mismatch: `{}` is not `{}`",
                hello.job, self.settings.job
            )));
        }
        if hello.index == self.self_index {
            return Err(HandshakeError::Rejected(format!(
                "index {} is this instance's own",
                hello.index
            )));
        }
        self.by_index
            .get(&hello.index)
            .copied()
            .ok_or_else(|| HandshakeError::Rejected(format!("index {} is not a peer", hello.index)))
    }

    fn with_member<T>(&self, slot: usize, f: impl FnOnce(&mut Member) -> T) -> T {
        let mut members = self.members.lock().expect("no panics while locked");
        f(&mut members[slot])
    }

    fn record_hello(&self, slot: usize, hello: Hello, remote: IpAddr) {
        self.with_member(slot, |m| {
            m.hello = Some(hello);
            m.remote = Some(remote);
        });
    }

    /// The peers we have heard from, one address each, for the ACK to
    /// `receiver`: everyone but it and us.
    fn directory(&self, receiver: usize) -> Vec<(u32, IpAddr)> {
        let members = self.members.lock().expect("no panics while locked");
        members
            .iter()
            .enumerate()
            .filter(|(slot, m)| *slot != receiver && m.index != self.self_index)
            .filter_map(|(_, m)| {
                let announced = m.hello.as_ref().and_then(|h| h.addrs.first().copied());
                announced.or(m.remote).map(|addr| (m.index, addr))
            })
            .collect()
    }

    /// Takes in a peer's directory; unmet peers with a new address are
    /// queued to be dialed at once.
    fn record_directory(&self, known: Vec<(u32, IpAddr)>) {
        let mut woken = Vec::new();
        {
            let mut members = self.members.lock().expect("no panics while locked");
            for (index, addr) in known {
                let Some(&slot) = self.by_index.get(&index) else {
                    continue;
                };
                let m = &mut members[slot];
                if m.is_met() || m.learned.contains(&addr) || m.learned.len() >= proto::MAX_ADDRS {
                    continue;
                }
                m.learned.push(addr);
                woken.push(slot);
            }
        }
        if !woken.is_empty() {
            self.wake
                .lock()
                .expect("no panics while locked")
                .extend(woken);
            self.changed.notify_one();
        }
    }

    fn record_ack(&self, slot: usize, remote: IpAddr, direction: &str) {
        let newly_met = self.with_member(slot, |m| {
            m.acked = true;
            if m.met_at.is_some() || m.hello.is_none() {
                return None;
            }
            let after = self.start.elapsed();
            m.met_at = Some(after);
            Some((m.peer.clone(), after))
        });
        if let Some((peer, after)) = newly_met {
            info!(peer = %peer, addr = %remote, after = %human(after), direction, "peer met");
            self.changed.notify_one();
        }
    }
}

/// Reads one frame, keeping any bytes that follow it in `buf`.
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Frame, HandshakeError> {
    let deadline = Instant::now() + FRAME_DEADLINE;
    loop {
        match proto::decode(buf)? {
            Decoded::Frame(frame, used) => {
                buf.drain(..used);
                return Ok(frame);
            }
            Decoded::NeedMore(_) => {
                let mut chunk = [0u8; 512];
                let n = match timeout(deadline - Instant::now(), stream.read(&mut chunk)).await {
                    Err(_) => return Err(HandshakeError::Timeout),
                    Ok(r) => r?,
                };
                if n == 0 {
                    return Err(HandshakeError::Closed);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The exchange, identical on both ends of a connection.
async fn handshake(
    shared: &Shared,
    mut stream: TcpStream,
    direction: &'static str,
) -> Result<usize, HandshakeError> {
    let remote = stream.peer_addr()?.ip().to_canonical();
    let local = stream.local_addr().ok().map(|a| a.ip().to_canonical());
    stream.set_nodelay(true)?;
    stream.write_all(&shared.hello_bytes(local)).await?;
    let mut buf = Vec::new();
    let hello = match read_frame(&mut stream, &mut buf).await? {
        Frame::Hello(h) => h,
        Frame::Ack { .. } => return Err(HandshakeError::Rejected("ACK before HELLO".into())),
    };
    let slot = shared.check(&hello)?;
    let index = hello.index;
    shared.record_hello(slot, hello, remote);
    let ack = proto::encode(&Frame::Ack {
        index: shared.self_index,
        known: shared.directory(slot),
    })?;
    stream.write_all(&ack).await?;
    match read_frame(&mut stream, &mut buf).await? {
        Frame::Ack { index: i, known } if i == index => shared.record_directory(known),
        _ => {
            return Err(HandshakeError::Rejected(
                "expected an ACK from the same index".into(),
            ));
        }
    }
    shared.record_ack(slot, remote, direction);
    // Our ACK went out before we read the peer's, and the peer sends
    // nothing after its ACK: closing now is a clean FIN, and the kernel
    // delivers the ACK even after this process has exited.
    let _ = stream.shutdown().await;
    Ok(slot)
}

/// Binds the listener on all addresses: `[::]` (dual-stack) when the host
/// has IPv6, else `0.0.0.0`.
pub fn listen(port: u16) -> io::Result<TcpListener> {
    let bind = |addr: SocketAddr| -> io::Result<TcpListener> {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(128)?;
        TcpListener::from_std(socket.into())
    };
    bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
        .or_else(|_| bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)))
}

/// The barrier over a resolver `R`.
pub struct Barrier<R> {
    shared: Arc<Shared>,
    resolver: Option<Arc<R>>,
    listener: Option<TcpListener>,
    interval: Duration,
    connect_timeout: Duration,
    concurrency: usize,
}

impl<R: Resolve> Barrier<R> {
    /// `peers` must all carry an index; this instance's own index is met
    /// from the start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: BarrierSettings,
        self_index: u32,
        self_addrs: Vec<IpAddr>,
        peers: Vec<Peer>,
        listener: TcpListener,
        resolver: Option<Arc<R>>,
        interval: Duration,
        connect_timeout: Duration,
        concurrency: usize,
    ) -> Self {
        let start = Instant::now();
        let mut by_index = BTreeMap::new();
        let members: Vec<Member> = peers
            .into_iter()
            .enumerate()
            .map(|(slot, peer)| {
                let index = peer.index.unwrap_or(slot as u32);
                by_index.insert(index, slot);
                let is_self = index == self_index;
                Member {
                    peer,
                    index,
                    hello: None,
                    remote: None,
                    acked: is_self,
                    last_cause: Cause::Pending,
                    attempts: 0,
                    resolved: Vec::new(),
                    learned: Vec::new(),
                    met_at: is_self.then_some(Duration::ZERO),
                }
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                settings,
                self_index,
                self_addrs,
                start,
                members: Mutex::new(members),
                by_index,
                changed: Notify::new(),
                wake: Mutex::new(Vec::new()),
            }),
            resolver,
            listener: Some(listener),
            interval,
            connect_timeout,
            concurrency: concurrency.max(1),
        }
    }

    /// A snapshot of every peer.
    pub fn members(&self) -> Vec<Member> {
        self.inspect(<[Member]>::to_vec)
    }

    /// Looks at the peers under the lock, without copying them (the run
    /// loop asks on every turn).
    fn inspect<T>(&self, f: impl FnOnce(&[Member]) -> T) -> T {
        f(&self.shared.members.lock().expect("no panics while locked"))
    }

    pub fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }

    pub fn met_count(&self) -> usize {
        self.inspect(|ms| ms.iter().filter(|m| m.is_met()).count())
    }

    pub fn peer_count(&self) -> usize {
        self.inspect(<[Member]>::len)
    }

    fn all_met(&self) -> bool {
        self.inspect(|ms| ms.iter().all(Member::is_met))
    }

    /// `2/3 met; waiting on example-job-2...: NXDOMAIN`.
    pub fn progress_line(&self) -> String {
        let members = self.members();
        let missing: Vec<(&Peer, &Cause)> = members
            .iter()
            .filter(|m| !m.is_met())
            .map(|m| (&m.peer, &m.last_cause))
            .collect();
        report::progress_line(
            members.len() - missing.len(),
            members.len(),
            "met",
            &missing,
        )
    }

    /// Runs until every peer is met, then lingers for the connections still
    /// finishing their handshake. Cancel-safe like the gate.
    pub async fn run(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut serving: JoinSet<()> = JoinSet::new();
        let mut dialing: JoinSet<(usize, Instant, Result<(), Cause>)> = JoinSet::new();
        let start = self.shared.start;
        let mut due: BinaryHeap<Reverse<(Instant, usize)>> = self
            .members()
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.is_met())
            .map(|(slot, _)| Reverse((start, slot)))
            .collect();
        let mut progress = interval_at(start + self.interval, self.interval);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);

        // Slots with a dial in flight: a slot woken by a directory while
        // being dialed is not dialed twice.
        let mut in_flight: HashSet<usize> = HashSet::new();
        while !self.all_met() {
            let now = Instant::now();
            while dialing.len() < self.concurrency {
                match due.peek() {
                    Some(Reverse((at, _))) if *at <= now => {
                        let Reverse((_, slot)) = due.pop().expect("peeked");
                        if !self.inspect(|ms| ms[slot].is_met()) && in_flight.insert(slot) {
                            self.spawn_dial(&mut dialing, slot, now);
                        }
                    }
                    _ => break,
                }
            }
            let next_due = (dialing.len() < self.concurrency)
                .then(|| due.peek().map(|Reverse((at, _))| *at))
                .flatten();
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => self.serve(&mut serving, &permits, stream, remote),
                    Err(e) => debug!("accept failed: {e}"),
                },
                joined = dialing.join_next(), if !dialing.is_empty() => {
                    let (slot, started, result) = joined
                        .expect("guarded by is_empty")
                        .expect("dial tasks do not panic");
                    in_flight.remove(&slot);
                    let met = self.shared.with_member(slot, |m| {
                        m.attempts += 1;
                        if let Err(cause) = result {
                            m.last_cause = cause;
                        }
                        m.is_met()
                    });
                    if !met {
                        due.push(Reverse((started + self.interval, slot)));
                    }
                }
                Some(_) = serving.join_next(), if !serving.is_empty() => {}
                _ = self.shared.changed.notified() => {
                    let woken = std::mem::take(&mut *self.shared.wake.lock().expect("no panics while locked"));
                    let now = Instant::now();
                    for slot in woken {
                        if !in_flight.contains(&slot) {
                            due.push(Reverse((now, slot)));
                        }
                    }
                }
                _ = sleep_until(next_due.unwrap_or(now)), if next_due.is_some() => {}
                _ = progress.tick() => info!(
                    met = self.met_count(),
                    peers = self.peer_count(),
                    "{}",
                    self.progress_line()
                ),
            }
        }
        // Every peer has our HELLO and our ACK (both were written before we
        // read its ACK), so what is still in flight is a duplicate connection
        // or a stranger: neither may hold up the release.
        drop(listener);
        dialing.abort_all();
        serving.abort_all();
    }

    fn serve(
        &self,
        serving: &mut JoinSet<()>,
        permits: &Arc<Semaphore>,
        stream: TcpStream,
        remote: SocketAddr,
    ) {
        let Ok(permit) = Arc::clone(permits).try_acquire_owned() else {
            warn!(remote = %remote, "barrier: too many open connections; closing this one");
            return;
        };
        let shared = Arc::clone(&self.shared);
        serving.spawn(async move {
            let _permit = permit;
            if let Err(e) = handshake(&shared, stream, "incoming").await {
                warn!(remote = %remote, reason = %e, "barrier: rejected incoming connection");
            }
        });
    }

    fn spawn_dial(
        &self,
        dialing: &mut JoinSet<(usize, Instant, Result<(), Cause>)>,
        slot: usize,
        now: Instant,
    ) {
        let shared = Arc::clone(&self.shared);
        let resolver = self.resolver.clone();
        let connect_timeout = self.connect_timeout;
        let port = shared.settings.port;
        let target = shared.with_member(slot, |m| m.peer.target.clone());
        dialing.spawn(async move {
            let result = dial(&shared, slot, target, resolver, port, connect_timeout).await;
            (slot, now, result)
        });
    }

    /// What the barrier knows now, in peer order.
    pub fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        GateOutcome {
            self_index,
            peers: self
                .members()
                .iter()
                .map(|m| {
                    let addrs = if m.index == self.shared.self_index {
                        self.shared.self_addrs.clone()
                    } else {
                        m.addrs()
                    };
                    PeerOutcome {
                        index: m.peer.index,
                        name: m.peer.display_name(),
                        reachable_via: m.remote.or_else(|| addrs.first().copied()),
                        addrs,
                        elapsed: m.met_at,
                    }
                })
                .collect(),
        }
    }
}

/// One dial attempt: resolve, connect to the first address that accepts,
/// run the handshake.
async fn dial<R: Resolve>(
    shared: &Shared,
    slot: usize,
    target: Target,
    resolver: Option<Arc<R>>,
    port: u16,
    connect_timeout: Duration,
) -> Result<(), Cause> {
    let resolved = match target {
        Target::Addr(a) => Ok(vec![a]),
        Target::Name(name) => match resolver {
            Some(r) => r.resolve(&name).await,
            None => Err(Cause::Dns("no resolver configured".into())),
        },
    };
    // Addresses other peers told us about count as much as DNS: they reach
    // a peer whose name a negative cache still hides from us.
    let learned = shared.with_member(slot, |m| {
        if let Ok(addrs) = &resolved {
            m.resolved = addrs.clone();
        }
        m.learned.clone()
    });
    let mut addrs = match resolved {
        Ok(addrs) => addrs,
        Err(cause) if learned.is_empty() => return Err(cause),
        Err(_) => Vec::new(),
    };
    for addr in learned {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    let mut cause = Cause::NoReply;
    for addr in addrs {
        let stream = match timeout(
            connect_timeout,
            TcpStream::connect(SocketAddr::new(addr, port)),
        )
        .await
        {
            Err(_) => {
                cause = Cause::NoReply;
                continue;
            }
            Ok(Err(e)) => {
                cause = crate::cause::io_cause(&e);
                continue;
            }
            Ok(Ok(s)) => s,
        };
        return match handshake(shared, stream, "outgoing").await {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(e, HandshakeError::Rejected(_) | HandshakeError::Protocol(_)) {
                    warn!(peer = %addr, reason = %e, "barrier: peer's hello rejected");
                }
                Err(e.cause())
            }
        };
    }
    Err(cause)
}

//! Barrier mode: a rendezvous over TCP that releases on arrival, speaking
//! protocol version 2 (docs/protocol.md).
//!
//! Every pod listens on the barrier port and links to a few peers chosen by
//! [`topology`]: all of them in a small Job, its nearest ancestors in a tree
//! beyond. A link starts with an authenticated handshake ([`session`]);
//! then both ends flood *records* over it: who has arrived, which
//! incarnation, at which addresses ([`members`]). A pod releases as soon as
//! its table holds every index, whoever told it, so a pod never has to
//! resolve a late peer's name: the late peer's arrival reaches it through
//! any link.
//!
//! After its release a pod tells each linked peer (COMPLETE) and, unless it
//! serves (`--serve`), leaves once every linked peer has told it the same:
//! nobody who still needs it loses it. A link that dies without a goodbye
//! declares that incarnation dead, so the others wait for its replacement
//! instead of counting a pod that is gone. No deadline applies to an
//! authenticated link: a stalled peer is waited for, never abandoned.
//!
//! The engine is one task that owns all state; links, dials and handshakes
//! are tasks that report to it.

pub mod admission;
pub mod auth;
pub mod link;
pub mod members;
pub mod proto;
pub mod serve;
pub mod session;
pub mod topology;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, info, warn};

use crate::cause::Cause;
use crate::dns::{self, Resolve};
use crate::duration::human;
use crate::net;
use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::{Peer, Target};
use crate::report;
use crate::schedule::{Scheduler, Wake};
use admission::{Admission, Admit, Refusal};
use auth::{Binding, Key};
use link::{End, Event, LinkId, Out};
use members::{CurrentChange, Members, Merged, Source};
use proto::{Bye, Hello, InstanceId, ProtoError, Record, Reject, Sealed, State};
use session::{FrameReader, HandshakeError, Local, Role, SealedReader, SealedWriter};
use topology::Topology;

/// Time a connection has to complete its handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);
/// Failed dials of a known address after which the walk looks past it.
const SUSPECT_AFTER: u32 = 3;
/// The scheduler's key for a dial through the Service's record.
const SERVICE: u32 = u32::MAX;
/// Addresses from the Service's record tried in one attempt.
const SERVICE_TRIES: usize = 3;
/// Longest pause after an accept() error.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Everything the barrier needs, validated by `config`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token: Option<String>,
    pub job: String,
    pub index: u32,
    /// Every member in index order (`peers[i].index == Some(i)`); the world
    /// size is their number.
    pub peers: Vec<Peer>,
    /// This pod's own addresses, announced to the others; learned from the
    /// first link when empty.
    pub announce: Vec<IpAddr>,
    /// The address to listen on and dial from; all addresses when `None`.
    pub listen: Option<IpAddr>,
    pub port: u16,
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub concurrency: usize,
    /// Stay after the release (a native sidecar).
    pub serve: bool,
    /// The headless Service's own name, whose record lists every pod: the
    /// way in when no peer's name resolves yet (a negative cache).
    pub service: Option<String>,
}

/// Either half of a link's byte stream: TCP in a pod, an in-memory pipe
/// in tests.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A link that finished its handshake, before the engine adopts it.
pub struct NewLink {
    peer: Hello,
    reader: SealedReader<ReadHalf>,
    writer: SealedWriter<WriteHalf>,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Runs the handshake over any byte stream (`local`/`remote` as this end
/// sees them) and returns the link, ready to adopt.
pub async fn handshake_stream<S>(
    stream: S,
    role: Role,
    local_side: &Local,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<NewLink, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let binding = match role {
        Role::Dialer { .. } => Binding {
            dialer: local,
            listener: remote,
        },
        Role::Listener => Binding {
            dialer: remote,
            listener: local,
        },
    };
    let (r, w) = tokio::io::split(stream);
    let (r, w): (ReadHalf, WriteHalf) = (Box::new(r), Box::new(w));
    let (est, reader, writer) = timeout(
        HANDSHAKE_DEADLINE,
        session::handshake(local_side, role, binding, FrameReader::new(r), w),
    )
    .await
    .map_err(|_| HandshakeError::Io(io::ErrorKind::TimedOut.into()))??;
    Ok(NewLink {
        peer: est.peer,
        reader,
        writer,
        local,
        remote,
    })
}

/// Sets the socket options of a link and runs the handshake under its
/// deadline.
async fn establish(
    stream: TcpStream,
    role: Role,
    local: &Local,
) -> Result<NewLink, HandshakeError> {
    let (local_addr, remote) = net::tune_link(&stream)?;
    handshake_stream(stream, role, local, local_addr, remote).await
}

/// What a failed dial says about the peer.
fn dial_cause(e: &HandshakeError) -> Cause {
    match e {
        HandshakeError::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
            Cause::NotMet("no handshake within the deadline".into())
        }
        HandshakeError::Io(io) => crate::cause::io_cause(io),
        HandshakeError::Closed => Cause::NotMet("closed the connection mid-handshake".into()),
        other => Cause::NotMet(format!("handshake failed: {other}")),
    }
}

/// The outcome of one dial attempt.
enum Dialed {
    Linked(Box<NewLink>),
    Failed(Cause),
}

/// Where and how to dial one peer.
struct DialPlan<R> {
    /// The index looked for; `None` for any member (the Service's record).
    expect: Option<u32>,
    target: Target,
    /// Addresses from the peer's record; its name is resolved when empty.
    known: Vec<IpAddr>,
    /// Addresses never to dial (this pod's own).
    skip: Vec<IpAddr>,
    resolver: Option<Arc<R>>,
    port: u16,
    source: Option<IpAddr>,
    connect_timeout: Duration,
    local: Arc<Local>,
}

/// One attempt to link to a peer: resolve its name unless an address is
/// known, then try every address until a handshake succeeds.
async fn dial<R: Resolve>(plan: DialPlan<R>) -> Dialed {
    let DialPlan {
        expect,
        target,
        known,
        skip,
        resolver,
        port,
        source,
        connect_timeout,
        local,
    } = plan;
    let mut addrs = if known.is_empty() {
        match dns::addresses(&target, resolver.as_deref()).await {
            Ok(addrs) => addrs,
            Err(cause) => return Dialed::Failed(cause),
        }
    } else {
        known
    };
    addrs.retain(|a| !skip.contains(a));
    if expect.is_none() {
        // The Service's record lists every pod: start anywhere, and try a
        // few, not all.
        rotate_randomly(&mut addrs);
        addrs.truncate(SERVICE_TRIES);
    }
    let mut cause = Cause::NoRecords;
    for addr in addrs {
        let remote = SocketAddr::new(addr, port);
        let stream = match timeout(connect_timeout, net::connect(remote, source)).await {
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
        match establish(stream, Role::Dialer { expect }, &local).await {
            Ok(link) => return Dialed::Linked(Box::new(link)),
            Err(e) => {
                if let HandshakeError::Rejected(reason, detail) = &e {
                    warn!(
                        peer = %remote,
                        reason = reason.name(),
                        "barrier: turned away the pod at {remote}: {detail}"
                    );
                }
                cause = dial_cause(&e);
            }
        }
    }
    Dialed::Failed(cause)
}

/// Rotates `v` by a random amount.
fn rotate_randomly<T>(v: &mut [T]) {
    if v.len() > 1 {
        let mut b = [0u8; 8];
        auth::fill_random(&mut b);
        let k = (u64::from_le_bytes(b) % v.len() as u64) as usize;
        v.rotate_left(k);
    }
}

/// An incoming connection's handshake, done: where from, and how it went.
type Handshaken = (SocketAddr, Result<NewLink, HandshakeError>);

/// Per-peer dial bookkeeping.
#[derive(Debug, Clone)]
struct DialInfo {
    attempts: u32,
    /// Failures since the last link.
    failures: u32,
    last_cause: Cause,
    retry_at: Option<Instant>,
}

struct LinkState {
    index: u32,
    instance: InstanceId,
    /// Who dialed this link: the index, then the dialing socket's port. Of
    /// two links to one peer, both ends keep the one with the lower key
    /// (both ends see the same key).
    dialer: (u32, u16),
    tx: mpsc::UnboundedSender<Out>,
    /// Position in the change log up to which the peer has been sent records.
    cursor: usize,
    sent_complete: bool,
    peer_complete: bool,
    /// The peer said goodbye or rejected us: its end is no death.
    peer_bye: bool,
    /// A frame came from the peer: it finished its side of the handshake.
    /// A link that ends before that (the peer gave up on a handshake this
    /// side had finished) is no death either.
    heard: bool,
    /// We asked the link to close.
    closing: bool,
}

/// What the health endpoints and `await` see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub released: bool,
}

/// A view of the barrier for `/peers` and `/metrics`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub world: u32,
    pub index: u32,
    pub instance: InstanceId,
    pub released_after: Option<Duration>,
    pub uptime: Duration,
    pub peers: Vec<PeerView>,
    pub links: usize,
    pub readmissions: u64,
    pub refused: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone)]
pub struct PeerView {
    pub index: u32,
    pub name: String,
    pub record: Option<Record>,
    pub since: Option<Duration>,
    pub linked: bool,
}

/// Requests from outside the engine (the health server).
pub enum Control {
    Snapshot(oneshot::Sender<Snapshot>),
    /// The hand-off as it stands (for `/await`).
    Outcome(oneshot::Sender<GateOutcome>),
}

/// Called with the hand-off at the release and, while serving, whenever a
/// peer's live address changes after it.
pub type OnChange = Box<dyn FnMut(&GateOutcome) + Send>;

/// The barrier over a resolver `R`.
pub struct Rendezvous<R> {
    settings: Settings,
    local: Arc<Local>,
    members: Members,
    topology: Topology,
    candidates: Vec<u32>,
    start: Instant,
    resolver: Option<Arc<R>>,
    listener: TcpListener,
    links: HashMap<LinkId, LinkState>,
    by_index: HashMap<u32, LinkId>,
    next_link: LinkId,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    link_tasks: JoinSet<()>,
    handshakes: JoinSet<Handshaken>,
    aborts: HashMap<Id, AbortHandle>,
    admission: Admission,
    schedule: Scheduler<u32, Dialed>,
    dials: Vec<DialInfo>,
    /// Rotates the fallback candidate tried beyond the walk while links
    /// are missing, and the one tried last.
    extra: usize,
    fallback: Option<u32>,
    /// When a dial through the Service's record may be tried again.
    service_retry: Option<Instant>,
    /// Since when this pod has had no link (its start, at first).
    isolated_since: Instant,
    /// Since when this pod has been the lowest index its side of the
    /// job knows of, while some index is missing; `None` when it is not.
    leading_since: Option<Instant>,
    released: Option<Duration>,
    accept_pause: Option<(Instant, Duration)>,
    /// Authenticated rejections already logged, by peer and reason.
    logged: HashSet<(String, Reject)>,
    readmissions: u64,
    status: watch::Sender<Status>,
    on_change: Option<OnChange>,
    control: Option<mpsc::Receiver<Control>>,
}

impl<R: Resolve> Rendezvous<R> {
    pub fn new(
        settings: Settings,
        listener: TcpListener,
        resolver: Option<Arc<R>>,
    ) -> Result<Self, ProtoError> {
        let world = settings.peers.len() as u32;
        let start = Instant::now();
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let instance = InstanceId::random();
        let hello = Hello {
            job: settings.job.clone(),
            world,
            index: settings.index,
            instance,
            started_ms,
            serving: settings.serve,
            addrs: settings.announce.clone(),
        };
        let key = Key::new(settings.token.as_deref().unwrap_or(""));
        let local = Arc::new(Local::new(key, hello)?);
        let me = Record {
            index: settings.index,
            instance,
            started_ms,
            seq: 0,
            state: State::Alive,
            addrs: settings.announce.clone(),
        };
        let topology = Topology::for_world(world);
        let candidates = topology.candidates(settings.index, world).collect();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let dials = vec![
            DialInfo {
                attempts: 0,
                failures: 0,
                last_cause: Cause::Pending,
                retry_at: None,
            };
            world as usize
        ];
        Ok(Rendezvous {
            schedule: Scheduler::new(settings.concurrency, start, settings.interval),
            members: Members::new(world, me, Duration::ZERO),
            local,
            topology,
            candidates,
            start,
            resolver,
            listener,
            links: HashMap::new(),
            by_index: HashMap::new(),
            next_link: 0,
            events_tx,
            events_rx,
            link_tasks: JoinSet::new(),
            handshakes: JoinSet::new(),
            aborts: HashMap::new(),
            admission: Admission::new(),
            dials,
            extra: 0,
            fallback: None,
            service_retry: None,
            isolated_since: start,
            leading_since: Some(start),
            released: None,
            accept_pause: None,
            logged: HashSet::new(),
            readmissions: 0,
            status: watch::Sender::new(Status::default()),
            on_change: None,
            control: None,
            settings,
        })
    }

    /// Calls `f` with the hand-off at the release and on every later change.
    pub fn on_change(&mut self, f: OnChange) {
        self.on_change = Some(f);
    }

    /// Takes requests for snapshots.
    pub fn control(&mut self, rx: mpsc::Receiver<Control>) {
        self.control = Some(rx);
    }

    /// Released yet, and every hand-off change, as they happen.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub fn instance(&self) -> InstanceId {
        self.local.hello.instance
    }

    pub fn topology(&self) -> Topology {
        self.topology
    }

    pub fn world(&self) -> u32 {
        self.members.world()
    }

    pub fn is_released(&self) -> bool {
        self.released.is_some()
    }

    pub fn met_count(&self) -> usize {
        self.members.arrived_count() as usize
    }

    /// Time from the start to the release, or until now.
    pub fn elapsed(&self) -> Duration {
        self.released.unwrap_or_else(|| self.start.elapsed())
    }

    /// Runs until released and, unless serving, until every linked peer has
    /// confirmed its own release. Cancel-safe: dropping the future keeps
    /// the table as it was; links and handshakes end with the engine.
    pub async fn run(&mut self) {
        loop {
            if self.released.is_none() && self.members.all_arrived() {
                // A world of one has nobody to wait for.
                self.release();
            }
            let now = Instant::now();
            self.maintain(now);
            self.start_dials(now);
            self.flush();
            if self.done() {
                return;
            }
            let accepting = self.accept_pause.is_none_or(|(until, _)| until <= now);
            let pause_until = self.accept_pause.map(|(until, _)| until);
            tokio::select! {
                accepted = self.listener.accept(), if accepting => self.on_accept(accepted),
                Some(joined) = self.handshakes.join_next_with_id(), if !self.handshakes.is_empty() => {
                    self.on_handshake(joined);
                }
                Some(event) = self.events_rx.recv() => self.on_event(event),
                wake = self.schedule.wait() => self.on_wake(wake),
                Some(_) = self.link_tasks.join_next(), if !self.link_tasks.is_empty() => {}
                Some(request) = recv_control(&mut self.control) => self.on_control(request),
                _ = sleep_until(pause_until.unwrap_or(now)), if !accepting => {}
            }
        }
    }

    /// Whether the run is over: released, and (unless serving) every link
    /// confirmed and closed.
    fn done(&self) -> bool {
        !self.settings.serve && self.released.is_some() && self.links.is_empty()
    }

    /// Keeps the links the topology wants: walks the candidates in order,
    /// counting links, dialing known addresses, and resolving at most one
    /// more unknown name than links are missing (plus one rotating
    /// fallback while links are missing), so an isolated pod widens its
    /// search by one name per interval instead of querying every name.
    fn maintain(&mut self, now: Instant) {
        if self.released.is_some() && !self.settings.serve {
            return;
        }
        let want = self.topology.wanted(self.world());
        // Links, plus dials expected to become links: a known address not
        // yet failing, or a name's first attempt. A candidate whose attempts
        // fail no longer counts, so the walk widens by one candidate per
        // failure, never to every name at once.
        let mut have = 0;
        let mut linked = Vec::new();
        let mut unknown_budget = match self.topology {
            Topology::Mesh => usize::MAX,
            Topology::Tree => want + 1,
        };
        let mut walked = 0;
        for pos in 0..self.candidates.len() {
            let c = self.candidates[pos];
            if have >= want {
                break;
            }
            walked = pos + 1;
            if self.by_index.contains_key(&c) {
                have += 1;
                linked.push(c);
                continue;
            }
            let failures = self.dials[c as usize].failures;
            match self.members.current(c).map(|r| r.state) {
                Some(State::Alive) => {
                    self.ensure_dial(c, now);
                    if failures < SUSPECT_AFTER {
                        have += 1;
                    }
                }
                Some(State::Dead | State::Left) => {}
                None => {
                    if unknown_budget == 0 {
                        break;
                    }
                    unknown_budget -= 1;
                    self.ensure_dial(c, now);
                    if failures == 0 {
                        have += 1;
                    }
                }
            }
        }
        // Look the Service up, which names every pod that exists whatever a
        // cache says of each name, when this pod has been alone for a whole
        // interval, or has led its side of the job for one while some index
        // is missing. Records flood over links, so every connected group of
        // pods (the job, or an island whose names are negatively cached
        // where the others look) agrees on one leader, its lowest index:
        // each group sweeps the Service once per interval, whatever its
        // size, and dials only addresses it does not know.
        if self.should_sweep(now)
            && self.settings.service.is_some()
            && !self.schedule.is_running(SERVICE)
            && !self.schedule.is_queued(SERVICE)
        {
            let at = self.service_retry.map_or(now, |t| t.max(now));
            self.schedule.schedule(SERVICE, at);
        }
        if have < want && self.topology == Topology::Tree && walked < self.candidates.len() {
            let beyond = self.candidates.len() - walked;
            let c = self.candidates[walked + self.extra % beyond];
            if !self.by_index.contains_key(&c)
                && self
                    .members
                    .current(c)
                    .is_none_or(|r| r.state == State::Alive)
            {
                self.fallback = Some(c);
                self.ensure_dial(c, now);
            }
        }
        if self.topology == Topology::Tree && linked.len() >= want {
            self.shed(&linked);
        }
    }

    /// Whether this pod should look for pods through the Service's record:
    /// alone for an interval, or the lowest index it knows to have arrived
    /// for an interval while some index is missing.
    fn should_sweep(&mut self, now: Instant) -> bool {
        let me = self.settings.index;
        let leading = !self.members.all_arrived() && !(0..me).any(|i| self.members.arrived(i));
        match (leading, self.leading_since) {
            (false, _) => self.leading_since = None,
            (true, None) => self.leading_since = Some(now),
            (true, Some(_)) => {}
        }
        let alone = self.links.is_empty()
            && now.saturating_duration_since(self.isolated_since) >= self.settings.interval;
        let led = self
            .leading_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.settings.interval);
        alone || led
    }

    /// With its best uplinks in place, a pod closes the other links it
    /// dialed itself (fallbacks taken while its ancestors were missing), so
    /// that the lowest indices do not keep a link from every pod that once
    /// needed a way in. Links others dialed are theirs to keep.
    fn shed(&mut self, keep: &[u32]) {
        let me = self.settings.index;
        let extra: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.dialer.0 == me && !l.closing && !keep.contains(&l.index))
            .map(|(&id, _)| id)
            .collect();
        for id in extra {
            self.close_link(id, Some(Bye::Unneeded));
        }
    }

    fn ensure_dial(&mut self, c: u32, now: Instant) {
        if !self.schedule.is_running(c) && !self.schedule.is_queued(c) {
            let at = self.dials[c as usize].retry_at.map_or(now, |t| t.max(now));
            self.schedule.schedule(c, at);
        }
    }

    fn start_dials(&mut self, now: Instant) {
        while let Some(c) = self.schedule.next_due(now) {
            if c == SERVICE {
                let Some(name) = self.settings.service.clone() else {
                    continue;
                };
                // Only addresses nobody on this side knows lead somewhere new.
                let skip: Vec<IpAddr> = (0..self.world())
                    .filter(|&i| self.members.arrived(i))
                    .flat_map(|i| self.members.addrs(i).iter().copied())
                    .chain(self.members.me().addrs.iter().copied())
                    .collect();
                let attempt = dial(self.dial_plan(None, Target::Name(name), Vec::new(), skip));
                self.schedule.start(c, now, attempt);
                continue;
            }
            if self.by_index.contains_key(&c) {
                continue;
            }
            let known = match self.members.current(c) {
                Some(r) if r.state == State::Alive && !r.addrs.is_empty() => r.addrs.clone(),
                Some(r) if r.state != State::Alive => continue,
                _ => Vec::new(),
            };
            let target = self.settings.peers[c as usize].target.clone();
            let attempt = dial(self.dial_plan(Some(c), target, known, Vec::new()));
            self.schedule.start(c, now, attempt);
        }
    }

    fn dial_plan(
        &self,
        expect: Option<u32>,
        target: Target,
        known: Vec<IpAddr>,
        skip: Vec<IpAddr>,
    ) -> DialPlan<R> {
        DialPlan {
            expect,
            target,
            known,
            skip,
            resolver: self.resolver.clone(),
            port: self.settings.port,
            source: self.settings.listen,
            connect_timeout: self.settings.connect_timeout,
            local: Arc::clone(&self.local),
        }
    }

    fn on_wake(&mut self, wake: Wake<u32, Dialed>) {
        match wake {
            Wake::Done {
                key: SERVICE,
                started,
                output,
            } => match output {
                Dialed::Linked(link) => {
                    self.service_retry = None;
                    self.adopt(*link, true);
                }
                Dialed::Failed(cause) => {
                    debug!(cause = %cause, "dial through the Service's record failed");
                    self.service_retry = Some(started + self.settings.interval);
                }
            },
            Wake::Done {
                key,
                started,
                output,
            } => {
                let info = &mut self.dials[key as usize];
                info.attempts += 1;
                match output {
                    Dialed::Linked(link) => {
                        info.failures = 0;
                        info.retry_at = None;
                        self.adopt(*link, true);
                    }
                    Dialed::Failed(cause) => {
                        debug!(peer = %self.settings.peers[key as usize], cause = %cause, attempt = info.attempts, "dial failed");
                        info.failures += 1;
                        info.last_cause = cause;
                        info.retry_at = Some(started + self.settings.interval);
                        if self.fallback == Some(key) {
                            // The fallback failed too: try the next one.
                            self.extra = self.extra.wrapping_add(1);
                        }
                    }
                }
            }
            Wake::Due => {}
            Wake::Tick => {
                if self.released.is_none() {
                    info!(
                        met = self.met_count(),
                        peers = self.world(),
                        links = self.links.len(),
                        "{}",
                        self.progress_line()
                    );
                }
                if let Some(summary) = self.admission.take_summary() {
                    warn!("barrier: {summary}");
                }
            }
        }
    }

    fn on_accept(&mut self, accepted: io::Result<(TcpStream, SocketAddr)>) {
        let (stream, remote) = match accepted {
            Ok(a) => {
                self.accept_pause = None;
                a
            }
            Err(e) => {
                // EMFILE and friends: wait before trying again instead of
                // spinning.
                let pause = self
                    .accept_pause
                    .map_or(Duration::from_millis(20), |(_, p)| {
                        (p * 2).min(MAX_ACCEPT_BACKOFF)
                    });
                warn!("barrier: accept() failed: {e}; pausing {}", human(pause));
                self.accept_pause = Some((Instant::now() + pause, pause));
                return;
            }
        };
        let source = remote.ip().to_canonical();
        match self.admission.admit(source) {
            Admit::No => return,
            Admit::YesEvicting(oldest) => {
                if let Some(h) = self.aborts.remove(&oldest) {
                    h.abort();
                }
                self.admission.finished(oldest);
            }
            Admit::Yes => {}
        }
        let local = Arc::clone(&self.local);
        let handle = self.handshakes.spawn(async move {
            let result = establish(stream, Role::Listener, &local).await;
            (remote, result)
        });
        self.admission.started(handle.id(), source);
        self.aborts.insert(handle.id(), handle);
    }

    fn on_handshake(&mut self, joined: Result<(Id, Handshaken), tokio::task::JoinError>) {
        let (id, (remote, result)) = match joined {
            Ok(done) => done,
            Err(e) => {
                // Aborted to make room: already counted and freed.
                self.aborts.remove(&e.id());
                self.admission.finished(e.id());
                return;
            }
        };
        self.aborts.remove(&id);
        self.admission.finished(id);
        let source = remote.ip();
        match result {
            Ok(link) => self.adopt(link, false),
            Err(e) => {
                let why = match &e {
                    HandshakeError::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
                        Refusal::Silent
                    }
                    HandshakeError::Io(_) | HandshakeError::Closed => Refusal::Closed,
                    HandshakeError::Protocol(ProtoError::Version(_)) => Refusal::OldVersion,
                    HandshakeError::Protocol(_) | HandshakeError::Unexpected { .. } => {
                        Refusal::Garbage
                    }
                    HandshakeError::BadProof => Refusal::BadProof,
                    HandshakeError::Rejected(reason, detail) => {
                        self.log_rejection(&remote.to_string(), *reason, detail, "turned away");
                        return;
                    }
                };
                debug!(remote = %remote, reason = why.name(), "barrier: handshake failed: {e}");
                self.admission.refused(why, source);
            }
        }
    }

    /// Logs an authenticated peer's rejection once per peer and reason:
    /// both sides know the token, so this is a configuration mistake.
    fn log_rejection(&mut self, peer: &str, reason: Reject, detail: &str, verb: &str) {
        if self.logged.insert((peer.to_owned(), reason)) {
            warn!(
                peer,
                reason = reason.name(),
                "barrier: {verb} {peer}: {detail}"
            );
        }
    }

    /// Takes a link that passed its handshake into the table, unless its
    /// incarnation is stale or another link to the same peer wins.
    fn adopt(&mut self, link: NewLink, dialed: bool) {
        let NewLink {
            peer,
            reader,
            mut writer,
            local,
            remote,
        } = link;
        let me = self.settings.index;
        if let Err(reason) = self.members.admit(&peer) {
            let detail = match reason {
                Reject::StaleIncarnation => format!(
                    "index {} has a newer live incarnation than {}",
                    peer.index,
                    peer.instance.short()
                ),
                other => other.name().replace('_', " "),
            };
            self.log_rejection(&remote.to_string(), reason, &detail, "turned away");
            tokio::spawn(async move {
                let _ = writer.send(&Sealed::Reject(reason, detail)).await;
                let _ = writer.shutdown().await;
            });
            return;
        }
        let dialer = if dialed {
            (me, local.port())
        } else {
            (peer.index, remote.port())
        };
        let mut first_link = true;
        if let Some(&old) = self.by_index.get(&peer.index) {
            let existing = &self.links[&old];
            if existing.instance == peer.instance {
                // Both ends dialed each other: keep the link dialed by the
                // lower index, as the other end does too.
                let keep_new = dialer < existing.dialer;
                if !keep_new {
                    tokio::spawn(async move {
                        let _ = writer.send(&Sealed::Bye(Bye::Duplicate)).await;
                        let _ = writer.shutdown().await;
                        drop(reader);
                    });
                    return;
                }
                self.close_link(old, Some(Bye::Duplicate));
                first_link = false;
            } else {
                // A newer incarnation of the peer: its predecessor's link
                // has nothing more to say.
                self.close_link(old, Some(Bye::Superseded));
            }
        }
        if self.members.me().addrs.is_empty() {
            // Nothing says where this pod is: announce the address this
            // link reached it at.
            self.members
                .set_own_addrs(vec![local.ip()], self.start.elapsed());
        }
        let id = self.next_link;
        self.next_link += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        self.link_tasks
            .spawn(link::run(id, reader, writer, rx, self.events_tx.clone()));
        self.links.insert(
            id,
            LinkState {
                index: peer.index,
                instance: peer.instance,
                dialer,
                tx,
                cursor: 0,
                sent_complete: false,
                peer_complete: false,
                peer_bye: false,
                heard: false,
                closing: false,
            },
        );
        self.by_index.insert(peer.index, id);
        self.schedule.cancel(peer.index);
        let info = &mut self.dials[peer.index as usize];
        info.failures = 0;
        info.retry_at = None;
        if first_link {
            let name = self.settings.peers[peer.index as usize].to_string();
            info!(
                peer = %name,
                addr = %remote.ip(),
                instance = %peer.instance.short(),
                direction = if dialed { "outgoing" } else { "incoming" },
                after = %human(self.start.elapsed()),
                "peer met"
            );
        }
        let record = Record {
            index: peer.index,
            instance: peer.instance,
            started_ms: peer.started_ms,
            seq: 0,
            state: State::Alive,
            addrs: if peer.addrs.is_empty() {
                vec![remote.ip()]
            } else {
                peer.addrs
            },
        };
        self.merge(record, Source::Link(id));
    }

    /// Leaves the barrier for good (a serving sidecar on SIGTERM): records
    /// this pod as `left` so that a replacement arriving later still counts
    /// it, says goodbye on every link, and gives the links up to `grace` to
    /// deliver that.
    pub async fn leave(&mut self, grace: Duration) {
        self.members
            .set_own_state(State::Left, self.start.elapsed());
        self.flush();
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            self.close_link(id, Some(Bye::Leaving));
        }
        let _ = timeout(grace, async {
            while !self.links.is_empty() {
                match self.events_rx.recv().await {
                    Some(Event::Closed(id, _)) => {
                        self.links.remove(&id);
                    }
                    Some(Event::Frame(..)) => {}
                    None => break,
                }
            }
        })
        .await;
    }

    /// Asks a link to close; `bye` tells the peer it is on purpose.
    fn close_link(&mut self, id: LinkId, bye: Option<Bye>) {
        let Some(state) = self.links.get_mut(&id) else {
            return;
        };
        if let Some(reason) = bye {
            let _ = state.tx.send(Out::Send(Sealed::Bye(reason)));
        }
        let _ = state.tx.send(Out::Close);
        state.closing = true;
        if self.by_index.get(&state.index) == Some(&id) {
            self.by_index.remove(&state.index);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Frame(id, frame) => {
                let Some(state) = self.links.get_mut(&id) else {
                    return;
                };
                state.heard = true;
                match frame {
                    Sealed::Records(records) => {
                        for r in records {
                            self.merge(r, Source::Link(id));
                        }
                    }
                    Sealed::Complete => state.peer_complete = true,
                    Sealed::Bye(reason) => {
                        debug!(peer = %self.settings.peers[state.index as usize], ?reason, "link closed by the peer");
                        state.peer_bye = true;
                        self.close_link(id, None);
                    }
                    Sealed::Reject(reason, detail) => {
                        state.peer_bye = true;
                        let peer = self.settings.peers[state.index as usize].to_string();
                        self.log_rejection(&peer, reason, &detail, "rejected by");
                        self.close_link(id, None);
                    }
                }
            }
            Event::Closed(id, end) => {
                let Some(state) = self.links.remove(&id) else {
                    return;
                };
                if self.links.is_empty() {
                    self.isolated_since = Instant::now();
                }
                if self.by_index.get(&state.index) == Some(&id) {
                    self.by_index.remove(&state.index);
                }
                let graceful = !state.heard
                    || state.peer_bye
                    || state.closing
                    || (state.peer_complete && state.sent_complete);
                if !graceful && self.members.is_current(state.index, state.instance) {
                    let peer = &self.settings.peers[state.index as usize];
                    let why = match &end {
                        End::Eof => "closed without a goodbye".to_owned(),
                        End::Error(e) => e.clone(),
                    };
                    warn!(
                        peer = %peer,
                        instance = %state.instance.short(),
                        "peer lost: the link to {peer} ended ({why}); counting it as gone until it \
                         or a replacement comes back"
                    );
                    let now = self.start.elapsed();
                    let merged = self.members.declare_dead(state.index, state.instance, now);
                    self.after_merge(merged, Source::Local);
                }
            }
        }
    }

    fn merge(&mut self, record: Record, source: Source) {
        let now = self.start.elapsed();
        let merged = self.members.merge(record, source, now);
        self.after_merge(merged, source);
    }

    /// Logs what a merge changed and releases when the table is complete.
    fn after_merge(&mut self, merged: Merged, source: Source) {
        match merged {
            Merged::Changed {
                index,
                current: CurrentChange::Updated { before, after },
            } => {
                let peer = &self.settings.peers[index as usize];
                let arrived = after.state != State::Dead;
                match before.as_ref() {
                    Some(b) if arrived && b.instance != after.instance => {
                        info!(
                            peer = %peer,
                            addrs = %join(&after.addrs),
                            "peer replaced: {peer} is now instance {} at {} (was {})",
                            after.instance.short(),
                            join(&after.addrs),
                            b.instance.short()
                        );
                        self.changed_after_release();
                    }
                    Some(b) if arrived && b.state == State::Dead => {
                        info!(peer = %peer, "peer back: {peer} answered again");
                        self.changed_after_release();
                    }
                    Some(b) if arrived && b.addrs != after.addrs => {
                        info!(
                            peer = %peer,
                            addrs = %join(&after.addrs),
                            "peer moved: {peer} is now at {}",
                            join(&after.addrs)
                        );
                        self.changed_after_release();
                    }
                    None if arrived && source != Source::Local => {
                        debug!(peer = %peer, addrs = %join(&after.addrs), "peer arrived");
                    }
                    _ => {}
                }
            }
            Merged::Refuted { seq } => {
                debug!(seq, "a peer reported this pod gone; told them otherwise");
            }
            Merged::Changed { .. } | Merged::Nothing | Merged::Ignored(_) => {}
        }
        if self.released.is_none() && self.members.all_arrived() {
            self.release();
        }
    }

    /// After the release, a changed address is a re-admission: the
    /// hand-off follows it.
    fn changed_after_release(&mut self) {
        if self.released.is_some() {
            self.readmissions += 1;
            self.publish();
        }
    }

    fn release(&mut self) {
        let after = self.start.elapsed();
        self.released = Some(after);
        if self.settings.serve {
            info!(
                peers = self.world(),
                elapsed = %human(after),
                "all {} peers met after {}; serving",
                self.world(),
                human(after)
            );
        } else {
            debug!(
                links = self.links.len(),
                "released; confirming with the linked peers"
            );
        }
        self.publish();
    }

    /// Tells the hand-off and the watchers.
    fn publish(&mut self) {
        if self.on_change.is_some() {
            let outcome = self.outcome(Some(self.settings.index));
            if let Some(f) = self.on_change.as_mut() {
                f(&outcome);
            }
        }
        // Wakes every watcher, also when only the hand-off changed.
        self.status.send_modify(|s| s.released = true);
    }

    /// Sends every link what it lacks: new records, then COMPLETE once
    /// released; closes links whose peer has confirmed too (unless serving).
    fn flush(&mut self) {
        let log_len = self.members.log_len();
        let released = self.released.is_some();
        for (&id, state) in self.links.iter_mut() {
            if state.closing {
                continue;
            }
            if state.cursor < log_len {
                let mut records = self.members.changes_since(state.cursor, Source::Link(id));
                while !records.is_empty() {
                    let rest = records.split_off(records.len().min(proto::records_per_frame()));
                    let _ = state.tx.send(Out::Send(Sealed::Records(records)));
                    records = rest;
                }
                state.cursor = log_len;
            }
            if released && !state.sent_complete {
                let _ = state.tx.send(Out::Send(Sealed::Complete));
                state.sent_complete = true;
            }
            if released && !self.settings.serve && state.sent_complete && state.peer_complete {
                let _ = state.tx.send(Out::Close);
                state.closing = true;
                if self.by_index.get(&state.index) == Some(&id) {
                    self.by_index.remove(&state.index);
                }
            }
        }
    }

    fn on_control(&mut self, request: Control) {
        match request {
            Control::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Control::Outcome(reply) => {
                let _ = reply.send(self.outcome(Some(self.settings.index)));
            }
        }
    }

    /// Everything the health endpoints show.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            world: self.world(),
            index: self.settings.index,
            instance: self.instance(),
            released_after: self.released,
            uptime: self.start.elapsed(),
            peers: (0..self.world())
                .map(|i| PeerView {
                    index: i,
                    name: self.settings.peers[i as usize].display_name(),
                    record: self.members.current(i).cloned(),
                    since: self.members.since(i),
                    linked: self.by_index.contains_key(&i) || i == self.settings.index,
                })
                .collect(),
            links: self.links.len(),
            readmissions: self.readmissions,
            refused: self
                .admission
                .totals()
                .map(|(r, n)| (r.name(), n))
                .collect(),
        }
    }

    /// Why `index` has not arrived, as far as this pod can tell.
    fn cause(&self, index: u32) -> Cause {
        if let Some(r) = self.members.current(index)
            && r.state == State::Dead
        {
            return Cause::NotMet(format!(
                "its incarnation {} is gone; waiting for a replacement",
                r.instance.short()
            ));
        }
        let info = &self.dials[index as usize];
        if info.attempts == 0 {
            return match self.topology {
                Topology::Mesh => Cause::Pending,
                Topology::Tree => Cause::NotMet("no pod has heard of it yet".into()),
            };
        }
        info.last_cause.clone()
    }

    /// `2/3 met; waiting on example-job-2...: NXDOMAIN`.
    pub fn progress_line(&self) -> String {
        let missing: Vec<(&Peer, Cause)> = self
            .members
            .missing()
            .map(|i| (&self.settings.peers[i as usize], self.cause(i)))
            .collect();
        report::progress_line(self.met_count(), self.world() as usize, "met", &missing)
    }

    /// One line per peer not met, with why.
    pub fn missing(&self) -> Vec<(String, Cause, u32)> {
        self.members
            .missing()
            .map(|i| {
                (
                    self.settings.peers[i as usize].to_string(),
                    self.cause(i),
                    self.dials[i as usize].attempts,
                )
            })
            .collect()
    }

    /// Peers whose link has not confirmed the release yet (while leaving).
    pub fn unconfirmed(&self) -> Vec<String> {
        self.links
            .values()
            .filter(|l| !l.peer_complete)
            .map(|l| self.settings.peers[l.index as usize].to_string())
            .collect()
    }

    /// What the barrier knows now, in index order: each peer's live
    /// incarnation's addresses.
    pub fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        GateOutcome {
            self_index,
            peers: (0..self.world())
                .map(|i| {
                    let addrs = self
                        .members
                        .current(i)
                        .filter(|r| r.state != State::Dead)
                        .map(|r| r.addrs.clone())
                        .unwrap_or_default();
                    PeerOutcome {
                        index: Some(i),
                        name: self.settings.peers[i as usize].display_name(),
                        reachable_via: addrs.first().copied(),
                        addrs,
                        elapsed: self.members.since(i),
                    }
                })
                .collect(),
        }
    }
}

async fn recv_control(control: &mut Option<mpsc::Receiver<Control>>) -> Option<Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;

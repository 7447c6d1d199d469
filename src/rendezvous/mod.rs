//! Barrier mode: a rendezvous over TCP that releases on arrival, speaking
//! protocol version 4 (docs/protocol.md).
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
//! serves (`--serve`), leaves once every linked peer has told it the same,
//! or another peer that heard that peer's COMPLETE said so (RELEASED, for a
//! path that drops everything): nobody who still needs it loses it. A link that dies without a goodbye
//! declares that incarnation dead, so the others wait for its replacement
//! instead of counting a pod that is gone. No deadline applies to an
//! authenticated link: a stalled peer is waited for, never abandoned.
//!
//! The engine is an I/O-free [`core`] under a thin tokio shell, the way
//! quinn-proto sits under quinn. The core holds the membership, the link
//! table, the topology walk and the admission decisions; it takes inputs
//! (a link up, a frame, a link's end, a dial's or a handshake's end, the
//! time) and queues actions (dial, send, close, publish). The shell below
//! owns the listener, the tasks and the timers, feeds the core and carries
//! the actions out. Nothing else touches the state.

pub mod admission;
pub mod auth;
pub mod board;
pub mod core;
pub mod dial;
pub mod exchange;
#[cfg(test)]
mod exchange_sim;
pub mod link;
pub mod links;
pub mod members;
pub mod proto;
pub mod rounds;
#[cfg(test)]
mod rounds_sim;
pub mod session;
pub mod settings;
#[cfg(test)]
mod sim;
pub mod topology;
pub mod view;
mod walk;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::warn;

use self::core::{Action, Core, DialKey, LinkUp};
use self::rounds::Attach;
use crate::cause::Cause;
use crate::dns::Resolve;
use crate::duration::human;
use crate::outcome::GateOutcome;
use auth::Key;
use dial::{DialPlan, Dialed, Handshaken, Handshakes, NewLink};
use link::{Event, Out};
use links::LinkId;
use proto::{InstanceId, ProtoError};
use session::Local;
use topology::Topology;

pub use dial::{HANDSHAKE_DEADLINE, handshake_stream};
pub use settings::Settings;
pub use view::{Control, PeerView, Snapshot, Status};

/// How soon a link whose outbox was full is offered its records again.
const BLOCKED_RECHECK: Duration = Duration::from_millis(10);
/// Longest pause after an accept() error.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Called with the hand-off at the release and, while serving, whenever a
/// peer's live address changes after it.
pub type OnChange = Box<dyn FnMut(&GateOutcome) + Send>;

/// The barrier over a resolver `R`: the core, and what carries its actions.
pub struct Rendezvous<R> {
    core: Core,
    local: Arc<Local>,
    resolver: Option<Arc<R>>,
    listener: TcpListener,
    /// Each running link's outbox: bounded, never waited on (`link::outbox`).
    outboxes: HashMap<LinkId, mpsc::Sender<Out>>,
    /// Bounded; link.rs says why waiting on it cannot deadlock.
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    link_tasks: JoinSet<()>,
    dials: JoinSet<(DialKey, Instant, Dialed)>,
    handshakes: Handshakes,
    accept_pause: Option<(Instant, Duration)>,
    status: watch::Sender<Status>,
    /// The table's head: moves with every record that changed, a board
    /// included, so waiting reads know when to look again.
    changes: watch::Sender<u64>,
    on_change: Option<OnChange>,
    control: Option<mpsc::Receiver<Control>>,
}

impl<R: Resolve> Rendezvous<R> {
    /// A barrier for a new incarnation of this pod, started now.
    pub fn new(
        settings: Settings,
        listener: TcpListener,
        resolver: Option<Arc<R>>,
    ) -> Result<Self, ProtoError> {
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self::with_clock(
            settings,
            listener,
            resolver,
            InstanceId::random(),
            started_ms,
        )
    }

    /// A barrier whose incarnation and wall-clock start are given (tests
    /// replace a pod with a later one without waiting on the wall clock).
    pub fn with_clock(
        settings: Settings,
        listener: TcpListener,
        resolver: Option<Arc<R>>,
        instance: InstanceId,
        started_ms: u64,
    ) -> Result<Self, ProtoError> {
        let key = Key::new(settings.token.as_deref().unwrap_or(""));
        let core = Core::new(settings, instance, started_ms, Instant::now());
        let local = Arc::new(Local::new(key, core.hello())?);
        let (events_tx, events_rx) = link::events();
        Ok(Rendezvous {
            core,
            local,
            resolver,
            listener,
            outboxes: HashMap::new(),
            events_tx,
            events_rx,
            link_tasks: JoinSet::new(),
            dials: JoinSet::new(),
            handshakes: Handshakes::default(),
            accept_pause: None,
            status: watch::Sender::new(Status::default()),
            changes: watch::Sender::new(0),
            on_change: None,
            control: None,
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

    /// Moves whenever a record changed (for reads that wait on boards).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn instance(&self) -> InstanceId {
        self.core.instance()
    }

    pub fn topology(&self) -> Topology {
        self.core.topology
    }

    pub fn world(&self) -> u32 {
        self.core.world()
    }

    pub fn is_released(&self) -> bool {
        self.core.is_released()
    }

    pub fn met_count(&self) -> usize {
        self.core.met_count()
    }

    /// Time from the start to the release, or until now.
    pub fn elapsed(&self) -> Duration {
        self.core.elapsed(Instant::now())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.core.snapshot(Instant::now())
    }

    /// One line per peer not met, with why.
    pub fn missing(&self) -> Vec<(String, Cause, u32)> {
        self.core.missing()
    }

    /// Peers whose link has not confirmed the release yet (while leaving).
    pub fn unconfirmed(&self) -> Vec<String> {
        self.core.unconfirmed()
    }

    /// What the barrier knows now, in index order.
    pub fn outcome(&self, self_index: Option<u32>) -> GateOutcome {
        self.core.outcome(self_index)
    }

    /// Runs until released and, unless serving, until every linked peer has
    /// confirmed its own release. Cancel-safe: dropping the future keeps
    /// the table as it was; links and handshakes end with the engine.
    pub async fn run(&mut self) {
        loop {
            let now = Instant::now();
            self.unblock();
            self.core.poll(now);
            self.execute();
            self.sync_status();
            if self.core.done() {
                return;
            }
            let mut wake = self.core.next_wake();
            if self.core.blocked().next().is_some() {
                // Nothing signals room in an outbox: look again shortly.
                wake = wake.min(now + BLOCKED_RECHECK);
            }
            let accepting = self.accept_pause.is_none_or(|(until, _)| until <= now);
            let pause_until = self.accept_pause.map(|(until, _)| until);
            tokio::select! {
                accepted = self.listener.accept(), if accepting => self.on_accept(accepted),
                Some(done) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    self.on_handshake(done);
                }
                Some(event) = self.events_rx.recv() => self.on_event(event),
                Some(joined) = self.dials.join_next(), if !self.dials.is_empty() => {
                    let (key, started, dialed) = joined.expect("dial tasks do not panic");
                    self.on_dialed(key, started, dialed);
                }
                _ = sleep_until(wake) => {}
                Some(_) = self.link_tasks.join_next(), if !self.link_tasks.is_empty() => {}
                Some(request) = recv_control(&mut self.control) => self.on_control(request),
                _ = sleep_until(pause_until.unwrap_or(now)), if !accepting => {}
            }
        }
    }

    /// Leaves the barrier for good (a serving sidecar on SIGTERM): says
    /// goodbye on every link and gives the links up to `grace` to deliver
    /// that.
    pub async fn leave(&mut self, grace: Duration) {
        self.core.leave(Instant::now());
        self.execute();
        let _ = timeout(grace, async {
            while !self.core.links.is_empty() {
                match self.events_rx.recv().await {
                    Some(Event::Closed(id, end)) => {
                        self.outboxes.remove(&id);
                        self.core.closed(Instant::now(), id, end);
                    }
                    Some(Event::Frame(..)) => {}
                    None => break,
                }
            }
        })
        .await;
    }

    /// Carries out what the core asked for.
    fn execute(&mut self) {
        while let Some(action) = self.core.next_action() {
            match action {
                Action::Dial {
                    key,
                    target,
                    started,
                } => {
                    let settings = self.core.settings();
                    let plan = DialPlan {
                        target,
                        resolver: self.resolver.clone(),
                        port: settings.port,
                        source: settings.listen,
                        connect_timeout: settings.connect_timeout,
                        local: Arc::clone(&self.local),
                    };
                    self.dials
                        .spawn(async move { (key, started, dial::dial(plan).await) });
                }
                Action::Records { id, records, from } => {
                    if let Some(tx) = self.outboxes.get(&id)
                        && !link::offer(tx, records)
                    {
                        self.core.unsent(id, from);
                    }
                }
                Action::Send(id, frame) => self.to_link(id, Out::Send(frame)),
                Action::Close(id) => self.to_link(id, Out::Close),
                Action::Abandon(id) => self.to_link(id, Out::Abandon),
                Action::Publish => self.publish(),
            }
        }
    }

    fn to_link(&self, id: LinkId, out: Out) {
        if let Some(tx) = self.outboxes.get(&id) {
            link::control(tx, out);
        }
    }

    /// Tells the core which links that found their outbox full have room
    /// again; their records follow at this poll's flush.
    fn unblock(&mut self) {
        let ready: Vec<LinkId> = (self.core.blocked())
            .filter(|id| self.outboxes.get(id).is_none_or(link::has_room))
            .collect();
        for id in ready {
            self.core.room(id);
        }
    }

    /// Tells the hand-off and the watchers.
    fn publish(&mut self) {
        if let Some(f) = self.on_change.as_mut() {
            let outcome = self.core.outcome(Some(self.core.settings().index));
            f(&outcome);
        }
        // Wakes every watcher, also when only the hand-off changed.
        let status = self.core.status();
        self.status.send_modify(|s| *s = status);
    }

    /// Tells the watchers when a round ended or the group began finishing.
    fn sync_status(&self) {
        let head = self.core.head();
        self.changes.send_if_modified(|h| {
            let moved = *h != head;
            *h = head;
            moved
        });
        let status = self.core.status();
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }

    fn on_dialed(&mut self, key: DialKey, started: Instant, dialed: Dialed) {
        match dialed {
            Dialed::Linked(link) => {
                self.core.dial_done(key, started, None);
                self.adopt(*link, true);
            }
            Dialed::Failed(cause) => self.core.dial_done(key, started, Some(cause)),
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
        let Some(admitted) = self.core.admit(remote.ip().to_canonical()) else {
            return;
        };
        if let Some(oldest) = admitted.evict {
            self.handshakes.abort(oldest);
        }
        self.handshakes
            .spawn(admitted.id, stream, remote, Arc::clone(&self.local));
    }

    fn on_handshake(&mut self, (id, remote, result): Handshaken) {
        match result {
            Ok(link) => {
                self.core.handshake_done(id, remote, None);
                self.adopt(link, false);
            }
            Err(e) => self.core.handshake_done(id, remote, Some(&e)),
        }
    }

    /// Hands a link that passed its handshake to the core, and runs it or
    /// turns it away as the core decides.
    fn adopt(&mut self, link: NewLink, dialed: bool) {
        let NewLink {
            peer,
            reader,
            mut writer,
            local,
            remote,
        } = link;
        match self
            .core
            .link_up(Instant::now(), peer, local, remote, dialed)
        {
            LinkUp::Refused(frame) => {
                tokio::spawn(async move {
                    let _ = writer.send(&frame).await;
                    let _ = writer.shutdown().await;
                    drop(reader);
                });
            }
            LinkUp::Adopted(id) => {
                let (tx, rx) = link::outbox();
                self.outboxes.insert(id, tx);
                self.link_tasks
                    .spawn(link::run(id, reader, writer, rx, self.events_tx.clone()));
            }
        }
        self.execute();
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Frame(id, frame) => self.core.frame(now, id, frame),
            Event::Closed(id, end) => {
                self.outboxes.remove(&id);
                self.core.closed(now, id, end);
            }
        }
    }

    fn on_control(&mut self, request: Control) {
        match request {
            Control::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Control::Outcome(reply) => {
                let index = self.core.settings().index;
                let _ = reply.send(self.core.outcome(Some(index)));
            }
            Control::Attach {
                after,
                grace,
                reply,
            } => {
                let attach = self.core.attach(Instant::now(), after, grace);
                let index = self.core.settings().index;
                if reply
                    .send((attach, self.core.outcome(Some(index))))
                    .is_err()
                    && let Attach::Start(round) = attach
                {
                    // The run hung up meanwhile: it runs nothing.
                    self.core.detach(Instant::now(), round);
                }
            }
            Control::Detach { round } => self.core.detach(Instant::now(), round),
            Control::Report(work) => self.core.report(Instant::now(), work),
            Control::Put {
                round,
                key,
                value,
                reply,
            } => {
                let _ = reply.send(self.core.put(Instant::now(), round, &key, &value));
            }
            Control::Enter { round, name, reply } => {
                let _ = reply.send(self.core.enter(Instant::now(), round, &name));
            }
            Control::Read {
                round,
                query,
                reply,
            } => {
                let _ = reply.send(self.core.read(round, &query));
            }
        }
        self.execute();
    }
}

async fn recv_control(control: &mut Option<mpsc::Receiver<Control>>) -> Option<Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;

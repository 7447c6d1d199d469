//! The barrier's protocol core: the membership table, the link table, the
//! topology walk and the admission budget, with no I/O in it. No socket, no
//! task, no clock and no randomness: the shell (`rendezvous::Rendezvous`)
//! passes the time into every call, hands in what happened (a link came
//! up, a frame arrived, a link ended, a dial or a handshake finished), and
//! carries out the [`Action`]s the core queues (dial, send, close, publish
//! the hand-off). Every rule here therefore runs in deterministic tests.
//!
//! The core is split over three files, one job each, layered so that none
//! uses a file above it: this one takes links and frames in and keeps the
//! table; `view` (above it) answers what the health endpoints, the progress
//! line and the hand-off show; `walk` (on top) decides whom to dial and
//! when, and drives the periodic step, [`Core::poll`].

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use super::admission::{Admission, Admit, HandshakeId, Refusal};
use super::links::{End, LinkId, LinkState, Links};
use super::members::{CurrentChange, Members, Merged, Source, Version};
use super::proto::InstanceId;
use super::proto::{self, Bye, Claim, Hello, ProtoError, Record, Reject, Sealed, State, Work};
use super::rounds::{Attach, Event, Rounds};
use super::session::HandshakeError;
use super::settings::Settings;
use super::topology::Topology;
use crate::cause::Cause;
use crate::duration::human;
use crate::peers::Target;
use crate::schedule::Queue;

/// What the core asks the shell to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DialKey {
    /// The pod with this index, through its record's addresses or its name.
    Peer(u32),
    /// Any pod, through the headless Service's record.
    Service,
}

/// Where and how to dial.
#[derive(Debug, Clone)]
pub struct DialTarget {
    /// The index looked for; `None` for any member (the Service's record).
    pub expect: Option<u32>,
    pub target: Target,
    /// Addresses from the peer's record; its name is resolved when empty.
    pub known: Vec<IpAddr>,
    /// Addresses never to dial (known already, or this pod's own).
    pub skip: Vec<IpAddr>,
}

/// What the shell carries out, in the order queued.
#[derive(Debug)]
pub enum Action {
    /// Start a dial attempt; report its end with [`Core::dial_done`].
    Dial {
        key: DialKey,
        target: DialTarget,
        started: Instant,
    },
    /// Queue a control frame (COMPLETE, BYE) on a link. Never refused: a
    /// link gets at most [`CONTROL_FRAMES`] control outputs in its life,
    /// these and its close together.
    Send(LinkId, Sealed),
    /// Queue a RECORDS frame on a link, if its outbox has room for one
    /// more of [`RECORD_FRAMES`]; if not, report [`Core::unsent`] with
    /// `from`, the version its records start at.
    Records {
        id: LinkId,
        records: Vec<Record>,
        from: Version,
    },
    /// Half-close a link after what was queued on it.
    Close(LinkId),
    /// Close it, and stop waiting for the peer's end after a linger: the
    /// peer announced that it has released and is leaving.
    Abandon(LinkId),
    /// The hand-off changed (the release, or a live address after it).
    Publish,
}

/// RECORDS frames a link's outbox holds at most. A peer that does not read
/// holds up no more than this: the rest waits in the change log, where a
/// record changed again replaces its older version instead of queuing
/// behind it.
pub const RECORD_FRAMES: usize = 4;

/// Control outputs a link gets in its whole life: COMPLETE once, BYE once,
/// the close once ([`Core::close_link`] acts only once per link). An outbox
/// keeps this much room beyond [`RECORD_FRAMES`], so none is ever refused.
pub const CONTROL_FRAMES: usize = 3;

/// What to do with a link that passed its handshake.
#[derive(Debug)]
pub enum LinkUp {
    /// Run it under this id.
    Adopted(LinkId),
    /// Send this frame, then shut it down.
    Refused(Sealed),
}

/// A pending accept the admission budget let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub id: HandshakeId,
    /// The oldest pending handshake, to abort to make room.
    pub evict: Option<HandshakeId>,
}

/// Per-peer dial bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct DialInfo {
    pub attempts: u32,
    /// Failures since the last link.
    pub failures: u32,
    pub last_cause: Cause,
    pub retry_at: Option<Instant>,
}

/// Whom the walk dials, and when again.
#[derive(Debug)]
pub(super) struct Dialing {
    pub queue: Queue<DialKey>,
    pub peers: Vec<DialInfo>,
    /// Rotates the fallback candidate tried beyond the walk while links
    /// are missing, and the one tried last.
    pub extra: usize,
    pub fallback: Option<u32>,
    /// When a dial through the Service's record may be tried again.
    pub service_retry: Option<Instant>,
    /// Since when this pod has had no link (its start, at first).
    pub isolated_since: Instant,
    /// Since when this pod has been the lowest index its side of the job
    /// knows of, while some index is missing; `None` when it is not.
    pub leading_since: Option<Instant>,
}

/// The barrier without its sockets.
pub struct Core {
    pub(super) settings: Settings,
    pub(super) members: Members,
    pub(super) topology: Topology,
    pub(super) candidates: Vec<u32>,
    pub(super) start: Instant,
    pub(super) links: Links,
    pub(super) dialing: Dialing,
    pub(super) admission: Admission,
    next_handshake: HandshakeId,
    pub(super) next_tick: Instant,
    pub(super) released: Option<Duration>,
    /// Authenticated rejections already logged, by peer and reason.
    logged: HashSet<(String, Reject)>,
    pub(super) readmissions: u64,
    /// A serving pod's rounds (unused otherwise).
    pub(super) rounds: Rounds,
    /// The table's version when the rounds last stepped: a poll with
    /// nothing new in the table (and no deadline due) skips the step.
    rounds_seen: Option<Version>,
    /// Linked peers (index, incarnation) whose COMPLETE this pod heard, in
    /// the order it heard them: what it passes on in RELEASED frames.
    released_peers: Vec<(u32, InstanceId)>,
    actions: VecDeque<Action>,
}

impl Core {
    /// A core for this pod's incarnation `instance`, started (wall clock)
    /// at `started_ms` and (monotonic) at `now`.
    pub fn new(settings: Settings, instance: InstanceId, started_ms: u64, now: Instant) -> Core {
        let world = settings.peers.len() as u32;
        let me = Record {
            index: settings.index,
            instance,
            started_ms,
            seq: 0,
            state: State::Alive,
            addrs: settings.announce.clone(),
            claim: Default::default(),
            board: Default::default(),
        };
        let topology = Topology::for_world(world);
        let info = DialInfo {
            attempts: 0,
            failures: 0,
            last_cause: Cause::Pending,
            retry_at: None,
        };
        Core {
            members: Members::new(world, me, Duration::ZERO),
            topology,
            candidates: topology.candidates(settings.index, world).collect(),
            start: now,
            links: Links::default(),
            dialing: Dialing {
                queue: Queue::new(settings.concurrency),
                peers: vec![info; world as usize],
                extra: 0,
                fallback: None,
                service_retry: None,
                isolated_since: now,
                leading_since: Some(now),
            },
            admission: Admission::new(),
            next_handshake: 0,
            next_tick: now + settings.interval,
            released: None,
            logged: HashSet::new(),
            readmissions: 0,
            rounds: Rounds::default(),
            rounds_seen: None,
            released_peers: Vec::new(),
            actions: VecDeque::new(),
            settings,
        }
    }

    /// What this pod claims in its handshakes.
    pub fn hello(&self) -> Hello {
        let me = self.members.me();
        Hello {
            job: self.settings.job.clone(),
            world: self.world(),
            index: me.index,
            instance: me.instance,
            started_ms: me.started_ms,
            serving: self.settings.serve,
            addrs: self.settings.announce.clone(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn world(&self) -> u32 {
        self.members.world()
    }

    pub fn instance(&self) -> InstanceId {
        self.members.me().instance
    }

    pub fn is_released(&self) -> bool {
        self.released.is_some()
    }

    /// Time from the start to the release, or to `now`.
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.released.unwrap_or_else(|| self.since_start(now))
    }

    pub(super) fn since_start(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    /// The next action to carry out.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub(super) fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Whether the run is over: released, and (unless serving) every link
    /// confirmed and closed.
    pub fn done(&self) -> bool {
        !self.settings.serve && self.released.is_some() && self.links.is_empty()
    }

    /// Decides on a connection from `source`; `None` turns it away.
    pub fn admit(&mut self, source: IpAddr) -> Option<Admitted> {
        let evict = match self.admission.admit(source) {
            Admit::No => return None,
            Admit::YesEvicting(oldest) => {
                self.admission.finished(oldest);
                Some(oldest)
            }
            Admit::Yes => None,
        };
        let id = self.next_handshake;
        self.next_handshake += 1;
        self.admission.started(id, source);
        Some(Admitted { id, evict })
    }

    /// An admitted handshake ended: passed (adopt it next with
    /// [`Core::link_up`]) or failed with `error`.
    pub fn handshake_done(
        &mut self,
        id: HandshakeId,
        remote: SocketAddr,
        error: Option<&HandshakeError>,
    ) {
        self.admission.finished(id);
        let Some(e) = error else {
            return;
        };
        let why = match e {
            HandshakeError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Refusal::Silent,
            HandshakeError::Io(_) | HandshakeError::Closed => Refusal::Closed,
            HandshakeError::Protocol(ProtoError::Version(_)) => Refusal::OldVersion,
            HandshakeError::Protocol(_) | HandshakeError::Unexpected { .. } => Refusal::Garbage,
            HandshakeError::BadProof => Refusal::BadProof,
            HandshakeError::Rejected(reason, detail) => {
                self.log_rejection(&remote.to_string(), *reason, detail, "turned away");
                return;
            }
        };
        debug!(remote = %remote, reason = why.name(), "barrier: handshake failed: {e}");
        self.admission.refused(why, remote.ip());
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

    /// Takes a link that passed its handshake (`dialed` by this pod or
    /// accepted; `local`/`remote` as this end sees them) into the table,
    /// unless its incarnation is stale or another link to the same peer
    /// wins.
    pub fn link_up(
        &mut self,
        now: Instant,
        peer: Hello,
        local: SocketAddr,
        remote: SocketAddr,
        dialed: bool,
    ) -> LinkUp {
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
            return LinkUp::Refused(Sealed::Reject(reason, detail));
        }
        let dialer = if dialed {
            (me, local.port())
        } else {
            (peer.index, remote.port())
        };
        let mut first_link = true;
        if let Some(old) = self.links.of(peer.index) {
            let existing = self.links.get(old).expect("by_index names a link");
            if existing.instance == peer.instance {
                // Both ends dialed each other: keep the link dialed by the
                // lower index, as the other end does too.
                if dialer >= existing.dialer {
                    return LinkUp::Refused(Sealed::Bye(Bye::Duplicate));
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
            let at = self.since_start(now);
            self.members.set_own_addrs(vec![local.ip()], at);
        }
        let mut state = LinkState::new(peer.index, peer.instance, dialer);
        state.serving = peer.serving;
        let id = self.links.insert(state);
        self.dialing.queue.cancel(DialKey::Peer(peer.index));
        let info = &mut self.dialing.peers[peer.index as usize];
        info.failures = 0;
        info.retry_at = None;
        if first_link {
            let name = self.settings.peers[peer.index as usize].to_string();
            info!(
                peer = %name,
                addr = %remote.ip(),
                instance = %peer.instance.short(),
                direction = if dialed { "outgoing" } else { "incoming" },
                after = %human(self.since_start(now)),
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
            claim: Default::default(),
            board: Default::default(),
        };
        self.merge(now, record, Source::Link(id));
        LinkUp::Adopted(id)
    }

    /// Asks a link to close; `bye` tells the peer it is on purpose.
    pub(super) fn close_link(&mut self, id: LinkId, bye: Option<Bye>) {
        let Some(state) = self.links.get_mut(id) else {
            return;
        };
        if state.closing {
            return; // asked once already: one BYE and one close per link
        }
        state.closing = true;
        self.links.unlink(id);
        if let Some(reason) = bye {
            self.push(Action::Send(id, Sealed::Bye(reason)));
        }
        self.push(Action::Close(id));
    }

    /// Says goodbye on link `id` and closes it without waiting long for
    /// the peer's end ([`Action::Abandon`]).
    fn abandon_link(&mut self, id: LinkId) {
        let Some(state) = self.links.get_mut(id) else {
            return;
        };
        if state.closing {
            return;
        }
        state.closing = true;
        self.links.unlink(id);
        self.push(Action::Send(id, Sealed::Bye(Bye::Leaving)));
        self.push(Action::Abandon(id));
    }

    /// A frame came in on link `id`.
    pub fn frame(&mut self, now: Instant, id: LinkId, frame: Sealed) {
        let Some(state) = self.links.get_mut(id) else {
            return;
        };
        state.heard = true;
        let index = state.index;
        match frame {
            Sealed::Records(records) => {
                for r in records {
                    self.merge(now, r, Source::Link(id));
                }
            }
            Sealed::Complete => {
                state.peer_complete = true;
                let peer = (index, state.instance);
                if !self.released_peers.contains(&peer) {
                    self.released_peers.push(peer);
                }
            }
            Sealed::Released(peers) => self.released_elsewhere(id, &peers),
            Sealed::Bye(reason) => {
                debug!(peer = %self.settings.peers[index as usize], ?reason, "link closed by the peer");
                state.peer_bye = true;
                self.close_link(id, None);
            }
            Sealed::Reject(reason, detail) => {
                state.peer_bye = true;
                let peer = self.settings.peers[index as usize].to_string();
                self.log_rejection(&peer, reason, &detail, "rejected by");
                self.close_link(id, None);
            }
        }
    }

    /// Link `id`'s peer says these peers have released (it heard their
    /// COMPLETE): a link of ours to one of them that has not confirmed
    /// counts as confirmed.
    fn released_elsewhere(&mut self, from: LinkId, peers: &[(u32, InstanceId)]) {
        for &(index, instance) in peers {
            let linked: Vec<LinkId> = (self.links.iter())
                .filter(|(id, l)| *id != from && l.index == index && l.instance == instance)
                .map(|(id, _)| id)
                .collect();
            for id in linked {
                if let Some(l) = self.links.get_mut(id)
                    && !l.peer_complete
                    && !l.released_elsewhere
                {
                    l.released_elsewhere = true;
                    debug!(
                        peer = %self.settings.peers[index as usize],
                        "{} has released, as another peer heard: its own confirmation is not \
                         needed",
                        self.settings.peers[index as usize]
                    );
                }
            }
        }
    }

    /// Link `id`'s outbox was full: the RECORDS frame starting at version
    /// `from` (and any after it) was not handed over. The link gets those
    /// records, in their latest form, once [`Core::room`] says it can
    /// take more.
    pub fn unsent(&mut self, id: LinkId, from: Version) {
        if let Some(state) = self.links.get_mut(id) {
            state.cursor = state.cursor.min(from);
            state.blocked = true;
        }
    }

    /// Link `id`'s outbox has room again after [`Core::unsent`].
    pub fn room(&mut self, id: LinkId) {
        if let Some(state) = self.links.get_mut(id) {
            state.blocked = false;
        }
    }

    /// Links waiting for room in their outbox.
    pub fn blocked(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links
            .iter()
            .filter(|(_, l)| l.blocked && !l.closing)
            .map(|(id, _)| id)
    }

    /// Link `id` ended. Unless it ended gracefully, its incarnation is
    /// declared dead, so the others wait for its replacement.
    pub fn closed(&mut self, now: Instant, id: LinkId, end: End) {
        let Some(state) = self.links.remove(id) else {
            return;
        };
        if self.links.is_empty() {
            self.dialing.isolated_since = now;
        }
        debug!(
            peer = %self.settings.peers[state.index as usize],
            ?end,
            heard = state.heard,
            bye = state.peer_bye,
            closing = state.closing,
            complete = state.peer_complete,
            elsewhere = state.released_elsewhere,
            "link ended"
        );
        if state.ended_gracefully() || !self.members.is_current(state.index, state.instance) {
            return;
        }
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
        let at = self.since_start(now);
        let merged = self.members.declare_dead(state.index, state.instance, at);
        self.after_merge(now, merged, Source::Local);
    }

    /// Leaves the barrier for good (a serving sidecar on SIGTERM): records
    /// this pod as `left` so that a replacement arriving later still counts
    /// it, and says goodbye on every link.
    pub fn leave(&mut self, now: Instant) {
        let at = self.since_start(now);
        self.members.set_own_state(State::Left, at);
        self.flush();
        for id in self.links.ids() {
            self.close_link(id, Some(Bye::Leaving));
        }
    }

    fn merge(&mut self, now: Instant, record: Record, source: Source) {
        let merged = self.members.merge(record, source, self.since_start(now));
        self.after_merge(now, merged, source);
    }

    /// Logs what a merge changed and releases when the table is complete.
    fn after_merge(&mut self, now: Instant, merged: Merged, source: Source) {
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
            Merged::Invalid(why) => {
                warn!(?source, "barrier: ignored an invalid record: {why}");
            }
            Merged::Changed { .. } | Merged::Nothing | Merged::Ignored(_) => {}
        }
        if !self.settings.serve && self.released.is_none() && self.members.all_arrived() {
            self.release(now);
        }
    }

    /// After the release, a changed address is a re-admission. The
    /// hand-off follows it at once, or (serving) with the next round.
    fn changed_after_release(&mut self) {
        if self.released.is_some() {
            self.readmissions += 1;
            if !self.settings.serve {
                self.push(Action::Publish);
            }
        }
    }

    /// Brings a serving pod's rounds up to date: floods its new claim,
    /// logs what changed, publishes each round's release.
    pub(super) fn step_rounds(&mut self, now: Instant) {
        if !self.settings.serve {
            return;
        }
        let at = self.since_start(now);
        let due = self.rounds.deadline().is_some_and(|d| d <= at);
        if self.rounds_seen == Some(self.members.head()) && !due {
            return;
        }
        let step = self.rounds.step(&self.members, at);
        if let Some(claim) = step.claim {
            self.set_claim(claim, at);
        }
        self.rounds_seen = Some(self.members.head());
        for event in step.events {
            self.on_round_event(event, now);
        }
    }

    fn set_claim(&mut self, claim: Claim, at: Duration) {
        if !self.members.set_own_claim(claim, at) {
            warn!(
                "barrier: this pod's sequence number is at its ceiling; its round claim stays local"
            );
        }
    }

    fn on_round_event(&mut self, event: Event, now: Instant) {
        let at = self.since_start(now);
        match event {
            Event::Released(round) => {
                if self.released.is_none() {
                    self.release(now);
                } else {
                    let took = self.rounds.formed().last;
                    info!(
                        round,
                        formed_in = %human(took),
                        "round {round} released: all {} peers are in it (formed in {})",
                        self.world(),
                        human(took)
                    );
                    self.push(Action::Publish);
                }
            }
            Event::Ended(round, cause) => {
                let peer = &self.settings.peers[cause.index() as usize];
                let next = if self.rounds.finishing().is_some() {
                    "the group is finishing, so no round follows"
                } else {
                    "the group restarts in the next round"
                };
                warn!(
                    round,
                    cause = cause.name(),
                    index = cause.index(),
                    "round {round} ended: {cause} ({peer}); {next}"
                );
            }
            Event::Joined(round) => {
                debug!(round, "joined round {round}");
            }
            Event::Finishing(index) => {
                info!(
                    index,
                    "the group is finishing: index {index}'s workload is done for good, so no \
                     round restarts from now on"
                );
            }
            Event::Overdue(round) => {
                warn!(
                    round,
                    after = %human(at),
                    "the workload of round {round} did not report its command stopped within its \
                     grace; joining the next round without waiting longer"
                );
            }
        }
    }

    /// A `peergate run` that ran nothing after round `after` asks to start
    /// its command, promising to stop it within `grace` when told.
    pub fn attach(&mut self, now: Instant, after: u32, grace: Duration) -> Attach {
        let attach = self.rounds.attach(after, grace);
        self.rounds_seen = None;
        self.step_rounds(now);
        attach
    }

    /// A run that started its command in `round` has stopped it, or is gone.
    pub fn detach(&mut self, now: Instant, round: u32) {
        self.rounds.detach(round);
        self.rounds_seen = None;
        self.step_rounds(now);
    }

    /// A run reports how its command of `round` ended: `failed` (a non-zero
    /// code or a signal, as 128 + n) or done for good (`Work::Exited`).
    /// A failure of a round that is not the live one is old news.
    pub fn report(&mut self, now: Instant, work: Work) {
        let at = self.since_start(now);
        let mine = self.members.me().claim;
        let accept = match (mine.work, work) {
            (Work::Exited { .. }, _) => false,
            (_, Work::Failed { round, .. }) => self.rounds.live() == Some(round),
            (_, Work::Exited { .. }) => true,
            (_, Work::Running) => false,
        };
        if !accept {
            debug!(?work, "workload report ignored: not about the live round");
            return;
        }
        self.set_claim(Claim { work, ..mine }, at);
        self.step_rounds(now);
    }

    /// When the rounds next need a step without any input.
    pub(super) fn rounds_deadline(&self) -> Option<Instant> {
        self.rounds.deadline().map(|d| self.start + d)
    }

    pub fn rounds(&self) -> &Rounds {
        &self.rounds
    }

    pub(super) fn release(&mut self, now: Instant) {
        let after = self.since_start(now);
        self.released = Some(after);
        if self.settings.serve {
            let round = self.rounds.released().map_or(1, |r| r.round);
            info!(
                peers = self.world(),
                elapsed = %human(after),
                round,
                "all {} peers met after {}, in round {round}; serving",
                self.world(),
                human(after)
            );
        } else {
            debug!(
                links = self.links.len(),
                "released; confirming with the linked peers"
            );
        }
        self.push(Action::Publish);
    }

    /// Sends every link what it lacks: new records, then COMPLETE once
    /// released; then (unless serving) the linked peers known to have
    /// released, and once every link is confirmed, closes them all.
    ///
    /// A link is confirmed by its peer's COMPLETE or, when that cannot
    /// come (a path that drops everything: neither end sees an error until
    /// the TCP user timeout), by a RELEASED frame from another peer that
    /// heard the peer's COMPLETE: a peer that has released needs nothing
    /// more from this pod. Links stay open until every one is confirmed so
    /// that this pod can pass on what its peers need to hear of each
    /// other.
    pub(super) fn flush(&mut self) {
        let head = self.members.head();
        let released = self.released.is_some();
        let leaving = released && !self.settings.serve;
        // In a mesh every pod links to every other, so two ends of a link
        // have other peers in common who can vouch for them; in a tree they
        // mostly have none, and passing the word on would only cost frames
        // at scale: there a link closes as soon as it is confirmed.
        let vouching = leaving && self.topology == Topology::Mesh;
        let mut all_confirmed = true;
        let mut confirmed = Vec::new();
        for (id, state) in self.links.iter_mut() {
            if state.closing {
                continue;
            }
            if !state.blocked && state.cursor < head {
                let changes = self.members.changes_since(state.cursor, Source::Link(id));
                for (from, records) in frames(state.cursor, changes, proto::RECORDS_BUDGET) {
                    self.actions
                        .push_back(Action::Records { id, records, from });
                }
                state.cursor = head;
            }
            if released && !state.sent_complete {
                self.actions.push_back(Action::Send(id, Sealed::Complete));
                state.sent_complete = true;
            }
            if vouching && state.released_sent < self.released_peers.len() {
                let news: Vec<(u32, InstanceId)> = self.released_peers[state.released_sent..]
                    .iter()
                    .filter(|&&(i, inst)| (i, inst) != (state.index, state.instance))
                    .copied()
                    .collect();
                state.released_sent = self.released_peers.len();
                if !news.is_empty() {
                    trace!(
                        peer = %self.settings.peers[state.index as usize],
                        released = news.len(),
                        "telling a linked peer which peers have released"
                    );
                    self.actions
                        .push_back(Action::Send(id, Sealed::Released(news)));
                }
            }
            all_confirmed &= state.peer_complete || state.released_elsewhere;
            if leaving && !vouching && state.sent_complete && state.peer_complete {
                confirmed.push(id);
            }
        }
        for id in confirmed {
            self.close_link(id, None);
        }
        if !leaving || !all_confirmed {
            return;
        }
        for id in self.links.ids() {
            let Some(state) = self.links.get(id) else {
                continue;
            };
            if state.closing {
                continue;
            }
            if state.peer_complete {
                self.close_link(id, None);
            } else {
                // The goodbye may still get through: then the end is
                // graceful for the peer as well. It is anyway: the peer
                // hears of this pod's release from the same relays.
                self.abandon_link(id);
            }
        }
    }
}

/// Cuts `changes` (from version `cursor` on) into frames of at most
/// `budget` bytes of records, each with the version it starts at (where a
/// link's cursor goes back to if the frame cannot be queued).
fn frames<'a>(
    cursor: Version,
    changes: impl Iterator<Item = (Version, &'a Record)>,
    budget: usize,
) -> Vec<(Version, Vec<Record>)> {
    let mut frames = Vec::new();
    let mut from = cursor;
    let mut records = Vec::new();
    let mut bytes = 0;
    for (version, record) in changes {
        let len = record.wire_len();
        if !records.is_empty() && bytes + len > budget {
            frames.push((from, std::mem::take(&mut records)));
            from = version;
            bytes = 0;
        }
        records.push(record.clone());
        bytes += len;
    }
    if !records.is_empty() {
        frames.push((from, records));
    }
    frames
}

pub(super) fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod frame_tests {
    use std::sync::Arc;

    use super::*;
    use crate::rendezvous::board::Board;

    fn record(index: u32, value_len: usize) -> Record {
        let mut id = [1u8; 16];
        id[..4].copy_from_slice(&index.to_be_bytes());
        Record {
            index,
            instance: InstanceId(id),
            started_ms: 1,
            seq: 1,
            state: State::Alive,
            addrs: vec![],
            claim: Claim::default(),
            board: Arc::new(
                Board::default()
                    .put(1, "k", &"v".repeat(value_len))
                    .unwrap(),
            ),
        }
    }

    #[test]
    fn records_are_cut_into_frames_by_their_bytes() {
        let records: Vec<Record> = (0..5).map(|i| record(i, 100)).collect();
        let len = records[0].wire_len();
        let changes = || records.iter().enumerate().map(|(v, r)| (10 + v as u64, r));
        // Two records per frame; each frame starts at its first version.
        let cut = frames(10, changes(), 2 * len);
        let shape: Vec<(u64, usize)> = cut.iter().map(|(v, r)| (*v, r.len())).collect();
        assert_eq!(shape, vec![(10, 2), (12, 2), (14, 1)]);
        // A record larger than the budget still goes, alone.
        let cut = frames(10, changes(), len - 1);
        assert_eq!(cut.len(), 5);
        assert!(frames(3, std::iter::empty(), len).is_empty());
        // 300 pods' 4 KiB values take two frames of the wire, each within
        // what a frame may carry.
        let full: Vec<Record> = (0..300).map(|i| record(i, 4096)).collect();
        let cut = frames(0, full.iter().map(|r| (0, r)), proto::RECORDS_BUDGET);
        assert_eq!(cut.len(), 2);
        for (_, records) in &cut {
            let body = Sealed::Records(records.clone()).encode();
            assert!(body.len() + proto::TAG_LEN <= proto::MAX_SEALED_BODY);
        }
    }
}

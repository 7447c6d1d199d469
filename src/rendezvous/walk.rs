//! Whom the core dials, and when: the periodic step ([`Core::poll`]), the
//! topology walk over the candidates, the fallback beyond it, the Service
//! sweep out of an island, and the shedding of links no longer needed. Part
//! of the I/O-free core: it only queues [`Action::Dial`]s and closes.

use std::net::IpAddr;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::core::{Action, Core, DialKey, DialTarget};
use super::links::LinkId;
use super::proto::{Bye, State};
use super::topology::Topology;
use crate::cause::Cause;
use crate::peers::Target;

/// Failed dials of a known address after which the walk looks past it.
const SUSPECT_AFTER: u32 = 3;

impl Core {
    /// Does what is due at `now`: the release of a world with nobody to
    /// wait for, the dials, the frames every link lacks, the progress line.
    pub fn poll(&mut self, now: Instant) {
        if !self.settings.serve && self.released.is_none() && self.members.all_arrived() {
            self.release(now);
        }
        self.step_rounds(now);
        self.maintain(now);
        self.start_dials(now);
        self.flush();
        if now >= self.next_tick {
            self.tick();
            self.next_tick += self.settings.interval;
            if self.next_tick <= now {
                self.next_tick = now + self.settings.interval;
            }
        }
    }

    /// When [`Core::poll`] next has something to do, unless an input
    /// arrives first.
    pub fn next_wake(&mut self) -> Instant {
        let wake = match self.dialing.queue.next_instant() {
            Some(at) => at.min(self.next_tick),
            None => self.next_tick,
        };
        self.rounds_deadline().map_or(wake, |d| wake.min(d))
    }

    fn tick(&mut self) {
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

    /// Keeps the links the topology wants: walks the candidates in order,
    /// counting links, dialing known addresses, and resolving at most one
    /// more unknown name than links are missing (plus one rotating
    /// fallback while links are missing), so an isolated pod widens its
    /// search by one name per interval instead of querying every name.
    pub(super) fn maintain(&mut self, now: Instant) {
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
            if self.links.has(c) {
                have += 1;
                linked.push(c);
                continue;
            }
            let failures = self.dialing.peers[c as usize].failures;
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
            && !self.dialing.queue.is_pending(DialKey::Service)
        {
            let at = self.dialing.service_retry.map_or(now, |t| t.max(now));
            self.dialing.queue.schedule(DialKey::Service, at);
        }
        if have < want && self.topology == Topology::Tree && walked < self.candidates.len() {
            let beyond = self.candidates.len() - walked;
            let c = self.candidates[walked + self.dialing.extra % beyond];
            if !self.links.has(c)
                && self
                    .members
                    .current(c)
                    .is_none_or(|r| r.state == State::Alive)
            {
                self.dialing.fallback = Some(c);
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
        match (leading, self.dialing.leading_since) {
            (false, _) => self.dialing.leading_since = None,
            (true, None) => self.dialing.leading_since = Some(now),
            (true, Some(_)) => {}
        }
        let interval = self.settings.interval;
        let alone = self.links.is_empty()
            && now.saturating_duration_since(self.dialing.isolated_since) >= interval;
        let led = self
            .dialing
            .leading_since
            .is_some_and(|t| now.saturating_duration_since(t) >= interval);
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
            .map(|(id, _)| id)
            .collect();
        for id in extra {
            self.close_link(id, Some(Bye::Unneeded));
        }
    }

    fn ensure_dial(&mut self, c: u32, now: Instant) {
        let key = DialKey::Peer(c);
        if !self.dialing.queue.is_pending(key) {
            let at = self.dialing.peers[c as usize]
                .retry_at
                .map_or(now, |t| t.max(now));
            self.dialing.queue.schedule(key, at);
        }
    }

    /// Queues a dial for every key due at `now`, as far as the concurrency
    /// allows.
    pub(super) fn start_dials(&mut self, now: Instant) {
        while let Some(key) = self.dialing.queue.next_due(now) {
            match self.dial_target(key) {
                Some(target) => self.push(Action::Dial {
                    key,
                    target,
                    started: now,
                }),
                None => self.dialing.queue.finished(key),
            }
        }
    }

    /// What a dial of `key` should try now; `None` when there is nothing
    /// to dial (linked meanwhile, or known to be gone).
    fn dial_target(&self, key: DialKey) -> Option<DialTarget> {
        match key {
            DialKey::Service => {
                let name = self.settings.service.clone()?;
                // Only addresses nobody on this side knows lead somewhere new.
                let skip: Vec<IpAddr> = (0..self.world())
                    .filter(|&i| self.members.arrived(i))
                    .flat_map(|i| self.members.addrs(i).iter().copied())
                    .chain(self.members.me().addrs.iter().copied())
                    .collect();
                Some(DialTarget {
                    expect: None,
                    target: Target::Name(name),
                    known: Vec::new(),
                    skip,
                })
            }
            DialKey::Peer(c) => {
                if self.links.has(c) {
                    return None;
                }
                let known = match self.members.current(c) {
                    Some(r) if r.state == State::Alive && !r.addrs.is_empty() => r.addrs.clone(),
                    Some(r) if r.state != State::Alive => return None,
                    _ => Vec::new(),
                };
                Some(DialTarget {
                    expect: Some(c),
                    target: self.settings.peers[c as usize].target.clone(),
                    known,
                    skip: Vec::new(),
                })
            }
        }
    }

    /// A dial started at `started` ended: linked (`None`; adopt the link
    /// next with [`Core::link_up`]) or failed with `cause`.
    pub fn dial_done(&mut self, key: DialKey, started: Instant, failed: Option<Cause>) {
        self.dialing.queue.finished(key);
        let interval = self.settings.interval;
        match key {
            DialKey::Service => match failed {
                None => self.dialing.service_retry = None,
                Some(cause) => {
                    debug!(cause = %cause, "dial through the Service's record failed");
                    self.dialing.service_retry = Some(started + interval);
                }
            },
            DialKey::Peer(c) => {
                let info = &mut self.dialing.peers[c as usize];
                info.attempts += 1;
                match failed {
                    None => {
                        info.failures = 0;
                        info.retry_at = None;
                    }
                    Some(cause) => {
                        debug!(peer = %self.settings.peers[c as usize], cause = %cause, attempt = info.attempts, "dial failed");
                        info.failures += 1;
                        info.last_cause = cause;
                        info.retry_at = Some(started + interval);
                        if self.dialing.fallback == Some(c) {
                            // The fallback failed too: try the next one.
                            self.dialing.extra = self.dialing.extra.wrapping_add(1);
                        }
                    }
                }
            }
        }
    }
}

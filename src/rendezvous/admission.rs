//! Who may start a handshake, and how failed ones are reported.
//!
//! Anyone in the cluster network can open the barrier port, so what an
//! unauthenticated connection may cost is budgeted: at most
//! [`PER_SOURCE`] handshakes per source address at once, at most
//! [`MAX_PENDING`] in all, each with a short deadline. When the budget is
//! full, the oldest pending handshake makes room: a flood cannot pin slots,
//! and a genuine peer's handshake (a few milliseconds) is rarely the oldest.
//! Authenticated links are not counted here at all.
//!
//! Rejections are counted, not logged one by one: one summary line per
//! period names the counts per reason and the busiest sources.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Handshakes one source address may have pending at once.
pub const PER_SOURCE: usize = 8;
/// Handshakes pending at once, all sources together.
pub const MAX_PENDING: usize = 64;
/// Identifies a pending handshake (allocated by the core, never reused).
pub type HandshakeId = u64;

/// Sources named in a summary line.
const NAMED_SOURCES: usize = 3;

/// Why a connection did not become a link before authentication (or was
/// not even let in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// More than [`PER_SOURCE`] handshakes from one address.
    PerSource,
    /// Made room for a newer connection while the budget was full.
    Evicted,
    /// Nothing valid within the handshake deadline.
    Silent,
    /// Not a peergate frame.
    Garbage,
    /// A peergate of another protocol version.
    OldVersion,
    /// A tag that did not check out.
    BadProof,
    /// Closed or reset mid-handshake.
    Closed,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::PerSource => "over_per_address_limit",
            Refusal::Evicted => "evicted_budget_full",
            Refusal::Silent => "silent",
            Refusal::Garbage => "not_peergate",
            Refusal::OldVersion => "protocol_version",
            Refusal::BadProof => "bad_proof",
            Refusal::Closed => "closed_mid_handshake",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Refusal::PerSource => "over the per-address limit",
            Refusal::Evicted => "evicted to make room",
            Refusal::Silent => "silent past the deadline",
            Refusal::Garbage => "not peergate",
            Refusal::OldVersion => "another protocol version",
            Refusal::BadProof => "bad proof (wrong token, replay, reflection or relay)",
            Refusal::Closed => "closed mid-handshake",
        }
    }
}

/// What [`Admission::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, once this pending handshake (the oldest) is aborted.
    YesEvicting(HandshakeId),
    No,
}

#[derive(Debug, Default)]
pub struct Admission {
    per_source: HashMap<IpAddr, usize>,
    /// Pending handshakes, oldest first.
    pending: VecDeque<(HandshakeId, IpAddr)>,
    /// Refusals since the last summary, by reason and by source.
    recent: BTreeMap<Refusal, u64>,
    recent_sources: HashMap<IpAddr, u64>,
    /// Refusals since the start, by reason (for metrics).
    total: BTreeMap<Refusal, u64>,
}

impl Admission {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides on a new connection from `source`. A refusal is counted.
    pub fn admit(&mut self, source: IpAddr) -> Admit {
        if self.per_source.get(&source).copied().unwrap_or(0) >= PER_SOURCE {
            self.refused(Refusal::PerSource, source);
            return Admit::No;
        }
        if self.pending.len() >= MAX_PENDING
            && let Some(&(oldest, from)) = self.pending.front()
        {
            self.refused(Refusal::Evicted, from);
            return Admit::YesEvicting(oldest);
        }
        Admit::Yes
    }

    /// A handshake task was started for an admitted connection.
    pub fn started(&mut self, id: HandshakeId, source: IpAddr) {
        *self.per_source.entry(source).or_default() += 1;
        self.pending.push_back((id, source));
    }

    /// A handshake task ended (in any way); frees its slot.
    pub fn finished(&mut self, id: HandshakeId) -> Option<IpAddr> {
        let pos = self.pending.iter().position(|(p, _)| *p == id)?;
        let (_, source) = self.pending.remove(pos).expect("position is valid");
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        Some(source)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counts a connection that failed before authentication.
    pub fn refused(&mut self, why: Refusal, source: IpAddr) {
        *self.recent.entry(why).or_default() += 1;
        *self.recent_sources.entry(source).or_default() += 1;
        *self.total.entry(why).or_default() += 1;
    }

    /// Refusals since the start, by reason.
    pub fn totals(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        self.total.iter().map(|(r, n)| (*r, *n))
    }

    /// The summary of the refusals since the last call, if any:
    /// `turned away 146 connections: 140 over the per-address limit, 6 silent
    /// past the deadline; from 10.0.0.9 (145), 10.0.0.7 (1)`.
    pub fn take_summary(&mut self) -> Option<String> {
        let total: u64 = self.recent.values().sum();
        if total == 0 {
            return None;
        }
        let mut line = format!(
            "turned away {total} connection{}:",
            if total == 1 { "" } else { "s" }
        );
        let reasons: Vec<String> = self
            .recent
            .iter()
            .map(|(r, n)| format!("{n} {}", r.describe()))
            .collect();
        write!(line, " {}", reasons.join(", ")).expect("writing to a String");
        let mut sources: Vec<(IpAddr, u64)> = self.recent_sources.drain().collect();
        sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let named: Vec<String> = sources
            .iter()
            .take(NAMED_SOURCES)
            .map(|(ip, n)| format!("{ip} ({n})"))
            .collect();
        write!(line, "; from {}", named.join(", ")).expect("writing to a String");
        if sources.len() > NAMED_SOURCES {
            write!(
                line,
                " and {} more addresses",
                sources.len() - NAMED_SOURCES
            )
            .expect("writing to a String");
        }
        self.recent.clear();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<HandshakeId> {
        (100..100 + n as HandshakeId).collect()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let mut a = Admission::new();
        let ids = ids(PER_SOURCE + 2);
        for id in &ids[..PER_SOURCE] {
            assert_eq!(a.admit(ip(9)), Admit::Yes);
            a.started(*id, ip(9));
        }
        assert_eq!(a.admit(ip(9)), Admit::No);
        assert_eq!(a.admit(ip(9)), Admit::No);
        // Another address is unaffected.
        assert_eq!(a.admit(ip(2)), Admit::Yes);
        // A finished handshake frees a slot for its address.
        assert_eq!(a.finished(ids[0]), Some(ip(9)));
        assert_eq!(a.admit(ip(9)), Admit::Yes);
        assert_eq!(a.finished(ids[0]), None, "already finished");
        let line = a.take_summary().unwrap();
        assert_eq!(
            line,
            "turned away 2 connections: 2 over the per-address limit; from 10.0.0.9 (2)"
        );
        assert_eq!(a.take_summary(), None, "counts reset after a summary");
        assert_eq!(a.totals().collect::<Vec<_>>(), [(Refusal::PerSource, 2)]);
    }

    #[test]
    fn a_full_budget_evicts_the_oldest_pending_handshake() {
        let mut a = Admission::new();
        let ids = ids(MAX_PENDING);
        for (k, id) in ids.iter().enumerate() {
            let source = ip((k % 200) as u8);
            assert_eq!(a.admit(source), Admit::Yes);
            a.started(*id, source);
        }
        assert_eq!(a.pending(), MAX_PENDING);
        assert_eq!(a.admit(ip(250)), Admit::YesEvicting(ids[0]));
        assert!(a.take_summary().unwrap().contains("1 evicted to make room"));
    }

    #[test]
    fn summaries_name_the_busiest_sources() {
        let mut a = Admission::new();
        for (last, n) in [(1, 5), (2, 1), (3, 9), (4, 2), (5, 1)] {
            for _ in 0..n {
                a.refused(Refusal::Silent, ip(last));
            }
        }
        a.refused(Refusal::BadProof, ip(3));
        assert_eq!(
            a.take_summary().unwrap(),
            "turned away 19 connections: 18 silent past the deadline, 1 bad proof (wrong token, \
             replay, reflection or relay); from 10.0.0.3 (10), 10.0.0.1 (5), 10.0.0.4 (2) and 2 \
             more addresses"
        );
    }
}

//! The link table: every authenticated link this pod holds, by id, and the
//! one link each peer index counts as its own. Pure bookkeeping: the tasks
//! that move the bytes belong to the shell.

use std::collections::HashMap;

use super::members::Version;
use super::proto::InstanceId;

/// Identifies a link for its lifetime (never reused).
pub type LinkId = u64;

/// How a link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The peer closed its side after everything it sent.
    Eof,
    /// A read or write failed, or a frame was invalid.
    Error(String),
}

/// What the core knows of one link.
#[derive(Debug, Clone)]
pub struct LinkState {
    pub index: u32,
    pub instance: InstanceId,
    /// Who dialed this link: the index, then the dialing socket's port. Of
    /// two links to one peer, both ends keep the one with the lower key
    /// (both ends see the same key).
    pub dialer: (u32, u16),
    /// The change-log version up to which the link has been handed
    /// records (what it was not handed moves it back: `Core::unsent`).
    pub cursor: Version,
    /// Its outbox was full: no RECORDS until it has room again.
    pub blocked: bool,
    pub sent_complete: bool,
    pub peer_complete: bool,
    /// Another peer said this link's peer has released (RELEASED): its
    /// own COMPLETE is not needed to leave.
    pub released_elsewhere: bool,
    /// How many of the core's released peers this link has been told of.
    pub released_sent: usize,
    /// The peer said goodbye or rejected us: its end is no death.
    pub peer_bye: bool,
    /// A frame came from the peer: it finished its side of the handshake.
    /// A link that ends before that (the peer gave up on a handshake this
    /// side had finished) is no death either.
    pub heard: bool,
    /// We asked the link to close.
    pub closing: bool,
    /// The peer serves (`--serve`): it never closes a link after the
    /// release without a goodbye, so such an end is a death.
    pub serving: bool,
}

impl LinkState {
    pub fn new(index: u32, instance: InstanceId, dialer: (u32, u16)) -> Self {
        LinkState {
            index,
            instance,
            dialer,
            cursor: 0,
            blocked: false,
            sent_complete: false,
            peer_complete: false,
            released_elsewhere: false,
            released_sent: 0,
            peer_bye: false,
            heard: false,
            closing: false,
            serving: false,
        }
    }

    /// Whether the link's end says nothing about the peer's life: it never
    /// finished, it said goodbye, we closed it, another peer said it has
    /// released (so it leaves), or both sides had confirmed and the peer
    /// does not serve (so it leaves after confirming).
    pub fn ended_gracefully(&self) -> bool {
        !self.heard
            || self.peer_bye
            || self.closing
            || self.released_elsewhere
            || (self.peer_complete && self.sent_complete && !self.serving)
    }
}

#[derive(Debug, Default)]
pub struct Links {
    all: HashMap<LinkId, LinkState>,
    /// The link each index counts as its own (not closing).
    by_index: HashMap<u32, LinkId>,
    next: LinkId,
}

impl Links {
    /// Adds a link and makes it its index's own.
    pub fn insert(&mut self, state: LinkState) -> LinkId {
        let id = self.next;
        self.next += 1;
        self.by_index.insert(state.index, id);
        self.all.insert(id, state);
        id
    }

    /// The index no longer counts link `id` as its own (it is closing or
    /// gone). The one place a link leaves `by_index`.
    pub fn unlink(&mut self, id: LinkId) {
        if let Some(state) = self.all.get(&id)
            && self.by_index.get(&state.index) == Some(&id)
        {
            self.by_index.remove(&state.index);
        }
    }

    /// Forgets link `id` (it ended).
    pub fn remove(&mut self, id: LinkId) -> Option<LinkState> {
        self.unlink(id);
        self.all.remove(&id)
    }

    pub fn get(&self, id: LinkId) -> Option<&LinkState> {
        self.all.get(&id)
    }

    pub fn get_mut(&mut self, id: LinkId) -> Option<&mut LinkState> {
        self.all.get_mut(&id)
    }

    /// The link `index` counts as its own.
    pub fn of(&self, index: u32) -> Option<LinkId> {
        self.by_index.get(&index).copied()
    }

    pub fn has(&self, index: u32) -> bool {
        self.by_index.contains_key(&index)
    }

    /// Indices with a link of their own.
    #[cfg(test)]
    pub fn linked(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_index.keys().copied()
    }

    #[cfg(test)]
    pub fn linked_count(&self) -> usize {
        self.by_index.len()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn ids(&self) -> Vec<LinkId> {
        self.all.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (LinkId, &LinkState)> {
        self.all.iter().map(|(&id, l)| (id, l))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (LinkId, &mut LinkState)> {
        self.all.iter_mut().map(|(&id, l)| (id, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(index: u32) -> LinkState {
        LinkState::new(index, InstanceId([index as u8; 16]), (index, 1))
    }

    #[test]
    fn a_newer_link_of_an_index_stays_its_own_when_the_older_goes() {
        let mut links = Links::default();
        let old = links.insert(state(3));
        let new = links.insert(state(3));
        assert_eq!(links.of(3), Some(new));
        // The old link ends: the index keeps the new one.
        assert!(links.remove(old).is_some());
        assert_eq!(links.of(3), Some(new));
        links.unlink(new);
        assert!(!links.has(3));
        assert_eq!(links.len(), 1, "unlinked is not removed");
        assert!(links.remove(new).is_some());
        assert!(links.is_empty());
        assert_ne!(old, new, "ids are never reused");
    }

    #[test]
    fn an_end_before_the_first_frame_or_after_a_goodbye_is_graceful() {
        let mut l = state(1);
        assert!(l.ended_gracefully(), "never heard from");
        l.heard = true;
        assert!(!l.ended_gracefully());
        l.sent_complete = true;
        assert!(
            !l.ended_gracefully(),
            "one side's confirmation is not enough"
        );
        l.peer_complete = true;
        assert!(l.ended_gracefully());
        let mut l = state(1);
        l.heard = true;
        l.peer_bye = true;
        assert!(l.ended_gracefully());
    }
}

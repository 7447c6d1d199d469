//! Wire format of barrier protocol version 4: framing, and the bodies of
//! every frame. Pure functions over bytes; the handshake that orders these
//! frames is in `session`, their MACs in `auth`. docs/protocol.md is the
//! specification; this module and its tests are what it describes. The
//! wire's lengths and instance ids live here too: `auth` builds on this
//! module, never the reverse.
//!
//! Every frame is a 10-byte header and a body:
//!
//! ```text
//! offset size  field
//! 0      4     magic "PGBR"
//! 4      1     protocol version (4)
//! 5      1     kind
//! 6      4     body length, big-endian
//! 10     n     body
//! ```
//!
//! Before the handshake completes, bodies are at most [`MAX_PLAIN_BODY`]
//! bytes; after it, every frame is *sealed* (its body ends with a 32-byte
//! tag under the connection's frame key) and may be up to
//! [`MAX_SEALED_BODY`].
//!
//! Handshake frames (plain):
//! * `NONCE` (1): 32 random bytes.
//! * `PROOF` (2): the dialer's 32-byte tag over the transcript.
//! * `HELLO` (3): [`Hello`] claims, then their 32-byte tag.
//!
//! Sealed frames:
//! * `RECORDS` (16): u32 count, then [`Record`]s.
//! * `COMPLETE` (17): empty; "I have released".
//! * `BYE` (18): u8 [`Bye`] reason; "I close this link on purpose".
//! * `REJECT` (19): u8 [`Reject`] reason, u8 length, UTF-8 detail.
//! * `RELEASED` (20): u32 count, then (u32 index, 16-byte instance id)
//!   pairs: "these peers have released" (I heard their COMPLETE).
//!
//! An address is a family byte (4 or 6) and 4 or 16 bytes. Decoders reject
//! trailing bytes, unknown values and oversized counts, so every accepted
//! frame has exactly one encoding.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use thiserror::Error;

use super::board::{self, Board};

pub const MAGIC: [u8; 4] = *b"PGBR";
/// Version 3 added each record's round claim (docs/protocol.md, "Rounds").
pub const VERSION: u8 = 4;
pub const HEADER_LEN: usize = 10;
/// Largest body before the handshake completes: a stranger's frames stay small.
pub const MAX_PLAIN_BODY: usize = 1024;
/// Largest sealed body: about 20 000 peer records.
pub const MAX_SEALED_BODY: usize = 1 << 20;
pub const MAX_JOB: usize = 253;
pub const MAX_ADDRS: usize = 16;
pub const MAX_DETAIL: usize = 255;
/// Length of a handshake nonce.
pub const NONCE_LEN: usize = 32;
/// Length of every MAC on the wire.
pub const TAG_LEN: usize = 32;
/// Length of an instance id.
pub const INSTANCE_LEN: usize = 16;

pub type Nonce = [u8; NONCE_LEN];
pub type Tag = [u8; TAG_LEN];

/// A random id drawn once per process (`auth` draws it): tells two
/// incarnations of the same index apart (a replaced pod keeps its hostname
/// and index).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub [u8; INSTANCE_LEN]);

impl InstanceId {
    /// The first 8 hex digits, for log lines.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({})", self.short())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub const KIND_NONCE: u8 = 1;
pub const KIND_PROOF: u8 = 2;
pub const KIND_HELLO: u8 = 3;
pub const KIND_RECORDS: u8 = 16;
pub const KIND_COMPLETE: u8 = 17;
pub const KIND_BYE: u8 = 18;
pub const KIND_REJECT: u8 = 19;
pub const KIND_RELEASED: u8 = 20;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtoError {
    #[error("not a peergate barrier frame (bad magic)")]
    BadMagic,
    #[error(
        "the peer speaks barrier protocol version {0}, this peergate speaks {VERSION}: every pod \
         of a Job must run the same peergate release"
    )]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame body of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// One frame split off the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split<'a> {
    Frame {
        kind: u8,
        body: &'a [u8],
        /// Bytes the whole frame used.
        used: usize,
    },
    /// Not enough bytes yet: at least this many are needed in total.
    NeedMore(usize),
}

/// Splits the first frame off `buf`. Garbage is rejected as early as the
/// bytes allow (a wrong magic after one byte), so a stranger cannot make a
/// pod wait for a frame that will never be valid.
pub fn split(buf: &[u8], max_body: usize) -> Result<Split<'_>, ProtoError> {
    let magic_len = buf.len().min(MAGIC.len());
    if buf[..magic_len] != MAGIC[..magic_len] {
        return Err(ProtoError::BadMagic);
    }
    if buf.len() > 4 && buf[4] != VERSION {
        return Err(ProtoError::Version(buf[4]));
    }
    if buf.len() < HEADER_LEN {
        return Ok(Split::NeedMore(HEADER_LEN));
    }
    let kind = buf[5];
    if !matches!(
        kind,
        KIND_NONCE
            | KIND_PROOF
            | KIND_HELLO
            | KIND_RECORDS
            | KIND_COMPLETE
            | KIND_BYE
            | KIND_REJECT
            | KIND_RELEASED
    ) {
        return Err(ProtoError::Kind(kind));
    }
    let len = u32::from_be_bytes([buf[6], buf[7], buf[8], buf[9]]) as usize;
    if len > max_body {
        return Err(ProtoError::TooLarge(len, max_body));
    }
    // Checked, though `len <= max_body` already rules out a wrap.
    let total = HEADER_LEN
        .checked_add(len)
        .ok_or(ProtoError::TooLarge(len, max_body))?;
    if buf.len() < total {
        return Ok(Split::NeedMore(total));
    }
    Ok(Split::Frame {
        kind,
        body: &buf[HEADER_LEN..total],
        used: total,
    })
}

/// A whole frame: header and body.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// What a pod says about itself in its HELLO. Every field is covered by the
/// HELLO's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub job: String,
    pub world: u32,
    pub index: u32,
    pub instance: InstanceId,
    /// Wall-clock start of this process (ms since the Unix epoch): orders
    /// two live incarnations of one index.
    pub started_ms: u64,
    /// Whether this instance stays after its release (`--serve`).
    pub serving: bool,
    pub addrs: Vec<IpAddr>,
}

impl Hello {
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        if self.job.is_empty() || self.job.len() > MAX_JOB {
            return Err(ProtoError::Malformed("hello: job name length"));
        }
        let mut out = Vec::with_capacity(64 + self.job.len());
        out.push(self.job.len() as u8);
        out.extend_from_slice(self.job.as_bytes());
        out.extend_from_slice(&self.world.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.instance.0);
        out.extend_from_slice(&self.started_ms.to_be_bytes());
        out.push(u8::from(self.serving));
        put_addrs(&mut out, &self.addrs);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Hello, ProtoError> {
        let mut r = Reader::new(bytes);
        let job_len = usize::from(r.u8("hello: job")?);
        if job_len == 0 || job_len > MAX_JOB {
            return Err(ProtoError::Malformed("hello: job name length"));
        }
        let job = String::from_utf8(r.bytes("hello: job", job_len)?.to_vec())
            .map_err(|_| ProtoError::Malformed("hello: job is not UTF-8"))?;
        let hello = Hello {
            job,
            world: r.u32("hello: world size")?,
            index: r.u32("hello: index")?,
            instance: r.instance("hello: instance id")?,
            started_ms: r.u64("hello: start time")?,
            serving: r.flag("hello: flags")?,
            addrs: r.addrs("hello: addresses")?,
        };
        r.finish("hello")?;
        Ok(hello)
    }
}

/// A HELLO frame's body: the claims and their tag.
pub fn hello_body(claims: &[u8], tag: &Tag) -> Vec<u8> {
    let mut body = claims.to_vec();
    body.extend_from_slice(tag);
    body
}

/// Splits a HELLO frame's body into its claims (as sent: the tag covers
/// these bytes) and its tag.
pub fn split_hello(body: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    if body.len() < TAG_LEN {
        return Err(ProtoError::Malformed("hello: shorter than its tag"));
    }
    Ok(body.split_at(body.len() - TAG_LEN))
}

/// A NONCE or PROOF body: exactly 32 bytes.
pub fn fixed32(body: &[u8], what: &'static str) -> Result<[u8; 32], ProtoError> {
    body.try_into().map_err(|_| ProtoError::Malformed(what))
}

const _: () = assert!(NONCE_LEN == 32 && TAG_LEN == 32);

/// Nonce helper with the right name at call sites.
pub fn nonce_from(body: &[u8]) -> Result<Nonce, ProtoError> {
    fixed32(body, "nonce: not 32 bytes")
}

/// A one-byte wire enum: its variants and values are written once, and
/// `TryFrom<u8>` turns a byte back into a variant, or into `Malformed` with
/// the given message for a byte no variant has.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident, unknown = $unknown:literal {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal,)*
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl TryFrom<u8> for $name {
            type Error = ProtoError;

            fn try_from(b: u8) -> Result<$name, ProtoError> {
                match b {
                    $($value => Ok($name::$variant),)*
                    _ => Err(ProtoError::Malformed($unknown)),
                }
            }
        }
    };
}

/// What one pod knows about one incarnation of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub index: u32,
    pub instance: InstanceId,
    pub started_ms: u64,
    /// Raised by the incarnation itself to refute a report of its death,
    /// and with every change of its [`Claim`].
    pub seq: u32,
    pub state: State,
    pub addrs: Vec<IpAddr>,
    /// Where the incarnation stands in the rounds (a serving sidecar's).
    pub claim: Claim,
    /// What its workload published (`peergate put`, `peergate barrier`);
    /// shared, since records are copied into every link's frames.
    pub board: Arc<Board>,
}

impl Record {
    /// Bytes this record takes in a RECORDS frame.
    pub fn wire_len(&self) -> usize {
        let addrs: usize = self.addrs.iter().take(MAX_ADDRS).map(addr_len).sum();
        let values: usize = (self.board.values.iter())
            .map(|(k, v)| 1 + k.len() + 2 + v.len())
            .sum();
        let barriers: usize = self.board.barriers.iter().map(|b| 1 + b.len()).sum();
        MIN_RECORD_LEN + addrs + values + barriers
    }
}

fn addr_len(addr: &IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => 5,
        IpAddr::V6(_) => 17,
    }
}

/// What an incarnation says of itself about the rounds: the round it has
/// joined, the membership it saw complete for that round, and what its
/// workload did. Only the incarnation changes it, raising its `seq` each
/// time, so the `seq` 0 record always carries [`Claim::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The round joined: 1 until a round ends.
    pub round: u32,
    /// The digest of the membership this incarnation saw complete in
    /// `round`; 0 while some index has not arrived.
    pub view: u64,
    pub work: Work,
}

impl Default for Claim {
    fn default() -> Claim {
        Claim {
            round: 1,
            view: 0,
            work: Work::Running,
        }
    }
}

/// What an incarnation's workload (`peergate run`) reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    /// Nothing: running, waiting, or no `peergate run` at all.
    Running,
    /// Its command failed in `round` with this code (128 + n for signal n).
    Failed { round: u32, code: u8 },
    /// It is done for good in `round` and will not rejoin: its command
    /// completed (code 0) or its `peergate run` gave up (the code it exits
    /// with). The group is then finishing.
    Exited { round: u32, code: u8 },
}

impl Work {
    fn kind(self) -> u8 {
        match self {
            Work::Running => 0,
            Work::Failed { .. } => 1,
            Work::Exited { .. } => 2,
        }
    }

    fn round_and_code(self) -> (u32, u8) {
        match self {
            Work::Running => (0, 0),
            Work::Failed { round, code } | Work::Exited { round, code } => (round, code),
        }
    }
}

wire_enum! {
    /// An incarnation's state. At equal `seq`, a later state wins:
    /// `Alive < Dead < Left`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum State, unknown = "record: unknown state" {
        /// Running and part of the barrier.
        Alive = 0,
        /// A peer that held a link to it saw the link die without a goodbye.
        Dead = 1,
        /// It met everyone and left on purpose (or was told to stop).
        Left = 2,
    }
}

wire_enum! {
    /// Why a link is closed on purpose.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Bye, unknown = "bye: unknown reason" {
        /// The sender is leaving (released and done, or stopped).
        Leaving = 0,
        /// Another link to the same peer is kept instead.
        Duplicate = 1,
        /// The sender's place in the topology no longer needs this link.
        Unneeded = 2,
        /// The peer's incarnation was replaced by a newer one.
        Superseded = 3,
    }
}

wire_enum! {
    /// Why an authenticated peer was turned away. These are configuration
    /// mistakes (both sides know the token), so both sides log them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Reject, unknown = "reject: unknown reason" {
        Job = 1,
        WorldSize = 2,
        UnknownIndex = 3,
        OwnIndex = 4,
        SelfConnection = 5,
        StaleIncarnation = 6,
        DuplicateInstance = 7,
        WrongIndex = 8,
    }
}

impl Reject {
    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Job => "job_mismatch",
            Reject::WorldSize => "world_size_mismatch",
            Reject::UnknownIndex => "unknown_index",
            Reject::OwnIndex => "own_index",
            Reject::SelfConnection => "self_connection",
            Reject::StaleIncarnation => "stale_incarnation",
            Reject::DuplicateInstance => "duplicate_instance",
            Reject::WrongIndex => "wrong_index",
        }
    }
}

/// A sealed frame's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    Records(Vec<Record>),
    Complete,
    Bye(Bye),
    Reject(Reject, String),
    /// Peers (index, incarnation) whose COMPLETE the sender heard.
    Released(Vec<(u32, InstanceId)>),
}

impl Sealed {
    pub fn kind(&self) -> u8 {
        match self {
            Sealed::Records(_) => KIND_RECORDS,
            Sealed::Complete => KIND_COMPLETE,
            Sealed::Bye(_) => KIND_BYE,
            Sealed::Reject(..) => KIND_REJECT,
            Sealed::Released(_) => KIND_RELEASED,
        }
    }

    /// The body before its tag. Record lists longer than one frame allows
    /// are the caller's to split ([`RECORDS_BUDGET`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Sealed::Records(records) => {
                out.extend_from_slice(&(records.len() as u32).to_be_bytes());
                for r in records {
                    out.extend_from_slice(&r.index.to_be_bytes());
                    out.extend_from_slice(&r.instance.0);
                    out.extend_from_slice(&r.started_ms.to_be_bytes());
                    out.extend_from_slice(&r.seq.to_be_bytes());
                    out.push(r.state as u8);
                    put_addrs(&mut out, &r.addrs);
                    put_claim(&mut out, &r.claim);
                    put_board(&mut out, &r.board);
                }
            }
            Sealed::Complete => {}
            Sealed::Bye(reason) => out.push(*reason as u8),
            Sealed::Reject(reason, detail) => {
                out.push(*reason as u8);
                let detail = truncate_utf8(detail, MAX_DETAIL);
                out.push(detail.len() as u8);
                out.extend_from_slice(detail.as_bytes());
            }
            Sealed::Released(peers) => {
                out.extend_from_slice(&(peers.len() as u32).to_be_bytes());
                for (index, instance) in peers {
                    out.extend_from_slice(&index.to_be_bytes());
                    out.extend_from_slice(&instance.0);
                }
            }
        }
        out
    }

    pub fn decode(kind: u8, body: &[u8]) -> Result<Sealed, ProtoError> {
        let mut r = Reader::new(body);
        let sealed = match kind {
            KIND_RECORDS => {
                let count = r.u32("records: count")? as usize;
                // Each record takes at least 58 bytes: a count beyond what
                // the body can hold is a lie, not a reason to allocate.
                if count > body.len() / MIN_RECORD_LEN {
                    return Err(ProtoError::Malformed("records: count exceeds the body"));
                }
                let mut records = Vec::with_capacity(count);
                for _ in 0..count {
                    records.push(Record {
                        index: r.u32("record: index")?,
                        instance: r.instance("record: instance id")?,
                        started_ms: r.u64("record: start time")?,
                        seq: r.u32("record: sequence")?,
                        state: State::try_from(r.u8("record: state")?)?,
                        addrs: r.addrs("record: addresses")?,
                        claim: r.claim()?,
                        board: Arc::new(r.board()?),
                    });
                }
                Sealed::Records(records)
            }
            KIND_COMPLETE => Sealed::Complete,
            KIND_BYE => Sealed::Bye(Bye::try_from(r.u8("bye: reason")?)?),
            KIND_REJECT => {
                let reason = Reject::try_from(r.u8("reject: reason")?)?;
                let len = usize::from(r.u8("reject: detail")?);
                let detail = String::from_utf8(r.bytes("reject: detail", len)?.to_vec())
                    .map_err(|_| ProtoError::Malformed("reject: detail is not UTF-8"))?;
                Sealed::Reject(reason, detail)
            }
            KIND_RELEASED => {
                let count = r.u32("released: count")? as usize;
                if count > body.len() / (4 + INSTANCE_LEN) {
                    return Err(ProtoError::Malformed("released: count exceeds the body"));
                }
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    peers.push((
                        r.u32("released: index")?,
                        r.instance("released: instance id")?,
                    ));
                }
                Sealed::Released(peers)
            }
            other => return Err(ProtoError::Kind(other)),
        };
        r.finish("sealed frame")?;
        Ok(sealed)
    }
}

/// Bytes of a record's claim: round, view, work kind, work round, code.
const CLAIM_LEN: usize = 4 + 8 + 1 + 4 + 1;
/// Bytes of an empty board: its round, the value and barrier counts.
const EMPTY_BOARD_LEN: usize = 4 + 1 + 1;
/// Bytes of the smallest record (no addresses, an empty board).
pub const MIN_RECORD_LEN: usize = 4 + INSTANCE_LEN + 8 + 4 + 1 + 1 + CLAIM_LEN + EMPTY_BOARD_LEN;
/// Bytes of the largest record a pod sends: every address, a full board.
pub const MAX_RECORD_LEN: usize = MIN_RECORD_LEN
    + MAX_ADDRS * 17
    + board::MAX_KEYS * 3
    + board::MAX_BYTES
    + board::MAX_BARRIERS * (1 + board::MAX_KEY);

/// Bytes of records one RECORDS frame carries (its body, less the count
/// and the tag): a sender cuts its records into frames of at most this.
pub const RECORDS_BUDGET: usize = MAX_SEALED_BODY - TAG_LEN - 4;
const _: () = assert!(MAX_RECORD_LEN <= RECORDS_BUDGET);

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_claim(out: &mut Vec<u8>, claim: &Claim) {
    out.extend_from_slice(&claim.round.to_be_bytes());
    out.extend_from_slice(&claim.view.to_be_bytes());
    let (round, code) = claim.work.round_and_code();
    out.push(claim.work.kind());
    out.extend_from_slice(&round.to_be_bytes());
    out.push(code);
}

/// A board: its round, then the values (key, value), then the barrier
/// names, each string after its length.
fn put_board(out: &mut Vec<u8>, board: &Board) {
    out.extend_from_slice(&board.round.to_be_bytes());
    let values = &board.values[..board.values.len().min(u8::MAX.into())];
    out.push(values.len() as u8);
    for (key, value) in values {
        put_str8(out, key);
        let value = truncate_utf8(value, u16::MAX.into());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    let barriers = &board.barriers[..board.barriers.len().min(u8::MAX.into())];
    out.push(barriers.len() as u8);
    for name in barriers {
        put_str8(out, name);
    }
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    let s = truncate_utf8(s, u8::MAX.into());
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn put_addrs(out: &mut Vec<u8>, addrs: &[IpAddr]) {
    let addrs = &addrs[..addrs.len().min(MAX_ADDRS)];
    out.push(addrs.len() as u8);
    for addr in addrs {
        put_addr(out, addr);
    }
}

/// An address as the protocol writes it: family byte, then the bytes.
pub fn put_addr(out: &mut Vec<u8>, addr: &IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn bytes(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return Err(ProtoError::Malformed(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtoError> {
        Ok(self.bytes(what, 1)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        let b = self.bytes(what, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ProtoError> {
        let b: [u8; 8] = self
            .bytes(what, 8)?
            .try_into()
            .map_err(|_| ProtoError::Malformed(what))?;
        Ok(u64::from_be_bytes(b))
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, ProtoError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ProtoError::Malformed(what)),
        }
    }

    fn instance(&mut self, what: &'static str) -> Result<InstanceId, ProtoError> {
        let b: [u8; INSTANCE_LEN] = self
            .bytes(what, INSTANCE_LEN)?
            .try_into()
            .map_err(|_| ProtoError::Malformed(what))?;
        Ok(InstanceId(b))
    }

    fn addrs(&mut self, what: &'static str) -> Result<Vec<IpAddr>, ProtoError> {
        let count = usize::from(self.u8(what)?);
        if count > MAX_ADDRS {
            return Err(ProtoError::Malformed(what));
        }
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            addrs.push(match self.u8(what)? {
                4 => {
                    let b = self.bytes(what, 4)?;
                    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                }
                6 => {
                    let b: [u8; 16] = self
                        .bytes(what, 16)?
                        .try_into()
                        .map_err(|_| ProtoError::Malformed(what))?;
                    IpAddr::V6(Ipv6Addr::from(b))
                }
                _ => return Err(ProtoError::Malformed(what)),
            });
        }
        Ok(addrs)
    }

    /// A claim; a work kind of 0 carries a zero round and code, so every
    /// claim has one encoding.
    fn claim(&mut self) -> Result<Claim, ProtoError> {
        let round = self.u32("record: round")?;
        let view = self.u64("record: view")?;
        let kind = self.u8("record: work")?;
        let work_round = self.u32("record: work round")?;
        let code = self.u8("record: work code")?;
        let work = match kind {
            0 if work_round == 0 && code == 0 => Work::Running,
            1 => Work::Failed {
                round: work_round,
                code,
            },
            2 => Work::Exited {
                round: work_round,
                code,
            },
            _ => return Err(ProtoError::Malformed("record: unknown work")),
        };
        Ok(Claim { round, view, work })
    }

    fn text(&mut self, what: &'static str, len: usize) -> Result<String, ProtoError> {
        String::from_utf8(self.bytes(what, len)?.to_vec()).map_err(|_| ProtoError::Malformed(what))
    }

    /// A board as [`put_board`] writes it. Its limits are the table's to
    /// check ([`Board::check`]): a board over them is a peer's mistake, not
    /// a broken frame.
    fn board(&mut self) -> Result<Board, ProtoError> {
        let round = self.u32("record: board round")?;
        let count = self.u8("record: board values")?;
        let mut values = Vec::with_capacity(count.into());
        for _ in 0..count {
            let len = usize::from(self.u8("record: board key")?);
            let key = self.text("record: board key", len)?;
            let b = self.bytes("record: board value", 2)?;
            let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
            values.push((key, self.text("record: board value", len)?));
        }
        let count = self.u8("record: board barriers")?;
        let mut barriers = Vec::with_capacity(count.into());
        for _ in 0..count {
            let len = usize::from(self.u8("record: barrier name")?);
            barriers.push(self.text("record: barrier name", len)?);
        }
        Ok(Board {
            round,
            values,
            barriers,
        })
    }

    fn finish(&self, what: &'static str) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Malformed(match what {
                "hello" => "hello: trailing bytes",
                _ => "frame: trailing bytes",
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hello() -> Hello {
        Hello {
            job: "example-job".into(),
            world: 3,
            index: 2,
            instance: InstanceId([9; INSTANCE_LEN]),
            started_ms: 1_764_500_000_000,
            serving: true,
            addrs: vec!["10.244.1.5".parse().unwrap(), "fd00::5".parse().unwrap()],
        }
    }

    fn record(index: u32, state: State) -> Record {
        Record {
            index,
            instance: InstanceId([index as u8; INSTANCE_LEN]),
            started_ms: 1000 + u64::from(index),
            seq: 3,
            state,
            addrs: vec!["10.0.0.1".parse().unwrap()],
            claim: Default::default(),
            board: Default::default(),
        }
    }

    fn sealed_samples() -> Vec<Sealed> {
        vec![
            Sealed::Records(vec![
                record(0, State::Alive),
                record(7, State::Dead),
                Record {
                    addrs: vec![],
                    ..record(9, State::Left)
                },
            ]),
            Sealed::Records(vec![]),
            Sealed::Complete,
            Sealed::Bye(Bye::Duplicate),
            Sealed::Reject(Reject::WorldSize, "peer says 4, this pod 3".into()),
            Sealed::Released(vec![
                (1, InstanceId([1; INSTANCE_LEN])),
                (9, InstanceId([7; INSTANCE_LEN])),
            ]),
            Sealed::Released(vec![]),
        ]
    }

    #[test]
    fn every_sealed_kind_frames_splits_and_decodes_back() {
        for s in sealed_samples() {
            let body = s.encode();
            let bytes = frame(s.kind(), &body);
            let Ok(Split::Frame { kind, body, .. }) = split(&bytes, MAX_SEALED_BODY) else {
                panic!("{s:?} does not split");
            };
            assert_eq!(Sealed::decode(kind, body).unwrap(), s);
        }
    }

    #[test]
    fn framing_round_trip_and_prefixes() {
        let bytes = frame(KIND_NONCE, &[5; 32]);
        assert_eq!(
            split(&bytes, MAX_PLAIN_BODY).unwrap(),
            Split::Frame {
                kind: KIND_NONCE,
                body: &[5; 32][..],
                used: bytes.len()
            }
        );
        for cut in 0..bytes.len() {
            assert!(
                matches!(split(&bytes[..cut], MAX_PLAIN_BODY).unwrap(), Split::NeedMore(n) if n > cut),
                "prefix of {cut} bytes"
            );
        }
        // Two frames back to back: the first is split off alone.
        let mut two = bytes.clone();
        two.extend(frame(KIND_PROOF, &[6; 32]));
        let Split::Frame { used, .. } = split(&two, MAX_PLAIN_BODY).unwrap() else {
            panic!()
        };
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn garbage_and_old_versions_are_rejected_early() {
        assert_eq!(split(b"G", 64), Err(ProtoError::BadMagic));
        assert_eq!(split(b"GET / HTTP/1.1", 64), Err(ProtoError::BadMagic));
        // A v1 peer's HELLO: named as such after five bytes.
        assert_eq!(split(b"PGBR\x01", 64), Err(ProtoError::Version(1)));
        // So is a v2 peer's (no round claims in its records) and a v3
        // peer's (no boards).
        assert_eq!(split(b"PGBR\x02", 64), Err(ProtoError::Version(2)));
        assert_eq!(split(b"PGBR\x03", 64), Err(ProtoError::Version(3)));
        assert!(
            ProtoError::Version(1)
                .to_string()
                .contains("same peergate release")
        );
        assert_eq!(
            split(b"PGBR\x04\x63\0\0\0\0", 64),
            Err(ProtoError::Kind(0x63))
        );
        // A length over the phase's limit fails before the body arrives.
        assert_eq!(
            split(&frame(KIND_HELLO, &[0; 2000])[..HEADER_LEN], MAX_PLAIN_BODY),
            Err(ProtoError::TooLarge(2000, MAX_PLAIN_BODY))
        );
        assert!(matches!(
            split(b"PGBR\x04\x10\xff\xff\xff\xff", MAX_SEALED_BODY),
            Err(ProtoError::TooLarge(..))
        ));
    }

    #[test]
    fn hello_round_trip_and_limits() {
        let h = hello();
        let bytes = h.encode().unwrap();
        assert_eq!(Hello::decode(&bytes).unwrap(), h);
        assert!(frame(KIND_HELLO, &hello_body(&bytes, &[0; 32])).len() <= HEADER_LEN + 600);
        // The longest possible HELLO fits the plain-frame limit.
        let big = Hello {
            job: "j".repeat(MAX_JOB),
            addrs: vec!["fd00::1".parse().unwrap(); MAX_ADDRS],
            ..hello()
        };
        assert!(big.encode().unwrap().len() + TAG_LEN <= MAX_PLAIN_BODY);
        assert!(
            Hello {
                job: String::new(),
                ..hello()
            }
            .encode()
            .is_err()
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Hello::decode(&trailing),
            Err(ProtoError::Malformed("hello: trailing bytes"))
        );
        let mut bad_flag = bytes.clone();
        let flag_at = 1 + 11 + 4 + 4 + 16 + 8;
        bad_flag[flag_at] = 2;
        assert!(Hello::decode(&bad_flag).is_err());
        let body = hello_body(&bytes, &[7; 32]);
        let (claims, tag) = split_hello(&body).unwrap();
        assert_eq!((claims, tag), (&bytes[..], &[7u8; 32][..]));
        assert!(split_hello(&[0; 31]).is_err());
    }

    #[test]
    fn sealed_round_trip() {
        for s in sealed_samples() {
            let body = s.encode();
            assert_eq!(Sealed::decode(s.kind(), &body).unwrap(), s);
            let mut trailing = body.clone();
            trailing.push(0);
            assert!(Sealed::decode(s.kind(), &trailing).is_err(), "{s:?}");
        }
    }

    #[test]
    fn lying_counts_and_unknown_values_are_rejected() {
        let mut body = Sealed::Records(vec![]).encode();
        body[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Sealed::decode(KIND_RECORDS, &body),
            Err(ProtoError::Malformed("records: count exceeds the body"))
        );
        let mut body = Sealed::Records(vec![record(1, State::Alive)]).encode();
        body[4 + 4 + 16 + 8 + 4] = 9; // state
        assert!(Sealed::decode(KIND_RECORDS, &body).is_err());
        assert_eq!(
            Sealed::decode(KIND_RECORDS, &body),
            Err(ProtoError::Malformed("record: unknown state"))
        );
        assert_eq!(
            Sealed::decode(KIND_BYE, &[42]),
            Err(ProtoError::Malformed("bye: unknown reason"))
        );
        assert_eq!(
            Sealed::decode(KIND_REJECT, &[0, 0]),
            Err(ProtoError::Malformed("reject: unknown reason"))
        );
        assert!(Sealed::decode(KIND_NONCE, &[]).is_err());
    }

    #[test]
    fn wire_enums_round_trip_through_their_byte() {
        fn check<T: TryFrom<u8, Error = ProtoError> + Copy>(to_byte: fn(T) -> u8) -> usize {
            (0..=u8::MAX)
                .filter_map(|b| T::try_from(b).ok().map(|v| (b, v)))
                .inspect(|&(b, v)| assert_eq!(to_byte(v), b))
                .count()
        }
        assert_eq!(check::<State>(|v| v as u8), 3);
        assert_eq!(check::<Bye>(|v| v as u8), 4);
        assert_eq!(check::<Reject>(|v| v as u8), 8);
        assert_eq!(State::try_from(1), Ok(State::Dead));
        assert_eq!(Reject::try_from(8), Ok(Reject::WrongIndex));
    }

    #[test]
    fn instance_ids_print_as_hex() {
        let id = InstanceId([0xab; INSTANCE_LEN]);
        assert_eq!(id.to_string(), "ab".repeat(INSTANCE_LEN));
        assert_eq!(id.short(), "abababab");
        assert_eq!(format!("{id:?}"), "InstanceId(abababab)");
    }

    /// The largest board a pod may hold: every key, every byte, every
    /// barrier name at its longest.
    fn full_board() -> Board {
        let per_value = board::MAX_BYTES / board::MAX_KEYS - board::MAX_KEY;
        Board {
            round: 7,
            values: (0..board::MAX_KEYS)
                .map(|i| (format!("{i:0>64}"), "v".repeat(per_value)))
                .collect(),
            barriers: (0..board::MAX_BARRIERS)
                .map(|i| format!("{i:0>64}"))
                .collect(),
        }
    }

    #[test]
    fn the_largest_record_fits_its_bound_and_a_frame() {
        let big = Record {
            addrs: vec!["fd00::1".parse().unwrap(); MAX_ADDRS],
            board: Arc::new(full_board()),
            ..record(1, State::Alive)
        };
        assert_eq!(big.board.check(), Ok(()));
        assert_eq!(big.board.bytes(), board::MAX_BYTES);
        let body = Sealed::Records(vec![big.clone()]).encode();
        assert_eq!(body.len(), 4 + big.wire_len());
        assert_eq!(big.wire_len(), MAX_RECORD_LEN);
        let n = RECORDS_BUDGET / MAX_RECORD_LEN;
        let body = Sealed::Records(vec![big; n]).encode();
        assert!(body.len() + TAG_LEN <= MAX_SEALED_BODY);
        let bare = Record {
            addrs: vec![],
            ..record(0, State::Alive)
        };
        assert_eq!(bare.wire_len(), MIN_RECORD_LEN);
        assert_eq!(
            Sealed::Records(vec![bare]).encode().len(),
            4 + MIN_RECORD_LEN
        );
        assert_eq!(MIN_RECORD_LEN, 58);
    }

    #[test]
    fn boards_round_trip_and_broken_ones_are_malformed() {
        let r = Record {
            board: Arc::new(full_board()),
            ..record(2, State::Alive)
        };
        let s = Sealed::Records(vec![r, record(0, State::Dead)]);
        let body = s.encode();
        assert_eq!(Sealed::decode(KIND_RECORDS, &body).unwrap(), s);
        let one = Sealed::Records(vec![Record {
            board: Arc::new(Board {
                round: 1,
                values: vec![("k".into(), "é".into())],
                barriers: vec![],
            }),
            ..record(2, State::Alive)
        }])
        .encode();
        let mut bad = one.clone();
        let at = bad.len() - 2; // the value's last byte, before the barrier count
        bad[at] = 0xff;
        assert_eq!(
            Sealed::decode(KIND_RECORDS, &bad),
            Err(ProtoError::Malformed("record: board value"))
        );
        let cut = &one[..one.len() - 1];
        assert!(Sealed::decode(KIND_RECORDS, cut).is_err());
    }

    #[test]
    fn reject_details_are_cut_on_a_character_boundary() {
        let s = Sealed::Reject(Reject::Job, "é".repeat(200));
        let Sealed::Reject(_, detail) = Sealed::decode(KIND_REJECT, &s.encode()).unwrap() else {
            panic!()
        };
        assert!(detail.len() <= MAX_DETAIL && detail.chars().all(|c| c == 'é'));
    }

    /// The fuzz target's invariants over a fixed pseudo-random corpus, so
    /// every `cargo test` exercises them (`fuzz/` goes further).
    #[test]
    fn decoder_invariants_on_mutated_and_random_input() {
        let mut seeds: Vec<Vec<u8>> = sealed_samples()
            .iter()
            .map(|s| frame(s.kind(), &s.encode()))
            .collect();
        seeds.push(frame(KIND_HELLO, &hello().encode().unwrap()));
        crate::corpus::mutated(&seeds, 20_000, 64, check_invariants);
    }

    /// What `fuzz/fuzz_targets/barrier_frame.rs` asserts.
    pub(crate) fn check_invariants(data: &[u8]) {
        match split(data, MAX_SEALED_BODY) {
            Ok(Split::Frame { kind, body, used }) => {
                assert!(used <= data.len());
                assert_eq!(frame(kind, body), &data[..used]);
                if let Ok(s) = Sealed::decode(kind, body) {
                    assert_eq!(s.encode(), body);
                }
                if let Ok(h) = Hello::decode(body) {
                    assert_eq!(h.encode().unwrap(), body);
                }
            }
            Ok(Split::NeedMore(n)) => assert!(n > data.len()),
            Err(_) => {}
        }
    }
}

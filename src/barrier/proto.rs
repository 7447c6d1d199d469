//! The barrier's wire format. Pure: encoding and an incremental, strict
//! decoder that never allocates more than one bounded frame and rejects
//! anything that is not exactly a peergate frame (fuzzed in `fuzz/`).
//!
//! Every frame is an 8-byte header and a payload:
//!
//! ```text
//! offset size  field
//! 0      4     magic  "PGBR"
//! 4      1     version (1)
//! 5      1     kind: 1 = HELLO, 2 = ACK
//! 6      2     payload length, big-endian, at most MAX_PAYLOAD
//! 8      n     payload
//! ```
//!
//! HELLO payload: `index` u32 BE; `token` (u8 length + bytes, at most
//! 128); `job` (u8 length + UTF-8, 1-253 bytes); address count u8 (at most
//! 16), then per address a family byte (4 or 6) and 4 or 16 bytes.
//! ACK payload: the sender's `index` u32 BE; a directory of peers the sender
//! has heard from: entry count u16 BE (at most [`MAX_DIRECTORY`]), then per
//! entry the peer's `index` u32 BE and one address (family byte + bytes).
//! The directory lets a pod reach peers whose names it cannot resolve yet
//! (a negative DNS cache) through any peer that already knows them.
//! A payload with bytes left over after its fields is malformed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

pub const MAGIC: [u8; 4] = *b"PGBR";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
pub const MAX_PAYLOAD: usize = 32 * 1024;
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD;
pub const MAX_TOKEN: usize = 128;
pub const MAX_JOB: usize = 253;
pub const MAX_ADDRS: usize = 16;
/// Most directory entries in one ACK (each at most 21 bytes).
pub const MAX_DIRECTORY: usize = (MAX_PAYLOAD - 6) / 21;

const KIND_HELLO: u8 = 1;
const KIND_ACK: u8 = 2;

/// "I am pod `index` of `job`, here are my addresses."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub index: u32,
    pub token: String,
    pub job: String,
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    /// "I have recorded your hello"; carries the sender's index and the
    /// peers it has heard from, with an address each.
    Ack {
        index: u32,
        known: Vec<(u32, IpAddr)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtoError {
    #[error("not a peergate barrier frame (bad magic)")]
    BadMagic,
    #[error("unsupported protocol version {0} (this peergate speaks {VERSION})")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Result of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame and the number of bytes it used.
    Frame(Frame, usize),
    /// Not enough bytes yet; at least this many are needed in total.
    NeedMore(usize),
}

/// Decodes the first frame of `buf`. Errors are detected as early as the
/// bytes allow (a wrong magic after 4 bytes), so garbage is rejected without
/// waiting for a full frame.
pub fn decode(buf: &[u8]) -> Result<Decoded, ProtoError> {
    let magic_len = buf.len().min(MAGIC.len());
    if buf[..magic_len] != MAGIC[..magic_len] {
        return Err(ProtoError::BadMagic);
    }
    if buf.len() < HEADER_LEN {
        if buf.len() > 4 && buf[4] != VERSION {
            return Err(ProtoError::Version(buf[4]));
        }
        return Ok(Decoded::NeedMore(HEADER_LEN));
    }
    if buf[4] != VERSION {
        return Err(ProtoError::Version(buf[4]));
    }
    let kind = buf[5];
    if kind != KIND_HELLO && kind != KIND_ACK {
        return Err(ProtoError::Kind(kind));
    }
    let len = usize::from(u16::from_be_bytes([buf[6], buf[7]]));
    if len > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge(len));
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total));
    }
    let mut r = Reader {
        buf: &buf[HEADER_LEN..total],
    };
    let frame = match kind {
        KIND_HELLO => Frame::Hello(decode_hello(&mut r)?),
        _ => decode_ack(&mut r)?,
    };
    if !r.buf.is_empty() {
        return Err(ProtoError::Malformed("frame: trailing bytes"));
    }
    Ok(Decoded::Frame(frame, total))
}

fn decode_ack(r: &mut Reader<'_>) -> Result<Frame, ProtoError> {
    let index = r.u32("ack: index")?;
    let b = r.bytes("ack: directory size", 2)?;
    let count = usize::from(u16::from_be_bytes([b[0], b[1]]));
    if count > MAX_DIRECTORY {
        return Err(ProtoError::Malformed("ack: directory too large"));
    }
    let mut known = Vec::with_capacity(count);
    for _ in 0..count {
        let peer = r.u32("ack: directory index")?;
        known.push((peer, r.addr("ack: directory address")?));
    }
    Ok(Frame::Ack { index, known })
}

fn decode_hello(r: &mut Reader<'_>) -> Result<Hello, ProtoError> {
    let index = r.u32("hello: index")?;
    let token = r.short_str("hello: token", MAX_TOKEN)?;
    let job = r.short_str("hello: job", MAX_JOB)?;
    if job.is_empty() {
        return Err(ProtoError::Malformed("hello: empty job name"));
    }
    let count = usize::from(r.u8("hello: address count")?);
    if count > MAX_ADDRS {
        return Err(ProtoError::Malformed("hello: too many addresses"));
    }
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let addr = r.addr("hello: address")?;
        addrs.push(addr);
    }
    Ok(Hello {
        index,
        token,
        job,
        addrs,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
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

    /// A family byte (4 or 6) and the address.
    fn addr(&mut self, what: &'static str) -> Result<IpAddr, ProtoError> {
        match self.u8(what)? {
            4 => {
                let b = self.bytes(what, 4)?;
                Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            6 => {
                let b: [u8; 16] = self
                    .bytes(what, 16)?
                    .try_into()
                    .map_err(|_| ProtoError::Malformed(what))?;
                Ok(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => Err(ProtoError::Malformed(what)),
        }
    }

    fn short_str(&mut self, what: &'static str, max: usize) -> Result<String, ProtoError> {
        let len = usize::from(self.u8(what)?);
        if len > max {
            return Err(ProtoError::Malformed(what));
        }
        let b = self.bytes(what, len)?;
        String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed(what))
    }
}

/// Encodes a frame. Fails only when a HELLO exceeds the protocol's limits
/// (which configuration validation prevents).
pub fn encode(frame: &Frame) -> Result<Vec<u8>, ProtoError> {
    let mut payload = Vec::new();
    let kind = match frame {
        Frame::Hello(h) => {
            if h.token.len() > MAX_TOKEN {
                return Err(ProtoError::Malformed("hello: token too long"));
            }
            if h.job.is_empty() || h.job.len() > MAX_JOB {
                return Err(ProtoError::Malformed("hello: job name length"));
            }
            payload.extend_from_slice(&h.index.to_be_bytes());
            payload.push(h.token.len() as u8);
            payload.extend_from_slice(h.token.as_bytes());
            payload.push(h.job.len() as u8);
            payload.extend_from_slice(h.job.as_bytes());
            let addrs = &h.addrs[..h.addrs.len().min(MAX_ADDRS)];
            payload.push(addrs.len() as u8);
            for addr in addrs {
                put_addr(&mut payload, addr);
            }
            KIND_HELLO
        }
        Frame::Ack { index, known } => {
            payload.extend_from_slice(&index.to_be_bytes());
            let known = &known[..known.len().min(MAX_DIRECTORY)];
            payload.extend_from_slice(&(known.len() as u16).to_be_bytes());
            for (peer, addr) in known {
                payload.extend_from_slice(&peer.to_be_bytes());
                put_addr(&mut payload, addr);
            }
            KIND_ACK
        }
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn put_addr(out: &mut Vec<u8>, addr: &IpAddr) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(index: u32) -> Frame {
        Frame::Ack {
            index,
            known: vec![
                (0, "10.244.1.4".parse().unwrap()),
                (5, "fd00::9".parse().unwrap()),
            ],
        }
    }

    fn hello() -> Hello {
        Hello {
            index: 2,
            token: "3f1c-uid".into(),
            job: "example-job".into(),
            addrs: vec!["10.244.1.5".parse().unwrap(), "fd00::5".parse().unwrap()],
        }
    }

    #[test]
    fn round_trip() {
        for frame in [
            Frame::Hello(hello()),
            ack(7),
            Frame::Ack {
                index: 1,
                known: vec![],
            },
        ] {
            let bytes = encode(&frame).unwrap();
            assert_eq!(
                decode(&bytes).unwrap(),
                Decoded::Frame(frame.clone(), bytes.len())
            );
            // Every strict prefix asks for more, never errors.
            for cut in 0..bytes.len() {
                assert!(
                    matches!(decode(&bytes[..cut]).unwrap(), Decoded::NeedMore(n) if n > cut),
                    "prefix of {cut} bytes"
                );
            }
        }
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut bytes = encode(&Frame::Hello(hello())).unwrap();
        let first = bytes.len();
        bytes.extend(encode(&ack(2)).unwrap());
        let Decoded::Frame(_, used) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(used, first);
        assert_eq!(
            decode(&bytes[used..]).unwrap(),
            Decoded::Frame(ack(2), 8 + 4 + 2 + (4 + 5) + (4 + 17))
        );
    }

    #[test]
    fn garbage_is_rejected_early() {
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(ProtoError::BadMagic));
        assert_eq!(decode(b"G"), Err(ProtoError::BadMagic));
        assert_eq!(decode(b"PGBR\x02"), Err(ProtoError::Version(2)));
        assert_eq!(decode(b"PGBR\x01\x09\x00\x00"), Err(ProtoError::Kind(9)));
        assert_eq!(
            decode(b"PGBR\x01\x01\xff\xff"),
            Err(ProtoError::TooLarge(65535))
        );
        // An ACK whose directory claims more entries than allowed.
        let mut big = encode(&Frame::Ack {
            index: 1,
            known: vec![],
        })
        .unwrap();
        big[12..14].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            decode(&big),
            Err(ProtoError::Malformed("ack: directory too large"))
        );
    }

    #[test]
    fn malformed_payloads() {
        let mut bytes = encode(&Frame::Hello(hello())).unwrap();
        // Claim one more address than present.
        let count_at = bytes.len() - (1 + 4) - (1 + 16) - 1;
        bytes[count_at] = 3;
        assert!(matches!(decode(&bytes), Err(ProtoError::Malformed(_))));
        // Trailing bytes inside the payload.
        let mut ack = encode(&Frame::Ack {
            index: 1,
            known: vec![],
        })
        .unwrap();
        ack[7] += 1;
        ack.push(0);
        assert_eq!(
            decode(&ack),
            Err(ProtoError::Malformed("frame: trailing bytes"))
        );
        // Bad UTF-8 in the job name.
        let mut h = hello();
        h.job = "jj".into();
        let mut bytes = encode(&Frame::Hello(h)).unwrap();
        let job_at = bytes.iter().position(|&b| b == b'j').unwrap();
        bytes[job_at] = 0xff;
        assert!(matches!(decode(&bytes), Err(ProtoError::Malformed(_))));
    }

    #[test]
    fn limits_are_enforced_when_encoding() {
        let mut h = hello();
        h.token = "x".repeat(MAX_TOKEN + 1);
        assert!(encode(&Frame::Hello(h)).is_err());
        let many = Frame::Ack {
            index: 1,
            known: vec![(3, "10.0.0.1".parse().unwrap()); 5000],
        };
        let bytes = encode(&many).unwrap();
        assert!(bytes.len() <= MAX_FRAME);
        let Decoded::Frame(Frame::Ack { known, .. }, _) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(known.len(), MAX_DIRECTORY);
        let mut h = hello();
        h.addrs = vec!["10.0.0.1".parse().unwrap(); 40];
        let bytes = encode(&Frame::Hello(h)).unwrap();
        let Decoded::Frame(Frame::Hello(back), _) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(back.addrs.len(), MAX_ADDRS);
        assert!(bytes.len() <= MAX_FRAME);
    }

    /// The fuzz target's invariants over a fixed pseudo-random corpus, so
    /// every `cargo test` exercises them (the coverage-guided fuzzer in
    /// `fuzz/` goes further).
    #[test]
    fn decoder_invariants_on_mutated_and_random_input() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            encode(&Frame::Hello(hello())).unwrap(),
            encode(&ack(3)).unwrap(),
        ];
        for round in 0..20_000 {
            let mut data = if round % 2 == 0 {
                seeds[round % 4 / 2].clone()
            } else {
                (0..(next() % 64) as usize).map(|_| next() as u8).collect()
            };
            for _ in 0..(next() % 4) {
                if data.is_empty() {
                    break;
                }
                let at = (next() as usize) % data.len();
                data[at] = next() as u8;
            }
            match decode(&data) {
                Ok(Decoded::Frame(frame, used)) => {
                    assert!(used <= data.len() && used <= MAX_FRAME);
                    assert_eq!(encode(&frame).unwrap(), &data[..used]);
                }
                Ok(Decoded::NeedMore(n)) => assert!(n > data.len() && n <= MAX_FRAME),
                Err(_) => {}
            }
        }
    }
}

//! The cryptography of protocol v2, and nothing else: fresh nonces and
//! instance ids, the handshake's MACs, the per-connection frame keys. The
//! wire's lengths and the `InstanceId` type are `proto`'s; this module
//! builds on them.
//!
//! Every MAC is HMAC-SHA256 keyed by the Job's token over a domain label and
//! length-prefixed parts, so no two messages of the protocol can ever be
//! confused with each other. What each one binds is listed where it is
//! computed; together they make a transcript impossible to replay (fresh
//! nonces from both sides), reflect (a direction label in every MAC) or
//! relay (both ends' socket addresses, as each end observes them).
//!
//! The token itself never leaves this module: [`Key`] has no accessor and
//! its `Debug` prints nothing of it.

use std::fmt;
use std::net::SocketAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::proto::{self, INSTANCE_LEN, InstanceId, NONCE_LEN, Nonce, Tag};

type HmacSha256 = Hmac<Sha256>;

impl InstanceId {
    /// A fresh random id. (The type is `proto`'s; drawing it is this
    /// module's, as every other random value of the protocol is.)
    pub fn random() -> InstanceId {
        let mut id = [0u8; INSTANCE_LEN];
        fill_random(&mut id);
        InstanceId(id)
    }
}

/// Fills `buf` from the kernel's random source. Failing to get randomness
/// is not something a barrier can work around: without it nonces would
/// repeat, so this aborts rather than degrade.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the kernel's random source (getrandom(2)) must be available");
}

/// A fresh handshake nonce.
pub fn nonce() -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    fill_random(&mut n);
    n
}

/// The Job's shared secret, as an HMAC key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(token: &str) -> Key {
        Key(token.as_bytes().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// What both ends of one TCP connection see of it: who dialed, who
/// listened. Each end reads these from its own socket, so a relay, which
/// must hold two connections with different addresses, cannot make them
/// agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub dialer: SocketAddr,
    pub listener: SocketAddr,
}

impl Binding {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * 19);
        for addr in [self.dialer, self.listener] {
            proto::put_addr(&mut out, &addr.ip().to_canonical());
            out.extend_from_slice(&addr.port().to_be_bytes());
        }
        out
    }
}

/// The handshake so far: both nonces and the connection's addresses.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub dialer_nonce: Nonce,
    pub listener_nonce: Nonce,
    binding: Vec<u8>,
}

const PROOF: &[u8] = b"peergate/2 dialer proof";
const LISTENER_HELLO: &[u8] = b"peergate/2 listener hello";
const DIALER_HELLO: &[u8] = b"peergate/2 dialer hello";
const KEY_DIALER: &[u8] = b"peergate/2 frames dialer to listener";
const KEY_LISTENER: &[u8] = b"peergate/2 frames listener to dialer";

impl Transcript {
    pub fn new(dialer_nonce: Nonce, listener_nonce: Nonce, binding: Binding) -> Transcript {
        Transcript {
            dialer_nonce,
            listener_nonce,
            binding: binding.encode(),
        }
    }

    fn mac(&self, key: &Key, label: &[u8], hellos: &[&[u8]]) -> HmacSha256 {
        let mut mac = key.mac();
        let mut part = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u32).to_be_bytes());
            mac.update(bytes);
        };
        part(label);
        part(&self.dialer_nonce);
        part(&self.listener_nonce);
        part(&self.binding);
        for h in hellos {
            part(h);
        }
        mac
    }

    fn tag(&self, key: &Key, label: &[u8], hellos: &[&[u8]]) -> Tag {
        finish(self.mac(key, label, hellos))
    }

    /// The dialer's first message: proves it knows the token, and says
    /// nothing else (binds both nonces and both addresses).
    pub fn dialer_proof(&self, key: &Key) -> Tag {
        self.tag(key, PROOF, &[])
    }

    /// Whether `got` is the dialer's proof (in constant time).
    pub fn verify_dialer_proof(&self, key: &Key, got: &[u8]) -> bool {
        verify(self.mac(key, PROOF, &[]), got)
    }

    /// The listener's hello, sent only once the dialer's proof checked out:
    /// binds the transcript and the listener's claims (index, instance id,
    /// Job, world size, addresses).
    pub fn listener_hello_tag(&self, key: &Key, listener_hello: &[u8]) -> Tag {
        self.tag(key, LISTENER_HELLO, &[listener_hello])
    }

    /// Whether `got` is the listener hello's tag (in constant time).
    pub fn verify_listener_hello(&self, key: &Key, listener_hello: &[u8], got: &[u8]) -> bool {
        verify(self.mac(key, LISTENER_HELLO, &[listener_hello]), got)
    }

    /// The dialer's hello: binds the transcript and both sides' claims, so
    /// both instance ids.
    pub fn dialer_hello_tag(&self, key: &Key, listener_hello: &[u8], dialer_hello: &[u8]) -> Tag {
        self.tag(key, DIALER_HELLO, &[listener_hello, dialer_hello])
    }

    /// Whether `got` is the dialer hello's tag (in constant time).
    pub fn verify_dialer_hello(
        &self,
        key: &Key,
        listener_hello: &[u8],
        dialer_hello: &[u8],
        got: &[u8],
    ) -> bool {
        verify(
            self.mac(key, DIALER_HELLO, &[listener_hello, dialer_hello]),
            got,
        )
    }

    /// The two keys for the frames after the handshake, one per direction:
    /// (dialer to listener, listener to dialer).
    pub fn frame_keys(
        &self,
        key: &Key,
        listener_hello: &[u8],
        dialer_hello: &[u8],
    ) -> (FrameKey, FrameKey) {
        let hellos = [listener_hello, dialer_hello];
        (
            FrameKey(self.tag(key, KEY_DIALER, &hellos)),
            FrameKey(self.tag(key, KEY_LISTENER, &hellos)),
        )
    }
}

fn finish(mac: HmacSha256) -> Tag {
    mac.finalize().into_bytes().into()
}

/// Whether `got` is the tag `mac` computes: the hmac crate's comparison,
/// constant time over the bytes (a wrong length fails at once: lengths
/// are public).
fn verify(mac: HmacSha256, got: &[u8]) -> bool {
    mac.verify_slice(got).is_ok()
}

/// The key that tags one direction's frames after the handshake.
#[derive(Clone)]
pub struct FrameKey(Tag);

impl FrameKey {
    /// Tag of frame number `seq` in this direction: binds its place in the
    /// stream, its kind and its body, so frames can be neither injected,
    /// reordered, replayed nor moved to another connection.
    pub fn tag(&self, seq: u64, kind: u8, body: &[u8]) -> Tag {
        finish(self.mac(seq, kind, body))
    }

    /// Whether `got` is frame `seq`'s tag (in constant time).
    pub fn verify(&self, seq: u64, kind: u8, body: &[u8], got: &[u8]) -> bool {
        verify(self.mac(seq, kind, body), got)
    }

    fn mac(&self, seq: u64, kind: u8, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(&seq.to_be_bytes());
        mac.update(&[kind]);
        mac.update(body);
        mac
    }
}

impl fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FrameKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::TAG_LEN;
    use super::*;

    fn binding(a: &str, b: &str) -> Binding {
        Binding {
            dialer: a.parse().unwrap(),
            listener: b.parse().unwrap(),
        }
    }

    fn transcript() -> Transcript {
        Transcript::new(
            [1; NONCE_LEN],
            [2; NONCE_LEN],
            binding("10.0.0.1:40000", "10.0.0.2:7470"),
        )
    }

    #[test]
    fn every_input_changes_the_proof() {
        let key = Key::new("uid-1");
        let base = transcript().dialer_proof(&key);
        assert_eq!(base, transcript().dialer_proof(&key), "deterministic");
        assert_ne!(base, transcript().dialer_proof(&Key::new("uid-2")));
        let mut t = transcript();
        t.dialer_nonce[0] ^= 1;
        assert_ne!(base, t.dialer_proof(&key));
        let mut t = transcript();
        t.listener_nonce[31] ^= 1;
        assert_ne!(base, t.dialer_proof(&key));
        // Swapped nonces: what a reflected handshake would present.
        let swapped = Transcript::new(
            [2; NONCE_LEN],
            [1; NONCE_LEN],
            binding("10.0.0.1:40000", "10.0.0.2:7470"),
        );
        assert_ne!(base, swapped.dialer_proof(&key));
        // Another connection's addresses: what a relay would present.
        for other in [
            binding("10.0.0.9:40000", "10.0.0.2:7470"),
            binding("10.0.0.1:40001", "10.0.0.2:7470"),
            binding("10.0.0.1:40000", "10.0.0.3:7470"),
            binding("10.0.0.2:7470", "10.0.0.1:40000"),
        ] {
            let t = Transcript::new([1; NONCE_LEN], [2; NONCE_LEN], other);
            assert_ne!(base, t.dialer_proof(&key), "{other:?}");
        }
    }

    #[test]
    fn an_ipv4_mapped_address_binds_like_its_ipv4_form() {
        // A dual-stack listener sees ::ffff:10.0.0.1 where the dialer sees
        // 10.0.0.1: both must compute the same proof.
        let key = Key::new("t");
        let v4 = Transcript::new([1; 32], [2; 32], binding("10.0.0.1:40000", "10.0.0.2:7470"));
        let mapped = Transcript::new(
            [1; 32],
            [2; 32],
            binding("[::ffff:10.0.0.1]:40000", "[::ffff:10.0.0.2]:7470"),
        );
        assert_eq!(v4.dialer_proof(&key), mapped.dialer_proof(&key));
    }

    #[test]
    fn direction_labels_keep_messages_apart() {
        let key = Key::new("t");
        let t = transcript();
        let hello = b"claims";
        let tags = [
            t.dialer_proof(&key),
            t.listener_hello_tag(&key, hello),
            t.dialer_hello_tag(&key, hello, hello),
        ];
        let (to_listener, to_dialer) = t.frame_keys(&key, hello, hello);
        assert_ne!(tags[0], tags[1]);
        assert_ne!(tags[1], tags[2]);
        assert_ne!(to_listener.tag(0, 1, b"x"), to_dialer.tag(0, 1, b"x"));
    }

    #[test]
    fn length_prefixes_keep_part_boundaries() {
        // "ab"+"c" and "a"+"bc" must not collide.
        let key = Key::new("t");
        let t = transcript();
        assert_ne!(
            t.dialer_hello_tag(&key, b"ab", b"c"),
            t.dialer_hello_tag(&key, b"a", b"bc")
        );
    }

    #[test]
    fn frame_tags_bind_sequence_kind_and_body() {
        let (k, _) = transcript().frame_keys(&Key::new("t"), b"l", b"d");
        let base = k.tag(7, 3, b"body");
        assert_ne!(base, k.tag(8, 3, b"body"));
        assert_ne!(base, k.tag(7, 4, b"body"));
        assert_ne!(base, k.tag(7, 3, b"bodz"));
    }

    #[test]
    fn verification_accepts_the_tag_and_nothing_else() {
        let key = Key::new("t");
        let t = transcript();
        let (k, _) = t.frame_keys(&key, b"l", b"d");
        type Verify<'a> = &'a dyn Fn(&[u8]) -> bool;
        let cases: [(Tag, Verify); 4] = [
            (t.dialer_proof(&key), &|g| t.verify_dialer_proof(&key, g)),
            (t.listener_hello_tag(&key, b"l"), &|g| {
                t.verify_listener_hello(&key, b"l", g)
            }),
            (t.dialer_hello_tag(&key, b"l", b"d"), &|g| {
                t.verify_dialer_hello(&key, b"l", b"d", g)
            }),
            (k.tag(3, 16, b"body"), &|g| k.verify(3, 16, b"body", g)),
        ];
        for (tag, verify) in cases {
            assert!(verify(&tag));
            let mut other = tag;
            other[TAG_LEN - 1] ^= 1;
            assert!(!verify(&other));
            assert!(!verify(&tag[..TAG_LEN - 1]));
            let mut longer = tag.to_vec();
            longer.push(0);
            assert!(!verify(&longer));
            assert!(!verify(&[]));
        }
        // Another transcript's proof does not verify.
        let mut t2 = transcript();
        t2.dialer_nonce[0] ^= 1;
        assert!(!t2.verify_dialer_proof(&key, &t.dialer_proof(&key)));
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let key = Key::new("s3cret-token");
        assert!(!format!("{key:?}").contains("s3cret"));
        let (k, _) = transcript().frame_keys(&key, b"", b"");
        assert_eq!(format!("{k:?}"), "FrameKey(<redacted>)");
    }

    #[test]
    fn instance_ids_are_random_and_print_as_hex() {
        let a = InstanceId::random();
        let b = InstanceId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 2 * INSTANCE_LEN);
        assert!(a.to_string().starts_with(&a.short()));
        assert_ne!(nonce(), nonce());
    }
}

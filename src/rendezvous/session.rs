//! One connection between two pods: the handshake, then the sealed frames
//! of the link. Generic over the byte stream, so every step is tested over
//! in-memory pipes; the engine hands it TCP streams.
//!
//! The handshake (docs/protocol.md has the diagram):
//!
//! 1. Both sides send a fresh NONCE at once, and nothing else.
//! 2. The dialer sends PROOF, a tag over both nonces and both socket
//!    addresses. It reveals nothing but that the dialer knows the token.
//! 3. Only then does the listener send its HELLO (its claims and their tag).
//! 4. The dialer checks it and sends its own HELLO, whose tag covers both
//!    sides' claims.
//!
//! A stranger who connects gets one random nonce. A wrong token, a replayed,
//! reflected or relayed transcript all fail a tag check, and the side that
//! sees it closes without another byte. Two authenticated pods that
//! disagree (another Job, another world size) both log why: each sends its
//! HELLO before judging the other's, then a sealed REJECT.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::{self, Binding, FrameKey, Key, Transcript};
use super::proto::{
    self, Hello, KIND_HELLO, KIND_NONCE, KIND_PROOF, MAX_PLAIN_BODY, MAX_SEALED_BODY, ProtoError,
    Reject, Sealed, Split, TAG_LEN,
};

/// Which end of the connection this pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It dialed, looking for this index (`None`: for any member, an
    /// address from the Service's record).
    Dialer {
        expect: Option<u32>,
    },
    Listener,
}

#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("connection closed mid-handshake")]
    Closed,
    #[error("{0}")]
    Protocol(#[from] ProtoError),
    #[error("expected a {expected} frame, got kind {got}")]
    Unexpected { expected: &'static str, got: u8 },
    /// A tag did not check out: a wrong token, or a replayed, reflected or
    /// relayed handshake.
    #[error("bad proof (wrong token, or a replayed, reflected or relayed handshake)")]
    BadProof,
    /// This side turned an authenticated peer away.
    #[error("{reason}: {detail}", reason = .0.name(), detail = .1)]
    Rejected(Reject, String),
}

/// What the handshake established: the peer's authenticated claims.
#[derive(Debug)]
pub struct Established {
    pub peer: Hello,
}

/// Why an authenticated peer does not belong in this barrier, judged from
/// its claims alone (the membership table judges incarnations).
pub fn check_claims(local: &Hello, peer: &Hello, role: Role) -> Result<(), (Reject, String)> {
    if peer.job != local.job {
        return Err((
            Reject::Job,
            format!("peer is in Job `{}`, this pod in `{}`", peer.job, local.job),
        ));
    }
    if peer.world != local.world {
        return Err((
            Reject::WorldSize,
            format!(
                "peer waits for {} pods, this pod for {}: every pod needs the same --peers",
                peer.world, local.world
            ),
        ));
    }
    if peer.index >= local.world {
        return Err((
            Reject::UnknownIndex,
            format!("index {} is not below {}", peer.index, local.world),
        ));
    }
    if peer.instance == local.instance {
        return Err((
            Reject::SelfConnection,
            "connected to itself (its own address was given for another index)".into(),
        ));
    }
    if peer.index == local.index {
        return Err((
            Reject::OwnIndex,
            format!(
                "another instance claims this pod's own index {}",
                local.index
            ),
        ));
    }
    if let Role::Dialer {
        expect: Some(expect),
    } = role
        && peer.index != expect
    {
        return Err((
            Reject::WrongIndex,
            format!(
                "dialed index {expect}, found index {} (a stale address)",
                peer.index
            ),
        ));
    }
    Ok(())
}

/// Reads whole frames off a stream, keeping what follows in a buffer.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
        }
    }

    /// The next frame's kind and body. `Ok(None)` at a clean end of stream
    /// between frames.
    pub async fn next(&mut self, max_body: usize) -> Result<Option<(u8, Vec<u8>)>, ReadError> {
        loop {
            if !self.buf.is_empty()
                && let Split::Frame { kind, body, used } = proto::split(&self.buf, max_body)?
            {
                let body = body.to_vec();
                self.buf.drain(..used);
                return Ok(Some((kind, body)));
            }
            let mut chunk = [0u8; 4096];
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
            // Reject garbage on its first bytes, before a frame is whole.
            proto::split(&self.buf, max_body)?;
        }
    }
}

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(#[from] ProtoError),
    #[error("connection closed inside a frame")]
    Truncated,
    #[error("frame tag does not check out")]
    BadTag,
}

impl From<ReadError> for HandshakeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => HandshakeError::Io(e),
            ReadError::Protocol(e) => HandshakeError::Protocol(e),
            ReadError::Truncated => HandshakeError::Closed,
            ReadError::BadTag => HandshakeError::BadProof,
        }
    }
}

async fn read_plain<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    expected: &'static str,
    kind: u8,
) -> Result<Vec<u8>, HandshakeError> {
    match reader.next(MAX_PLAIN_BODY).await? {
        None => Err(HandshakeError::Closed),
        Some((k, body)) if k == kind => Ok(body),
        Some((got, _)) => Err(HandshakeError::Unexpected { expected, got }),
    }
}

/// Writes sealed frames, numbering them.
pub struct SealedWriter<W> {
    inner: W,
    key: FrameKey,
    seq: u64,
}

impl<W: AsyncWrite + Unpin> SealedWriter<W> {
    pub fn new(inner: W, key: FrameKey) -> Self {
        SealedWriter { inner, key, seq: 0 }
    }

    pub async fn send(&mut self, frame: &Sealed) -> io::Result<()> {
        let mut body = frame.encode();
        let tag = self.key.tag(self.seq, frame.kind(), &body);
        // 2^64 frames never happen; if they did, the link ends rather than
        // reuse a number (a replayed tag).
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| io::Error::other("frame counter exhausted"))?;
        body.extend_from_slice(&tag);
        self.inner
            .write_all(&proto::frame(frame.kind(), &body))
            .await
    }

    /// Half-closes: the peer reads an end of stream after our last frame.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
}

impl<W> std::fmt::Debug for SealedWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedWriter(sent {})", self.seq)
    }
}

impl<R> std::fmt::Debug for SealedReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedReader(read {})", self.seq)
    }
}

/// Reads sealed frames, checking each tag and its place in the stream.
pub struct SealedReader<R> {
    frames: FrameReader<R>,
    key: FrameKey,
    seq: u64,
}

impl<R: AsyncRead + Unpin> SealedReader<R> {
    pub fn new(frames: FrameReader<R>, key: FrameKey) -> Self {
        SealedReader {
            frames,
            key,
            seq: 0,
        }
    }

    /// The next frame, `Ok(None)` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Sealed>, ReadError> {
        let Some((kind, body)) = self.frames.next(MAX_SEALED_BODY).await? else {
            return Ok(None);
        };
        let Some(split) = body.len().checked_sub(TAG_LEN) else {
            return Err(ReadError::BadTag);
        };
        let (body, tag) = body.split_at(split);
        if !self.key.verify(self.seq, kind, body, tag) {
            return Err(ReadError::BadTag);
        }
        self.seq = self.seq.checked_add(1).ok_or(ReadError::BadTag)?;
        Ok(Some(Sealed::decode(kind, body)?))
    }
}

/// What this pod brings to a handshake.
#[derive(Debug, Clone)]
pub struct Local {
    pub key: Key,
    pub hello: Hello,
    /// `hello`, encoded once.
    pub claims: Vec<u8>,
}

impl Local {
    pub fn new(key: Key, hello: Hello) -> Result<Local, ProtoError> {
        let claims = hello.encode()?;
        Ok(Local { key, hello, claims })
    }
}

/// Runs the handshake on `reader`/`writer` (one stream's halves). On
/// success, the returned writer and reader are ready for sealed frames.
/// The caller bounds it in time: a stranger may be silent.
pub async fn handshake<R, W>(
    local: &Local,
    role: Role,
    binding: Binding,
    mut reader: FrameReader<R>,
    mut writer: W,
) -> Result<(Established, SealedReader<R>, SealedWriter<W>), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mine = auth::nonce();
    writer.write_all(&proto::frame(KIND_NONCE, &mine)).await?;
    let theirs = proto::nonce_from(&read_plain(&mut reader, "NONCE", KIND_NONCE).await?)?;
    let (dialer_nonce, listener_nonce) = match role {
        Role::Dialer { .. } => (mine, theirs),
        Role::Listener => (theirs, mine),
    };
    let t = Transcript::new(dialer_nonce, listener_nonce, binding);
    let key = &local.key;
    let (peer_claims, listener_claims, dialer_claims);
    match role {
        Role::Dialer { .. } => {
            writer
                .write_all(&proto::frame(KIND_PROOF, &t.dialer_proof(key)))
                .await?;
            let body = read_plain(&mut reader, "HELLO", KIND_HELLO).await?;
            let (claims, tag) = proto::split_hello(&body)?;
            if !t.verify_listener_hello(key, claims, tag) {
                return Err(HandshakeError::BadProof);
            }
            let tag = t.dialer_hello_tag(key, claims, &local.claims);
            writer
                .write_all(&proto::frame(
                    KIND_HELLO,
                    &proto::hello_body(&local.claims, &tag),
                ))
                .await?;
            peer_claims = claims.to_vec();
            listener_claims = peer_claims.clone();
            dialer_claims = local.claims.clone();
        }
        Role::Listener => {
            let proof = read_plain(&mut reader, "PROOF", KIND_PROOF).await?;
            if !t.verify_dialer_proof(key, &proof) {
                return Err(HandshakeError::BadProof);
            }
            let tag = t.listener_hello_tag(key, &local.claims);
            writer
                .write_all(&proto::frame(
                    KIND_HELLO,
                    &proto::hello_body(&local.claims, &tag),
                ))
                .await?;
            let body = read_plain(&mut reader, "HELLO", KIND_HELLO).await?;
            let (claims, tag) = proto::split_hello(&body)?;
            if !t.verify_dialer_hello(key, &local.claims, claims, tag) {
                return Err(HandshakeError::BadProof);
            }
            peer_claims = claims.to_vec();
            listener_claims = local.claims.clone();
            dialer_claims = peer_claims.clone();
        }
    }
    let peer = Hello::decode(&peer_claims)?;
    let (to_listener, to_dialer) = t.frame_keys(key, &listener_claims, &dialer_claims);
    let (send, recv) = match role {
        Role::Dialer { .. } => (to_listener, to_dialer),
        Role::Listener => (to_dialer, to_listener),
    };
    let mut sealed_writer = SealedWriter::new(writer, send);
    if let Err((reason, detail)) = check_claims(&local.hello, &peer, role) {
        // Authenticated, so a configuration mistake: tell the peer why.
        let _ = sealed_writer
            .send(&Sealed::Reject(reason, detail.clone()))
            .await;
        let _ = sealed_writer.shutdown().await;
        return Err(HandshakeError::Rejected(reason, detail));
    }
    Ok((
        Established { peer },
        SealedReader::new(reader, recv),
        sealed_writer,
    ))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{DuplexStream, ReadHalf, WriteHalf, duplex, split};
    use tokio::time::timeout;

    use super::super::proto::{Bye, INSTANCE_LEN, InstanceId, Record, State};
    use super::*;

    type Outcome = Result<
        (
            Established,
            SealedReader<ReadHalf<DuplexStream>>,
            SealedWriter<WriteHalf<DuplexStream>>,
        ),
        HandshakeError,
    >;

    const LIMIT: Duration = Duration::from_secs(3);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn binding(d: &str, l: &str) -> Binding {
        Binding {
            dialer: addr(d),
            listener: addr(l),
        }
    }

    fn direct() -> Binding {
        binding("10.0.0.1:40000", "10.0.0.2:7470")
    }

    fn pod(token: &str, index: u32) -> Local {
        Local::new(
            Key::new(token),
            Hello {
                job: "example-job".into(),
                world: 3,
                index,
                instance: InstanceId::random(),
                started_ms: 1_000,
                serving: false,
                addrs: vec![format!("10.0.0.{}", index + 1).parse().unwrap()],
            },
        )
        .unwrap()
    }

    fn with(local: &Local, f: impl FnOnce(&mut Hello)) -> Local {
        let mut hello = local.hello.clone();
        f(&mut hello);
        Local::new(local.key.clone(), hello).unwrap()
    }

    async fn run(local: &Local, role: Role, binding: Binding, end: DuplexStream) -> Outcome {
        let (r, w) = split(end);
        match timeout(
            LIMIT,
            handshake(local, role, binding, FrameReader::new(r), w),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(HandshakeError::Io(io::ErrorKind::TimedOut.into())),
        }
    }

    /// A dialer and a listener on the two ends of one pipe.
    async fn connect(dialer: &Local, expect: u32, listener: &Local) -> (Outcome, Outcome) {
        let (a, b) = duplex(1 << 16);
        tokio::join!(
            run(
                dialer,
                Role::Dialer {
                    expect: Some(expect)
                },
                direct(),
                a
            ),
            run(listener, Role::Listener, direct(), b)
        )
    }

    fn rejected(o: &Outcome) -> Option<Reject> {
        match o {
            Err(HandshakeError::Rejected(r, _)) => Some(*r),
            _ => None,
        }
    }

    fn timed_out(o: &Outcome) -> bool {
        matches!(o, Err(HandshakeError::Io(e)) if e.kind() == io::ErrorKind::TimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn two_pods_authenticate_and_exchange_sealed_frames() {
        let (d, l) = (pod("uid", 1), pod("uid", 2));
        let (a, b) = connect(&d, 2, &l).await;
        let (da, mut dr, mut dw) = a.unwrap();
        let (lb, mut lr, mut lw) = b.unwrap();
        assert_eq!(da.peer, l.hello);
        assert_eq!(lb.peer, d.hello);
        let record = Record {
            index: 1,
            instance: d.hello.instance,
            started_ms: 1,
            seq: 0,
            state: State::Alive,
            addrs: vec![],
            claim: Default::default(),
            board: Default::default(),
        };
        dw.send(&Sealed::Records(vec![record.clone()]))
            .await
            .unwrap();
        dw.send(&Sealed::Complete).await.unwrap();
        lw.send(&Sealed::Bye(Bye::Leaving)).await.unwrap();
        assert_eq!(
            lr.next().await.unwrap(),
            Some(Sealed::Records(vec![record]))
        );
        assert_eq!(lr.next().await.unwrap(), Some(Sealed::Complete));
        assert_eq!(dr.next().await.unwrap(), Some(Sealed::Bye(Bye::Leaving)));
        dw.shutdown().await.unwrap();
        assert_eq!(lr.next().await.unwrap(), None, "clean end of stream");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_token_learns_nothing() {
        let (d, l) = (pod("uid-a", 1), pod("uid-b", 2));
        let (a, b) = connect(&d, 2, &l).await;
        assert!(matches!(b, Err(HandshakeError::BadProof)), "{b:?}");
        // The listener hung up without sending its HELLO.
        assert!(matches!(a, Err(HandshakeError::Closed)), "{a:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn mismatched_pods_are_rejected_and_both_sides_know_why() {
        let d = pod("uid", 1);
        let l = pod("uid", 2);
        let cases = [
            (with(&d, |h| h.job = "other-job".into()), Reject::Job),
            (with(&d, |h| h.world = 4), Reject::WorldSize),
            (with(&d, |h| h.index = 2), Reject::OwnIndex),
        ];
        for (dialer, reason) in cases {
            let (a, b) = connect(&dialer, 2, &l).await;
            assert_eq!(rejected(&a), Some(reason), "dialer: {a:?}");
            assert_eq!(rejected(&b), Some(reason), "listener: {b:?}");
        }
        // Connected to itself: same instance id.
        let (a, b) = connect(&l, 2, &l).await;
        assert_eq!(rejected(&a), Some(Reject::SelfConnection));
        assert_eq!(rejected(&b), Some(Reject::SelfConnection));
    }

    #[tokio::test(start_paused = true)]
    async fn one_sided_rejections_reach_the_other_side_as_a_sealed_reject() {
        // The listener is not the index the dialer looked for (a stale
        // address): the dialer rejects, the listener reads why.
        let (d, l) = (pod("uid", 1), pod("uid", 2));
        let (a, b) = connect(&d, 0, &l).await;
        assert_eq!(rejected(&a), Some(Reject::WrongIndex));
        let (_, mut lr, _) = b.unwrap();
        assert!(matches!(
            lr.next().await.unwrap(),
            Some(Sealed::Reject(Reject::WrongIndex, _))
        ));
        // A token holder that claims an index outside the world.
        let forged = with(&d, |h| h.index = 7);
        let (a, b) = connect(&forged, 2, &l).await;
        assert_eq!(rejected(&b), Some(Reject::UnknownIndex));
        let (_, mut dr, _) = a.unwrap();
        assert!(matches!(
            dr.next().await.unwrap(),
            Some(Sealed::Reject(Reject::UnknownIndex, _))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stranger_who_only_reads_gets_one_nonce_and_nothing_else() {
        let l = pod("secret-token", 2);
        let (stranger, b) = duplex(1 << 16);
        let (outcome, seen) = tokio::join!(run(&l, Role::Listener, direct(), b), async move {
            let mut stranger = stranger;
            let mut seen = Vec::new();
            let _ = timeout(2 * LIMIT, stranger.read_to_end(&mut seen)).await;
            seen
        });
        assert!(timed_out(&outcome), "{outcome:?}");
        assert_eq!(seen.len(), proto::HEADER_LEN + 32, "one NONCE frame");
        assert_eq!(&seen[..6], b"PGBR\x04\x01");
        assert!(
            !seen.windows(6).any(|w| w == b"secret"),
            "the token never leaves"
        );
        assert!(!seen.windows(11).any(|w| w == b"example-job"));
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_and_version_1_peers_are_turned_away() {
        let l = pod("uid", 2);
        for (input, want) in [
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), ProtoError::BadMagic),
            // A v1 HELLO (token in clear): refused on its version byte.
            (
                b"PGBR\x01\x01\x00\x20\x00\x00\x00\x02\x03uid".to_vec(),
                ProtoError::Version(1),
            ),
        ] {
            let (mut stranger, b) = duplex(1 << 16);
            stranger.write_all(&input).await.unwrap();
            let outcome = run(&l, Role::Listener, direct(), b).await;
            assert!(
                matches!(&outcome, Err(HandshakeError::Protocol(e)) if *e == want),
                "{outcome:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_replayed_transcript_fails() {
        let (d, l) = (pod("uid", 1), pod("uid", 2));
        // Record what the dialer sends in a genuine handshake.
        let (da, mid_d) = duplex(1 << 16);
        let (mid_l, lb) = duplex(1 << 16);
        let (mid_d_r, mid_d_w) = split(mid_d);
        let (mid_l_r, mid_l_w) = split(mid_l);
        let forward = |mut r: ReadHalf<DuplexStream>, mut w: WriteHalf<DuplexStream>| async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) = timeout(LIMIT, r.read(&mut buf)).await {
                if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            seen
        };
        let (a, b, sent_by_dialer, _) = tokio::join!(
            run(&d, Role::Dialer { expect: Some(2) }, direct(), da),
            run(&l, Role::Listener, direct(), lb),
            forward(mid_d_r, mid_l_w),
            forward(mid_l_r, mid_d_w),
        );
        assert!(a.is_ok() && b.is_ok());
        // Replay it, byte for byte, to the same listener on a new connection
        // with the very same addresses.
        let (mut attacker, lb) = duplex(1 << 16);
        attacker.write_all(&sent_by_dialer).await.unwrap();
        let b = run(&l, Role::Listener, direct(), lb).await;
        assert!(matches!(b, Err(HandshakeError::BadProof)), "{b:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_relay_between_two_pods_fails() {
        // The relay holds two connections: dialer -> relay and relay ->
        // listener. Each pod sees its own connection's addresses.
        let (d, l) = (pod("uid", 1), pod("uid", 2));
        let (da, relay_d) = duplex(1 << 16);
        let (relay_l, lb) = duplex(1 << 16);
        let (relay_d_r, relay_d_w) = split(relay_d);
        let (relay_l_r, relay_l_w) = split(relay_l);
        let pipe = |mut r: ReadHalf<DuplexStream>, mut w: WriteHalf<DuplexStream>| async move {
            let _ = timeout(LIMIT, tokio::io::copy(&mut r, &mut w)).await;
        };
        let (a, b, _, _) = tokio::join!(
            run(
                &d,
                Role::Dialer { expect: Some(2) },
                binding("10.0.0.1:40000", "10.0.0.66:7470"),
                da
            ),
            run(
                &l,
                Role::Listener,
                binding("10.0.0.66:41000", "10.0.0.2:7470"),
                lb
            ),
            pipe(relay_d_r, relay_l_w),
            pipe(relay_l_r, relay_d_w),
        );
        assert!(matches!(b, Err(HandshakeError::BadProof)), "{b:?}");
        assert!(a.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn reflection_fails() {
        // 1. Everything a pod sends comes back to it.
        let l = pod("uid", 2);
        for role in [Role::Listener, Role::Dialer { expect: Some(1) }] {
            let (end, mirror) = duplex(1 << 16);
            let (mr, mw) = split(mirror);
            let echo = async move {
                let (mut mr, mut mw) = (mr, mw);
                let _ = timeout(LIMIT, tokio::io::copy(&mut mr, &mut mw)).await;
            };
            let (outcome, _) = tokio::join!(run(&l, role, direct(), end), echo);
            assert!(outcome.is_err(), "{role:?}: {outcome:?}");
        }
        // 2. The pod's own proof, from a connection it dialed, fed back to it
        // as a listener, with the nonces swapped so the transcript matches
        // up to the addresses.
        let (as_listener, attacker_1) = duplex(1 << 16);
        let (as_dialer, attacker_2) = duplex(1 << 16);
        let attack = async move {
            let (r1, mut w1) = split(attacker_1);
            let (r2, mut w2) = split(attacker_2);
            let mut f1 = FrameReader::new(r1);
            let mut f2 = FrameReader::new(r2);
            let (_, n1) = f1.next(MAX_PLAIN_BODY).await.unwrap().unwrap();
            let (_, n2) = f2.next(MAX_PLAIN_BODY).await.unwrap().unwrap();
            w2.write_all(&proto::frame(KIND_NONCE, &n1)).await.unwrap();
            w1.write_all(&proto::frame(KIND_NONCE, &n2)).await.unwrap();
            let (kind, proof) = f2.next(MAX_PLAIN_BODY).await.unwrap().unwrap();
            assert_eq!(kind, KIND_PROOF);
            w1.write_all(&proto::frame(KIND_PROOF, &proof))
                .await
                .unwrap();
            // Hold both connections open until the pod gives up.
            tokio::time::sleep(2 * LIMIT).await;
            drop((w1, w2, f1, f2));
        };
        let (b, a, _) = tokio::join!(
            run(
                &l,
                Role::Listener,
                binding("10.0.0.66:41000", "10.0.0.3:7470"),
                as_listener
            ),
            run(
                &l,
                Role::Dialer { expect: Some(1) },
                binding("10.0.0.3:42000", "10.0.0.66:7470"),
                as_dialer
            ),
            attack
        );
        assert!(matches!(b, Err(HandshakeError::BadProof)), "{b:?}");
        assert!(a.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn tampered_sealed_frames_are_refused() {
        let (d, l) = (pod("uid", 1), pod("uid", 2));
        let (a, mid) = duplex(1 << 16);
        let (mid2, b) = duplex(1 << 16);
        // Forward the handshake unchanged, then flip one byte of the first
        // sealed frame.
        let (mr, mw) = split(mid);
        let (m2r, m2w) = split(mid2);
        let to_listener = async move {
            let (mut mr, mut m2w) = (FrameReader::new(mr), m2w);
            for _ in 0..3 {
                let (kind, body) = mr.next(MAX_PLAIN_BODY).await.unwrap().unwrap();
                m2w.write_all(&proto::frame(kind, &body)).await.unwrap();
            }
            let (kind, mut body) = mr.next(MAX_SEALED_BODY).await.unwrap().unwrap();
            body[0] ^= 1;
            m2w.write_all(&proto::frame(kind, &body)).await.unwrap();
            m2w
        };
        let to_dialer = async move {
            let (mut m2r, mut mw) = (m2r, mw);
            let _ = timeout(LIMIT, tokio::io::copy(&mut m2r, &mut mw)).await;
        };
        let (outcome_d, outcome_l, _, _) = tokio::join!(
            async {
                let (_, _, mut w) = run(&d, Role::Dialer { expect: Some(2) }, direct(), a)
                    .await
                    .unwrap();
                w.send(&Sealed::Complete).await.unwrap();
                w
            },
            async {
                let (_, mut r, _) = run(&l, Role::Listener, direct(), b).await.unwrap();
                r.next().await
            },
            to_listener,
            to_dialer,
        );
        drop(outcome_d);
        assert!(matches!(outcome_l, Err(ReadError::BadTag)), "{outcome_l:?}");
    }

    #[test]
    fn claims_checks_name_the_mismatch() {
        let local = pod("t", 0).hello;
        let peer = Hello {
            world: 5,
            instance: InstanceId([1; INSTANCE_LEN]),
            ..local.clone()
        };
        let (reason, detail) = check_claims(&local, &peer, Role::Listener).unwrap_err();
        assert_eq!(reason, Reject::WorldSize);
        assert!(
            detail.contains("waits for 5 pods, this pod for 3"),
            "{detail}"
        );
    }
}

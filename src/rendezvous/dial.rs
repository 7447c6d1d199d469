//! Getting a link: dialing a peer (resolve, connect, try every address)
//! and the authenticated handshake over any byte stream, under its
//! deadline. The shell runs these as tasks; the core only sees the result.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::timeout;
use tracing::warn;

use super::admission::HandshakeId;
use super::auth::{self, Binding};
use super::core::DialTarget;
use super::proto::Hello;
use super::session::{self, FrameReader, HandshakeError, Local, Role, SealedReader, SealedWriter};
use crate::cause::Cause;
use crate::dns::{self, Resolve};
use crate::net;

/// Time a connection has to complete its handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);
/// Addresses from the Service's record tried in one attempt.
const SERVICE_TRIES: usize = 3;

/// Either half of a link's byte stream: TCP in a pod, an in-memory pipe
/// in tests.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A link that finished its handshake, before the engine adopts it.
pub struct NewLink {
    pub peer: Hello,
    pub reader: SealedReader<ReadHalf>,
    pub writer: SealedWriter<WriteHalf>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
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
pub(super) async fn establish(
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
pub(super) enum Dialed {
    Linked(Box<NewLink>),
    Failed(Cause),
}

/// Where and how to dial one peer.
pub(super) struct DialPlan<R> {
    pub target: DialTarget,
    pub resolver: Option<Arc<R>>,
    pub port: u16,
    pub source: Option<IpAddr>,
    pub connect_timeout: Duration,
    pub local: Arc<Local>,
}

/// One attempt to link to a peer: resolve its name unless an address is
/// known, then try every address until a handshake succeeds.
pub(super) async fn dial<R: Resolve>(plan: DialPlan<R>) -> Dialed {
    let DialPlan {
        target:
            DialTarget {
                expect,
                target,
                known,
                skip,
            },
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

/// An incoming connection's handshake, done: which, where from, and how.
pub(super) type Handshaken = (HandshakeId, SocketAddr, Result<NewLink, HandshakeError>);

/// The handshakes of accepted connections in flight, each with its abort
/// handle: the one place a pending handshake lives on the shell's side
/// (the core's admission budget counts it by the same id).
#[derive(Default)]
pub(super) struct Handshakes {
    tasks: JoinSet<Handshaken>,
    aborts: HashMap<HandshakeId, AbortHandle>,
}

impl Handshakes {
    pub(super) fn spawn(
        &mut self,
        id: HandshakeId,
        stream: TcpStream,
        remote: SocketAddr,
        local: Arc<Local>,
    ) {
        let handle = self.tasks.spawn(async move {
            let result = establish(stream, Role::Listener, &local).await;
            (id, remote, result)
        });
        self.aborts.insert(id, handle);
    }

    pub(super) fn abort(&mut self, id: HandshakeId) {
        if let Some(handle) = self.aborts.remove(&id) {
            handle.abort();
        }
    }

    /// The next handshake to end on its own (aborted ones are skipped).
    pub(super) async fn next(&mut self) -> Option<Handshaken> {
        while let Some(joined) = self.tasks.join_next().await {
            if let Ok(done) = joined {
                self.aborts.remove(&done.0);
                return Some(done);
            }
        }
        None
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

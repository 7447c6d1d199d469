//! One authenticated link, after its handshake: a task that reads sealed
//! frames and hands them to the engine, and writes what the engine queues.
//! Reading and writing run concurrently, so two pods that send each other
//! large directories at once never wait on each other's buffers.
//!
//! No deadline applies here. A peer that is slow (CPU throttled, frozen
//! for a while) is waited for; a peer that is gone shows up as an end of
//! stream or an error from the kernel (TCP keepalive and the user timeout
//! set on the socket bound how long a vanished host takes to notice).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::links::{End, LinkId};
use super::proto::Sealed;
use super::session::{SealedReader, SealedWriter};

/// What the engine asks a link to do.
#[derive(Debug)]
pub enum Out {
    Send(Sealed),
    /// Half-close after what was queued before: the peer sees an end of
    /// stream. The link ends when the peer closes its side too.
    Close,
}

/// What a link tells the engine.
#[derive(Debug)]
pub enum Event {
    Frame(LinkId, Sealed),
    Closed(LinkId, End),
}

/// Runs the link until the peer's side ends, then reports how.
pub async fn run<R, W>(
    id: LinkId,
    mut reader: SealedReader<R>,
    mut writer: SealedWriter<W>,
    mut outbox: mpsc::UnboundedReceiver<Out>,
    events: mpsc::UnboundedSender<Event>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let reading = async {
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    if events.send(Event::Frame(id, frame)).is_err() {
                        return End::Error("the engine stopped".into());
                    }
                }
                Ok(None) => return End::Eof,
                Err(e) => return End::Error(e.to_string()),
            }
        }
    };
    let writing = async {
        while let Some(out) = outbox.recv().await {
            match out {
                Out::Send(frame) => writer.send(&frame).await?,
                Out::Close => {
                    writer.shutdown().await?;
                    return Ok(());
                }
            }
        }
        // The engine dropped the link: close our side.
        writer.shutdown().await
    };
    tokio::pin!(reading);
    let end = tokio::select! {
        end = &mut reading => end,
        written = writing => match written {
            Ok(()) => reading.await,
            Err(e) => End::Error(e.to_string()),
        },
    };
    let _ = events.send(Event::Closed(id, end));
}

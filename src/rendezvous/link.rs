//! One authenticated link, after its handshake: a task that reads sealed
//! frames and hands them to the engine, and writes what the engine queues.
//! Reading and writing run concurrently, so two pods that send each other
//! large directories at once never wait on each other's buffers.
//!
//! Both channels are bounded. The outbox: the engine never waits on it
//! (it `try_send`s, keeping room for the few control frames, and leaves
//! RECORDS it could not hand over in its change log for later). The
//! events: this task waits for room there, which holds up only its reading
//! half; the writing half goes on meanwhile, and the engine drains the
//! events without ever waiting on a link. So no wait goes round in a
//! circle: a peer that floods us is slowed to the engine's pace, and a
//! peer that does not read costs a few frames, not a growing queue.
//!
//! No deadline applies here. A peer that is slow (CPU throttled, frozen
//! for a while) is waited for; a peer that is gone shows up as an end of
//! stream or an error from the kernel (TCP keepalive and the user timeout
//! set on the socket bound how long a vanished host takes to notice).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::timeout;
use tracing::warn;

use super::core::{CONTROL_FRAMES, RECORD_FRAMES};
use super::links::{End, LinkId};
use super::proto::{Record, Sealed};
use super::session::{SealedReader, SealedWriter};

/// What the engine asks a link to do.
#[derive(Debug)]
pub enum Out {
    Send(Sealed),
    /// Half-close after what was queued before: the peer sees an end of
    /// stream. The link ends when the peer closes its side too.
    Close,
    /// The same, but the link ends at most [`CLOSE_LINGER`] later: the
    /// peer has announced that it has released and is leaving, so nothing
    /// it could still send is needed, and a path that drops everything
    /// would otherwise hold the link until the TCP user timeout.
    Abandon,
}

/// What a link tells the engine.
#[derive(Debug)]
pub enum Event {
    Frame(LinkId, Sealed),
    Closed(LinkId, End),
}

/// Events (frames, ends) the links may have queued for the engine. When
/// full, a link's reader waits (see above why that cannot deadlock).
pub const EVENTS: usize = 16;

/// How long a link abandoned by this end ([`Out::Abandon`]) still tries
/// to send its goodbye and reads, waiting for the peer's end of stream.
pub const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// The channel from every link to the engine, [`EVENTS`] deep.
pub fn events() -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
    mpsc::channel(EVENTS)
}

/// A link's outbox: [`RECORD_FRAMES`] RECORDS frames, and room beyond them
/// for every control output the link will ever get.
pub fn outbox() -> (mpsc::Sender<Out>, mpsc::Receiver<Out>) {
    mpsc::channel(RECORD_FRAMES + CONTROL_FRAMES)
}

/// Whether `tx` takes one more RECORDS frame: the last [`CONTROL_FRAMES`]
/// places stay free for control.
pub fn has_room(tx: &mpsc::Sender<Out>) -> bool {
    tx.capacity() > CONTROL_FRAMES
}

/// Hands `records` to the link, without waiting; false if its outbox had no
/// room (the core then keeps them for later). A link that ended takes
/// them: its end is on its way to the engine.
pub fn offer(tx: &mpsc::Sender<Out>, records: Vec<Record>) -> bool {
    has_room(tx)
        && !matches!(
            tx.try_send(Out::Send(Sealed::Records(records))),
            Err(TrySendError::Full(_))
        )
}

/// Hands a control output to the link, without waiting. Its outbox always
/// has room for it ([`CONTROL_FRAMES`]); were it ever full, a task waits to
/// deliver it rather than lose it.
pub fn control(tx: &mpsc::Sender<Out>, out: Out) {
    if let Err(TrySendError::Full(out)) = tx.try_send(out) {
        warn!("barrier: a link's outbox had no room for a control frame");
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(out).await });
    }
}

/// Outputs waiting in `tx`.
pub fn queued(tx: &mpsc::Sender<Out>) -> usize {
    tx.max_capacity() - tx.capacity()
}

/// Runs the link until the peer's side ends, then reports how.
pub async fn run<R, W>(
    id: LinkId,
    mut reader: SealedReader<R>,
    mut writer: SealedWriter<W>,
    mut outbox: mpsc::Receiver<Out>,
    events: mpsc::Sender<Event>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let reading = async {
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    // Waits while the engine is behind: back-pressure on
                    // the peer, through our socket's receive window.
                    if events.send(Event::Frame(id, frame)).await.is_err() {
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
                    return Ok(false);
                }
                Out::Abandon => {
                    // A black-holed path may not take even the FIN: the
                    // linger bounds the shutdown as well.
                    let _ = timeout(CLOSE_LINGER, writer.shutdown()).await;
                    return Ok(true);
                }
            }
        }
        // The engine dropped the link: close our side.
        writer.shutdown().await.map(|()| false)
    };
    tokio::pin!(reading);
    let end = tokio::select! {
        end = &mut reading => end,
        written = writing => match written {
            // Closed by this end: what the peer still sends is read until
            // its end of stream (a stalled peer holds the link, so nothing
            // it was sent is lost), or, once the peer announced it is
            // leaving, for at most the linger.
            Ok(false) => reading.await,
            Ok(true) => timeout(CLOSE_LINGER, reading).await.unwrap_or(End::Eof),
            Err(e) => End::Error(e.to_string()),
        },
    };
    let _ = events.send(Event::Closed(id, end)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fill_only_their_share_and_every_control_output_still_fits() {
        let (tx, mut rx) = outbox();
        let offered = (0..RECORD_FRAMES + 2)
            .filter(|_| offer(&tx, Vec::new()))
            .count();
        assert_eq!(offered, RECORD_FRAMES, "the rest stays in the change log");
        assert!(!has_room(&tx));
        // A link's whole life of control outputs: COMPLETE, BYE, close.
        control(&tx, Out::Send(Sealed::Complete));
        control(
            &tx,
            Out::Send(Sealed::Bye(super::super::proto::Bye::Leaving)),
        );
        control(&tx, Out::Close);
        assert_eq!(
            queued(&tx),
            RECORD_FRAMES + CONTROL_FRAMES,
            "none was refused"
        );
        // In order, the control outputs after the records queued before.
        let mut kinds = Vec::new();
        while let Ok(out) = rx.try_recv() {
            kinds.push(match out {
                Out::Send(Sealed::Records(_)) => "records",
                Out::Send(_) => "control",
                Out::Close | Out::Abandon => "close",
            });
        }
        let mut expected = vec!["records"; RECORD_FRAMES];
        expected.extend(["control", "control", "close"]);
        assert_eq!(kinds, expected);
        assert!(has_room(&tx), "drained: room again");
    }
}

//! `GET /run`: a `peergate run`'s lease on a round, over one loopback
//! connection that stays open while its command runs.
//!
//! After the response head, both sides write one JSON object per line:
//!
//! ```text
//! run → GET /run?after=N&grace=MS HTTP/1.1
//! sidecar ← 200, Content-Type: application/x-ndjson
//! sidecar ← {"event":"start","round":R,"handoff":{...}}   a round after N is released
//!   run → {"report":"failed","code":C}                   its command failed in R
//!   run → {"report":"exited","code":C}                   done for good (0: completed)
//! sidecar ← {"event":"end","round":R,"cause":...}         R ended, whatever the cause
//!   run closes the connection once its command has stopped
//! sidecar ← {"event":"finishing","index":I}               no round will be released again
//! ```
//!
//! The open connection is the lease: while it is open after `start`, the
//! sidecar joins no later round (up to the grace and `STOP_SLACK` after an
//! end), so no command of the next round starts while this one runs. The
//! connection's end, for whatever reason, releases it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::debug;

use super::answer::AwaitAnswer;
use super::endpoints::Endpoints;
use super::http::Request;
use crate::rendezvous::Control;
use crate::rendezvous::proto::Work;
use crate::rendezvous::rounds::{Attach, EndCause};

/// Grace assumed when a run names none.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Longest grace a run may claim: the next round waits at most this long
/// (plus the slack) for one pod's command.
const MAX_GRACE: Duration = Duration::from_secs(3600);
/// Longest line a run may send.
const MAX_LINE: usize = 1024;

/// What the sidecar writes on the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum SidecarLine {
    Start {
        round: u32,
        handoff: AwaitAnswer,
    },
    End {
        round: u32,
        /// `failed`, `replaced`, `lost` or `moved`.
        cause: String,
        index: u32,
        /// The failed command's code (`failed` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u8>,
        /// No round follows: the group is finishing.
        finishing: bool,
    },
    Finishing {
        index: u32,
    },
}

/// What a run writes on the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "lowercase")]
pub enum RunLine {
    /// The command failed: a non-zero exit, or 128 + a signal.
    Failed { code: u8 },
    /// This member is done for good: completed (0), or gave up.
    Exited { code: u8 },
}

impl SidecarLine {
    fn end(round: u32, cause: EndCause, finishing: bool) -> SidecarLine {
        SidecarLine::End {
            round,
            cause: cause.name().to_owned(),
            index: cause.index(),
            code: match cause {
                EndCause::Failed { code, .. } => Some(code),
                _ => None,
            },
            finishing,
        }
    }
}

/// The `after` and `grace` of `/run?after=N&grace=MS`.
pub fn parse_query(query: Option<&str>) -> Result<(u32, Duration), String> {
    let mut after = 0;
    let mut grace = DEFAULT_GRACE;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" => after = value.parse().map_err(|_| format!("bad after={value}"))?,
            "grace" => {
                let ms: u64 = value.parse().map_err(|_| format!("bad grace={value}"))?;
                grace = Duration::from_millis(ms).min(MAX_GRACE);
            }
            other => return Err(format!("unknown parameter {other}")),
        }
    }
    Ok((after, grace))
}

/// Serves one lease until the run hangs up.
pub async fn serve(stream: TcpStream, request: Request, mut endpoints: Endpoints) {
    let (after, grace) = match parse_query(request.query.as_deref()) {
        Ok(q) => q,
        Err(why) => {
            let response = super::http::Response::text(400, format!("{why}\n"));
            let mut stream = stream;
            let _ = super::http::respond(&mut stream, &response, false).await;
            return;
        }
    };
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).take_lines();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: \
                no-store\r\nConnection: close\r\n\r\n";
    if writer.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // Until a round after `after` starts: nothing is held.
    let round = loop {
        let ready = tokio::select! {
            s = endpoints.wait_for(|s| s.finishing || (s.live && s.round > after)) => s,
            // The run hung up (or wrote before its start: a protocol error).
            _ = lines.next() => return,
        };
        let Some(status) = ready else {
            return; // the engine is gone
        };
        if status.finishing && !(status.live && status.round > after) {
            let index = finishing_index(&endpoints).await;
            let _ = send(&mut writer, &SidecarLine::Finishing { index }).await;
            return;
        }
        let Some((attach, outcome)) = endpoints
            .ask(|reply| Control::Attach {
                after,
                grace,
                reply,
            })
            .await
        else {
            return;
        };
        match attach {
            Attach::Start(round) => {
                let line = SidecarLine::Start {
                    round,
                    handoff: AwaitAnswer::from_outcome(&outcome),
                };
                if send(&mut writer, &line).await.is_err() {
                    detach(&endpoints, round).await;
                    return;
                }
                break round;
            }
            Attach::Finishing => {
                let index = finishing_index(&endpoints).await;
                let _ = send(&mut writer, &SidecarLine::Finishing { index }).await;
                return;
            }
            Attach::Wait => {
                // Released but not ours yet (an older round's command still
                // stops here): wait for the next change.
                let _ = tokio::select! {
                    changed = endpoints.status.changed() => changed,
                    _ = lines.next() => return,
                };
            }
        }
    };
    // Holding the lease on `round`.
    let mut told_end = false;
    loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(Ok(text)) => match serde_json::from_str::<RunLine>(&text) {
                    Ok(RunLine::Failed { code }) => {
                        let _ = endpoints
                            .control
                            .send(Control::Report(Work::Failed { round, code }))
                            .await;
                    }
                    Ok(RunLine::Exited { code }) => {
                        let _ = endpoints
                            .control
                            .send(Control::Report(Work::Exited { round, code }))
                            .await;
                    }
                    Err(e) => {
                        debug!("peergate run sent a line this sidecar cannot read ({e}); closing its lease");
                        break;
                    }
                },
                // Its end (or garbage, or an overlong line): the command is gone.
                _ => break,
            },
            status = endpoints.wait_for(|s| s.round != round || !s.live), if !told_end => {
                let Some(status) = status else { break };
                let cause = status.end.filter(|_| status.round == round);
                let line = match cause {
                    Some(cause) => SidecarLine::end(round, cause, status.finishing),
                    // A later round released before this pod heard how this
                    // one ended: it was moved on.
                    None => SidecarLine::end(round, EndCause::Moved { index: 0 }, status.finishing),
                };
                if send(&mut writer, &line).await.is_err() {
                    break;
                }
                told_end = true;
            }
        }
    }
    detach(&endpoints, round).await;
}

async fn detach(endpoints: &Endpoints, round: u32) {
    let _ = endpoints.control.send(Control::Detach { round }).await;
}

async fn finishing_index(endpoints: &Endpoints) -> u32 {
    let snapshot = endpoints.ask(Control::Snapshot).await;
    snapshot
        .and_then(|s| s.rounds)
        .and_then(|r| r.finishing())
        .unwrap_or(0)
}

async fn send(
    writer: &mut (impl AsyncWriteExt + Unpin),
    line: &impl Serialize,
) -> std::io::Result<()> {
    let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    text.push('\n');
    writer.write_all(text.as_bytes()).await
}

/// Lines of at most [`MAX_LINE`] bytes; a longer one ends the stream.
pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
}

pub trait TakeLines: Sized {
    fn take_lines(self) -> Lines<Self>;
}

impl<R: AsyncBufReadExt + Unpin> TakeLines for R {
    fn take_lines(self) -> Lines<Self> {
        Lines {
            reader: self,
            buf: Vec::new(),
        }
    }
}

impl<R: AsyncBufReadExt + Unpin> Lines<R> {
    /// The next line; `None` at the end of the stream. Cancel-safe: a
    /// partial line stays in the buffer.
    pub async fn next(&mut self) -> Option<std::io::Result<String>> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..end]).trim().to_owned();
                if text.is_empty() {
                    continue;
                }
                return Some(Ok(text));
            }
            if self.buf.len() > MAX_LINE {
                return None;
            }
            let chunk = match self.reader.fill_buf().await {
                Ok([]) => return None,
                Ok(chunk) => chunk.to_vec(),
                Err(e) => return Some(Err(e)),
            };
            self.reader.consume(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_last_round_and_the_grace() {
        assert_eq!(parse_query(None).unwrap(), (0, DEFAULT_GRACE));
        assert_eq!(
            parse_query(Some("after=3&grace=1500")).unwrap(),
            (3, Duration::from_millis(1500))
        );
        assert_eq!(parse_query(Some("grace=99999999999")).unwrap().1, MAX_GRACE);
        assert!(parse_query(Some("after=x")).is_err());
        assert!(parse_query(Some("after=-1")).is_err());
        assert!(parse_query(Some("what=1")).is_err());
    }

    #[test]
    fn lines_keep_their_wire_form() {
        let end = SidecarLine::end(2, EndCause::Failed { index: 1, code: 3 }, false);
        assert_eq!(
            serde_json::to_string(&end).unwrap(),
            r#"{"event":"end","round":2,"cause":"failed","index":1,"code":3,"finishing":false}"#
        );
        let lost = SidecarLine::end(2, EndCause::Lost { index: 4 }, true);
        assert_eq!(
            serde_json::to_string(&lost).unwrap(),
            r#"{"event":"end","round":2,"cause":"lost","index":4,"finishing":true}"#
        );
        for line in [RunLine::Failed { code: 137 }, RunLine::Exited { code: 0 }] {
            let text = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<RunLine>(&text).unwrap(), line);
        }
        assert_eq!(
            serde_json::to_string(&RunLine::Failed { code: 1 }).unwrap(),
            r#"{"report":"failed","code":1}"#
        );
        assert!(serde_json::from_str::<RunLine>(r#"{"report":"maybe"}"#).is_err());
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_ends_the_stream() {
        let mut data = b"{\"report\":\"failed\",\"code\":1}\n\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        let mut lines = BufReader::new(&data[..]).take_lines();
        assert_eq!(
            lines.next().await.unwrap().unwrap(),
            r#"{"report":"failed","code":1}"#
        );
        assert!(lines.next().await.is_none());
    }
}

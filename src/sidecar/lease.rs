//! `GET /run`: a `peergate run`'s lease on a round, over one loopback
//! connection that stays open while its command runs.
//!
//! After the response head, both sides write lines of space-separated
//! words:
//!
//! ```text
//! run → GET /run?after=N&grace=MS HTTP/1.1
//! sidecar ← 200, Content-Type: text/plain; charset=utf-8
//! sidecar ← start R {"peers":[..],"rank":..,"round":R}   a round after N is released
//!   run → failed C                                      its command failed in R
//!   run → exited C                                      done for good (0: completed)
//! sidecar ← end R CAUSE INDEX CODE|- FINISHING          R ended, whatever the cause
//!   run closes the connection once its command has stopped
//! sidecar ← finishing I                                 no round will be released again
//! ```
//!
//! The open connection is the lease: while it is open after `start`, the
//! sidecar joins no later round (up to the grace and `STOP_SLACK` after an
//! end), so no command of the next round starts while this one runs. The
//! connection's end, for whatever reason, releases it.

use std::time::Duration;

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

/// What the sidecar writes on the lease, one line each (the parser is
/// the run's, so both ends are this module):
///
/// ```text
/// start ROUND HANDOFF-JSON
/// end ROUND CAUSE INDEX CODE|- FINISHING(0|1)
/// finishing INDEX
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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
        code: Option<u8>,
        /// No round follows: the group is finishing.
        finishing: bool,
    },
    Finishing {
        index: u32,
    },
}

/// What a run writes on the lease: `failed CODE` or `exited CODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// The line, without its newline.
    pub fn encode(&self) -> String {
        match self {
            SidecarLine::Start { round, handoff } => {
                format!("start {round} {}", handoff.to_json())
            }
            SidecarLine::End {
                round,
                cause,
                index,
                code,
                finishing,
            } => format!(
                "end {round} {cause} {index} {} {}",
                code.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                u8::from(*finishing)
            ),
            SidecarLine::Finishing { index } => format!("finishing {index}"),
        }
    }

    pub fn parse(line: &str) -> Option<SidecarLine> {
        let (word, rest) = line.split_once(' ')?;
        match word {
            "start" => {
                let (round, json) = rest.split_once(' ')?;
                Some(SidecarLine::Start {
                    round: round.parse().ok()?,
                    handoff: serde_json::from_str(json).ok()?,
                })
            }
            "end" => {
                let mut f = rest.split(' ');
                let line = SidecarLine::End {
                    round: f.next()?.parse().ok()?,
                    cause: f.next()?.to_owned(),
                    index: f.next()?.parse().ok()?,
                    code: match f.next()? {
                        "-" => None,
                        c => Some(c.parse().ok()?),
                    },
                    finishing: match f.next()? {
                        "0" => false,
                        "1" => true,
                        _ => return None,
                    },
                };
                f.next().is_none().then_some(line)
            }
            "finishing" => Some(SidecarLine::Finishing {
                index: rest.parse().ok()?,
            }),
            _ => None,
        }
    }
}

impl RunLine {
    pub fn encode(self) -> String {
        match self {
            RunLine::Failed { code } => format!("failed {code}"),
            RunLine::Exited { code } => format!("exited {code}"),
        }
    }

    pub fn parse(line: &str) -> Option<RunLine> {
        let (word, code) = line.split_once(' ')?;
        let code = code.parse().ok()?;
        match word {
            "failed" => Some(RunLine::Failed { code }),
            "exited" => Some(RunLine::Exited { code }),
            _ => None,
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
    let mut lines = Lines::new(BufReader::new(reader));
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: \
                no-store\r\nConnection: close\r\n\r\n";
    if writer.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // Until a round after `after` starts: nothing is held.
    let round = loop {
        let ready = tokio::select! {
            s = endpoints.wait_for(|s| s.finishing.is_some() || (s.live && s.round > after)) => s,
            // The run hung up (or wrote before its start: a protocol error).
            _ = lines.next() => return,
        };
        if ready.is_none() {
            return; // the engine is gone
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
                let index = endpoints.current().finishing.unwrap_or(0);
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
                Some(Ok(text)) => match RunLine::parse(&text) {
                    Some(RunLine::Failed { code }) => {
                        let _ = endpoints
                            .control
                            .send(Control::Report(Work::Failed { round, code }))
                            .await;
                    }
                    Some(RunLine::Exited { code }) => {
                        let _ = endpoints
                            .control
                            .send(Control::Report(Work::Exited { round, code }))
                            .await;
                    }
                    None => {
                        debug!("peergate run sent a line this sidecar cannot read ({text:?}); closing its lease");
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
                    Some(cause) => SidecarLine::end(round, cause, status.finishing.is_some()),
                    // A later round released before this pod heard how this
                    // one ended: it was moved on.
                    None => SidecarLine::end(round, EndCause::Moved { index: 0 }, status.finishing.is_some()),
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

async fn send(
    writer: &mut (impl AsyncWriteExt + Unpin),
    line: &SidecarLine,
) -> std::io::Result<()> {
    let mut text = line.encode();
    text.push('\n');
    writer.write_all(text.as_bytes()).await
}

/// Lines of at most [`MAX_LINE`] bytes; a longer one ends the stream.
pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: AsyncBufReadExt + Unpin> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines {
            reader,
            buf: Vec::new(),
        }
    }

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
        assert_eq!(end.encode(), "end 2 failed 1 3 0");
        let lost = SidecarLine::end(2, EndCause::Lost { index: 4 }, true);
        assert_eq!(lost.encode(), "end 2 lost 4 - 1");
        let start = SidecarLine::Start {
            round: 3,
            handoff: AwaitAnswer {
                rank: Some(1),
                round: Some(3),
                peers: vec![],
            },
        };
        assert_eq!(start.encode(), r#"start 3 {"peers":[],"rank":1,"round":3}"#);
        for line in [start, end, lost, SidecarLine::Finishing { index: 7 }] {
            assert_eq!(SidecarLine::parse(&line.encode()), Some(line));
        }
        for line in [RunLine::Failed { code: 137 }, RunLine::Exited { code: 0 }] {
            assert_eq!(RunLine::parse(&line.encode()), Some(line));
        }
        assert_eq!(RunLine::Failed { code: 1 }.encode(), "failed 1");
        for bad in ["maybe 1", "failed", "failed 256", "exited -1", ""] {
            assert_eq!(RunLine::parse(bad), None, "{bad:?}");
        }
        for bad in [
            "end 2 lost 4 - 2",
            "end 2 lost 4 -",
            "end 2 lost 4 - 1 x",
            "start x {}",
            "start 1 {",
            "finishing",
            "hello 1",
        ] {
            assert_eq!(SidecarLine::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_ends_the_stream() {
        let mut data = b"failed 1\n\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        let mut lines = Lines::new(BufReader::new(&data[..]));
        assert_eq!(lines.next().await.unwrap().unwrap(), "failed 1");
        assert!(lines.next().await.is_none());
    }
}

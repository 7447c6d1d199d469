//! `peergate await`: block until the serving barrier in this pod
//! (`peergate --mode barrier --serve`, a native sidecar) has released, then
//! exit 0 or exec a command with the hand-off variables.
//!
//! It asks `GET /await` on the sidecar's loopback `--await-port`; the
//! sidecar answers the moment it releases, so there is no probe period in
//! the way (a kubelet `startupProbe` runs at most once per second). Until
//! the sidecar listens (it may still be starting), connections are refused
//! and retried every few milliseconds.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout_at};
use tracing::debug;

use super::answer::AwaitAnswer;
use super::http;
use crate::outcome::GateOutcome;

/// Longest pause between two connection attempts.
const MAX_RETRY: Duration = Duration::from_millis(100);
/// Largest answer read from the sidecar (a hand-off of 100 000 peers).
const MAX_ANSWER: u64 = 64 << 20;

#[derive(Debug, Error)]
pub enum AwaitError {
    #[error(
        "timed out after {waited} waiting for the peergate sidecar on 127.0.0.1:{port} to \
         release{last}"
    )]
    Timeout {
        waited: String,
        port: u16,
        last: String,
    },
    #[error("the sidecar on 127.0.0.1:{port} answered {what}")]
    Answer { port: u16, what: String },
}

/// Waits for the release of the sidecar on `port`, at most until
/// `deadline`; returns the hand-off.
pub async fn wait(port: u16, deadline: Option<Instant>) -> Result<GateOutcome, AwaitError> {
    let start = Instant::now();
    let far = start + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = deadline.unwrap_or(far);
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let mut pause = Duration::from_millis(5);
    let mut last = String::new();
    loop {
        match timeout_at(deadline, ask(addr)).await {
            Err(_) => {
                return Err(AwaitError::Timeout {
                    waited: crate::duration::human(start.elapsed()),
                    port,
                    last: if last.is_empty() {
                        String::new()
                    } else {
                        format!(" (last: {last})")
                    },
                });
            }
            Ok(Ok(answer)) => return parse(port, &answer),
            Ok(Err(e)) => {
                // Not listening yet, or restarting: try again shortly.
                debug!("sidecar not answering yet: {e}");
                last = match e.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        "connection refused: is the sidecar running with --serve, and on this \
                         --await-port?"
                            .into()
                    }
                    _ => e.to_string(),
                };
                if timeout_at(deadline, sleep(pause)).await.is_err() {
                    continue; // reports the timeout above
                }
                pause = (pause * 2).min(MAX_RETRY);
            }
        }
    }
}

/// One request: connect, ask, read the whole answer.
async fn ask(addr: SocketAddr) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = b"GET /await HTTP/1.1\r\nHost: localhost\r\n\r\n";
    http::round_trip(&mut stream, request, MAX_ANSWER).await
}

/// The sidecar's answer as a hand-off.
pub fn parse(port: u16, answer: &[u8]) -> Result<GateOutcome, AwaitError> {
    let bad = |what: String| AwaitError::Answer { port, what };
    let (status, body) =
        http::parse_response(answer).ok_or_else(|| bad("something that is not HTTP".into()))?;
    if status != 200 {
        return Err(bad(format!(
            "{status}: {}",
            String::from_utf8_lossy(body).trim()
        )));
    }
    let answer: AwaitAnswer =
        serde_json::from_slice(body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    Ok(answer.into_outcome())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::PeerOutcome;
    use crate::sidecar::http::Response;
    use crate::sidecar::serve::handoff_json;

    #[test]
    fn the_sidecars_answer_parses_back_into_the_handoff() {
        let outcome = GateOutcome {
            self_index: Some(1),
            round: None,
            peers: (0..3)
                .map(|i| PeerOutcome {
                    index: Some(i),
                    name: format!("job-{i}.svc"),
                    addrs: vec![IpAddr::from([10, 0, 0, i as u8 + 1])],
                    reachable_via: Some(IpAddr::from([10, 0, 0, i as u8 + 1])),
                    elapsed: None,
                })
                .collect(),
        };
        let answer = Response::json(handoff_json(&outcome)).encode(false);
        assert_eq!(parse(7471, &answer).unwrap(), outcome);
        let env = crate::handoff::env_vars(&parse(7471, &answer).unwrap());
        assert!(env.contains(&("PEERGATE_RANK".into(), "1".into())));
        assert!(env.contains(&("PEERGATE_WORLD_SIZE".into(), "3".into())));
    }

    #[test]
    fn errors_name_the_sidecar() {
        let err = parse(7471, &Response::text(404, "not found\n").encode(false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the sidecar on 127.0.0.1:7471 answered 404: not found"
        );
        assert!(parse(7471, b"PGBR\x02").is_err());
        let bad_json = Response::json("{".into()).encode(false);
        assert!(
            parse(7471, &bad_json)
                .unwrap_err()
                .to_string()
                .contains("malformed JSON")
        );
    }

    #[tokio::test]
    async fn nobody_listening_times_out_naming_the_port() {
        // A loopback port nobody listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = wait(port, Some(Instant::now() + Duration::from_millis(200)))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("connection refused"), "{text}");
    }
}

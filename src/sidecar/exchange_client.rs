//! `peergate put`, `get` and `barrier`: one request each to the sidecar in
//! this pod ([`super::exchange`]), and what the answer means for the exit
//! code and the output.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout_at};
use tracing::{debug, warn};

use super::exchange::{Answer, WireEntry};
use super::http;
use crate::duration::human;

/// Largest answer read (every member's 4 KiB value in a Job of 10 000).
const MAX_ANSWER: u64 = 64 << 20;
/// How long a request keeps trying to reach a sidecar that refuses
/// connections (starting, or restarted by the kubelet) when it has no wait
/// of its own.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(5);
/// Time the sidecar has to answer beyond the wait it was given.
const ANSWER_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "cannot reach the peergate sidecar on 127.0.0.1:{port}: {why} (is it running with \
         --mode barrier --serve, on this --await-port?)"
    )]
    Unreachable { port: u16, why: String },
    #[error("the sidecar on 127.0.0.1:{port} answered {what}")]
    Answer { port: u16, what: String },
}

/// A request: method, path with query, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub method: &'static str,
    pub target: String,
    pub body: Vec<u8>,
    /// How long the sidecar may take to answer (the wait it was given).
    pub wait: Option<Duration>,
}

impl Ask {
    /// `PUT /v1/values/KEY`.
    pub fn put(key: &str, value: &str, round: Option<u32>) -> Ask {
        Ask {
            method: "PUT",
            target: with_round(format!("/v1/values/{key}"), round),
            body: value.as_bytes().to_vec(),
            wait: None,
        }
    }

    /// `GET /v1/values/KEY?index=I` or `?all`, waiting up to `wait`
    /// (`None`: forever).
    pub fn get(key: &str, index: Option<u32>, wait: Option<Duration>, round: Option<u32>) -> Ask {
        let wait = wait.unwrap_or(super::exchange::MAX_WAIT);
        let target = match index {
            Some(i) => format!("/v1/values/{key}?index={i}&wait={}", wait.as_millis()),
            None => format!("/v1/values/{key}?all&wait={}", wait.as_millis()),
        };
        Ask {
            method: "GET",
            target: with_round(target, round),
            body: Vec::new(),
            wait: Some(wait),
        }
    }

    /// `POST /v1/barriers/NAME`, waiting up to `wait` (`None`: forever).
    pub fn barrier(name: &str, wait: Option<Duration>, round: Option<u32>) -> Ask {
        let mut target = format!("/v1/barriers/{name}");
        if let Some(w) = wait {
            target.push_str(&format!("?wait={}", w.as_millis()));
        }
        Ask {
            method: "POST",
            target: with_round(target, round),
            body: Vec::new(),
            wait: Some(wait.unwrap_or(super::exchange::MAX_WAIT)),
        }
    }

    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            self.method,
            self.target,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn with_round(target: String, round: Option<u32>) -> String {
    match round {
        None => target,
        Some(r) => {
            let sep = if target.contains('?') { '&' } else { '?' };
            format!("{target}{sep}round={r}")
        }
    }
}

/// Sends `ask` to the sidecar on `port` and reads its answer. Connections
/// refused are retried for [`CONNECT_BUDGET`] (or the wait, if longer).
pub async fn send(port: u16, ask: &Ask) -> Result<Answer, ClientError> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let start = Instant::now();
    let connect_until = start + ask.wait.unwrap_or_default().max(CONNECT_BUDGET);
    let mut pause = Duration::from_millis(5);
    let mut told = false;
    let stream = loop {
        match TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionRefused
                    && Instant::now() < connect_until =>
            {
                debug!("sidecar not answering yet: {e}");
                if !told && start.elapsed() >= CONNECT_BUDGET {
                    // A wait of minutes should not hide a wrong port.
                    warn!(
                        "the peergate sidecar on 127.0.0.1:{port} refuses connections (is it \
                         running with --serve, on this --await-port?); trying again until the \
                         wait ends"
                    );
                    told = true;
                }
                sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(ClientError::Unreachable {
                    port,
                    why: if e.kind() == io::ErrorKind::ConnectionRefused {
                        format!("connection refused for {}", human(start.elapsed()))
                    } else {
                        e.to_string()
                    },
                });
            }
        }
    };
    let answer_by = Instant::now() + ask.wait.unwrap_or_default() + ANSWER_SLACK;
    let bytes = timeout_at(answer_by, exchange(stream, ask))
        .await
        .map_err(|_| ClientError::Answer {
            port,
            what: format!(
                "nothing within {}",
                human(ask.wait.unwrap_or_default() + ANSWER_SLACK)
            ),
        })?
        .map_err(|e| ClientError::Unreachable {
            port,
            why: e.to_string(),
        })?;
    parse(port, &bytes)
}

async fn exchange(mut stream: TcpStream, ask: &Ask) -> io::Result<Vec<u8>> {
    http::round_trip(&mut stream, &ask.encode(), MAX_ANSWER)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sidecar closed the connection without answering",
            ),
            _ => e,
        })
}

/// The sidecar's answer, checked against its HTTP status.
pub fn parse(port: u16, bytes: &[u8]) -> Result<Answer, ClientError> {
    let bad = |what: String| ClientError::Answer { port, what };
    let (status, body) =
        http::parse_response(bytes).ok_or_else(|| bad("something that is not HTTP".into()))?;
    if status == 503 {
        return Err(bad(format!(
            "503: {}",
            String::from_utf8_lossy(body).trim()
        )));
    }
    let answer = Answer::from_json(body).ok_or_else(|| {
        bad(format!(
            "{status}: {} (an older peergate sidecar, without put, get and barrier?)",
            String::from_utf8_lossy(body).trim()
        ))
    })?;
    let expected = match answer {
        Answer::Done { .. } => 200,
        Answer::Missing { .. } => 404,
        Answer::Over { .. } => 409,
        Answer::Error { .. } => 400,
    };
    if status != expected {
        return Err(bad(format!("{status} with a {expected} answer")));
    }
    Ok(answer)
}

/// Why a request found no round to act in, for the error line.
pub fn over_line(answer: &Answer) -> Option<String> {
    let Answer::Over {
        why,
        round,
        latest,
        cause,
        index,
    } = answer
    else {
        return None;
    };
    Some(match why.as_str() {
        "not_released" => "no round has been released yet".to_owned(),
        "ahead" => format!(
            "round {round} has not been released (the latest is {latest}): is PEERGATE_ROUND \
             from another pod or an earlier sidecar?"
        ),
        _ => {
            let because = match (cause.as_deref(), index) {
                (Some(cause), Some(i)) => format!(" (index {i} {})", cause_words(cause)),
                _ if latest > round => format!(" (round {latest} is on)"),
                _ => String::new(),
            };
            format!("round {round} is over{because}; the group restarts in the next round")
        }
    })
}

fn cause_words(cause: &str) -> &str {
    match cause {
        "failed" => "failed",
        "replaced" => "was replaced",
        "lost" => "was lost",
        "moved" => "moved on to a later round",
        other => other,
    }
}

/// `index 1, 3` or `indices 1, 3 and 4 more`.
pub fn list_indices(missing: &[u32]) -> String {
    const SHOWN: usize = 16;
    let shown: Vec<String> = missing.iter().take(SHOWN).map(u32::to_string).collect();
    let more = missing.len().saturating_sub(SHOWN);
    let word = if missing.len() == 1 {
        "index"
    } else {
        "indices"
    };
    let mut line = format!("{word} {}", shown.join(", "));
    if more > 0 {
        line.push_str(&format!(" and {more} more"));
    }
    line
}

/// How `peergate get` prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GetFormat {
    /// The value (`--index`), or `INDEX VALUE` per line (`--all`).
    Text,
    /// One JSON object.
    Json,
    /// ssh known_hosts lines, `NAME,SHORT,ADDR... VALUE`, from published
    /// host keys (`ssh-ed25519 AAAA...`).
    KnownHosts,
}

/// What `peergate get` prints for `entries` found in `round`.
pub fn render(
    format: GetFormat,
    all: bool,
    round: u32,
    entries: &[WireEntry],
) -> Result<String, String> {
    match format {
        GetFormat::Text if !all => Ok(entries.iter().map(|e| format!("{}\n", e.value)).collect()),
        GetFormat::Text => {
            let mut out = String::new();
            for e in entries {
                if e.value.contains('\n') {
                    return Err(format!(
                        "index {}'s value spans lines: use --format json",
                        e.index
                    ));
                }
                out.push_str(&format!("{} {}\n", e.index, e.value));
            }
            Ok(out)
        }
        GetFormat::Json => {
            let values: Vec<_> = entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "index": e.index,
                        "name": e.name,
                        "addrs": e.addrs,
                        "value": e.value,
                    })
                })
                .collect();
            let body = if all {
                serde_json::json!({"round": round, "values": values})
            } else {
                let mut one = values.into_iter().next().unwrap_or_default();
                one["round"] = round.into();
                one
            };
            Ok(format!("{body}\n"))
        }
        GetFormat::KnownHosts => {
            let mut out = String::new();
            for e in entries {
                out.push_str(&known_hosts_line(e)?);
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// One known_hosts line: the peer's name, its first label and its
/// addresses, then the published key (`TYPE BASE64 [COMMENT]`).
fn known_hosts_line(e: &WireEntry) -> Result<String, String> {
    let key = e.value.trim();
    let mut words = key.split_whitespace();
    let valid = match (words.next(), words.next()) {
        (Some(kind), Some(data)) => {
            (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
                && data
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        }
        _ => false,
    };
    if !valid || key.contains('\n') {
        return Err(format!(
            "index {}'s value is not an SSH public key (`ssh-ed25519 AAAA...`)",
            e.index
        ));
    }
    let mut hosts = vec![e.name.clone()];
    if let Some((short, _)) = e.name.split_once('.') {
        hosts.push(short.to_owned());
    }
    hosts.extend(e.addrs.iter().map(ToString::to_string));
    hosts.dedup();
    Ok(format!("{} {key}", hosts.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::http::Response;

    fn entry(index: u32, value: &str) -> WireEntry {
        WireEntry {
            index,
            name: format!("job-{index}.svc"),
            addrs: vec![IpAddr::from([10, 0, 0, index as u8 + 1])],
            value: value.into(),
        }
    }

    #[test]
    fn requests_carry_the_round_and_the_wait() {
        assert_eq!(
            Ask::put("port", "1234", Some(2)).encode(),
            b"PUT /v1/values/port?round=2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: \
              4\r\n\r\n1234"
        );
        let get = Ask::get("k", Some(3), Some(Duration::from_secs(2)), None);
        assert_eq!(get.target, "/v1/values/k?index=3&wait=2000");
        let all = Ask::get("k", None, None, Some(1));
        assert!(
            all.target.starts_with("/v1/values/k?all&wait=") && all.target.ends_with("&round=1")
        );
        assert_eq!(Ask::barrier("go", None, None).target, "/v1/barriers/go");
        assert_eq!(
            Ask::barrier("go", Some(Duration::from_millis(1500)), Some(4)).target,
            "/v1/barriers/go?wait=1500&round=4"
        );
        // What the client sends, the server reads back whole.
        let bytes = Ask::put("a/b.c", "x y", None).encode();
        let http::Parsed::Request(r) = http::parse(&bytes) else {
            panic!()
        };
        assert_eq!(
            (r.path.as_str(), r.content_length),
            ("/v1/values/a/b.c", Some(3))
        );
    }

    #[test]
    fn answers_must_match_their_status() {
        let mut r = Response::json(
            Answer::Missing {
                round: 2,
                missing: vec![1],
            }
            .to_json(),
        );
        assert!(
            parse(7471, &r.encode(false)).is_err(),
            "a 200 saying missing"
        );
        r.status = 404;
        assert_eq!(
            parse(7471, &r.encode(false)).unwrap(),
            Answer::Missing {
                round: 2,
                missing: vec![1]
            }
        );
        let old = Response::text(404, "not found\n").encode(false);
        let err = parse(7471, &old).unwrap_err().to_string();
        assert!(err.contains("older peergate sidecar"), "{err}");
    }

    #[test]
    fn every_answer_round_trips_through_its_json() {
        let answers = [
            Answer::Done {
                round: 1,
                entries: vec![],
            },
            Answer::Done {
                round: 2,
                entries: vec![entry(0, "a"), entry(1, "b")],
            },
            Answer::Missing {
                round: 3,
                missing: vec![0, 2],
            },
            Answer::Over {
                why: "ended".into(),
                round: 2,
                latest: 3,
                cause: Some("lost".into()),
                index: Some(1),
            },
            Answer::Over {
                why: "not_released".into(),
                round: 0,
                latest: 0,
                cause: None,
                index: None,
            },
            Answer::Error { error: "no".into() },
        ];
        for a in answers {
            assert_eq!(
                Answer::from_json(a.to_json().as_bytes()),
                Some(a.clone()),
                "{a:?}"
            );
        }
        assert_eq!(
            Answer::Done {
                round: 1,
                entries: vec![]
            }
            .to_json(),
            r#"{"answer":"done","round":1}"#
        );
        for bad in [
            &b"{}"[..],
            b"{\"answer\":\"done\"}",
            b"{\"answer\":\"maybe\",\"round\":1}",
            b"[",
        ] {
            assert_eq!(
                Answer::from_json(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn over_lines_say_why() {
        let over = |why: &str, cause: Option<&str>, index| Answer::Over {
            why: why.into(),
            round: 2,
            latest: 2,
            cause: cause.map(str::to_owned),
            index,
        };
        assert_eq!(
            over_line(&over("ended", Some("replaced"), Some(3))).unwrap(),
            "round 2 is over (index 3 was replaced); the group restarts in the next round"
        );
        assert!(
            over_line(&over("not_released", None, None))
                .unwrap()
                .contains("no round")
        );
        assert!(
            over_line(&over("ahead", None, None))
                .unwrap()
                .contains("PEERGATE_ROUND")
        );
        assert_eq!(over_line(&Answer::Error { error: "x".into() }), None);
        assert_eq!(list_indices(&[2]), "index 2");
        let many: Vec<u32> = (0..20).collect();
        assert!(list_indices(&many).ends_with("15 and 4 more"));
    }

    #[test]
    fn output_formats() {
        let one = [entry(1, "1234")];
        assert_eq!(render(GetFormat::Text, false, 2, &one).unwrap(), "1234\n");
        let two = [entry(0, "a"), entry(1, "b c")];
        assert_eq!(
            render(GetFormat::Text, true, 2, &two).unwrap(),
            "0 a\n1 b c\n"
        );
        let lines = [entry(0, "a\nb")];
        assert!(
            render(GetFormat::Text, true, 2, &lines)
                .unwrap_err()
                .contains("--format json")
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(GetFormat::Json, true, 2, &two).unwrap()).unwrap();
        assert_eq!(json["round"], 2);
        assert_eq!(json["values"][1]["value"], "b c");
        assert_eq!(json["values"][1]["addrs"][0], "10.0.0.2");
        let json: serde_json::Value =
            serde_json::from_str(&render(GetFormat::Json, false, 3, &one).unwrap()).unwrap();
        assert_eq!(
            (json["index"].as_u64(), json["round"].as_u64()),
            (Some(1), Some(3))
        );

        let keys = [entry(0, "ssh-ed25519 AAAAC3Nza+/= root@job-0\n")];
        assert_eq!(
            render(GetFormat::KnownHosts, true, 1, &keys).unwrap(),
            "job-0.svc,job-0,10.0.0.1 ssh-ed25519 AAAAC3Nza+/= root@job-0\n"
        );
        for bad in ["1234", "ssh-ed25519", "ssh-rsa AAA$", "rsa AAAA"] {
            let err = render(GetFormat::KnownHosts, true, 1, &[entry(4, bad)]).unwrap_err();
            assert!(err.contains("index 4"), "{bad}: {err}");
        }
    }
}

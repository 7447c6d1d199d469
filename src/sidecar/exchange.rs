//! `/v1/values` and `/v1/barriers`: what `peergate put`, `get` and
//! `barrier` ask the sidecar in their pod, over the loopback await port.
//!
//! ```text
//! PUT  /v1/values/KEY?round=R                 body: the value
//! GET  /v1/values/KEY?index=I[&wait=MS][&round=R]
//! GET  /v1/values/KEY?all[&wait=MS][&round=R]
//! POST /v1/barriers/NAME[?wait=MS][&round=R]  (no wait: until it passes)
//! ```
//!
//! Every answer is JSON ([`Answer`]): 200 done, 404 not (yet) published or
//! entered by the members listed, 409 no live round to act in, 400 a
//! request the limits or the Job refuse. `round` pins the request to one
//! round (the workload's `PEERGATE_ROUND`); without it, the live round,
//! and a barrier or a waiting get that finds no round live waits for the
//! next one. Once a wait has found its round, that round's end ends it
//! (409). A waiting request holds its connection and ends when it is
//! answered, at its wait, or when the client hangs up.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::endpoints::Endpoints;
use super::http::{Request, Response};
use crate::rendezvous::exchange::{Entry, Over, Query, Reading, Refusal};
use crate::rendezvous::rounds::EndCause;
use crate::rendezvous::{Control, Status};

/// Longest wait a request may ask for (30 days, as `--timeout`).
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// One member's value on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    pub index: u32,
    pub name: String,
    #[serde(default)]
    pub addrs: Vec<IpAddr>,
    pub value: String,
}

/// Every answer's body. On the wire it is one flat JSON object whose
/// `answer` names the variant (a flat struct keeps serde's code small: an
/// internally tagged enum would buffer every answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: put, barrier passed, or the values found.
    Done { round: u32, entries: Vec<WireEntry> },
    /// 404: these members have not published or entered (yet).
    Missing { round: u32, missing: Vec<u32> },
    /// 409: no live round to act in.
    Over {
        /// `not_released`, `ended` or `ahead`.
        why: String,
        round: u32,
        latest: u32,
        /// Why `round` ended, when the sidecar saw it end: `failed`,
        /// `replaced`, `lost`, `moved`; and the index that caused it.
        cause: Option<String>,
        index: Option<u32>,
    },
    /// 400: refused (the limits, no such index, a bad request).
    Error { error: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Wire {
    answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    round: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<Vec<WireEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    missing: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latest: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Answer {
    /// The JSON body.
    pub fn to_json(&self) -> String {
        let wire = match self.clone() {
            Answer::Done { round, entries } => Wire {
                answer: "done".into(),
                round: Some(round),
                entries: (!entries.is_empty()).then_some(entries),
                ..Wire::default()
            },
            Answer::Missing { round, missing } => Wire {
                answer: "missing".into(),
                round: Some(round),
                missing: Some(missing),
                ..Wire::default()
            },
            Answer::Over {
                why,
                round,
                latest,
                cause,
                index,
            } => Wire {
                answer: "over".into(),
                why: Some(why),
                round: Some(round),
                latest: Some(latest),
                cause,
                index,
                ..Wire::default()
            },
            Answer::Error { error } => Wire {
                answer: "error".into(),
                error: Some(error),
                ..Wire::default()
            },
        };
        serde_json::to_string(&wire).expect("answers serialize")
    }

    /// An answer read back; `None` when it is not one.
    pub fn from_json(bytes: &[u8]) -> Option<Answer> {
        let w: Wire = serde_json::from_slice(bytes).ok()?;
        Some(match w.answer.as_str() {
            "done" => Answer::Done {
                round: w.round?,
                entries: w.entries.unwrap_or_default(),
            },
            "missing" => Answer::Missing {
                round: w.round?,
                missing: w.missing?,
            },
            "over" => Answer::Over {
                why: w.why?,
                round: w.round.unwrap_or(0),
                latest: w.latest.unwrap_or(0),
                cause: w.cause,
                index: w.index,
            },
            "error" => Answer::Error { error: w.error? },
            _ => return None,
        })
    }
}

impl Answer {
    fn status(&self) -> u16 {
        match self {
            Answer::Done { .. } => 200,
            Answer::Missing { .. } => 404,
            Answer::Over { .. } => 409,
            Answer::Error { .. } => 400,
        }
    }

    fn response(&self) -> Response {
        let mut r = Response::json(self.to_json());
        r.status = self.status();
        r
    }

    fn error(text: impl Into<String>) -> Answer {
        Answer::Error { error: text.into() }
    }

    fn over(over: Over) -> Answer {
        let (why, round, latest, cause) = match over {
            Over::NotReleased => ("not_released", 0, 0, None),
            Over::Ended {
                round,
                latest,
                cause,
            } => ("ended", round, latest, cause),
            Over::Ahead { round, latest } => ("ahead", round, latest, None),
        };
        Answer::Over {
            why: why.into(),
            round,
            latest,
            cause: cause.map(|c| c.name().to_owned()),
            index: cause.map(EndCause::index),
        }
    }

    fn reading(reading: Reading) -> Answer {
        match reading {
            Reading::Ready { round, entries } => Answer::Done {
                round,
                entries: entries.into_iter().map(wire).collect(),
            },
            Reading::Waiting { round, missing } => Answer::Missing { round, missing },
            Reading::Over(over) => Answer::over(over),
            Reading::NoIndex { index, world } => Answer::error(format!(
                "no index {index} in a Job of {world} pods (0 to {})",
                world.saturating_sub(1)
            )),
        }
    }

    fn refusal(refusal: Refusal) -> Answer {
        match refusal {
            Refusal::Over(over) => Answer::over(over),
            Refusal::Limits(why) => Answer::error(why.to_string()),
            Refusal::Ceiling => Answer::Error {
                error: "this pod's record cannot change any more (its sequence number is at \
                        its ceiling)"
                    .into(),
            },
        }
    }
}

fn wire(e: Entry) -> WireEntry {
    WireEntry {
        index: e.index,
        name: e.name,
        addrs: e.addrs,
        value: e.value,
    }
}

/// Whether this module answers `request`.
pub fn handles(request: &Request) -> bool {
    request.path.starts_with("/v1/values/") || request.path.starts_with("/v1/barriers/")
}

/// Answers one request; waits hold `stream` open and end early when the
/// client hangs up (then nothing is written).
pub async fn serve(
    stream: &mut TcpStream,
    request: &Request,
    endpoints: &Endpoints,
) -> Option<Response> {
    let answer = match answer(stream, request, endpoints).await {
        Ok(Some(answer)) => answer,
        Ok(None) => return None,
        Err(text) => Answer::error(text),
    };
    Some(answer.response())
}

async fn answer(
    stream: &mut TcpStream,
    request: &Request,
    endpoints: &Endpoints,
) -> Result<Option<Answer>, String> {
    let round = match request.param("round") {
        None | Some("") => None,
        Some(r) => Some(r.parse::<u32>().map_err(|_| format!("bad round `{r}`"))?),
    };
    let wait = match request.param("wait") {
        None => None,
        Some(ms) => Some(
            ms.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("bad wait `{ms}`"))?
                .min(MAX_WAIT),
        ),
    };
    let stopping = || Answer::error("the sidecar is stopping");
    if let Some(key) = request.path.strip_prefix("/v1/values/") {
        match request.method.as_str() {
            "PUT" => {
                let value = String::from_utf8(request.body.clone())
                    .map_err(|_| "the value is not UTF-8 text".to_owned())?;
                let key = key.to_owned();
                let put = endpoints
                    .ask(|reply| Control::Put {
                        round,
                        key: key.clone(),
                        value,
                        reply,
                    })
                    .await;
                Ok(Some(match put {
                    Some(Ok(round)) => Answer::Done {
                        round,
                        entries: Vec::new(),
                    },
                    Some(Err(refusal)) => Answer::refusal(refusal),
                    None => stopping(),
                }))
            }
            "GET" => {
                let query = match (request.param("index"), request.param("all")) {
                    (Some(i), None) => Query::Value {
                        key: key.to_owned(),
                        index: i.parse().map_err(|_| format!("bad index `{i}`"))?,
                    },
                    (None, Some(_)) => Query::All(key.to_owned()),
                    _ => return Err("give either index=I or all".into()),
                };
                let deadline = Instant::now() + wait.unwrap_or(Duration::ZERO);
                Ok(read_until(stream, endpoints, round, query, Some(deadline)).await)
            }
            _ => Err("values take PUT or GET".into()),
        }
    } else if let Some(name) = request.path.strip_prefix("/v1/barriers/") {
        if request.method != "POST" {
            return Err("barriers take POST".into());
        }
        let deadline = wait.map(|w| Instant::now() + w);
        let name = name.to_owned();
        let mut watch = Watch::new(endpoints);
        // Unpinned, between rounds: enter the next round once it is live.
        let round = loop {
            let entered = endpoints
                .ask(|reply| Control::Enter {
                    round,
                    name: name.clone(),
                    reply,
                })
                .await;
            match entered {
                Some(Ok(round)) => break round,
                Some(Err(Refusal::Over(_))) if round.is_none() && !passed(deadline) => {
                    if watch.next(stream, deadline).await.is_none() {
                        return Ok(None);
                    }
                }
                Some(Err(refusal)) => {
                    return Ok(Some(Answer::refusal(refusal)));
                }
                None => return Ok(Some(stopping())),
            }
        };
        Ok(read_until(
            stream,
            endpoints,
            Some(round),
            Query::Barrier(name),
            deadline,
        )
        .await)
    } else {
        Err("not found".into())
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| d <= Instant::now())
}

/// What wakes a waiting request: a change of the table or of the status,
/// its deadline, or its client hanging up.
struct Watch {
    changes: watch::Receiver<u64>,
    status: watch::Receiver<Status>,
}

impl Watch {
    fn new(endpoints: &Endpoints) -> Watch {
        let mut w = Watch {
            changes: endpoints.changes.clone(),
            status: endpoints.status.clone(),
        };
        w.seen();
        w
    }

    /// Marks what is there as seen: a change after this wakes [`Watch::next`].
    fn seen(&mut self) {
        self.changes.borrow_and_update();
        self.status.borrow_and_update();
    }

    /// Waits for the next wake; `None` when the client hung up or the
    /// engine is gone.
    async fn next(&mut self, stream: &mut TcpStream, deadline: Option<Instant>) -> Option<()> {
        let far = Instant::now() + MAX_WAIT;
        let mut probe = [0u8; 1];
        let woke = tokio::select! {
            changed = self.changes.changed() => changed.ok(),
            changed = self.status.changed() => changed.ok(),
            () = sleep_until(deadline.unwrap_or(far)) => Some(()),
            // A waiting client sends nothing more: a read that ends is a
            // hang-up.
            _ = stream.read(&mut probe) => None,
        };
        self.seen();
        woke
    }
}

/// Reads until the answer is no longer "missing", `deadline` passes, or the
/// client hangs up (`None`). Unpinned and between rounds, it waits for the
/// next live round and then keeps to it.
async fn read_until(
    stream: &mut TcpStream,
    endpoints: &Endpoints,
    mut round: Option<u32>,
    query: Query,
    deadline: Option<Instant>,
) -> Option<Answer> {
    let mut watch = Watch::new(endpoints);
    loop {
        let reading = endpoints
            .ask(|reply| Control::Read {
                round,
                query: query.clone(),
                reply,
            })
            .await;
        let Some(reading) = reading else {
            return Some(Answer::error("the sidecar is stopping"));
        };
        let more = match &reading {
            Reading::Waiting { round: live, .. } => {
                round = Some(*live);
                true
            }
            Reading::Over(_) => round.is_none(),
            _ => false,
        };
        if !more || passed(deadline) {
            return Some(Answer::reading(reading));
        }
        watch.next(stream, deadline).await?;
    }
}

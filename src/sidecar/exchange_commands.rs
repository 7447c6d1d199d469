//! The runs of `peergate put`, `get` and `barrier`: check what the user
//! gave against the limits (the same error with or without a sidecar),
//! ask the sidecar, print, and map the answer to the exit code.

use std::io::{Read, Write};
use std::time::Duration;

use tracing::error;

use super::exchange::Answer;
use super::exchange_client::{self, Ask, ClientError, GetFormat, list_indices, over_line};
use crate::duration::human;
use crate::exit::{Exit, Signals, Stop};
use crate::rendezvous::board;

/// What a `put` stores: the value given, or stdin's (`-`).
pub enum Value {
    Given(String),
    Stdin,
}

/// A key or barrier name the limits accept, or the usage error (logged).
pub fn checked(what: &str, key: &str) -> Result<(), Exit> {
    board::check_key(key).map_err(|why| {
        error!("invalid {what} `{}`: {why}", crate::cli::one_line(key));
        Exit::Usage
    })
}

/// A value `put` may publish under `key`, or the usage error (logged).
pub fn checked_value(key: &str, value: &str) -> Result<(), Exit> {
    board::check_value(value).map_err(|why| {
        error!("cannot put `{key}`: {why}");
        Exit::Usage
    })
}

/// Reads a value from stdin: at most one byte over the limit, so a huge
/// input fails fast.
fn read_stdin() -> Result<String, Exit> {
    let mut bytes = Vec::new();
    let limit = board::MAX_VALUE as u64 + 1;
    if let Err(e) = std::io::stdin().lock().take(limit).read_to_end(&mut bytes) {
        error!("cannot read the value from stdin: {e}");
        return Err(Exit::Failure);
    }
    String::from_utf8(bytes).map_err(|_| {
        error!("the value on stdin is not UTF-8 text (encode binary values, e.g. with base64)");
        Exit::Usage
    })
}

/// `peergate put KEY [VALUE | -]`.
pub async fn put(port: u16, round: Option<u32>, key: &str, value: Value) -> Exit {
    if let Err(exit) = checked("key", key) {
        return exit;
    }
    let value = match value {
        Value::Given(v) => v,
        Value::Stdin => match read_stdin() {
            Ok(v) => v,
            Err(exit) => return exit,
        },
    };
    if let Err(exit) = checked_value(key, &value) {
        return exit;
    }
    let ask = Ask::put(key, &value, round);
    with_signals(async {
        match exchange_client::send(port, &ask).await {
            Ok(Answer::Done { .. }) => Exit::Passed,
            Ok(answer) => failed(&answer, &format!("cannot put `{key}`")),
            Err(e) => unreachable_sidecar(&e),
        }
    })
    .await
}

/// `peergate get KEY (--index I | --all) [--wait D]`.
pub async fn get(
    port: u16,
    round: Option<u32>,
    key: &str,
    index: Option<u32>,
    wait: Option<Duration>,
    format: GetFormat,
) -> Exit {
    if let Err(exit) = checked("key", key) {
        return exit;
    }
    let ask = Ask::get(key, index, wait, round);
    let waited = wait != Some(Duration::ZERO);
    with_signals(async {
        match exchange_client::send(port, &ask).await {
            Ok(Answer::Done { round, entries }) => {
                match exchange_client::render(format, index.is_none(), round, &entries) {
                    Ok(text) => print(&text),
                    Err(why) => {
                        error!("{why}");
                        Exit::Failure
                    }
                }
            }
            Ok(Answer::Missing { round, missing }) => {
                let who = list_indices(&missing);
                if waited {
                    error!(
                        "timed out after {} waiting for `{key}` in round {round}: {who} did not \
                         publish it",
                        human(wait.unwrap_or_default())
                    );
                    Exit::Timeout
                } else {
                    error!(
                        "`{key}` is not published in round {round} by {who} (--wait waits for it)"
                    );
                    Exit::Failure
                }
            }
            Ok(answer) => failed(&answer, &format!("cannot get `{key}`")),
            Err(e) => unreachable_sidecar(&e),
        }
    })
    .await
}

/// `peergate barrier NAME [--timeout D]`.
pub async fn barrier(port: u16, round: Option<u32>, name: &str, timeout: Option<Duration>) -> Exit {
    if let Err(exit) = checked("barrier name", name) {
        return exit;
    }
    let ask = Ask::barrier(name, timeout, round);
    with_signals(async {
        match exchange_client::send(port, &ask).await {
            Ok(Answer::Done { .. }) => Exit::Passed,
            Ok(Answer::Missing { round, missing }) => {
                error!(
                    "timed out after {} in barrier `{name}` of round {round}: {} did not enter it",
                    human(timeout.unwrap_or_default()),
                    list_indices(&missing)
                );
                Exit::Timeout
            }
            Ok(answer) => failed(&answer, &format!("barrier `{name}`")),
            Err(e) => unreachable_sidecar(&e),
        }
    })
    .await
}

/// An answer that is neither done nor missing: over, or refused.
fn failed(answer: &Answer, what: &str) -> Exit {
    if let Some(line) = over_line(answer) {
        error!("{what}: {line}");
        return Exit::RoundOver;
    }
    match answer {
        Answer::Error { error } => {
            error!("{what}: {error}");
            Exit::Usage
        }
        other => {
            error!("{what}: unexpected answer {other:?}");
            Exit::Failure
        }
    }
}

fn unreachable_sidecar(e: &ClientError) -> Exit {
    error!("{e}");
    Exit::Failure
}

fn print(text: &str) -> Exit {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Exit::Passed,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Passed,
        Err(e) => {
            error!("cannot write to stdout: {e}");
            Exit::Failure
        }
    }
}

/// Runs `work`, or ends with 143/130 on SIGTERM/SIGINT (the sidecar keeps
/// what was already put or entered).
async fn with_signals(work: impl Future<Output = Exit>) -> Exit {
    let Some(mut signals) = Signals::install() else {
        return Exit::Failure;
    };
    tokio::select! {
        exit = work => exit,
        stop = signals.next() => match stop {
            Stop::Term => Exit::Terminated,
            Stop::Int => Exit::Interrupted,
        },
    }
}

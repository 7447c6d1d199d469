//! `peergate run`: the workload's supervisor. It holds a lease on the
//! sidecar's current round (`lease`), runs the command as its child in
//! that round, reports how the command ended, and restarts it in the next
//! round whenever a round ends, up to `--max-restarts`.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, sleep, timeout_at};
use tracing::{debug, error, info, warn};

use super::lease::{Lines, RunLine, SidecarLine};
use crate::exit::{Exit, Signals, Stop};
use crate::handoff;
use crate::rendezvous::rounds::describe;
use crate::supervise::{self, Child, ExitStatus};

/// `run`'s exit when another pod's failure ended the round and the group
/// has restarted `--max-restarts` times already.
pub const EXIT_RESTARTS_EXHAUSTED: u8 = 3;
/// `run`'s exit when the group is finishing (a member is done for good),
/// so no round will be released again for this pod to run in.
pub const EXIT_CANNOT_REJOIN: u8 = 4;
/// `PEERGATE_RESTARTS`: how many times this `peergate run` restarted its
/// command (0 at its first start).
pub const ENV_RESTARTS: &str = "PEERGATE_RESTARTS";

/// How long a run whose command failed waits for the sidecar to end the
/// round before it treats the round as ended.
const END_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts to reach the sidecar.
const MAX_RETRY: Duration = Duration::from_millis(100);

/// What `peergate run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub port: u16,
    pub grace: Duration,
    pub max_restarts: u32,
    /// How long to wait for each round's release.
    pub timeout: Option<Duration>,
    pub command: Vec<OsString>,
}

/// The lease's two halves.
struct Lease {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Lease {
    async fn send(&mut self, line: RunLine) {
        let mut text = line.encode();
        text.push('\n');
        if let Err(e) = self.writer.write_all(text.as_bytes()).await {
            warn!(
                "cannot tell the sidecar ({e}); it learns of this pod's command when its lease ends"
            );
        }
    }

    async fn next(&mut self) -> Option<SidecarLine> {
        match self.lines.next().await? {
            Ok(text) => match SidecarLine::parse(&text) {
                Some(line) => Some(line),
                None => {
                    error!("the sidecar sent a line this peergate cannot read: {text}");
                    None
                }
            },
            Err(_) => None,
        }
    }
}

/// How one round went for this pod.
enum Round {
    /// Run again in a round after this one.
    Again,
    /// Exit with this.
    Exit(Exit),
}

/// `peergate run`: supervise the command over the rounds.
pub async fn run(plan: RunPlan) -> Exit {
    let Some(mut signals) = Signals::install() else {
        return Exit::Failure;
    };
    let mut after = 0;
    let mut starts = 0u32;
    loop {
        let until = plan.timeout.map(|d| Instant::now() + d);
        let mut lease = tokio::select! {
            lease = connect(plan.port, after, plan.grace, until) => match lease {
                Ok(lease) => lease,
                Err(exit) => return exit,
            },
            stop = signals.next() => return stopped(stop),
        };
        let line = tokio::select! {
            line = next_before(&mut lease, until) => line,
            stop = signals.next() => return stopped(stop),
        };
        let (round, handoff) = match line {
            Ok(Some(SidecarLine::Start { round, handoff })) => (round, handoff),
            Ok(Some(SidecarLine::Finishing { index })) => {
                error!(
                    index,
                    "the group is finishing (index {index}'s workload is done for good): no round \
                     will be released again for this pod's command; exiting {EXIT_CANNOT_REJOIN}"
                );
                return Exit::Handoff(EXIT_CANNOT_REJOIN);
            }
            Ok(Some(SidecarLine::End { .. })) | Ok(None) => {
                debug!("the sidecar hung up before a round started; asking again");
                sleep(MAX_RETRY).await;
                continue;
            }
            Err(()) => {
                error!(
                    "timed out waiting for the peergate sidecar on 127.0.0.1:{} to release a round \
                     after round {after}",
                    plan.port
                );
                return Exit::Timeout;
            }
        };
        if round.saturating_sub(1) > plan.max_restarts {
            // Only a pod with another --max-restarts than the group's gets here.
            error!(
                round,
                "round {round} is past --max-restarts {}; not starting the command",
                plan.max_restarts
            );
            lease
                .send(RunLine::Exited {
                    code: EXIT_RESTARTS_EXHAUSTED,
                })
                .await;
            return Exit::Handoff(EXIT_RESTARTS_EXHAUSTED);
        }
        let mut env = handoff::env_vars(&handoff.into_outcome());
        env.push((ENV_RESTARTS.to_owned(), starts.to_string()));
        let child = match supervise::spawn(&plan.command, &env) {
            Ok(child) => child,
            Err(e) => {
                error!("{e}");
                let code = e.exit_code();
                lease.send(RunLine::Exited { code }).await;
                return Exit::Handoff(code);
            }
        };
        info!(
            round,
            restarts = starts,
            pid = child.pid(),
            "round {round}: started the command"
        );
        match supervise_round(&plan, round, child, &mut lease, &mut signals).await {
            Round::Again => {
                after = round;
                starts += 1;
            }
            Round::Exit(exit) => return exit,
        }
    }
}

/// Runs one round's command until it or the round ends.
async fn supervise_round(
    plan: &RunPlan,
    round: u32,
    mut child: Child,
    lease: &mut Lease,
    signals: &mut Signals,
) -> Round {
    let exhausted = round > plan.max_restarts;
    tokio::select! {
        status = child.wait() => {
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    error!("{e}");
                    return Round::Exit(Exit::Failure);
                }
            };
            if status.success() {
                info!(round, "round {round}: the command completed; this pod is done");
                lease.send(RunLine::Exited { code: 0 }).await;
                return Round::Exit(Exit::Passed);
            }
            own_failure(plan, round, status, lease, exhausted).await
        }
        line = lease.next() => {
            match line {
                Some(SidecarLine::End { cause, index, code, finishing, .. }) => {
                    let how = code.map(|c| format!(" ({})", describe(c))).unwrap_or_default();
                    warn!(
                        round,
                        index,
                        cause = %cause,
                        "round {round} ended: index {index} {cause}{how}; stopping the command"
                    );
                    let _ = stop(&mut child, plan.grace, round).await;
                    if exhausted {
                        error!(
                            round,
                            "--max-restarts {} reached: the group has restarted {} times; giving up \
                             with exit {EXIT_RESTARTS_EXHAUSTED}",
                            plan.max_restarts,
                            round - 1
                        );
                        lease.send(RunLine::Exited { code: EXIT_RESTARTS_EXHAUSTED }).await;
                        return Round::Exit(Exit::Handoff(EXIT_RESTARTS_EXHAUSTED));
                    }
                    // Checked after the limit: the pods that give up at the
                    // limit make the group finishing too, and may be heard
                    // of before this end is.
                    if finishing {
                        error!(round, "the group is finishing: no round follows; exiting {EXIT_CANNOT_REJOIN}");
                        return Round::Exit(Exit::Handoff(EXIT_CANNOT_REJOIN));
                    }
                    Round::Again
                }
                _ => {
                    warn!(
                        round,
                        "lost the sidecar's lease on round {round} (did the sidecar restart?); \
                         stopping the command and waiting for the next round"
                    );
                    let _ = stop(&mut child, plan.grace, round).await;
                    if exhausted {
                        return Round::Exit(Exit::Handoff(EXIT_RESTARTS_EXHAUSTED));
                    }
                    Round::Again
                }
            }
        }
        stop = signals.next() => {
            // The pod is being stopped: pass the signal on and report how
            // the command took it.
            let signal = match stop { Stop::Term => libc::SIGTERM, Stop::Int => libc::SIGINT };
            if let Err(e) = child.signal_group(signal) {
                warn!("cannot forward the signal to the command: {e}");
            }
            // The pod is going away before its work is done, however the
            // command took it: the group restarts (with a replacement), and
            // this pod never exits 0, which would count its index as done.
            match child.wait().await {
                Ok(status) => {
                    let code = if status.success() { stopped(stop).code() } else { status.code() };
                    warn!(
                        round,
                        "round {round}: the command ended on the forwarded signal ({status}); \
                         exiting {code}"
                    );
                    lease.send(RunLine::Failed { code }).await;
                    Round::Exit(Exit::Handoff(code))
                }
                Err(e) => {
                    error!("{e}");
                    Round::Exit(Exit::Failure)
                }
            }
        }
    }
}

/// This pod's command failed: report it and wait for the round's end,
/// then restart or exit with its code.
async fn own_failure(
    plan: &RunPlan,
    round: u32,
    status: ExitStatus,
    lease: &mut Lease,
    exhausted: bool,
) -> Round {
    let code = status.code();
    error!(round, code, "round {round}: the command failed ({status})");
    lease.send(RunLine::Failed { code }).await;
    let end = tokio::time::timeout(END_WAIT, lease.next()).await;
    let finishing = matches!(
        end,
        Ok(Some(SidecarLine::End {
            finishing: true,
            ..
        }))
    );
    if finishing {
        error!(
            round,
            "the group is finishing: nobody restarts; exiting {code}"
        );
        return Round::Exit(Exit::Handoff(code));
    }
    if exhausted {
        error!(
            round,
            "--max-restarts {} reached: the group has restarted {} times; exiting {code}",
            plan.max_restarts,
            round - 1
        );
        lease.send(RunLine::Exited { code }).await;
        return Round::Exit(Exit::Handoff(code));
    }
    Round::Again
}

async fn stop(child: &mut Child, grace: Duration, round: u32) -> Option<ExitStatus> {
    match child.stop(grace).await {
        Ok(status) => {
            debug!(round, "round {round}: the command stopped ({status})");
            Some(status)
        }
        Err(e) => {
            error!("{e}");
            None
        }
    }
}

fn stopped(stop: Stop) -> Exit {
    match stop {
        Stop::Term => Exit::Terminated,
        Stop::Int => Exit::Interrupted,
    }
}

/// The next line before `until`; `Err` on the deadline.
async fn next_before(lease: &mut Lease, until: Option<Instant>) -> Result<Option<SidecarLine>, ()> {
    match until {
        Some(at) => timeout_at(at, lease.next()).await.map_err(|_| ()),
        None => Ok(lease.next().await),
    }
}

/// Opens a lease on the sidecar at `port`, retrying while it does not
/// listen yet, until `until`.
async fn connect(
    port: u16,
    after: u32,
    grace: Duration,
    until: Option<Instant>,
) -> Result<Lease, Exit> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut pause = Duration::from_millis(5);
    loop {
        let attempt = open(addr, after, grace);
        let result = match until {
            Some(at) => match timeout_at(at, attempt).await {
                Ok(r) => r,
                Err(_) => {
                    error!("timed out reaching the peergate sidecar on 127.0.0.1:{port}");
                    return Err(Exit::Timeout);
                }
            },
            None => attempt.await,
        };
        match result {
            Ok(lease) => return Ok(lease),
            Err(Open::Refused(e)) => {
                debug!("sidecar not answering yet: {e}");
                if until.is_some_and(|at| Instant::now() + pause >= at) {
                    error!(
                        "timed out reaching the peergate sidecar on 127.0.0.1:{port} ({e}): is it \
                         running with --serve, and on this --port?"
                    );
                    return Err(Exit::Timeout);
                }
                sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY);
            }
            Err(Open::Answer(what)) => {
                error!("the sidecar on 127.0.0.1:{port} answered {what}");
                return Err(Exit::Failure);
            }
        }
    }
}

enum Open {
    Refused(io::Error),
    Answer(String),
}

async fn open(addr: SocketAddr, after: u32, grace: Duration) -> Result<Lease, Open> {
    let mut stream = TcpStream::connect(addr).await.map_err(Open::Refused)?;
    let request = format!(
        "GET /run?after={after}&grace={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        grace.as_millis()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(Open::Refused)?;
    // The head, byte by byte up to its blank line (it is short, and what
    // follows it belongs to the lines).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 4096 {
            return Err(Open::Answer("an overlong response head".into()));
        }
        let byte = stream.read_u8().await.map_err(Open::Refused)?;
        head.push(byte);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    if status_line.split(' ').nth(1) != Some("200") {
        let mut body = Vec::new();
        let _ = (&mut stream).take(4096).read_to_end(&mut body).await;
        return Err(Open::Answer(format!(
            "{status_line}: {} (is it a peergate sidecar of this release, with `peergate run` \
             support?)",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let (reader, writer) = stream.into_split();
    Ok(Lease {
        lines: Lines::new(BufReader::new(reader)),
        writer,
    })
}

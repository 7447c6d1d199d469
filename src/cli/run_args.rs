//! `peergate run`: its flags. It supervises the workload over the rounds
//! of this pod's `--serve` sidecar; see [`crate::sidecar::workload`].

use std::ffi::OsString;
use std::time::Duration;

use clap::builder::FalseyValueParser;

use crate::duration::{self, Deadline};
use crate::logging::LogSpec;
use crate::values::{LogFormat, tcp_port};

pub(super) const RUN_ABOUT: &str = "\
Run COMMAND in each round of the peergate sidecar in this pod (`--mode barrier
--serve`), restarting it in place when the group's round ends: a peer replaced
or lost, or a workload failed in any pod. COMMAND runs as a child, with the
hand-off variables (PEERGATE_WORLD_SIZE, PEERGATE_RANK, PEERGATE_COORDINATOR,
PEERGATE_COORDINATOR_ADDR, PEERGATE_PEER_NAMES), PEERGATE_ROUND (1, 2, ...) and
PEERGATE_RESTARTS (this pod's restarts so far); SIGTERM and SIGINT are passed
on to it. At a round's end it gets SIGTERM (its whole process group), then
SIGKILL after --grace, and starts again once every pod is in the next round.

Once any pod's COMMAND has exited 0 the group is finishing: nobody restarts
any more, a failure only ends the pod it happens in.

Exit codes: 0 COMMAND completed; COMMAND's own code (128+N for signal N) when
it failed and no restart follows, or when it ended on a forwarded signal;
1 the sidecar answered something unexpected; 2 usage error; 3 another pod's
failure ended the round and --max-restarts is used up; 4 the group is
finishing, so this pod cannot join a round again; 124 timeout waiting for a
round; 126/127 COMMAND cannot be run; 130/143 SIGINT/SIGTERM before COMMAND
started.";

/// `peergate run [--grace D] [--max-restarts N] [--timeout D] -- COMMAND...`.
#[derive(Debug, Clone, clap::Args)]
#[command(max_term_width = 100)]
pub struct RunArgs {
    /// Check the arguments, print what `peergate run` would do and exit 0
    /// (2 on a usage error), without contacting the sidecar.
    #[arg(
        long,
        env = "PEERGATE_DRY_RUN",
        value_parser = FalseyValueParser::new(),
        default_value_t = false
    )]
    pub dry_run: bool,

    /// The sidecar's --await-port.
    #[arg(
        long,
        env = "PEERGATE_AWAIT_PORT",
        value_name = "PORT",
        default_value = "7471",
        value_parser = tcp_port
    )]
    pub port: u16,

    /// Time COMMAND has to exit after SIGTERM at a round's end before its
    /// process group gets SIGKILL. The next round waits for it (at most
    /// this plus 2 s).
    #[arg(
        long,
        env = "PEERGATE_RUN_GRACE",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = duration::grace
    )]
    pub grace: Duration,

    /// Group restarts to go through before giving up: a round past
    /// 1 + N is not started. The default rides out a few replaced or
    /// preempted pods while a workload that fails every round gives up
    /// after four rounds instead of looping; 0 restarts nothing.
    #[arg(
        long,
        env = "PEERGATE_RUN_MAX_RESTARTS",
        value_name = "N",
        default_value_t = 3
    )]
    pub max_restarts: u32,

    /// Give up waiting for a round (the first, or the next after a
    /// restart) after this long and exit 124 (`0` or `never`: wait
    /// forever).
    #[arg(
        long,
        env = "PEERGATE_RUN_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m",
        value_parser = duration::deadline
    )]
    pub timeout: Deadline,

    /// Log format.
    #[arg(long, env = "PEERGATE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log level, as for peergate itself [default: info: one line per
    /// round started, ended or failed].
    #[arg(
        long,
        env = "PEERGATE_RUN_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = LogSpec::parse_flag
    )]
    pub log_level: Option<LogSpec>,

    /// Command to run in each round.
    #[arg(last = true, value_name = "COMMAND", required = true)]
    pub command: Vec<OsString>,
}

//! `peergate await`: its flags. It waits for the release of this pod's
//! `--serve` sidecar; see [`crate::sidecar::await_client`].

use std::ffi::OsString;

use clap::builder::FalseyValueParser;

use crate::duration::{self, Deadline};
use crate::logging::LogSpec;
use crate::values::{LogFormat, tcp_port};

pub(super) const AWAIT_ABOUT: &str = "\
Block until the peergate sidecar in this pod (`--mode barrier --serve`) has
released, then exit 0, or exec COMMAND with the hand-off variables
(PEERGATE_WORLD_SIZE, PEERGATE_RANK, PEERGATE_COORDINATOR,
PEERGATE_COORDINATOR_ADDR, PEERGATE_PEER_NAMES). Silent unless something goes
wrong.

Exit codes: 0 released, 1 the sidecar answered something unexpected, 2 usage
error, 124 timeout, 126/127 the command cannot be run, 143 SIGTERM.";

/// `peergate await [--port P] [--timeout D] [-- COMMAND...]`.
#[derive(Debug, Clone, clap::Args)]
#[command(max_term_width = 100)]
pub struct AwaitArgs {
    /// Check the arguments, print what `peergate await` would do and exit 0
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

    /// Give up after this long and exit 124 (`0` or `never`: wait forever).
    #[arg(
        long,
        env = "PEERGATE_AWAIT_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m",
        value_parser = duration::deadline
    )]
    pub timeout: Deadline,

    /// Log format.
    #[arg(long, env = "PEERGATE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log level, as for peergate itself [default: warn: silent unless
    /// something goes wrong].
    #[arg(
        long,
        env = "PEERGATE_AWAIT_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = LogSpec::parse_flag
    )]
    pub log_level: Option<LogSpec>,

    /// Command to exec once released (same PID).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

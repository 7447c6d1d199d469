//! `peergate barrier`, `put` and `get`: their flags. They talk to this
//! pod's `--serve` sidecar; see [`crate::sidecar::exchange`].

use clap::builder::FalseyValueParser;

use crate::duration::{self, Deadline, Wait};
use crate::logging::LogSpec;
use crate::sidecar::exchange_client::GetFormat;
use crate::values::{LogFormat, tcp_port};

const ROUND_NOTE: &str = "\
They act in the sidecar's live round: the round whose PEERGATE_ROUND the
workload was given by `peergate run` or `peergate await -- COMMAND`, or
without it the live one (a barrier or a `get --wait` started between rounds
waits for the next). A new round starts empty, and what a replaced or lost
pod published goes with it.";

pub(super) const BARRIER_ABOUT: &str = "\
Block until every member of the current round has entered barrier NAME, then
exit 0. NAME is 1 to 64 of A-Z a-z 0-9 . _ / - (use a new name per phase, e.g.
epoch-3; a name can be used again in a later round). A command that times out
stays entered.

Exit codes: 0 every member entered, 1 the sidecar cannot be reached or
answered something unexpected, 2 usage error or a NAME the limits refuse,
5 the round ended while waiting (the group restarts; with `peergate run` the
command is restarted anyway), 124 --timeout passed (the members that did not
enter are named), 130/143 SIGINT/SIGTERM.";

pub(super) const PUT_ABOUT: &str = "\
Publish VALUE under KEY for this pod in the current round (`-` or nothing:
read it from stdin). KEY is 1 to 64 of A-Z a-z 0-9 . _ / -; VALUE is UTF-8
text of at most 4 KiB; a pod holds at most 64 keys and 16 KiB per round.
Putting a KEY again replaces its value.

Exit codes: 0 published, 1 the sidecar cannot be reached or answered
something unexpected, 2 usage error or a KEY or VALUE the limits refuse,
5 no live round (it ended, or none is released yet).";

pub(super) const GET_ABOUT: &str = "\
Print the value that pod --index I published under KEY in the current round,
or with --all every member's, once all have published it (one `INDEX VALUE`
line each, JSON with --format json, ssh known_hosts lines with --format
known-hosts). --wait waits for the value(s) to appear.

Exit codes: 0 printed, 1 not published (without --wait), or the sidecar
cannot be reached, 2 usage error, 5 the round ended (while waiting, or
before), 124 --wait passed (the members that did not publish are named),
130/143 SIGINT/SIGTERM.";

/// What the three share: the sidecar's port, the round, logging.
#[derive(Debug, Clone, clap::Args)]
pub struct ExchangeCommon {
    /// Check the arguments against the limits, print what the command
    /// would do and exit 0 (2 on a usage error), without contacting the
    /// sidecar (nor reading stdin).
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

    /// Act only in this round; once it is over, exit 5 [default:
    /// PEERGATE_ROUND, which `peergate run` and `peergate await` give the
    /// workload; else the live round].
    #[arg(long, env = "PEERGATE_ROUND", value_name = "N", value_parser = round)]
    pub round: Option<u32>,

    /// Log format (errors only).
    #[arg(long, env = "PEERGATE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log level, as for peergate itself [default: warn: silent unless
    /// something goes wrong].
    #[arg(
        long,
        env = "PEERGATE_EXCHANGE_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = LogSpec::parse_flag
    )]
    pub log_level: Option<LogSpec>,
}

/// `peergate barrier NAME [--timeout D]`.
#[derive(Debug, Clone, clap::Args)]
#[command(max_term_width = 100, after_help = ROUND_NOTE)]
pub struct BarrierArgs {
    /// The barrier's name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Give up after this long and exit 124 (`0` or `never`: wait forever).
    #[arg(
        long,
        env = "PEERGATE_BARRIER_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m",
        value_parser = duration::deadline
    )]
    pub timeout: Deadline,

    #[command(flatten)]
    pub common: ExchangeCommon,
}

/// `peergate put KEY [VALUE | -]`.
#[derive(Debug, Clone, clap::Args)]
#[command(max_term_width = 100, after_help = ROUND_NOTE)]
pub struct PutArgs {
    /// The key.
    #[arg(value_name = "KEY")]
    pub key: String,

    /// The value; `-` or none: read from stdin.
    #[arg(value_name = "VALUE")]
    pub value: Option<String>,

    #[command(flatten)]
    pub common: ExchangeCommon,
}

/// `peergate get KEY (--index I | --all) [--wait D] [--format F]`.
#[derive(Debug, Clone, clap::Args)]
#[command(max_term_width = 100, after_help = ROUND_NOTE)]
#[group(id = "whose", required = true, multiple = false, args = ["index", "all"])]
pub struct GetArgs {
    /// The key.
    #[arg(value_name = "KEY")]
    pub key: String,

    /// The pod (completion index) whose value to print.
    #[arg(long, env = "PEERGATE_GET_INDEX", value_name = "I")]
    pub index: Option<u32>,

    /// Every member's value, once all have published it.
    #[arg(
        long,
        env = "PEERGATE_GET_ALL",
        value_parser = FalseyValueParser::new(),
        default_value_t = false
    )]
    pub all: bool,

    /// Wait this long for the value(s) to be published, then exit 124 (`0`:
    /// do not wait; `never`: wait without end).
    #[arg(
        long,
        env = "PEERGATE_GET_WAIT",
        value_name = "DURATION",
        default_value = "0",
        value_parser = duration::wait
    )]
    pub wait: Wait,

    /// Output format.
    #[arg(long, env = "PEERGATE_GET_FORMAT", value_enum, default_value = "text")]
    pub format: GetFormat,

    #[command(flatten)]
    pub common: ExchangeCommon,
}

fn round(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("not a round number (1, 2, ...)".into()),
    }
}

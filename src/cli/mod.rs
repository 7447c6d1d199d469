//! Command-line interface. Every flag can also be set with a `PEERGATE_*`
//! environment variable, so a Job manifest can configure peergate with
//! `env:` alone.
//!
//! Numbers, durations and enums are typed here by clap value parsers, with
//! their ranges; `config` checks what depends on several flags or on the
//! pod. Every mistake becomes one line ([`usage_line`]) that names the flag
//! or the variable the value came from.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

mod await_args;
mod exchange_args;
mod groups;
mod run_args;

use await_args::AWAIT_ABOUT;
pub use await_args::AwaitArgs;
use exchange_args::{BARRIER_ABOUT, GET_ABOUT, PUT_ABOUT};
pub use exchange_args::{BarrierArgs, ExchangeCommon, GetArgs, PutArgs};
pub use groups::{BarrierOnly, HostfileOptions, JobPeers, PingOnly, ServeOnly, ServiceNaming};
use run_args::RUN_ABOUT;
pub use run_args::RunArgs;

use crate::duration::{self, Deadline};
use crate::identity;
use crate::logging::LogSpec;
use crate::values::tcp_port;
pub use crate::values::{HostfileFormat, IpFamily, LogFormat, Mode};

const ABOUT: &str =
    "Wait until every peer of a Kubernetes Indexed Job resolves and answers, then exit 0.";

const LONG_ABOUT: &str = "\
Wait until every peer of a Kubernetes Indexed Job resolves and answers, then exit 0.

Inside an Indexed Job pod nothing needs configuring but the number of pods:
the index comes from JOB_COMPLETION_INDEX, the Job name from the hostname
(<job>-<index>), the headless Service, namespace and cluster domain from the
kubelet's line in /etc/hosts. Peers are <job>-<i>.<service> for i in 0..N, this
pod included. Each unreachable peer is resolved and probed again every
--interval until all answer or --timeout passes.

The headless Service must set `publishNotReadyAddresses: true` when peergate
runs as an init container: a pod in its init containers is not Ready, and
without that setting its DNS record does not exist yet.

--mode barrier makes it an authenticated rendezvous over TCP instead: a pod
releases as soon as every pod has arrived, whatever a negative DNS cache says.
With --serve the barrier runs on as a native sidecar, and `peergate await`
(see `peergate await --help`) waits for it in the next container; `peergate
run -- COMMAND` (see `peergate run --help`) runs the workload in the sidecar's
rounds instead, restarting it in every pod when a peer is replaced or fails.";

const AFTER_HELP: &str = "\
Examples:
  peergate --peers 3                      # in each pod of a 3-pod Indexed Job
  peergate --peers 8 --indices 0          # wait for the leader only
  peergate --hosts 10.0.0.5,db-1.example  # standalone, explicit peers
  peergate --peers 4 --write-hostfile /shared/hostfile --hostfile-format openmpi
  peergate --peers 3 -- python train.py   # exec the workload once the gate opens
  peergate --peers 3 --dry-run            # print the names it would wait for

  peergate --peers 3 --mode barrier --serve --write-hostfile /shared/hosts
                                          # a native sidecar; then in the next
  peergate await                          # container: wait for its release
  peergate run -- python train.py         # or: run it, restarted in each round
  peergate put port 8476                  # then, in the workload: publish,
  peergate get port --index 0 --wait 60s  # read what pod 0 published,
  peergate barrier staged                 # wait for every pod to get here

Exit codes: 0 all peers reachable (barrier: met; --serve: SIGTERM, before or
after the release), 1 run-time failure (e.g. the barrier port cannot be
bound), 2 usage or configuration error, 124 timeout, 126/127 the command
after `--` cannot be run, 130/143 interrupted by SIGINT/SIGTERM.";

/// Most peers checked at once: beyond it sockets run out before DNS or the
/// network do.
pub const MAX_CONCURRENCY: usize = 4096;

/// The whole command line: the gate's flags, or a subcommand with its own
/// (`await`, `run`, `barrier`, `put`, `get`); without one, `peergate` is
/// the gate.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "peergate",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    subcommand_value_name = "SUBCOMMAND",
    subcommand_help_heading = "Subcommands"
)]
struct Cli {
    #[command(subcommand)]
    subcommand: Option<Subcommand>,
    #[command(flatten)]
    gate: Args,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Subcommand {
    // Its help is its own (AWAIT_ABOUT); the gate's help names it in its
    // description rather than in a list of one.
    #[command(about = AWAIT_ABOUT, long_about = None, hide = true)]
    Await(AwaitArgs),
    #[command(about = RUN_ABOUT, long_about = None, hide = true)]
    Run(RunArgs),
    #[command(about = BARRIER_ABOUT, long_about = None, hide = true)]
    Barrier(BarrierArgs),
    #[command(about = PUT_ABOUT, long_about = None, hide = true)]
    Put(PutArgs),
    #[command(about = GET_ABOUT, long_about = None, hide = true)]
    Get(GetArgs),
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// `peergate [FLAGS] [-- COMMAND]`: the gate.
    Gate(Box<Args>),
    /// `peergate await ...`.
    Await(AwaitArgs),
    /// `peergate run ...`.
    Run(Box<RunArgs>),
    /// `peergate barrier NAME ...`.
    Barrier(BarrierArgs),
    /// `peergate put KEY ...`.
    Put(PutArgs),
    /// `peergate get KEY ...`.
    Get(GetArgs),
}

/// The gate's flags (`peergate` without a subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Print what a run would wait for, and exit: the first thing to run
    /// when a gate waits on the wrong names.
    ///
    /// Shows this pod's index and name, the peers' names, the probe, DNS,
    /// the barrier and the hand-off, derived as a run derives them. Exits 2
    /// with the error when the arguments or the pod's files are wrong; what
    /// depends on the machine is a warning (exit 0). Sends nothing, binds and
    /// writes nothing. With --log-format json: one JSON object on stdout.
    #[arg(
        long,
        env = "PEERGATE_DRY_RUN",
        value_parser = FalseyValueParser::new(),
        default_value_t = false
    )]
    pub dry_run: bool,

    #[command(flatten)]
    pub selection: JobPeers,

    /// Explicit peers instead of an indexed Job: comma-separated names or IP
    /// addresses. Conflicts with the flags that name a Job's pods (--peers,
    /// --indices, --template, --subdomain, --namespace, --cluster-domain;
    /// --job outside barrier mode).
    #[arg(
        long,
        env = "PEERGATE_HOSTS",
        value_name = "A,B,...",
        help_heading = "Peers"
    )]
    pub hosts: Option<String>,

    /// This pod's completion index [default: $JOB_COMPLETION_INDEX].
    #[arg(
        long,
        env = "PEERGATE_INDEX",
        value_name = "N",
        value_parser = identity::completion_index,
        help_heading = "Identity"
    )]
    pub index: Option<u32>,

    /// This pod's hostname [default: the kernel hostname].
    #[arg(
        long,
        env = "PEERGATE_HOSTNAME",
        value_name = "NAME",
        help_heading = "Identity"
    )]
    pub hostname: Option<String>,

    /// Job name [default: the hostname without its `-<index>` suffix].
    #[arg(
        long,
        env = "PEERGATE_JOB",
        value_name = "NAME",
        help_heading = "Identity"
    )]
    pub job: Option<String>,

    #[command(flatten)]
    pub naming: ServiceNaming,

    /// Hosts file holding the kubelet's line for this pod (one given
    /// explicitly must exist).
    #[arg(
        long,
        env = "PEERGATE_HOSTS_FILE",
        value_name = "PATH",
        default_value = "/etc/hosts",
        value_parser = path,
        help_heading = "Identity"
    )]
    pub hosts_file: PathBuf,

    /// resolv.conf giving nameservers, search list and ndots (read as glibc
    /// reads it).
    #[arg(
        long,
        env = "PEERGATE_RESOLV_CONF",
        value_name = "PATH",
        default_value = "/etc/resolv.conf",
        value_parser = path,
        help_heading = "Identity"
    )]
    pub resolv_conf: PathBuf,

    /// `ping` probes every peer; `barrier` is a TCP rendezvous that releases
    /// once this pod has met every peer and every peer has met it (see
    /// --port, --token).
    #[arg(
        long,
        env = "PEERGATE_MODE",
        value_enum,
        default_value = "ping",
        help_heading = "Probing"
    )]
    pub mode: Mode,

    #[command(flatten)]
    pub ping: PingOnly,

    /// Time between attempts for each unreachable peer (10ms to 1h).
    #[arg(
        long,
        env = "PEERGATE_INTERVAL",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = duration::interval,
        help_heading = "Probing"
    )]
    pub interval: Duration,

    /// Give up after this long and exit 124 (10ms to 30 days; `0` or `never`:
    /// wait forever).
    #[arg(
        long,
        env = "PEERGATE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10m",
        value_parser = duration::deadline,
        help_heading = "Probing"
    )]
    pub timeout: Deadline,

    /// How long one probe waits for an answer (10ms to 1m) [default: the
    /// interval, at most 2s].
    #[arg(
        long,
        env = "PEERGATE_PROBE_TIMEOUT",
        value_name = "DURATION",
        value_parser = duration::answer_timeout,
        help_heading = "Probing"
    )]
    pub probe_timeout: Option<Duration>,

    /// How long one DNS query waits for an answer (10ms to 1m).
    #[arg(
        long,
        env = "PEERGATE_DNS_TIMEOUT",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = duration::answer_timeout,
        help_heading = "Probing"
    )]
    pub dns_timeout: Duration,

    /// Address families to resolve and probe.
    #[arg(
        long,
        env = "PEERGATE_IP_FAMILY",
        value_enum,
        default_value = "auto",
        help_heading = "Probing"
    )]
    pub ip_family: IpFamily,

    /// Most peers checked at the same time, 1 to 4096 (bounds sockets and
    /// DNS load).
    #[arg(
        long,
        env = "PEERGATE_CONCURRENCY",
        value_name = "N",
        default_value = "256",
        value_parser = concurrency,
        help_heading = "Probing"
    )]
    pub concurrency: usize,

    /// TCP port of the barrier, and of `--probe tcp` without a port.
    #[arg(
        long,
        env = "PEERGATE_PORT",
        value_name = "PORT",
        default_value = "7470",
        value_parser = tcp_port,
        help_heading = "Barrier"
    )]
    pub port: u16,

    #[command(flatten)]
    pub barrier: BarrierOnly,

    #[command(flatten)]
    pub sidecar: ServeOnly,

    /// After the gate opens, atomically write the peer list to this file.
    #[arg(
        long,
        env = "PEERGATE_WRITE_HOSTFILE",
        value_name = "PATH",
        value_parser = path,
        help_heading = "Hand-off"
    )]
    pub write_hostfile: Option<PathBuf>,

    #[command(flatten)]
    pub hostfile: HostfileOptions,

    /// Log format.
    #[arg(
        long,
        env = "PEERGATE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        help_heading = "Output"
    )]
    pub log_format: LogFormat,

    /// peergate's log level (error, warn, info, debug, trace, off), optionally
    /// with TARGET=LEVEL directives: `debug` shows every failed attempt with
    /// its cause, `debug,hickory=debug` also the DNS traffic. Other
    /// libraries log at most `info` unless named; peergate's errors always
    /// show. [default: info, plus RUST_LOG's TARGET=LEVEL directives (its
    /// bare level is the workload's)]
    #[arg(
        long,
        env = "PEERGATE_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = LogSpec::parse_flag,
        help_heading = "Output"
    )]
    pub log_level: Option<LogSpec>,

    /// Command to exec once the gate opens (same PID), with PEERGATE_WORLD_SIZE,
    /// PEERGATE_RANK, PEERGATE_COORDINATOR, PEERGATE_COORDINATOR_ADDR and PEERGATE_PEER_NAMES set.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,

    /// Where each given value came from (filled by [`parse_from`]).
    #[arg(skip)]
    pub origins: Origins,
}

/// Where the values that were not defaults came from: the command line or
/// a `PEERGATE_*` variable. Messages name what the user wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// (argument id, `--flag` or `PEERGATE_VAR`)
    given: Vec<(String, String)>,
}

impl Origins {
    fn from_matches(matches: &ArgMatches) -> Self {
        let command = Cli::command();
        let given = command
            .get_arguments()
            .filter_map(|arg| {
                let id = arg.get_id().as_str();
                let name = match matches.value_source(id)? {
                    ValueSource::CommandLine => format!("--{}", arg.get_long()?),
                    ValueSource::EnvVariable => arg.get_env()?.to_string_lossy().into_owned(),
                    _ => return None,
                };
                Some((id.to_owned(), name))
            })
            .collect();
        Self { given }
    }
}

/// The argument ids (field names) of a flattened group, in order: the one
/// source of the lists config checks the mode against.
pub fn ids_of<G: clap::Args>() -> Vec<String> {
    G::augment_args(clap::Command::new("group"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

/// Whether `id` names one of the gate's arguments: what every id passed to
/// [`Args::given`] and [`Args::name`] must do (checked in debug builds and
/// by the tests, which reach every check).
fn is_argument(id: &str) -> bool {
    Cli::command().get_arguments().any(|a| a.get_id() == id)
}

impl Args {
    /// The first argument of group `G` that was given, if any.
    pub fn first_given<G: clap::Args>(&self) -> Option<String> {
        ids_of::<G>().into_iter().find(|id| self.given(id))
    }

    /// Whether argument `id` (the field name) was given, on the command line
    /// or in its variable, rather than defaulted.
    pub fn given(&self, id: &str) -> bool {
        debug_assert!(is_argument(id), "no argument `{id}`");
        self.origins.given.iter().any(|(i, _)| i == id)
    }

    /// How to name argument `id` (the field name) to the user: the variable
    /// when the value came from one, else the flag.
    pub fn name(&self, id: &str) -> String {
        debug_assert!(is_argument(id), "no argument `{id}`");
        self.origins
            .given
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| format!("--{}", id.replace('_', "-")))
    }
}

/// Parses the command line (`argv[0]` first) and the `PEERGATE_*`
/// variables.
pub fn parse_from<I, T>(argv: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if subcommand_of(&argv).is_some() {
        // The gate's variables are the gate's: a subcommand does not read
        // (nor fail on) them.
        command = command.mut_args(|arg| arg.env(None));
    }
    let matches = command.try_get_matches_from(&argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.subcommand {
        Some(Subcommand::Await(args)) => return Ok(Invocation::Await(args)),
        Some(Subcommand::Run(args)) => return Ok(Invocation::Run(Box::new(args))),
        Some(Subcommand::Barrier(args)) => return Ok(Invocation::Barrier(args)),
        Some(Subcommand::Put(args)) => return Ok(Invocation::Put(args)),
        Some(Subcommand::Get(args)) => return Ok(Invocation::Get(args)),
        None => {}
    }
    let mut args = cli.gate;
    args.origins = Origins::from_matches(&matches);
    if args.command.is_empty() && options(&argv).len() < argv.len().saturating_sub(1) {
        return Err(clap::Error::raw(
            ErrorKind::InvalidValue,
            "nothing follows `--`: give the command to run once the gate opens, or drop the `--`",
        ));
    }
    Ok(Invocation::Gate(Box::new(args)))
}

/// The subcommand `argv` names (`await`), as far as clap can tell even
/// from a command line with errors: which help a usage error points to.
pub fn subcommand_of(argv: &[OsString]) -> Option<String> {
    // Parsing again costs as much as the parse itself: only when some
    // word could name a subcommand.
    let named = argv.iter().skip(1).any(|a| {
        a.to_str()
            .is_some_and(<Subcommand as clap::Subcommand>::has_subcommand)
    });
    if !named {
        return None;
    }
    Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .ok()?
        .subcommand_name()
        .map(str::to_owned)
}

/// The arguments before a bare `--` (`argv[0]` excluded).
fn options(argv: &[OsString]) -> &[OsString] {
    let rest = argv.get(1..).unwrap_or_default();
    let end = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    &rest[..end]
}

/// One line for a command-line error, without clap's `error: ` prefix:
/// an invalid value names the flag or, when it came from there, the
/// variable, and lists the valid values of an enum; an unknown flag gets
/// clap's suggestion. Control characters are escaped ([`one_line`]).
pub fn usage_line(err: &clap::Error, argv: &[OsString]) -> String {
    one_line(&usage_text(err, argv))
}

fn usage_text(err: &clap::Error, argv: &[OsString]) -> String {
    let string = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    match (
        err.kind(),
        string(ContextKind::InvalidArg),
        string(ContextKind::InvalidValue),
    ) {
        (ErrorKind::ValueValidation, Some(arg), Some(value)) => {
            let reason = std::error::Error::source(err)
                .map(ToString::to_string)
                .unwrap_or_else(|| "invalid value".into());
            return format!("invalid {} `{value}`: {reason}", source_name(arg, argv));
        }
        (ErrorKind::InvalidValue, Some(arg), Some(value)) => {
            if let Some(ContextValue::Strings(valid)) = err.get(ContextKind::ValidValue)
                && !valid.is_empty()
            {
                return format!(
                    "invalid {} `{value}`: expected one of {}",
                    source_name(arg, argv),
                    valid.join(", ")
                );
            }
        }
        (ErrorKind::MissingRequiredArgument, _, _) => {
            let missing = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(names)) => names.join(", "),
                _ => String::new(),
            };
            if missing.contains("COMMAND") {
                return "no command given: `peergate run -- COMMAND [ARGS]`".into();
            }
            if !missing.is_empty() {
                return format!("missing {missing}");
            }
        }
        (ErrorKind::UnknownArgument, Some(arg), _) => {
            let mut line = format!("unknown argument `{arg}`");
            if let Some(ContextValue::String(suggested)) = err.get(ContextKind::SuggestedArg) {
                line.push_str(&format!(" (did you mean `{suggested}`?)"));
            } else if !arg.starts_with('-') {
                line.push_str(&format!(
                    " (a command to run goes after `--`: `-- {arg} ...`)"
                ));
            }
            return line;
        }
        _ => {}
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// `text` on one line: control characters (a newline in a variable's value)
/// are written as escapes, so a usage error stays one line.
pub fn one_line(text: &str) -> String {
    if !text.contains(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `--peers <N>` as clap names it, or its variable when the value came from
/// there (the flag is not on the command line).
fn source_name(arg: &str, argv: &[OsString]) -> String {
    let flag = arg.split_whitespace().next().unwrap_or(arg);
    let Some(long) = flag.strip_prefix("--") else {
        return flag.to_owned();
    };
    let on_command_line = options(argv).iter().any(|a| {
        let a = a.as_encoded_bytes();
        a == flag.as_bytes() || a.starts_with(format!("{flag}=").as_bytes())
    });
    if on_command_line {
        return flag.to_owned();
    }
    let command = Cli::command();
    let search = match subcommand_of(argv) {
        Some(name) => command.find_subcommand(&name).cloned(),
        None => None,
    }
    .unwrap_or(command);
    search
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(OsStr::to_string_lossy)
        .map_or_else(|| flag.to_owned(), |env| env.into_owned())
}

/// A non-empty path.
fn path(text: &str) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(text))
}

fn concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!("not a number from 1 to {MAX_CONCURRENCY}")),
    }
}

#[cfg(test)]
mod tests;

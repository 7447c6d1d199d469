//! peergate's entry point: parse, set up logging, run, map to an exit code.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use peergate::cli::{Args, AwaitArgs};
use peergate::config::{Config, SystemEnvironment};
use peergate::run::{self, Exit};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "await") {
        return await_main();
    }
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message is several lines with usage; keep its first
            // line, which names the offending argument.
            return usage_error(&e);
        }
    };

    if let Err(e) = run::init_logging(args.log_format, args.log_level.as_deref()) {
        eprintln!("peergate: {e}");
        return ExitCode::from(Exit::Usage.code());
    }

    let config = match Config::build(args, &SystemEnvironment) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(Exit::Usage.code());
        }
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Failure.code());
        }
    };
    let exit = runtime.block_on(run::run(config));
    ExitCode::from(exit.code())
}

/// clap's message is several lines with usage; keep its first line, which
/// names the offending argument.
fn usage_error(e: &clap::Error) -> ExitCode {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("peergate: {first} (see --help)");
    ExitCode::from(Exit::Usage.code())
}

/// `peergate await ...`
fn await_main() -> ExitCode {
    let args = match AwaitArgs::try_parse_from(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e),
    };
    let level = args.log_level.clone().or_else(|| Some("warn".into()));
    if let Err(e) = run::init_logging(args.log_format, level.as_deref()) {
        eprintln!("peergate: {e}");
        return ExitCode::from(Exit::Usage.code());
    }
    let port = match peergate::config::parse_port("--port", &args.port) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    let deadline = match peergate::duration::parse_deadline(&args.timeout) {
        Ok(d) => d,
        Err(reason) => {
            tracing::error!("invalid --timeout: {reason}");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Failure.code());
        }
    };
    let exit = runtime.block_on(run::wait_for_sidecar(port, deadline, &args.command));
    ExitCode::from(exit.code())
}

//! peergate's entry point: parse, set up logging, run, map to an exit code.

use std::process::ExitCode;

use clap::error::ErrorKind;
use peergate::cli::{self, Invocation};
use peergate::config::{Config, SystemEnvironment};
use peergate::dry_run;
use peergate::logging;
use peergate::run::{self, Exit};

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    match cli::parse_from(&argv) {
        Ok(Invocation::Gate(args)) => gate_main(*args),
        Ok(Invocation::Await(args)) => await_main(&args),
        Ok(Invocation::Run(args)) => run_main(&args),
        Ok(Invocation::Barrier(args)) => exchange_main(
            &args.common,
            dry_run::Exchange::Barrier {
                name: &args.name,
                timeout: args.timeout.0,
            },
            |port, round| run::exchange::barrier(port, round, &args.name, args.timeout.0),
        ),
        Ok(Invocation::Put(args)) => {
            let given = args.value.as_deref().filter(|v| *v != "-");
            exchange_main(
                &args.common,
                dry_run::Exchange::Put {
                    key: &args.key,
                    value: given,
                },
                |port, round| {
                    let value = match given {
                        None => run::exchange::Value::Stdin,
                        Some(v) => run::exchange::Value::Given(v.to_owned()),
                    };
                    run::exchange::put(port, round, &args.key, value)
                },
            )
        }
        Ok(Invocation::Get(args)) => {
            let index = if args.all { None } else { args.index };
            exchange_main(
                &args.common,
                dry_run::Exchange::Get {
                    key: &args.key,
                    index,
                    wait: args.wait.0,
                    format: args.format,
                },
                |port, round| {
                    run::exchange::get(port, round, &args.key, index, args.wait.0, args.format)
                },
            )
        }
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            // clap's message is several lines with usage; one line names
            // the argument (or its variable) and what is wrong with it.
            let line = cli::usage_line(&e, &argv);
            match cli::subcommand_of(&argv) {
                Some(name) => eprintln!("peergate {name}: {line} (see peergate {name} --help)"),
                None => eprintln!("peergate: {line} (see --help)"),
            }
            ExitCode::from(Exit::Usage.code())
        }
    }
}

/// `peergate [FLAGS] [-- COMMAND]`: the gate.
fn gate_main(args: cli::Args) -> ExitCode {
    logging::init(args.log_format, args.log_level.as_ref());
    let (dry_run, format) = (args.dry_run, args.log_format);

    let config = match Config::build(args, &SystemEnvironment) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{}", cli::one_line(&e.to_string()));
            return ExitCode::from(Exit::Usage.code());
        }
    };

    let Some(runtime) = runtime() else {
        return ExitCode::from(Exit::Failure.code());
    };
    if dry_run {
        // In the runtime's context, where a run opens its probe (the ICMP
        // client spawns a receive task), but never run: no task is polled.
        let _entered = runtime.enter();
        return ExitCode::from(dry_run::run(&config, format).code());
    }
    let exit = runtime.block_on(run::run(config));
    ExitCode::from(exit.code())
}

/// `peergate await ...`: wait for the local sidecar's release.
fn await_main(args: &cli::AwaitArgs) -> ExitCode {
    // Silent unless something goes wrong.
    let quiet = logging::LogSpec::parse_flag("warn").expect("a valid level");
    logging::init(
        args.log_format,
        Some(args.log_level.as_ref().unwrap_or(&quiet)),
    );
    if args.dry_run {
        return ExitCode::from(dry_run::run_await(args).code());
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(Exit::Failure.code());
    };
    let exit = runtime.block_on(run::wait_for_sidecar(
        args.port,
        args.timeout.0,
        &args.command,
    ));
    ExitCode::from(exit.code())
}

/// `peergate run ...`: supervise the workload over the sidecar's rounds.
fn run_main(args: &cli::RunArgs) -> ExitCode {
    let info = logging::LogSpec::parse_flag("info").expect("a valid level");
    logging::init(
        args.log_format,
        Some(args.log_level.as_ref().unwrap_or(&info)),
    );
    if args.dry_run {
        return ExitCode::from(dry_run::run_run(args).code());
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(Exit::Failure.code());
    };
    let plan = run::RunPlan {
        port: args.port,
        grace: args.grace,
        max_restarts: args.max_restarts,
        timeout: args.timeout.0,
        command: args.command.clone(),
    };
    let exit = runtime.block_on(run::run_workload(plan));
    ExitCode::from(exit.code())
}

/// `peergate barrier`, `put`, `get`: one request to the local sidecar.
fn exchange_main<F: Future<Output = Exit>>(
    common: &cli::ExchangeCommon,
    preview: dry_run::Exchange<'_>,
    work: impl FnOnce(u16, Option<u32>) -> F,
) -> ExitCode {
    let quiet = logging::LogSpec::parse_flag("warn").expect("a valid level");
    logging::init(
        common.log_format,
        Some(common.log_level.as_ref().unwrap_or(&quiet)),
    );
    if common.dry_run {
        let exit = dry_run::run_exchange(&preview, common.port, common.round, common.log_format);
        return ExitCode::from(exit.code());
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(Exit::Failure.code());
    };
    let exit = runtime.block_on(work(common.port, common.round));
    ExitCode::from(exit.code())
}

/// The single-threaded runtime every run uses, or `None` (logged) when it
/// cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tracing::error!("cannot start the async runtime: {e}"))
        .ok()
}

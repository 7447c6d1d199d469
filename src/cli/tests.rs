//! The command line: typed values, origins, one-line usage errors, and
//! the flag groups' ids.

use super::*;

fn parse(args: &[&str]) -> Result<Args, clap::Error> {
    match parse_from(std::iter::once("peergate").chain(args.iter().copied()))? {
        Invocation::Gate(args) => Ok(*args),
        _ => panic!("not the gate"),
    }
}

#[test]
fn typed_values_and_their_origins() {
    let args = parse(&["--peers", "3", "--interval=250ms", "--probe", "tcp:81"]).unwrap();
    assert_eq!(args.selection.peers, Some(3));
    assert_eq!(args.interval, Duration::from_millis(250));
    assert_eq!(args.ping.probe.port, Some(81));
    assert!(args.given("peers") && args.given("interval"));
    assert_eq!(args.name("peers"), "--peers");
    assert!(!args.given("hostfile_format"), "a default is not given");
    assert_eq!(args.name("hostfile_format"), "--hostfile-format");
    assert_eq!(args.timeout, Deadline(Some(Duration::from_secs(600))));
    assert_eq!(Mode::Barrier.to_string(), "barrier");
}

#[test]
fn await_is_a_subcommand_and_no_subcommand_is_the_gate() {
    let argv = |args: &[&str]| -> Vec<OsString> {
        std::iter::once("peergate")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect()
    };
    let Ok(Invocation::Await(a)) = parse_from(argv(&["await", "--port", "9", "--", "x"])) else {
        panic!("not await");
    };
    assert_eq!((a.port, &a.command[..]), (9, &[OsString::from("x")][..]));
    assert_eq!(a.timeout, Deadline(Some(Duration::from_secs(600))));
    // `await` as the command after `--` is the gate's command.
    let Ok(Invocation::Gate(g)) = parse_from(argv(&["--peers", "3", "--", "await"])) else {
        panic!("not the gate");
    };
    assert_eq!(g.command, ["await"]);
    assert_eq!(
        subcommand_of(&argv(&["await", "--bad"])).as_deref(),
        Some("await")
    );
    assert_eq!(subcommand_of(&argv(&["--peers", "3"])), None);
    // A gate flag before `await` is not a way to reach it.
    assert!(parse_from(argv(&["--peers", "3", "await"])).is_err());
}

#[test]
fn run_is_a_subcommand_with_a_required_command_and_typed_flags() {
    let argv = |args: &[&str]| -> Vec<OsString> {
        std::iter::once("peergate")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect()
    };
    let Ok(Invocation::Run(r)) = parse_from(argv(&["run", "--grace", "2s", "--", "x", "-y"]))
    else {
        panic!("not run");
    };
    assert_eq!(r.command, [OsString::from("x"), OsString::from("-y")]);
    assert_eq!(r.grace, Duration::from_secs(2));
    assert_eq!((r.port, r.max_restarts), (7471, 3));
    assert_eq!(r.timeout, Deadline(Some(Duration::from_secs(600))));
    // Nothing to run is a usage error, and so is a grace past an hour.
    let err = parse_from(argv(&["run"])).unwrap_err();
    assert_eq!(
        usage_line(&err, &argv(&["run"])),
        "no command given: `peergate run -- COMMAND [ARGS]`"
    );
    assert!(parse_from(argv(&["run", "--grace", "2h", "--", "x"])).is_err());
    assert!(parse_from(argv(&["run", "--max-restarts", "-1", "--", "x"])).is_err());
    let Ok(Invocation::Run(r)) = parse_from(argv(&["run", "--grace", "0", "--", "x"])) else {
        panic!("not run");
    };
    assert_eq!(r.grace, Duration::ZERO);
    assert_eq!(
        subcommand_of(&argv(&["run", "--bad"])).as_deref(),
        Some("run")
    );
}

#[test]
fn a_bare_trailing_double_dash_is_an_error_and_a_command_is_not() {
    let err = parse(&["--peers", "3", "--"]).unwrap_err();
    let argv: Vec<OsString> = ["peergate", "--peers", "3", "--"].map(Into::into).to_vec();
    assert!(usage_line(&err, &argv).starts_with("nothing follows `--`"));
    let args = parse(&["--peers", "3", "--", "true"]).unwrap();
    assert_eq!(args.command, ["true"]);
    // `--` as the value of a flag is not the separator.
    assert!(parse(&["--peers", "3", "--job=--"]).is_ok());
}

#[test]
fn usage_lines_name_the_flag_and_the_valid_values() {
    let line = |args: &[&str]| {
        let argv: Vec<OsString> = std::iter::once("peergate")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        usage_line(&parse(args).unwrap_err(), &argv)
    };
    assert_eq!(
        line(&["--concurrency", "0"]),
        "invalid --concurrency `0`: not a number from 1 to 4096"
    );
    assert_eq!(
        line(&["--log-format=xml"]),
        "invalid --log-format `xml`: expected one of text, json"
    );
    assert_eq!(
        line(&["--slots", "x"]),
        "invalid --slots `x`: not a whole number above 0"
    );
    assert_eq!(line(&["--nope"]), "unknown argument `--nope`");
    assert_eq!(one_line("a\nb\tc\u{1b}d é"), "a\\nb\\tc\\u{1b}d é");
    // The same flag after `--` belongs to the command, not to peergate.
    assert_eq!(
        source_name("--peers <N>", &["pg".into(), "--".into(), "--peers".into()]),
        "PEERGATE_PEERS"
    );
    assert_eq!(
        source_name("--peers <N>", &["pg".into(), "--peers=x".into()]),
        "--peers"
    );
}

#[test]
fn every_id_a_relation_a_group_or_a_check_names_is_an_argument() {
    let mut command = Cli::command();
    command.build();
    for group in command.get_groups() {
        for id in group.get_args() {
            assert!(is_argument(id.as_str()), "group {}: {id}", group.get_id());
        }
    }
    for arg in command.get_arguments() {
        // Resolves every id `arg` conflicts with (panics on an unknown one).
        let _ = command.get_arg_conflicts_with(arg);
    }
    let groups = [
        ids_of::<JobPeers>(),
        ids_of::<ServiceNaming>(),
        ids_of::<PingOnly>(),
        ids_of::<BarrierOnly>(),
        ids_of::<ServeOnly>(),
        ids_of::<HostfileOptions>(),
    ];
    for ids in &groups {
        assert!(!ids.is_empty());
        for id in ids {
            assert!(is_argument(id), "{id}");
        }
    }
    // The ids config names by hand, in its messages and checks.
    let sources = [
        include_str!("../config/mod.rs"),
        include_str!("../config/plan.rs"),
        include_str!("../config/pod.rs"),
    ];
    let mut checked = 0;
    for source in sources {
        for call in ["args.given(\"", "args.name(\""] {
            for (at, _) in source.match_indices(call) {
                let rest = &source[at + call.len()..];
                let id = &rest[..rest.find('"').unwrap()];
                assert!(is_argument(id), "config names `{id}`, which is no argument");
                checked += 1;
            }
        }
    }
    assert!(
        checked > 10,
        "found only {checked} ids: did the calls change shape?"
    );
    assert!(!is_argument("no_such_flag"));
}

#[test]
fn every_flag_reads_its_peergate_variable() {
    let command = Cli::command();
    let env = |arg: &clap::Arg| arg.get_env().map(|e| e.to_string_lossy().into_owned());
    let mut flags = 0;
    for arg in command.get_arguments().filter(|a| a.get_long().is_some()) {
        let long = arg.get_long().unwrap();
        if matches!(long, "help" | "version") {
            continue;
        }
        let var = format!("PEERGATE_{}", long.to_uppercase().replace('-', "_"));
        assert_eq!(env(arg), Some(var), "--{long}");
        flags += 1;
    }
    assert!(flags >= 30, "{flags}");
    let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
    assert_eq!(names, ["await", "run", "barrier", "put", "get"]);
    for sub in command.get_subcommands() {
        for arg in sub.get_arguments().filter(|a| a.get_long().is_some()) {
            let long = arg.get_long().unwrap();
            if long == "help" {
                continue;
            }
            assert!(
                env(arg).is_some_and(|v| v.starts_with("PEERGATE_")),
                "{} --{long}",
                sub.get_name()
            );
        }
    }
}

#[test]
fn the_workload_commands_parse_their_arguments() {
    let parse = |args: &[&str]| parse_from(std::iter::once("peergate").chain(args.iter().copied()));
    let Ok(Invocation::Get(get)) = parse(&["get", "port", "--index", "0", "--wait", "1m"]) else {
        panic!("get parses")
    };
    assert_eq!(
        (get.key.as_str(), get.index, get.all),
        ("port", Some(0), false)
    );
    assert_eq!(get.wait.0, Some(Duration::from_secs(60)));
    let Ok(Invocation::Get(get)) = parse(&["get", "port", "--all"]) else {
        panic!("get --all parses")
    };
    assert_eq!((get.all, get.wait.0), (true, Some(Duration::ZERO)));
    for bad in [
        &["get", "port"][..],
        &["get", "port", "--index", "0", "--all"],
        &["get", "port", "--index", "-1"],
        &["barrier"],
        &["put"],
        &["put", "k", "--round", "0"],
        &["barrier", "b", "--timeout", "soon"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let Ok(Invocation::Put(put)) = parse(&["put", "k", "-", "--round", "2"]) else {
        panic!("put parses")
    };
    assert_eq!(
        (put.value.as_deref(), put.common.round),
        (Some("-"), Some(2))
    );
    let Ok(Invocation::Barrier(b)) = parse(&["barrier", "staged", "--timeout", "never"]) else {
        panic!("barrier parses")
    };
    assert_eq!(
        (b.name.as_str(), b.timeout.0, b.common.port),
        ("staged", None, 7471)
    );
}

//! The command line as users meet it: every bad input exits 2 with one line
//! naming the cause, flags and `PEERGATE_*` variables are interchangeable,
//! and standalone use on loopback works end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/ports.rs"]
mod ports;

const BIN: &str = env!("CARGO_BIN_EXE_peergate");

/// A scratch directory with kubelet-style files, removed on drop.
struct Pod {
    dir: PathBuf,
}

impl Pod {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("peergate-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts"),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n\
             10.244.0.7\texample-job-1.headless-svc.default.svc.cluster.local\texample-job-1\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("resolv.conf"),
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 127.0.0.1\noptions ndots:5\n",
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// peergate with a clean environment, this pod's files, `env` and `args`.
    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PEERGATE_HOSTNAME", "example-job-1")
            .env("PEERGATE_HOSTS_FILE", self.path("hosts"))
            .env("PEERGATE_RESOLV_CONF", self.path("resolv.conf"))
            .env("PEERGATE_TIMEOUT", "5s");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).output().expect("run peergate")
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 2, exactly one line, containing `needle`, no panic.
fn assert_usage_error(out: &Output, needle: &str, case: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{case}: expected exit 2, stderr:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{case}: expected one line, got:\n{err}");
    assert!(
        err.contains(needle),
        "{case}: expected `{needle}` in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{case}: panic:\n{err}");
}

/// Environment variables for one run.
type Env<'a> = &'a [(&'a str, &'a str)];

/// (case, environment, arguments, expected text)
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>, &'a str);

#[test]
fn bad_inputs_exit_2_with_one_precise_line() {
    let pod = Pod::new("bad");
    let bad_hosts = pod.write("bad-hosts", "this is not a hosts file\n");
    let bad_hosts = bad_hosts.to_str().unwrap();
    let idx1 = ("JOB_COMPLETION_INDEX", "1");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("missing index", vec![], vec!["--peers", "3"], "JOB_COMPLETION_INDEX is not set"),
        ("non-numeric index", vec![("JOB_COMPLETION_INDEX", "one")], vec!["--peers", "3"], "invalid JOB_COMPLETION_INDEX `one`: not a number"),
        ("negative index", vec![("JOB_COMPLETION_INDEX", "-1")], vec!["--peers", "3"], "negative"),
        ("index beyond peers", vec![("JOB_COMPLETION_INDEX", "3")], vec!["--peers", "3", "--hostname", "example-job-3"], "index 3 is not below --peers 3"),
        ("hostname without index", vec![("JOB_COMPLETION_INDEX", "2")], vec!["--peers", "3"], "does not end in `-2`"),
        ("zero peers", vec![idx1], vec!["--peers", "0"], "0 peers"),
        ("too many peers", vec![idx1], vec!["--peers", "100001"], "maximum of 100000"),
        ("non-numeric peers", vec![idx1], vec!["--peers", "three"], "invalid --peers `three`: not a whole number"),
        ("env: non-numeric peers", vec![idx1, ("PEERGATE_PEERS", "abc")], vec![], "invalid PEERGATE_PEERS `abc`: not a whole number"),
        ("flag wins over env", vec![idx1, ("PEERGATE_PEERS", "3")], vec!["--peers", "x"], "invalid --peers `x`"),
        ("peers without a value", vec![idx1], vec!["--peers"], "a value is required for '--peers <N>'"),
        ("malformed indices", vec![idx1], vec!["--indices", "1-"], "invalid --indices `1-`"),
        ("backwards indices", vec![idx1], vec!["--indices", "3-1"], "runs backwards"),
        ("indices beyond peers", vec![idx1], vec!["--peers", "3", "--indices", "0,5"], "index 5 is not below --peers 3"),
        ("unknown placeholder", vec![idx1], vec!["--peers", "3", "--template", "{job}-{idx}"], "unknown placeholder `{idx}`"),
        ("unterminated placeholder", vec![idx1], vec!["--peers", "3", "--template", "{job}-{index"], "unterminated placeholder"),
        ("template gives a bad name", vec![idx1], vec!["--peers", "3", "--template", "{job}..{index}"], "empty label"),
        ("template gives a bad char", vec![idx1], vec!["--peers", "3", "--template", "{job} {index}"], "contains ` `"),
        ("env: template error", vec![idx1, ("PEERGATE_TEMPLATE", "{job}-{idx}")], vec!["--peers", "3"], "invalid PEERGATE_TEMPLATE `{job}-{idx}`: unknown placeholder"),
        ("template without index", vec![idx1], vec!["--peers", "3", "--template", "leader.svc"], "invalid --template `leader.svc`: no {index}, so all 3 peers would get the same name"),
        ("job that is not a label", vec![idx1], vec!["--peers", "3", "--job", "Bad Job"], "invalid --job `Bad Job`: label `Bad Job` contains ` `"),
        ("env: job that is not a label", vec![idx1, ("PEERGATE_JOB", "a.b")], vec!["--peers", "3"], "invalid PEERGATE_JOB `a.b`"),
        ("empty hosts entry", vec![], vec!["--hosts", "10.0.0.1,,10.0.0.2"], "invalid --hosts `10.0.0.1,,10.0.0.2`: entry 2 is empty"),
        ("env: empty hosts entry", vec![("PEERGATE_HOSTS", "a,,b")], vec![], "invalid PEERGATE_HOSTS `a,,b`: entry 2 is empty"),
        ("hostfile format without a hostfile", vec![], vec!["--hosts", "127.0.0.1", "--hostfile-format", "json"], "--hostfile-format is set but no hostfile is written"),
        ("env: hostfile format without a hostfile", vec![("PEERGATE_HOSTFILE_FORMAT", "json")], vec!["--hosts", "127.0.0.1"], "PEERGATE_HOSTFILE_FORMAT is set but no hostfile is written"),
        ("slots for a format without slots", vec![], vec!["--hosts", "127.0.0.1", "--write-hostfile", "/tmp/x", "--slots", "2"], "--slots applies to openmpi and mpich hostfiles only, not to --hostfile-format hosts"),
        ("explicit hosts file missing", vec![], vec!["--hosts", "127.0.0.1", "--hosts-file", "/nonexistent/hosts"], "cannot read /nonexistent/hosts"),
        ("env: explicit resolv.conf missing", vec![("PEERGATE_RESOLV_CONF", "/nonexistent/resolv.conf")], vec!["--hosts", "127.0.0.1"], "cannot read /nonexistent/resolv.conf"),
        ("bad interval", vec![], vec!["--hosts", "127.0.0.1", "--interval", "1x"], "invalid --interval `1x`: unknown unit `x`"),
        ("zero interval", vec![], vec!["--hosts", "127.0.0.1", "--interval", "0s"], "shorter than the minimum of 10ms"),
        ("interval below the floor", vec![], vec!["--hosts", "127.0.0.1", "--interval", "0.00001"], "shorter than the minimum of 10ms"),
        ("interval above the ceiling", vec![], vec!["--hosts", "127.0.0.1", "--interval", "10000000000000000000"], "longer than the maximum of 1h00m00s"),
        ("interval in exponent notation", vec![], vec!["--hosts", "127.0.0.1", "--interval", "1e19"], "invalid --interval `1e19`"),
        ("bad timeout", vec![], vec!["--hosts", "127.0.0.1", "--timeout", "soon"], "invalid --timeout `soon`"),
        ("negative timeout", vec![], vec!["--hosts", "127.0.0.1", "--timeout=-3s"], "invalid --timeout `-3s`: negative"),
        ("timeout above the ceiling", vec![], vec!["--hosts", "127.0.0.1", "--timeout", "99999999999999h"], "longer than the maximum of 720h00m00s"),
        ("env: timeout below the floor", vec![("PEERGATE_TIMEOUT", "1ms")], vec!["--hosts", "127.0.0.1"], "invalid PEERGATE_TIMEOUT `1ms`: shorter than the minimum of 10ms"),
        ("probe timeout below the floor", vec![], vec!["--hosts", "127.0.0.1", "--probe-timeout", "0"], "invalid --probe-timeout `0`: shorter than the minimum of 10ms"),
        ("probe timeout above the ceiling", vec![], vec!["--hosts", "127.0.0.1", "--probe-timeout", "2m"], "longer than the maximum of 1m00s"),
        ("dns timeout below the floor", vec![], vec!["--hosts", "127.0.0.1", "--dns-timeout", "5ms"], "invalid --dns-timeout `5ms`"),
        ("dns timeout above the ceiling", vec![], vec!["--hosts", "127.0.0.1", "--dns-timeout", "1h"], "longer than the maximum of 1m00s"),
        ("zero concurrency", vec![], vec!["--hosts", "127.0.0.1", "--concurrency", "0"], "not a number from 1 to 4096"),
        ("env: too much concurrency", vec![("PEERGATE_CONCURRENCY", "5000")], vec!["--hosts", "127.0.0.1"], "invalid PEERGATE_CONCURRENCY `5000`"),
        ("zero port", vec![], vec!["--hosts", "127.0.0.1", "--port", "0"], "invalid --port `0`"),
        ("zero slots", vec![], vec!["--hosts", "127.0.0.1", "--write-hostfile", "/tmp/x", "--hostfile-format", "openmpi", "--slots", "0"], "invalid --slots `0`"),
        ("negative index flag", vec![], vec!["--hosts", "127.0.0.1", "--index=-1"], "invalid --index `-1`: negative"),
        ("unknown mode", vec![], vec!["--hosts", "127.0.0.1", "--mode", "pong"], "invalid --mode `pong`: expected one of ping, barrier"),
        ("env: unknown ip family", vec![("PEERGATE_IP_FAMILY", "v4")], vec!["--hosts", "127.0.0.1"], "invalid PEERGATE_IP_FAMILY `v4`: expected one of auto, ipv4, ipv6, dual"),
        ("bare trailing --", vec![], vec!["--hosts", "127.0.0.1", "--"], "nothing follows `--`"),
        ("command without --", vec![], vec!["--hosts", "127.0.0.1", "sh", "-c", "true"], "a command to run goes after `--`"),
        ("empty hostfile path", vec![], vec!["--hosts", "127.0.0.1", "--write-hostfile", ""], "invalid --write-hostfile ``: empty path"),
        ("env: empty hostfile path", vec![("PEERGATE_WRITE_HOSTFILE", "")], vec!["--hosts", "127.0.0.1"], "invalid PEERGATE_WRITE_HOSTFILE ``: empty path"),
        ("unreadable hosts file", vec![idx1], vec!["--peers", "3", "--hosts-file", "/nonexistent/hosts"], "cannot read /nonexistent/hosts"),
        ("malformed hosts file", vec![idx1], vec!["--peers", "3", "--hosts-file", bad_hosts], "malformed"),
        ("unreadable resolv.conf", vec![], vec!["--hosts", "a.example", "--resolv-conf", "/nonexistent/resolv.conf"], "cannot read /nonexistent/resolv.conf"),
        ("hosts with peers", vec![idx1], vec!["--hosts", "a.example", "--peers", "3"], "--hosts conflicts with --peers"),
        ("hosts with template", vec![], vec!["--hosts", "a.example", "--template", "x-{index}"], "--hosts conflicts with --template"),
        ("env: hosts with a namespace", vec![("PEERGATE_NAMESPACE", "team-a")], vec!["--hosts", "a.example"], "--hosts conflicts with PEERGATE_NAMESPACE"),
        ("no peers at all", vec![idx1], vec![], "no peers given"),
        ("unknown probe", vec![], vec!["--hosts", "127.0.0.1", "--probe", "udp"], "invalid --probe `udp`: expected one of auto, icmp, tcp, tcp:PORT, dns"),
        ("bad tcp port", vec![], vec!["--hosts", "127.0.0.1", "--probe", "tcp:70000"], "not a TCP port"),
        ("unknown log format", vec![], vec!["--hosts", "127.0.0.1", "--log-format", "xml"], "invalid --log-format `xml`: expected one of text, json"),
        ("env: unknown log format", vec![("PEERGATE_LOG_FORMAT", "xml")], vec!["--hosts", "127.0.0.1"], "invalid PEERGATE_LOG_FORMAT `xml`: expected one of text, json"),
        ("unknown flag", vec![], vec!["--peer", "3"], "unknown argument `--peer`"),
        ("unknown hostfile format", vec![], vec!["--hosts", "127.0.0.1", "--write-hostfile", "/tmp/x", "--hostfile-format", "yaml"], "unknown hostfile format"),
        ("hostfile in a missing dir", vec![], vec!["--hosts", "127.0.0.1", "--write-hostfile", "/nonexistent/dir/hostfile"], "does not exist"),
        ("bad log level", vec![], vec!["--hosts", "127.0.0.1", "--log-level", "lots=of=noise"], "invalid --log-level `lots=of=noise`"),
        ("env: zero peers", vec![idx1, ("PEERGATE_PEERS", "0")], vec![], "0 peers"),
        ("env: bad interval", vec![("PEERGATE_INTERVAL", "fast")], vec!["--hosts", "127.0.0.1"], "invalid PEERGATE_INTERVAL `fast`"),
        ("env: a newline in a number", vec![idx1, ("PEERGATE_PEERS", "3\n4")], vec![], "invalid PEERGATE_PEERS `3\\n4`"),
        ("env: a newline in a list", vec![("PEERGATE_HOSTS", "a\n,,b")], vec![], "invalid PEERGATE_HOSTS `a\\n,,b`"),
    ];
    for (case, env, args, needle) in &cases {
        let out = pod.run(env, args);
        assert_usage_error(&out, needle, case);
    }
}

/// What glibc ignores in resolv.conf does not stop peergate: it is named in
/// one warning and the usable lines are used.
#[test]
fn resolv_conf_is_read_as_leniently_as_glibc_reads_it() {
    let pod = Pod::new("lenient-resolv");
    let resolv = pod.write(
        "odd-resolv",
        "nameserver dns.example\nnameserver 127.0.0.1\noptions ndots:x bogus\n",
    );
    let out = pod.run(
        &[],
        &[
            "--hosts",
            "a.example",
            "--probe",
            "dns",
            "--resolv-conf",
            resolv.to_str().unwrap(),
            "--interval",
            "100ms",
            "--dns-timeout",
            "100ms",
            "--timeout",
            "500ms",
        ],
    );
    let err = stderr(&out);
    // Nothing answers for a.example on 127.0.0.1: the gate ran and timed out.
    assert_eq!(out.status.code(), Some(124), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ignored what glibc ignores"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    for item in [
        "nameserver dns.example is not an IP address",
        "option ndots:x is not a number",
        "unknown option bogus",
    ] {
        assert!(
            warnings[0].contains(item),
            "{item} missing: {}",
            warnings[0]
        );
    }
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
}

/// A level that is not one names the valid forms, from the flag or its
/// variable; it never silences peergate.
#[test]
fn unknown_log_levels_are_usage_errors() {
    let pod = Pod::new("loglevel");
    for level in ["warning", "loud", "peergate=loud"] {
        let out = pod.run(&[], &["--hosts", "127.0.0.1", "--log-level", level]);
        assert_usage_error(&out, "error, warn, info, debug, trace, off", level);
        let out = pod.run(&[("PEERGATE_LOG_LEVEL", level)], &["--hosts", "127.0.0.1"]);
        assert_usage_error(&out, "error, warn, info, debug, trace, off", level);
    }
}

/// peergate's own errors reach stderr whatever RUST_LOG or --log-level say.
#[test]
fn errors_show_under_any_log_filter() {
    let pod = Pod::new("logvisible");
    let filters: [(Env, &[&str]); 6] = [
        (&[("RUST_LOG", "myapp=debug")], &[]),
        (&[("RUST_LOG", "off")], &[]),
        (&[("RUST_LOG", "peergate=off")], &[]),
        (&[], &["--log-level", "off"]),
        (&[], &["--log-level", "peergate=off"]),
        (&[("RUST_LOG", "myapp=debug")], &["--log-format", "json"]),
    ];
    for (env, flags) in filters {
        let mut args = vec!["--hosts", "10.0.0.1,,10.0.0.2"];
        args.extend_from_slice(flags);
        let out = pod.run(env, &args);
        assert_usage_error(&out, "entry 2", &format!("{env:?} {flags:?}"));
    }
    // The case from the issue, and a failure of the pod's files.
    let out = pod.run(&[("RUST_LOG", "myapp=debug")], &["--peers", "0"]);
    assert_usage_error(
        &out,
        "invalid --peers `0`",
        "RUST_LOG=myapp=debug --peers 0",
    );
    let out = pod.run(
        &[("RUST_LOG", "myapp=debug"), ("JOB_COMPLETION_INDEX", "1")],
        &["--peers", "3", "--hosts-file", "/nonexistent/hosts"],
    );
    assert_usage_error(
        &out,
        "cannot read /nonexistent/hosts",
        "RUST_LOG=myapp=debug, no hosts file",
    );
}

/// `debug` shows every failed attempt with its cause; `info` does not, and
/// neither does an inherited bare `RUST_LOG=debug` (the workload's).
#[test]
fn debug_shows_each_attempt_with_its_cause() {
    let pod = Pod::new("debug");
    // `.invalid` is reserved (RFC 6761): the resolver answers NXDOMAIN
    // itself, so every attempt fails at once, on any machine. Only
    // peergate's lines count: libraries stay at info.
    let run = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec![
            "--hosts",
            "peer.invalid.",
            "--probe",
            "dns",
            "--interval",
            "100ms",
            "--timeout",
            "450ms",
        ];
        args.extend_from_slice(extra);
        let out = pod.run(env, &args);
        assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
        stderr(&out)
    };
    let attempts = |err: &str| {
        err.lines()
            .filter(|l| l.contains("DEBUG") && l.contains(" for peer.invalid failed: "))
            .count()
    };
    let err = run(&[], &["--log-level", "debug"]);
    assert!(attempts(&err) >= 3, "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("attempt 1 for peer.invalid failed: NXDOMAIN")),
        "{err}"
    );
    let err = run(&[("RUST_LOG", "peergate=debug")], &[]);
    assert!(attempts(&err) >= 3, "{err}");
    for (env, extra) in [
        (&[][..], &[][..]),
        (&[("RUST_LOG", "debug")][..], &[][..]),
        (&[][..], &["--log-level", "info"][..]),
    ] {
        let err = run(env, extra);
        assert_eq!(attempts(&err), 0, "{env:?} {extra:?}: {err}");
        assert!(err.contains("peer unreachable: peer.invalid"), "{err}");
    }
}

/// A bare `--log-level debug` is peergate's: the resolver's own debug lines
/// (one per query sent) need `hickory=debug`.
#[test]
fn debug_leaves_libraries_at_info_unless_named() {
    let pod = Pod::new("debug-libs");
    // A name the resolver does query (127.0.0.1, from the pod's resolv.conf).
    let other_debug_lines = |level: &str| {
        let out = pod.run(
            &[],
            &[
                "--hosts",
                "peer.example.",
                "--probe",
                "dns",
                "--dns-timeout",
                "50ms",
                "--timeout",
                "300ms",
                "--log-level",
                level,
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(124), "{err}");
        err.lines()
            .filter(|l| l.contains(" DEBUG ") && !l.contains(" for peer.example failed: "))
            .count()
    };
    assert_eq!(other_debug_lines("debug"), 0);
    assert!(other_debug_lines("debug,hickory=debug") > 0);
}

#[test]
fn no_subdomain_names_the_fix() {
    let pod = Pod::new("nosub");
    let hosts = pod.write("hosts", "127.0.0.1 localhost\n10.0.0.3\texample-job-1\n");
    let out = pod.run(
        &[
            ("JOB_COMPLETION_INDEX", "1"),
            ("PEERGATE_HOSTS_FILE", hosts.to_str().unwrap()),
        ],
        &["--peers", "2"],
    );
    assert_usage_error(&out, "set `subdomain:` in the pod template", "no subdomain");
}

#[test]
fn help_documents_every_flag_with_its_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "dry-run",
        "peers",
        "indices",
        "template",
        "hosts",
        "index",
        "hostname",
        "job",
        "subdomain",
        "namespace",
        "cluster-domain",
        "hosts-file",
        "resolv-conf",
        "probe",
        "interval",
        "timeout",
        "probe-timeout",
        "dns-timeout",
        "ip-family",
        "concurrency",
        "port",
        "token",
        "write-hostfile",
        "hostfile-format",
        "slots",
        "log-format",
        "log-level",
    ] {
        assert!(
            help.contains(&format!("--{flag} ")),
            "--{flag} missing from --help"
        );
        let var = format!("PEERGATE_{}", flag.to_uppercase().replace('-', "_"));
        assert!(help.contains(&var), "{var} missing from --help");
    }
    assert!(help.contains("publishNotReadyAddresses"));
    assert!(help.contains("the first thing to run when a gate waits on the wrong names"));
    for code in [
        "0 all peers reachable",
        "1 run-time failure",
        "2 usage",
        "124 timeout",
        "126/127",
        "130/143",
    ] {
        assert!(
            help.contains(code),
            "exit code `{code}` missing from --help"
        );
    }
}

#[test]
fn standalone_hosts_on_loopback_pass() {
    let pod = Pod::new("loop");
    for probe in ["tcp", "auto", "dns"] {
        let out = pod.run(&[], &["--hosts", "127.0.0.1,[::1]", "--probe", probe]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "--probe {probe}: {err}");
        assert!(err.contains("peer reachable"), "{err}");
        assert!(err.contains("all 2 peers reachable"), "{err}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let pod = Pod::new("json");
    let out = pod.run(
        &[],
        &[
            "--hosts",
            "127.0.0.1",
            "--probe",
            "tcp",
            "--log-format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let mut reachable = 0;
    let mut messages = Vec::new();
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "peer reachable" {
            assert_eq!(v["peer"], "127.0.0.1");
            assert_eq!(v["addr"], "127.0.0.1");
            reachable += 1;
        }
        if v["message"] == "waiting for 1 peer" {
            // As the flag spells it, not the Rust variant (`Ping`).
            assert_eq!(v["mode"], "ping", "{line}");
            assert_eq!(v["ip_family"], "none", "{line}");
        }
        messages.push(v["message"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(reachable, 1, "{err}");
    assert!(messages.iter().any(|m| m == "waiting for 1 peer"), "{err}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("1 peer reachable after ")),
        "{err}"
    );
}

#[test]
fn a_command_after_the_gate_replaces_peergate() {
    let pod = Pod::new("exec");
    let out = pod.run(
        &[],
        &[
            "--hosts",
            "127.0.0.1",
            "--probe",
            "tcp",
            "--",
            "sh",
            "-c",
            "echo \"size=$PEERGATE_WORLD_SIZE names=$PEERGATE_PEER_NAMES\"; exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "size=1 names=127.0.0.1"
    );

    let out = pod.run(
        &[],
        &[
            "--hosts",
            "127.0.0.1",
            "--probe",
            "tcp",
            "--",
            "/nonexistent/cmd",
        ],
    );
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn hostfile_is_written_after_the_gate() {
    let pod = Pod::new("hostfile");
    let target = pod.path("hostfile");
    let out = pod.run(
        &[],
        &[
            "--hosts",
            "127.0.0.1,::1",
            "--probe",
            "tcp",
            "--write-hostfile",
            target.to_str().unwrap(),
            "--hostfile-format",
            "openmpi",
            "--slots",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(Path::new(&target)).unwrap();
    assert_eq!(text, "127.0.0.1 slots=4\n::1 slots=4\n");
}

#[test]
fn barrier_settings_that_cannot_work_exit_2() {
    let pod = Pod::new("barrier-bad");
    let idx1 = ("JOB_COMPLETION_INDEX", "1");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("no token", vec![idx1], vec!["--peers", "3", "--mode", "barrier"], "needs --token"),
        ("empty token", vec![idx1, ("PEERGATE_TOKEN", " ")], vec!["--peers", "3", "--mode", "barrier"], "needs --token"),
        ("token and opt-out", vec![idx1], vec!["--peers", "3", "--mode", "barrier", "--token", "t", "--insecure-no-token"], "conflicts with --token"),
        ("indices", vec![idx1], vec!["--peers", "3", "--indices", "0", "--mode", "barrier", "--token", "t"], "--indices cannot be used with --mode barrier"),
        ("listen is a name", vec![idx1], vec!["--peers", "3", "--mode", "barrier", "--token", "t", "--listen", "localhost"], "invalid --listen"),
        ("serve without barrier", vec![idx1], vec!["--peers", "3", "--serve"], "--serve applies to --mode barrier only"),
        ("token in ping mode", vec![idx1, ("PEERGATE_TOKEN", "t")], vec!["--peers", "3"], "PEERGATE_TOKEN applies to --mode barrier only"),
        ("probe in barrier mode", vec![idx1], vec!["--peers", "3", "--mode", "barrier", "--token", "t", "--probe", "icmp"], "--probe applies to ping mode only"),
        ("health port without serve", vec![idx1], vec!["--peers", "3", "--mode", "barrier", "--token", "t", "--health-port", "8080"], "--health-port applies to --serve only"),
        ("await port is the barrier port", vec![idx1], vec!["--peers", "3", "--mode", "barrier", "--token", "t", "--serve", "--await-port", "7470"], "is also the barrier's --port"),
        ("await: bad timeout", vec![], vec!["await", "--timeout", "soon"], "invalid --timeout"),
        ("serve with a command", vec![idx1], vec!["--peers", "3", "--mode", "barrier", "--token", "t", "--serve", "--", "true"], "cannot exec a command"),
        ("no index with hosts", vec![], vec!["--hosts", "127.0.0.1,127.0.0.2", "--mode", "barrier", "--token", "t"], "needs this pod's index"),
    ];
    for (case, env, args, needle) in cases {
        let out = pod.run(&env, &args);
        assert_usage_error(&out, needle, case);
    }
}

/// Starts one standalone barrier instance: index `i` of `hosts`, on
/// `listen`:`port`, with `extra` arguments; its stderr is captured.
fn barrier_instance(
    hosts: &str,
    i: usize,
    listen: &str,
    port: &str,
    extra: &[&str],
) -> std::process::Child {
    Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["--mode", "barrier", "--hosts", hosts])
        .args([
            "--index",
            &i.to_string(),
            "--listen",
            listen,
            "--port",
            port,
        ])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start peergate")
}

/// Three instances of a standalone barrier on one host, each on its own
/// loopback address (`--listen`), started one after the other.
#[test]
fn a_standalone_barrier_of_three_on_one_host() {
    let pod = Pod::new("barrier-three");
    let hosts = "127.0.0.1,127.0.0.2,127.0.0.3";
    // A port of its own, so concurrent tests do not meet each other.
    let port = ports::free_port().to_string();
    let children: Vec<_> = (0..3)
        .map(|i| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let hostfile = pod.path(&format!("peers-{i}"));
            barrier_instance(
                hosts,
                i,
                &format!("127.0.0.{}", i + 1),
                &port,
                &[
                    "--token",
                    "standalone-secret",
                    "--timeout",
                    "10s",
                    "--write-hostfile",
                    hostfile.to_str().unwrap(),
                ],
            )
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "instance {i}: {err}");
        assert!(err.contains("all 3 peers met"), "{err}");
        assert!(
            !err.contains("standalone-secret"),
            "the token is never logged"
        );
        let written = std::fs::read_to_string(pod.path(&format!("peers-{i}"))).unwrap();
        for ip in hosts.split(',') {
            assert!(written.contains(ip), "instance {i} hostfile: {written}");
        }
    }
}

/// A serving group of three on loopback (127.0.2.1-3), each pod a sidecar
/// and a `peergate run` with its own command; returns the runs' outputs,
/// after which the sidecars get SIGTERM and must exit 0.
fn supervised_group(
    pod: &Pod,
    run_args: &[&str],
    commands: [&str; 3],
    term_run: Option<usize>,
) -> Vec<Output> {
    let hosts = "127.0.2.1,127.0.2.2,127.0.2.3";
    let ports = ports::free_ports(1 + 3 + 3);
    let port = ports[0].to_string();
    let install = pod.path("bin-peergate");
    let sidecars: Vec<_> = (0..3)
        .map(|i| {
            let await_port = ports[1 + i].to_string();
            let health = ports[4 + i].to_string();
            let mut extra = vec![
                "--serve",
                "--token",
                "t",
                "--timeout",
                "20s",
                "--await-port",
                &await_port,
                "--health-port",
                &health,
            ];
            let install = install.to_str().unwrap();
            if i == 0 {
                extra.extend(["--install", install]);
            }
            barrier_instance(hosts, i, &format!("127.0.2.{}", i + 1), &port, &extra)
        })
        .collect();
    let runs: Vec<_> = (0..3)
        .map(|i| {
            Command::new(BIN)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .args([
                    "run",
                    "--port",
                    &ports[1 + i].to_string(),
                    "--timeout",
                    "15s",
                ])
                .args(run_args)
                .args(["--", "sh", "-c", commands[i]])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start peergate run")
        })
        .collect();
    if let Some(i) = term_run {
        // Round 1 has long started: the pod is stopped, as on an eviction.
        std::thread::sleep(std::time::Duration::from_secs(1));
        unsafe { libc::kill(runs[i].id() as i32, libc::SIGTERM) };
    }
    let outputs: Vec<Output> = runs
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    // The installed copy is this very binary, and runs.
    let copied = Command::new(&install).arg("--version").output().unwrap();
    assert_eq!(copied.status.code(), Some(0));
    let (status, metrics) = http_get("127.0.2.9", ports[4], "/metrics");
    assert_eq!(status, 200);
    for mut sidecar in sidecars {
        unsafe { libc::kill(sidecar.id() as i32, libc::SIGTERM) };
        let status = sidecar.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(sidecar.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(0), "{err}");
    }
    let mut outputs = outputs;
    outputs.push(Output {
        status: copied.status,
        stdout: metrics.into_bytes(),
        stderr: Vec::new(),
    });
    outputs
}

/// A command that fails in every round: all restart once, then the
/// failing pod exits with its command's code and the others with 3.
#[test]
fn run_restarts_every_pod_and_then_gives_up_with_the_documented_codes() {
    let pod = Pod::new("run-exhausted");
    let stay =
        "echo round=$PEERGATE_ROUND restarts=$PEERGATE_RESTARTS rank=$PEERGATE_RANK; sleep 20";
    let fail = "echo round=$PEERGATE_ROUND restarts=$PEERGATE_RESTARTS rank=$PEERGATE_RANK; sleep 0.3; exit 5";
    let out = supervised_group(
        &pod,
        &["--max-restarts", "1", "--grace", "1s"],
        [stay, fail, stay],
        None,
    );
    for (i, o) in out[..3].iter().enumerate() {
        let text = stdout(o);
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                format!("round=1 restarts=0 rank={i}"),
                format!("round=2 restarts=1 rank={i}")
            ],
            "pod {i}: {}",
            stderr(o)
        );
        let expected = if i == 1 { 5 } else { 3 };
        assert_eq!(o.status.code(), Some(expected), "pod {i}: {}", stderr(o));
    }
    assert!(stderr(&out[0]).contains("round 1 ended: index 1 failed (exit code 5)"));
    assert!(stderr(&out[0]).contains("--max-restarts 1 reached"));
    assert!(stderr(&out[1]).contains("round 2: the command failed (exit code 5)"));
    let metrics = stdout(&out[3]);
    for line in ["peergate_round 2", "peergate_round_restarts_total 2"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// Once a command has completed, a later failure restarts nobody.
#[test]
fn run_after_a_completion_a_failure_restarts_nobody() {
    let pod = Pod::new("run-finishing");
    let out = supervised_group(
        &pod,
        &["--grace", "1s"],
        [
            "echo round=$PEERGATE_ROUND",
            "echo round=$PEERGATE_ROUND; sleep 1; exit 6",
            "echo round=$PEERGATE_ROUND; sleep 2",
        ],
        None,
    );
    for (i, code) in [0, 6, 0].into_iter().enumerate() {
        assert_eq!(
            out[i].status.code(),
            Some(code),
            "pod {i}: {}",
            stderr(&out[i])
        );
        assert_eq!(
            stdout(&out[i]).trim(),
            "round=1",
            "pod {i}: nobody restarts"
        );
    }
    assert!(stderr(&out[1]).contains("the group is finishing: nobody restarts; exiting 6"));
    let metrics = stdout(&out[3]);
    assert!(
        metrics.lines().any(|l| l == "peergate_round_finishing 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "peergate_round_restarts_total 0"),
        "{metrics}"
    );
}

/// A pod stopped as on an eviction (SIGTERM to its run): its command exits
/// 0 on the forwarded signal, yet the run exits 143, never 0 (its index is
/// not done), and reports a failure: the others restart in round 2 instead
/// of taking the group for finishing.
#[test]
fn run_on_sigterm_restarts_the_others_and_never_exits_0() {
    let pod = Pod::new("run-sigterm");
    let cmd = "trap 'exit 0' TERM; echo round=$PEERGATE_ROUND; \
               [ $PEERGATE_ROUND = 2 ] && exit 0; sleep 20 & wait";
    let out = supervised_group(&pod, &["--grace", "1s"], [cmd, cmd, cmd], Some(2));
    assert_eq!(out[2].status.code(), Some(143), "{}", stderr(&out[2]));
    assert!(
        stderr(&out[2]).contains("the command ended on the forwarded signal"),
        "{}",
        stderr(&out[2])
    );
    assert_eq!(stdout(&out[2]).trim(), "round=1");
    for i in [0, 1] {
        assert_eq!(
            out[i].status.code(),
            Some(0),
            "pod {i}: {}",
            stderr(&out[i])
        );
        assert_eq!(
            stdout(&out[i]).lines().collect::<Vec<_>>(),
            ["round=1", "round=2"],
            "pod {i}: {}",
            stderr(&out[i])
        );
        assert!(stderr(&out[i]).contains("round 1 ended: index 2 failed (signal 15)"));
    }
}

/// Two pods that disagree on the world size both say so.
#[test]
fn a_world_size_mismatch_is_logged_on_both_sides() {
    let port = ports::free_port().to_string();
    let run = |i: usize, hosts: &str| {
        let listen = format!("127.0.1.{}", i + 1);
        barrier_instance(
            hosts,
            i,
            &listen,
            &port,
            &["--token", "t", "--timeout", "3s"],
        )
    };
    let a = run(0, "127.0.1.1,127.0.1.2");
    let b = run(1, "127.0.1.1,127.0.1.2,127.0.1.3");
    for (name, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(124), "{name}: {err}");
        assert!(
            err.contains("world_size_mismatch") && err.contains("every pod needs the same --peers"),
            "{name}: {err}"
        );
    }
}

/// An HTTP GET over loopback from `source`; returns (status, body).
fn http_get(source: &str, port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket
        .connect_timeout(&to.into(), std::time::Duration::from_secs(2))
        .unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A serving barrier of one: the health endpoints answer, a stranger's
/// idle connections do not starve a probe from another address, `peergate
/// await` passes, and SIGTERM ends it with 0.
#[test]
fn a_serving_barrier_answers_health_checks_and_await() {
    let [port, await_port, health] = ports::free_ports(3)[..] else {
        unreachable!("three ports asked for")
    };
    let mut child = Command::new(BIN)
        .env_clear()
        .args([
            "--mode",
            "barrier",
            "--serve",
            "--hosts",
            "127.0.0.1",
            "--index",
            "0",
            "--listen",
            "127.0.0.1",
            "--token",
            "t",
        ])
        .args(["--port", &port.to_string()])
        .args(["--await-port", &await_port.to_string()])
        .args(["--health-port", &health.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The await passes as soon as the sidecar released (a world of one).
    let waited = Command::new(BIN)
        .env_clear()
        .args([
            "await",
            "--timeout",
            "5s",
            "--port",
            &await_port.to_string(),
        ])
        .args([
            "--",
            "sh",
            "-c",
            "echo rank=$PEERGATE_RANK size=$PEERGATE_WORLD_SIZE",
        ])
        .output()
        .unwrap();
    assert_eq!(waited.status.code(), Some(0), "{}", stderr(&waited));
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "rank=0 size=1"
    );
    assert!(
        waited.stderr.is_empty(),
        "await is silent: {}",
        stderr(&waited)
    );
    // A stranger holds idle connections to the health port.
    let idle: Vec<_> = (0..10)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.3", health)).ok())
        .collect();
    assert!(!idle.is_empty());
    let t = std::time::Instant::now();
    let (status, body) = http_get("127.0.0.2", health, "/readyz");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    assert_eq!((status, body.as_str()), (200, "released\n"));
    assert_eq!(http_get("127.0.0.2", health, "/livez").0, 200);
    assert_eq!(http_get("127.0.0.2", health, "/nope").0, 404);
    assert_eq!(
        http_get("127.0.0.2", health, "/await").0,
        404,
        "await is loopback-port only"
    );
    assert_eq!(
        http_get("127.0.0.2", health, "/v1/values/k?index=0").0,
        404,
        "so are the workload's values"
    );
    // The workload's commands, in a world of one.
    let cmd = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .env_clear()
            .args(args)
            .args(["--port", &await_port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let out = cmd(&["put", "port", "8476"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cmd(&["put", "motd", "-"], "two words\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cmd(&["get", "port", "--index", "0"], "");
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "8476\n")
    );
    let out = cmd(&["get", "motd", "--all", "--format", "json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["values"][0]["value"], "two words\n");
    assert_eq!(json["round"], 1);
    let out = cmd(&["get", "nothing", "--index", "0"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`nothing` is not published in round 1 by index 0"));
    let out = cmd(&["barrier", "solo", "--timeout", "5s"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cmd(&["put", "k", "v", "--round", "2"], "");
    assert_eq!(out.status.code(), Some(5), "a round not released");
    // Garbage on the loopback port is turned away, the sidecar stays.
    for junk in [
        &b"PUT /v1/values/k HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"[..],
        b"POST /v1/barriers/a%20b HTTP/1.1\r\n\r\n",
        b"GET /v1/values/k?index=x HTTP/1.1\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", await_port)).unwrap();
        std::io::Write::write_all(&mut s, junk).unwrap();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{junk:?}: {answer}");
    }
    let out = cmd(&["get", "port", "--index", "0"], "");
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "8476\n")
    );
    // 48 waiting requests take every slot of the workload API; the next is
    // told so, and `await` on the same port still gets through.
    let waiting: Vec<_> = (0..48)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", await_port)).unwrap();
            std::io::Write::write_all(
                &mut s,
                b"GET /v1/values/never?index=0&wait=20000 HTTP/1.1\r\n\r\n",
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = cmd(&["get", "port", "--index", "0"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("answered 503"), "{}", stderr(&out));
    let waited = Command::new(BIN)
        .env_clear()
        .args([
            "await",
            "--timeout",
            "5s",
            "--port",
            &await_port.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(waited.status.code(), Some(0), "{}", stderr(&waited));
    drop(waiting);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = cmd(&["get", "port", "--index", "0"], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the slots come back: {}",
        stderr(&out)
    );
    let (status, peers) = http_get("127.0.0.2", health, "/peers");
    assert_eq!(status, 200);
    assert!(
        peers.contains("\"released\":true") && peers.contains("\"world_size\":1"),
        "{peers}"
    );
    let (status, metrics) = http_get("127.0.0.2", health, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l == "peergate_barrier_released 1"),
        "{metrics}"
    );
    drop(idle);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("SIGTERM: left the barrier"), "{err}");
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--dry-run` prints what the same configuration would make a run do: the
/// names, this pod, the probe, DNS, the barrier and the hand-off, as text
/// or as one JSON object; never the token.
#[test]
fn dry_run_prints_what_a_run_would_wait_for() {
    let pod = Pod::new("dry");
    let idx1 = ("JOB_COMPLETION_INDEX", "1");
    let name = |i: u32| format!("example-job-{i}.headless-svc.default.svc.cluster.local.");

    let out = pod.run(&[idx1], &["--peers", "3", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |label: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{label} ")))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
            .to_owned()
    };
    assert!(line("pod").contains("index 1, hostname example-job-1, Job example-job"));
    assert!(line("pod").contains(&format!("name {}", name(1))), "{text}");
    assert!(line("pod").contains("addresses 10.244.0.7"), "{text}");
    assert!(
        line("peers").starts_with(&format!(
            "peers     3, this pod included: {}, {}, {}",
            name(0),
            name(1),
            name(2)
        )),
        "{text}"
    );
    assert!(line("probe").contains("auto: "), "{text}");
    assert!(
        line("dns").contains("nameservers 127.0.0.1; search default.svc.cluster.local"),
        "{text}"
    );
    assert!(line("dns").contains("ndots 5"), "{text}");
    assert!(line("env").contains("PEERGATE_RANK=1"), "{text}");
    assert!(!text.contains("barrier "), "{text}");

    // Many peers: the first few, a count, the last.
    let out = pod.run(&[idx1], &["--peers", "1000", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("(+996 more), {}", name(999))),
        "{text}"
    );
    assert!(text.contains("PEERGATE_PEER_NAMES=<1000 names: "), "{text}");

    // JSON: one object, every peer, the barrier's settings without the token.
    let json = |env: Env, args: &[&str]| {
        // In front: after `--` they would be the command's.
        let args = [&["--dry-run", "--log-format", "json"], args].concat();
        let out = pod.run(env, &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains("s3cret") && !stderr(&out).contains("s3cret"));
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let barrier = [idx1, ("PEERGATE_TOKEN", "s3cret")];
    for (n, topology) in [("8", "mesh"), ("9", "tree")] {
        let v = json(
            &barrier,
            &[
                "--peers", n, "--mode", "barrier", "--serve", "--port", "7000",
            ],
        );
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["mode"], "barrier");
        assert_eq!(v["pod"]["index"], 1);
        assert_eq!(v["pod"]["member"], true);
        assert_eq!(v["pod"]["job"], "example-job");
        assert_eq!(
            v["peers"].as_array().unwrap().len(),
            n.parse::<usize>().unwrap()
        );
        assert_eq!(v["peers"][2]["name"], name(2).as_str());
        assert_eq!(v["probe"], serde_json::Value::Null, "{v}");
        let b = &v["barrier"];
        assert_eq!(b["topology"], topology, "{v}");
        assert_eq!(b["world"], n.parse::<u32>().unwrap());
        assert_eq!(b["port"], 7000);
        assert_eq!(b["token"], true);
        assert_eq!(b["serve"], true);
        assert_eq!(b["await_port"], 7471);
        assert_eq!(b["announce"][0], "10.244.0.7");
        assert_eq!(b["service"], "headless-svc.default.svc.cluster.local.");
        assert_eq!(v["dns"]["families"], "ipv4");
        assert_eq!(v["handoff"]["env"]["PEERGATE_RANK"], "1");
        assert_eq!(
            v["handoff"]["env"]["PEERGATE_COORDINATOR"],
            name(0).trim_end_matches('.')
        );
        assert_eq!(
            v["handoff"]["env"]["PEERGATE_COORDINATOR_ADDR"],
            serde_json::Value::Null
        );
    }
    let v = json(
        &[idx1, ("PEERGATE_INSECURE_NO_TOKEN", "1")],
        &["--peers", "2", "--mode", "barrier"],
    );
    assert_eq!(v["barrier"]["token"], false);
    assert_eq!(v["barrier"]["await_port"], serde_json::Value::Null);

    // Explicit addresses: no DNS; the hand-off as configured.
    let hostfile = pod.path("out/hosts");
    let v = json(
        &[],
        &[
            "--hosts",
            "10.0.0.1,10.0.0.2",
            "--probe",
            "tcp:81",
            "--write-hostfile",
            hostfile.to_str().unwrap(),
            "--hostfile-format",
            "mpich",
            "--",
            "mpirun",
            "-n",
            "2",
        ],
    );
    assert_eq!(v["dns"], serde_json::Value::Null);
    assert_eq!(v["probe"]["uses"], "tcp");
    assert_eq!(v["probe"]["port"], 81);
    assert_eq!(v["peers"][1]["addr"], "10.0.0.2");
    assert_eq!(v["handoff"]["hostfile"]["format"], "mpich");
    assert_eq!(v["handoff"]["command"][0], "mpirun");
    assert_eq!(v["handoff"]["env"]["PEERGATE_COORDINATOR_ADDR"], "10.0.0.1");
    // What the machine decides is a warning, not a failure.
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(
        warnings[0].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
    assert!(!pod.path("out").exists(), "a dry run created the directory");
}

/// A JobSet worker that waits for the leader: not one of the peers, named
/// by its hostname; what the broken example would have shown.
#[test]
fn dry_run_names_the_pods_of_another_job() {
    let pod = Pod::new("dry-jobset");
    let hosts = pod.write(
        "hosts",
        "127.0.0.1\tlocalhost\n10.244.1.4\ttrain-workers-0-2.train.ml.svc.cluster.local\ttrain-workers-0-2\n",
    );
    let env = [
        ("JOB_COMPLETION_INDEX", "2"),
        ("PEERGATE_HOSTNAME", "train-workers-0-2"),
        ("PEERGATE_HOSTS_FILE", hosts.to_str().unwrap()),
    ];
    let template = "--template=train-leader-0-{index}.{subdomain}.{namespace}.svc.{zone}.";
    let out = pod.run(&env, &["--indices=0", template, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("pod       index 2 (not one of the peers), hostname train-workers-0-2, Job train-workers-0, name train-workers-0-2.train.ml.svc.cluster.local."),
        "{text}"
    );
    assert!(
        text.contains(
            "peers     1, this pod not among them: train-leader-0-0.train.ml.svc.cluster.local."
        ),
        "{text}"
    );
    // `--peers=1` names the same one pod of the other Job: no index of
    // this pod's own Job is compared with it.
    let out = pod.run(&env, &["--peers=1", template, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("peers     1, this pod not among them: train-leader-0-0."));
    // Counting the pods of its own Job, worker 2 is not below 1.
    let own = "--template=train-workers-0-{index}.{subdomain}.{namespace}.svc.{zone}.";
    let out = pod.run(&env, &["--peers=1", own, "--dry-run"]);
    assert_usage_error(
        &out,
        "this pod's index 2 is not below --peers 1",
        "--peers=1",
    );
    assert!(stdout(&out).is_empty());
}

/// A configuration a run refuses, the dry run refuses with the same line.
#[test]
fn dry_run_exits_2_where_a_run_would() {
    let pod = Pod::new("dry-bad");
    let idx1 = ("JOB_COMPLETION_INDEX", "1");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("index beyond peers", vec![("JOB_COMPLETION_INDEX", "3")], vec!["--peers", "3", "--hostname", "example-job-3"], "index 3 is not below --peers 3"),
        ("no token", vec![idx1], vec!["--peers", "3", "--mode", "barrier"], "needs --token"),
        ("hosts file missing", vec![idx1], vec!["--peers", "3", "--hosts-file", "/nonexistent/hosts"], "cannot read /nonexistent/hosts"),
        ("await: bad timeout", vec![], vec!["await", "--timeout", "soon"], "invalid --timeout"),
    ];
    for (case, env, args, needle) in cases {
        let real = pod.run(&env, &args);
        assert_usage_error(&real, needle, case);
        let mut dry = args.clone();
        dry.insert(usize::from(args[0] == "await"), "--dry-run");
        let out = pod.run(&env, &dry);
        assert_usage_error(&out, needle, &format!("{case} (--dry-run)"));
        // The same line, but for the timestamp.
        let message = |o: &Output| {
            let e = stderr(o);
            e.split_once(" ERROR ")
                .map_or(e.clone(), |(_, m)| m.to_owned())
        };
        assert_eq!(message(&out), message(&real), "{case}");
    }
    // The variable works like the flag; a false value is a real run.
    let args = ["--hosts", "127.0.0.1", "--probe", "dns"];
    let out = pod.run(&[("PEERGATE_DRY_RUN", "true")], &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("peergate --dry-run: "));
    assert!(!stderr(&out).contains("peer reachable"), "{}", stderr(&out));
    let out = pod.run(&[("PEERGATE_DRY_RUN", "0")], &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("1 peer reachable"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn await_dry_run_checks_its_arguments() {
    let pod = Pod::new("dry-await");
    let out = pod.run(&[], &["await", "--dry-run", "--timeout=10m"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("127.0.0.1:7471"), "{text}");
    assert!(text.contains("for at most 10m00s"), "{text}");
    let out = pod.run(
        &[("PEERGATE_AWAIT_PORT", "9000")],
        &[
            "await",
            "--dry-run",
            "--log-format=json",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["await"]["port"], 9000);
    assert_eq!(v["await"]["timeout_ms"], 600_000);
    assert_eq!(v["await"]["command"][2], "exit 3");
    let out = pod.run(&[], &["await", "--dry-run", "--timout=1m"]);
    assert_usage_error(&out, "unknown argument `--timout`", "await typo");
}

#[test]
fn the_workload_commands_dry_run_against_the_limits() {
    let pod = Pod::new("dry-exchange");
    let out = pod.run(&[], &["barrier", "staged", "--dry-run", "--timeout", "5m"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("enter barrier `staged`"), "{text}");
    assert!(text.contains("for at most 5m00s"), "{text}");
    let out = pod.run(
        &[("PEERGATE_ROUND", "3")],
        &[
            "get",
            "port",
            "--index",
            "0",
            "--dry-run",
            "--log-format=json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (
            v["exchange"]["command"].as_str(),
            v["exchange"]["round"].as_u64()
        ),
        (Some("get"), Some(3))
    );
    // Nothing is read from stdin, and nothing listens: still exit 0.
    let out = pod.run(&[], &["put", "key", "-", "--dry-run", "--port", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("the value on stdin (not read now)"));
    for (args, needle) in [
        (&["put", "a b", "x", "--dry-run"][..], "invalid key `a b`"),
        (&["barrier", "x/y z", "--dry-run"], "invalid barrier name"),
        (&["get", "k", "--dry-run"], "--index"),
    ] {
        let out = pod.run(&[], args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let big = "v".repeat(4097);
    let out = pod.run(&[], &["put", "k", &big, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("the value is 4097 bytes (at most 4096)"));
}

/// `await` is a subcommand: the gate's variables (here a bad one) are not
/// its business, and its own variables are named in its errors.
#[test]
fn await_reads_only_its_own_variables() {
    let pod = Pod::new("await-env");
    let out = pod.run(
        &[("PEERGATE_PEERS", "many"), ("PEERGATE_PORT", "0")],
        &["await", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("127.0.0.1:7471"));
    let out = pod.run(&[("PEERGATE_AWAIT_PORT", "0")], &["await", "--dry-run"]);
    assert_usage_error(
        &out,
        "peergate await: invalid PEERGATE_AWAIT_PORT `0`",
        "await's own variable",
    );
    assert!(
        stderr(&out)
            .trim_end()
            .ends_with("(see peergate await --help)")
    );
    // The gate's flags after `await` are not await's.
    let out = pod.run(&[], &["await", "--peers", "3"]);
    assert_usage_error(
        &out,
        "unknown argument `--peers`",
        "a gate flag after await",
    );
}

/// A seccomp filter that kills the process at its first use of the
/// network: binding, listening, accepting, connecting or sending on any
/// socket (and io_uring, which could do all of these). Opening a socket is
/// allowed: it sends nothing (`auto` opens an ICMP socket to see whether it
/// may). A DNS query, an ICMP echo, a TCP probe, a barrier dial and a
/// listener all need one of these calls.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod no_network {
    use std::os::unix::process::CommandExt as _;
    use std::process::Command;

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;
    /// x32 system calls on x86_64 carry this bit: they are refused whole.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;

    const DENIED: [libc::c_long; 9] = [
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_connect,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendmmsg,
        libc::SYS_io_uring_setup,
    ];

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    /// The filter program: check the architecture, then the call number.
    fn program() -> Vec<libc::sock_filter> {
        use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
        let kill = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS);
        // struct seccomp_data: nr at offset 0, arch at offset 4.
        let mut prog = vec![
            stmt(BPF_LD | BPF_W | BPF_ABS, 4),
            jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
            kill,
            stmt(BPF_LD | BPF_W | BPF_ABS, 0),
            jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
            kill,
        ];
        for nr in DENIED {
            prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, 0, 1));
            prog.push(kill);
        }
        prog.push(stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW));
        prog
    }

    /// The filter program, alive until the child has installed it.
    pub struct Filter {
        _prog: Vec<libc::sock_filter>,
        _fprog: Box<libc::sock_fprog>,
    }

    /// Installs the filter in `cmd`'s child between fork and exec; keep
    /// the result until the child has started.
    pub fn forbid(cmd: &mut Command) -> Filter {
        // Built before the fork: the child only makes two system calls.
        let mut prog = program();
        let fprog = Box::new(libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        });
        let ptr = &*fprog as *const libc::sock_fprog as usize;
        // SAFETY: prctl is async-signal-safe; `ptr` points into the
        // returned `Filter`, which the caller keeps until the exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                        ptr,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Filter {
            _prog: prog,
            _fprog: fprog,
        }
    }
}

/// `--dry-run` sends nothing and binds nothing: run under [`no_network`],
/// each dry run exits 0, while the same run without `--dry-run` is killed
/// (SIGSYS) at its first query, probe, dial or listener, which shows the
/// filter would have caught the dry run doing the same.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn dry_run_sends_nothing_and_binds_nothing() {
    use std::os::unix::process::ExitStatusExt as _;

    let pod = Pod::new("silent");
    let hostfile = pod.path("hostfile");
    let hostfile = hostfile.to_str().unwrap();
    let indexed = [("JOB_COMPLETION_INDEX", "1")];
    let barrier = [("JOB_COMPLETION_INDEX", "1"), ("PEERGATE_TOKEN", "t")];
    #[rustfmt::skip]
    let cases: Vec<(&str, Env, Vec<&str>)> = vec![
        // A DNS query for the first name.
        ("ping, names", &indexed, vec!["--peers", "3", "--probe", "dns"]),
        // A TCP connect.
        ("ping, tcp probe", &[], vec!["--hosts", "127.0.0.1", "--probe", "tcp:9"]),
        // An ICMP echo (or, without ICMP, a TCP connect).
        ("ping, auto probe", &[], vec!["--hosts", "127.0.0.1"]),
        // The listener first.
        ("barrier", &barrier, vec!["--peers", "3", "--mode", "barrier", "--write-hostfile", hostfile]),
        ("serving barrier", &barrier, vec!["--peers", "3", "--mode", "barrier", "--serve", "--health-port", "7472"]),
        // The connection to the sidecar.
        ("await", &[], vec!["await"]),
    ];
    for (case, env, args) in cases {
        let run = |dry: bool| {
            let mut args = args.clone();
            if dry {
                args.insert(usize::from(args[0] == "await"), "--dry-run");
            }
            let mut cmd = Command::new(BIN);
            cmd.env_clear()
                .env("PEERGATE_HOSTNAME", "example-job-1")
                .env("PEERGATE_HOSTS_FILE", pod.path("hosts"))
                .env("PEERGATE_RESOLV_CONF", pod.path("resolv.conf"))
                .env("PEERGATE_TIMEOUT", "3s")
                .env("PEERGATE_AWAIT_TIMEOUT", "3s")
                .envs(env.iter().copied())
                .args(&args);
            let _filter = no_network::forbid(&mut cmd);
            cmd.output().expect("run peergate")
        };
        let dry = run(true);
        assert_eq!(
            dry.status.code(),
            Some(0),
            "{case}: --dry-run {:?}, stderr:\n{}",
            dry.status,
            stderr(&dry)
        );
        assert!(stdout(&dry).contains("(nothing was sent)"), "{case}");
        let real = run(false);
        assert_eq!(
            real.status.signal(),
            Some(libc::SIGSYS),
            "{case}: the run without --dry-run was not stopped by the filter: {:?}\n{}",
            real.status,
            stderr(&real)
        );
    }
    assert!(!Path::new(hostfile).exists());
}

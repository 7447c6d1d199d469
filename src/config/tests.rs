//! Config rules against fake pods.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::values::ProbeKind;

struct FakePod {
    vars: HashMap<&'static str, &'static str>,
    files: HashMap<&'static str, &'static str>,
    hostname: Option<&'static str>,
}

impl Environment for FakePod {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|v| v.to_string())
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(path.to_str().unwrap())
            .map(|t| t.to_string())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
    fn hostname(&self) -> Option<String> {
        self.hostname.map(str::to_owned)
    }
}

const HOSTS: &str = "127.0.0.1\tlocalhost\n\
    10.244.2.9\texample-job-2.headless-svc.team-a.svc.k8s.local\texample-job-2\n";
const RESOLV: &str = "search team-a.svc.k8s.local svc.k8s.local k8s.local\n\
    nameserver 10.96.0.10\noptions ndots:5\n";

fn pod(hosts: &'static str) -> FakePod {
    FakePod {
        vars: HashMap::from([("JOB_COMPLETION_INDEX", "2")]),
        files: HashMap::from([("/etc/hosts", hosts), ("/etc/resolv.conf", RESOLV)]),
        hostname: Some("example-job-2"),
    }
}

fn build(env: &FakePod, args: &[&str]) -> Result<Config, ConfigError> {
    let argv = std::iter::once("peergate").chain(args.iter().copied());
    let crate::cli::Invocation::Gate(args) = crate::cli::parse_from(argv).expect("valid arguments")
    else {
        panic!("not the gate");
    };
    Config::build(*args, env)
}

fn probe(config: &Config) -> &ProbeSettings {
    match &config.plan {
        Plan::Ping(ping) => &ping.probe,
        Plan::Barrier(_) => panic!("a barrier has no probe"),
    }
}

fn names(config: &Config) -> Vec<String> {
    config.peers().iter().map(|p| p.display_name()).collect()
}

#[test]
fn zero_configuration_in_an_indexed_job_pod() {
    let config = build(&pod(HOSTS), &["--peers", "3"]).unwrap();
    assert_eq!(
        config.peers()[0].target,
        Target::Name("example-job-0.headless-svc.team-a.svc.k8s.local.".into())
    );
    assert_eq!(config.peers().len(), 3);
    assert_eq!(config.self_index(), Some(2));
    assert_eq!(
        config.identity.target,
        Some(config.peers()[2].target.clone())
    );
    let dns = config.dns.clone().unwrap();
    assert_eq!(dns.family, Family::V4, "single-stack pod: A records only");
    assert_eq!(dns.ndots, 5);
    assert_eq!(config.interval(), Duration::from_secs(1));
    assert_eq!(config.deadline, Some(Duration::from_secs(600)));
}

#[test]
fn flags_override_what_the_pod_files_say() {
    let config = build(
        &pod(HOSTS),
        &[
            "--peers",
            "3",
            "--indices",
            "0-1",
            "--job",
            "other",
            "--subdomain",
            "svc2",
            "--namespace",
            "ns2",
        ],
    )
    .unwrap();
    assert_eq!(
        names(&config),
        [
            "other-0.svc2.ns2.svc.k8s.local",
            "other-1.svc2.ns2.svc.k8s.local"
        ]
    );
    // --job names another Job: this pod (example-job-2) is not one of its
    // pods, so it has no rank among them, and the diagnosis asks for the
    // name the kubelet gave it.
    assert_eq!(config.self_index(), None);
    assert_eq!(
        config.identity.target,
        Some(Target::Name(
            "example-job-2.headless-svc.team-a.svc.k8s.local.".into()
        ))
    );
}

#[test]
fn namespace_and_zone_fall_back_to_the_search_list() {
    // A hosts line without a service FQDN: --subdomain names the Service,
    // resolv.conf's first search entry gives namespace and zone.
    let p = pod("127.0.0.1 localhost\n10.244.2.9 example-job-2\n");
    let config = build(
        &p,
        &["--peers", "3", "--indices", "0", "--subdomain", "workers"],
    )
    .unwrap();
    assert_eq!(
        names(&config),
        ["example-job-0.workers.team-a.svc.k8s.local"]
    );
}

#[test]
fn relative_names_when_the_zone_is_unknown() {
    let mut p = pod("127.0.0.1 localhost\n");
    p.files.insert("/etc/resolv.conf", "nameserver 10.0.0.2\n");
    let config = build(
        &p,
        &[
            "--peers",
            "3",
            "--indices",
            "0-1",
            "--subdomain",
            "headless-svc",
        ],
    )
    .unwrap();
    assert_eq!(
        names(&config),
        ["example-job-0.headless-svc", "example-job-1.headless-svc"]
    );
}

#[test]
fn dual_stack_pods_ask_for_both_families() {
    let hosts = "10.244.2.9\texample-job-2.headless-svc.team-a.svc.k8s.local\texample-job-2\n\
        fd00::9\texample-job-2.headless-svc.team-a.svc.k8s.local\texample-job-2\n";
    let config = build(&pod(hosts), &["--peers", "3"]).unwrap();
    assert_eq!(config.dns.unwrap().family, Family::Dual);
    let config = build(&pod(hosts), &["--peers", "3", "--ip-family", "ipv6"]).unwrap();
    assert_eq!(config.dns.unwrap().family, Family::V6);
}

#[test]
fn indices_and_custom_templates() {
    let config = build(&pod(HOSTS), &["--peers", "8", "--indices", "0,6-7"]).unwrap();
    assert_eq!(
        config
            .peers()
            .iter()
            .map(|p| p.index.unwrap())
            .collect::<Vec<_>>(),
        [0, 6, 7]
    );
    let config = build(
        &pod(HOSTS),
        &["--indices", "0-1", "--template", "js-w-0-{index}.js"],
    )
    .unwrap();
    assert_eq!(names(&config), ["js-w-0-0.js", "js-w-0-1.js"]);
}

#[test]
fn standalone_hosts_need_no_pod_files() {
    let p = FakePod {
        vars: HashMap::new(),
        files: HashMap::new(),
        hostname: None,
    };
    let config = build(&p, &["--hosts", "10.0.0.1,fd00::2"]).unwrap();
    assert!(config.dns.is_none(), "IP literals need no resolver");
    assert_eq!(config.self_index(), None);
    let err = build(&p, &["--hosts", "a.example"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read /etc/resolv.conf"), "{err}");
}

#[test]
fn an_odd_resolv_conf_is_one_warning_not_an_error() {
    let mut p = pod(HOSTS);
    p.files.insert(
        "/etc/resolv.conf",
        "nameserver dns.example\noptions ndots:x\n",
    );
    let config = build(&p, &["--peers", "3"]).unwrap();
    let dns = config.dns.unwrap();
    assert_eq!(dns.nameservers, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(dns.ndots, 0);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].starts_with(
        "/etc/resolv.conf: ignored what glibc ignores: line 1: nameserver dns.example"
    ));
    let clean = build(&pod(HOSTS), &["--peers", "3"]).unwrap();
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
}

#[test]
fn probe_settings() {
    let c = build(&pod(HOSTS), &["--peers", "3", "--probe", "tcp:8080"]).unwrap();
    assert_eq!((probe(&c).kind, probe(&c).tcp_port), (ProbeKind::Tcp, 8080));
    let c = build(
        &pod(HOSTS),
        &["--peers", "3", "--probe", "tcp", "--port", "9000"],
    )
    .unwrap();
    assert_eq!(probe(&c).tcp_port, 9000);
    let c = build(&pod(HOSTS), &["--peers", "3", "--interval", "5s"]).unwrap();
    assert_eq!(
        probe(&c).timeout,
        Duration::from_secs(2),
        "default probe timeout is capped"
    );
    let c = build(
        &pod(HOSTS),
        &["--peers", "3", "--interval", "300ms", "--timeout", "never"],
    )
    .unwrap();
    assert_eq!(probe(&c).timeout, Duration::from_millis(300));
    assert_eq!(c.deadline, None);
}

fn error(env: &FakePod, args: &[&str]) -> String {
    match build(env, args) {
        Ok(_) => panic!("{args:?} should be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_template_without_index_names_one_peer_only() {
    let err = error(
        &pod(HOSTS),
        &["--peers", "3", "--template", "leader.{subdomain}"],
    );
    assert_eq!(
        err,
        "invalid --template `leader.{subdomain}`: no {index}, so all 3 peers would get the same name"
    );
    let config = build(
        &pod(HOSTS),
        &["--indices", "0", "--template", "leader.{subdomain}"],
    )
    .unwrap();
    assert_eq!(names(&config), ["leader.headless-svc"]);
}

#[test]
fn bad_names_are_blamed_on_the_flag_that_gave_them() {
    let err = error(&pod(HOSTS), &["--peers", "3", "--job", "Bad Job"]);
    assert_eq!(err, "invalid --job `Bad Job`: label `Bad Job` contains ` `");
    let err = error(&pod(HOSTS), &["--peers", "3", "--subdomain", "a.b"]);
    assert_eq!(err, "invalid --subdomain `a.b`: label `a.b` contains `.`");
    let err = error(&pod(HOSTS), &["--peers", "3", "--namespace=-ns"]);
    assert!(err.starts_with("invalid --namespace `-ns`"), "{err}");
    let err = error(&pod(HOSTS), &["--peers", "3", "--cluster-domain", "a..b"]);
    assert!(
        err.starts_with("invalid --cluster-domain `a..b`: empty label"),
        "{err}"
    );
    let mut odd_host = pod(HOSTS);
    odd_host.hostname = Some("odd_host!-2");
    let err = error(&odd_host, &["--peers", "3"]);
    assert!(
        err.starts_with(
            "the Job name `odd_host!` taken from hostname `odd_host!-2` is not a DNS label"
        ),
        "{err}"
    );
    // A cluster domain written with its trailing dot means the same zone.
    let config = build(
        &pod(HOSTS),
        &["--indices", "0", "--cluster-domain", "k8s.local."],
    )
    .unwrap();
    assert_eq!(
        names(&config),
        ["example-job-0.headless-svc.team-a.svc.k8s.local"]
    );
}

#[test]
fn hand_off_flags_without_a_hostfile_are_errors() {
    let err = error(&pod(HOSTS), &["--peers", "3", "--hostfile-format", "json"]);
    assert_eq!(
        err,
        "--hostfile-format is set but no hostfile is written: add --write-hostfile PATH, or drop it"
    );
    let err = error(&pod(HOSTS), &["--peers", "3", "--slots", "2"]);
    assert!(err.starts_with("--slots is set but no hostfile"), "{err}");
    let err = error(
        &pod(HOSTS),
        &[
            "--peers",
            "3",
            "--write-hostfile",
            "/tmp/h",
            "--hostfile-format",
            "json",
            "--slots",
            "2",
        ],
    );
    assert_eq!(
        err,
        "--slots applies to openmpi and mpich hostfiles only, not to --hostfile-format json"
    );
    let config = build(
        &pod(HOSTS),
        &[
            "--peers",
            "3",
            "--write-hostfile",
            "/tmp/h",
            "--hostfile-format",
            "mpich",
            "--slots",
            "2",
        ],
    )
    .unwrap();
    let spec = config.hostfile.unwrap();
    assert_eq!((spec.format, spec.slots), (HostfileFormat::Mpich, 2));
}

#[test]
fn files_named_explicitly_must_be_readable() {
    let standalone = FakePod {
        vars: HashMap::new(),
        files: HashMap::new(),
        hostname: None,
    };
    // The default paths may be missing when nothing needs them...
    assert!(build(&standalone, &["--hosts", "10.0.0.1"]).is_ok());
    // ...a path the user typed may not.
    let err = error(
        &standalone,
        &["--hosts", "10.0.0.1", "--hosts-file", "/etc/hostz"],
    );
    assert!(err.starts_with("cannot read /etc/hostz"), "{err}");
    let err = error(
        &standalone,
        &["--hosts", "10.0.0.1", "--resolv-conf", "/etc/resolv"],
    );
    assert!(err.starts_with("cannot read /etc/resolv"), "{err}");
    let mut p = pod(HOSTS);
    p.files.insert("/tmp/bad-hosts", "not-an-ip host\n");
    let err = error(
        &p,
        &["--hosts", "10.0.0.1", "--hosts-file", "/tmp/bad-hosts"],
    );
    assert!(err.starts_with("malformed /tmp/bad-hosts: line 1"), "{err}");
}

#[test]
fn job_completion_index_errors_name_the_variable() {
    let mut p = pod(HOSTS);
    p.vars.insert("JOB_COMPLETION_INDEX", "two");
    let err = error(&p, &["--peers", "3"]);
    assert!(
        err.starts_with("invalid JOB_COMPLETION_INDEX `two`: not a number"),
        "{err}"
    );
    let err = error(&pod(HOSTS), &["--peers", "3", "--indices", "1,4"]);
    assert_eq!(err, "invalid --indices: index 4 is not below --peers 3");
    let err = error(&pod(HOSTS), &["--hosts", "a,,b"]);
    assert_eq!(err, "invalid --hosts `a,,b`: entry 2 is empty");
}

#[test]
fn job_naming_flags_with_explicit_hosts_are_errors() {
    for flag in [
        "--peers",
        "--indices",
        "--subdomain",
        "--namespace",
        "--cluster-domain",
        "--job",
    ] {
        let err = error(&pod(HOSTS), &["--hosts", "a.example", flag, "1"]);
        assert_eq!(
            err,
            format!("--hosts conflicts with {flag}: give either explicit hosts or an indexed Job")
        );
    }
    // In barrier mode --job names the group of instances.
    let config = build(
        &pod(HOSTS),
        &[
            "--hosts",
            "a.example,b.example",
            "--mode",
            "barrier",
            "--index",
            "0",
            "--job",
            "grp",
            "--token",
            "t",
        ],
    )
    .unwrap();
    let Plan::Barrier(barrier) = config.plan else {
        panic!("not a barrier")
    };
    assert_eq!(barrier.settings.job, "grp");
}

/// A JobSet: the leader (its own Job, index 0) waits for the workers of
/// another Job with --template; each worker (indices 0..3) waits for the
/// leader with --peers 1.
#[test]
fn a_pod_whose_name_the_template_does_not_give_is_not_a_member() {
    const LEADER_HOSTS: &str =
        "127.0.0.1 localhost\n10.0.0.5\ttrain-leader-0-0.train.ns.svc.zone\ttrain-leader-0-0\n";
    let leader = FakePod {
        vars: HashMap::from([("JOB_COMPLETION_INDEX", "0")]),
        files: HashMap::from([("/etc/hosts", LEADER_HOSTS), ("/etc/resolv.conf", RESOLV)]),
        hostname: Some("train-leader-0-0"),
    };
    let config = build(
        &leader,
        &[
            "--peers",
            "3",
            "--template",
            "train-workers-0-{index}.{subdomain}.{namespace}.svc.{zone}.",
        ],
    )
    .unwrap();
    assert_eq!(
        names(&config),
        [
            "train-workers-0-0.train.ns.svc.zone",
            "train-workers-0-1.train.ns.svc.zone",
            "train-workers-0-2.train.ns.svc.zone"
        ]
    );
    assert_eq!(config.self_index(), None, "the leader is not worker 0");
    assert_eq!(
        config.identity.target,
        Some(Target::Name("train-leader-0-0.train.ns.svc.zone.".into()))
    );

    const WORKER_HOSTS: &str =
        "127.0.0.1 localhost\n10.0.0.7\ttrain-workers-0-2.train.ns.svc.zone\ttrain-workers-0-2\n";
    let worker = FakePod {
        vars: HashMap::from([("JOB_COMPLETION_INDEX", "2")]),
        files: HashMap::from([("/etc/hosts", WORKER_HOSTS), ("/etc/resolv.conf", RESOLV)]),
        hostname: Some("train-workers-0-2"),
    };
    let template = "train-leader-0-{index}.{subdomain}.{namespace}.svc.{zone}.";
    // Index 2 is not below --peers 1, but that is the leader Job's count.
    let config = build(&worker, &["--peers", "1", "--template", template]).unwrap();
    assert_eq!(names(&config), ["train-leader-0-0.train.ns.svc.zone"]);
    assert_eq!(config.self_index(), None);

    // A member keeps its index, and --peers still bounds it.
    let config = build(
        &worker,
        &[
            "--peers",
            "3",
            "--template",
            "train-workers-0-{index}.train",
        ],
    )
    .unwrap();
    assert_eq!(config.self_index(), Some(2));
    assert_eq!(
        config.identity.target,
        Some(config.peers()[2].target.clone())
    );
    let err = error(
        &worker,
        &[
            "--peers",
            "2",
            "--template",
            "train-workers-0-{index}.train",
        ],
    );
    assert!(
        err.contains("this pod's index 2 is not below --peers 2"),
        "{err}"
    );
}

/// `--ip-family auto` without a kubelet line (`--hosts`, a VM, Docker):
/// the families the host has addresses for.
#[test]
fn auto_family_without_a_kubelet_line_follows_the_host() {
    const ROUTE_V4: &str = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
    const LINK_LOCAL_ONLY: &str = "fe80000000000000a8c1abfffe123456 02 40 20 80 eth0\n";
    const GLOBAL_V6: &str = "fd000000000000000000000000000005 02 40 00 80 eth0\n";
    let host = |files: &[(&'static str, &'static str)]| FakePod {
        vars: HashMap::new(),
        files: files
            .iter()
            .copied()
            .chain([("/etc/resolv.conf", RESOLV)])
            .collect(),
        hostname: Some("vm-1"),
    };
    let family = |env: &FakePod, extra: &[&str]| {
        let mut args = vec!["--hosts", "a.example,b.example"];
        args.extend_from_slice(extra);
        build(env, &args).unwrap().dns.unwrap().family
    };
    let v4_host = host(&[
        ("/proc/net/route", ROUTE_V4),
        ("/proc/net/if_inet6", LINK_LOCAL_ONLY),
    ]);
    assert_eq!(family(&v4_host, &[]), Family::V4);
    assert_eq!(family(&v4_host, &["--ip-family", "dual"]), Family::Dual);
    let dual_host = host(&[
        ("/proc/net/route", ROUTE_V4),
        ("/proc/net/if_inet6", GLOBAL_V6),
    ]);
    assert_eq!(family(&dual_host, &[]), Family::Dual);
    let v6_host = host(&[
        ("/proc/net/if_inet6", GLOBAL_V6),
        ("/proc/net/route", "Iface\n"),
    ]);
    assert_eq!(family(&v6_host, &[]), Family::V6);
    // /proc unreadable: ask for both, as before.
    assert_eq!(family(&host(&[]), &[]), Family::Dual);
    // The kubelet's line for this pod wins over the host's addresses.
    let mut pod_on_dual_host = pod(HOSTS);
    pod_on_dual_host.files.insert("/proc/net/route", ROUTE_V4);
    pod_on_dual_host
        .files
        .insert("/proc/net/if_inet6", GLOBAL_V6);
    let config = build(&pod_on_dual_host, &["--peers", "3"]).unwrap();
    assert_eq!(config.dns.unwrap().family, Family::V4);
}

/// Each flag of a group that only one mode or option reads is an error
/// elsewhere, naming the flag: the groups are the lists, so a new flag in
/// one must be added here too.
#[test]
fn wrong_mode_flags_are_errors_naming_the_flag() {
    use crate::cli::{BarrierOnly, HostfileOptions, PingOnly, ServeOnly, ids_of};
    let value = |id: &str| -> &'static [&'static str] {
        match id {
            "token" => &["--token", "t"],
            "insecure_no_token" => &["--insecure-no-token"],
            "listen" => &["--listen", "127.0.0.1"],
            "serve" => &["--serve"],
            "await_port" => &["--await-port", "7000"],
            "health_port" => &["--health-port", "7001"],
            "install" => &["--install", "/shared/peergate"],
            "probe" => &["--probe", "tcp"],
            "hostfile_format" => &["--hostfile-format", "json"],
            "slots" => &["--slots", "2"],
            other => panic!("no test value for `{other}`: add one"),
        }
    };
    let check = |base: &[&str], ids: Vec<String>, expected: &str| {
        for id in ids {
            let mut args = base.to_vec();
            args.extend_from_slice(value(&id));
            let err = error(&pod(HOSTS), &args);
            let flag = format!("--{}", id.replace('_', "-"));
            assert!(err.starts_with(&format!("{flag} ")), "{id}: {err}");
            assert!(err.contains(expected), "{id}: {err}");
        }
    };
    let ping = ["--peers", "3"];
    check(
        &ping,
        ids_of::<BarrierOnly>(),
        "applies to --mode barrier only",
    );
    check(
        &ping,
        ids_of::<ServeOnly>(),
        "applies to --mode barrier only",
    );
    let barrier = ["--peers", "3", "--mode", "barrier", "--token", "t"];
    check(&barrier, ids_of::<PingOnly>(), "applies to ping mode only");
    check(&barrier, ids_of::<ServeOnly>(), "applies to --serve only");
    check(
        &ping,
        ids_of::<HostfileOptions>(),
        "but no hostfile is written",
    );
}

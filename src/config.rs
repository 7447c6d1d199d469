//! Turns parsed arguments plus the pod's environment into a validated
//! [`Config`]. The pod is seen through [`Environment`], so every rule here is
//! testable without a pod; [`SystemEnvironment`] is the real one.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Args, IpFamily, Mode};
use crate::error::ConfigError;
use crate::handoff::HostfileFormat;
use crate::hosts_file::{self, PodHostsInfo};
use crate::identity;
use crate::peers::{self, Peer, Target, Template, TemplateVars};
use crate::probe::ProbeKind;
use crate::resolv_conf::{self, ResolvConf};

/// The pod as peergate sees it.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
    fn hostname(&self) -> Option<String>;
}

/// The real process environment and file system.
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn hostname(&self) -> Option<String> {
        // The UTS hostname; /proc is there even in a scratch image. HOSTNAME
        // is the fallback some runtimes set when /proc is hidden.
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|h| identity::clean_hostname(&h))
            .or_else(|| {
                std::env::var("HOSTNAME")
                    .ok()
                    .and_then(|h| identity::clean_hostname(&h))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    pub kind: ProbeKind,
    /// Port for TCP probes (explicit `tcp:PORT`, else `--port`).
    pub tcp_port: u16,
    pub timeout: Duration,
}

/// Address families to ask for and probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Dual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub family: Family,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostfileSpec {
    pub path: PathBuf,
    pub format: HostfileFormat,
    pub slots: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrierSettings {
    pub port: u16,
    pub token: String,
    /// Identifies the group of pods; part of every hello.
    pub job: String,
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub peers: Vec<Peer>,
    pub self_index: Option<u32>,
    /// This pod's own name as the peers resolve it, when known: the subject
    /// of the `publishNotReadyAddresses` diagnosis.
    pub self_target: Option<Target>,
    /// This pod's own addresses from the kubelet's hosts line (barrier
    /// hellos announce them); empty when unknown.
    pub self_addrs: Vec<IpAddr>,
    pub mode: Mode,
    pub probe: ProbeSettings,
    /// `None` when every peer is an IP literal and nothing needs resolving.
    pub dns: Option<DnsSettings>,
    pub interval: Duration,
    pub deadline: Option<Duration>,
    pub concurrency: usize,
    pub barrier: Option<BarrierSettings>,
    pub hostfile: Option<HostfileSpec>,
    pub command: Vec<OsString>,
    /// Inputs that were read but partly ignored (one line each), logged as
    /// warnings when the run starts.
    pub warnings: Vec<String>,
}

/// Longest default probe timeout; a longer interval keeps this unless
/// --probe-timeout says otherwise.
const MAX_DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads and parses one of the pod's files, with the path in every error.
fn read_parsed<T>(
    env: &dyn Environment,
    path: &Path,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let path = path.to_owned();
    let text = env
        .read_file(&path)
        .map_err(|source| ConfigError::ReadFile {
            path: path.clone(),
            source,
        })?;
    parse(&text).map_err(|reason| ConfigError::Malformed { path, reason })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Config {
    /// Validates `args` against the pod seen through `env`.
    pub fn build(args: Args, env: &dyn Environment) -> Result<Config, ConfigError> {
        let interval = args.interval;
        let deadline = args.timeout.0;
        let probe_timeout = args
            .probe_timeout
            .unwrap_or_else(|| interval.min(MAX_DEFAULT_PROBE_TIMEOUT));
        let dns_timeout = args.dns_timeout;
        let port = args.port;
        let probe_kind = args.probe.kind;
        let tcp_port = args.probe.port.unwrap_or(port);
        let concurrency = args.concurrency;
        let hostfile = args.write_hostfile.clone().map(|path| HostfileSpec {
            path,
            format: args.hostfile_format,
            slots: args.slots,
        });

        let hosts_arg = non_empty(args.hosts.clone());
        let hosts_given = hosts_arg.is_some();
        let mut pod = PodView::new(&args, env);
        let PeerPlan {
            peers,
            self_index,
            self_target,
            job,
        } = match hosts_arg {
            Some(list) => {
                for (flag, present) in [
                    ("--peers", args.peers.is_some()),
                    ("--indices", args.indices.is_some()),
                    ("--template", args.template.is_some()),
                ] {
                    if present {
                        return Err(ConfigError::Conflict(format!(
                            "--hosts conflicts with {flag}: give either explicit hosts or an indexed Job"
                        )));
                    }
                }
                let peers = peers::parse_hosts_list(&list)?;
                let job = non_empty(args.job.clone()).unwrap_or_else(|| "peergate".into());
                PeerPlan {
                    peers,
                    self_index: pod.optional_index()?,
                    self_target: None,
                    job,
                }
            }
            None => Self::indexed(&args, &mut pod)?,
        };

        let needs_dns = peers.iter().any(|p| matches!(p.target, Target::Name(_)));
        let dns = if needs_dns {
            let conf = pod.resolv()?.clone();
            Some(DnsSettings {
                family: pod.family()?,
                nameservers: conf.nameservers,
                search: conf.search,
                ndots: conf.ndots,
                timeout: dns_timeout,
            })
        } else {
            None
        };

        let mut peers = peers;
        let barrier = match args.mode {
            Mode::Ping => None,
            Mode::Barrier => {
                let token = non_empty(args.token.clone()).unwrap_or_default();
                if token.len() > crate::barrier::proto::MAX_TOKEN {
                    return Err(ConfigError::Other(format!(
                        "invalid --token: {} bytes is longer than the {} allowed",
                        token.len(),
                        crate::barrier::proto::MAX_TOKEN
                    )));
                }
                if job.is_empty() || job.len() > crate::barrier::proto::MAX_JOB {
                    return Err(ConfigError::Other(format!(
                        "invalid --job for the barrier: `{job}` must be 1 to {} bytes",
                        crate::barrier::proto::MAX_JOB
                    )));
                }
                if self_index.is_none() {
                    return Err(ConfigError::Other(
                        "--mode barrier needs this pod's index (JOB_COMPLETION_INDEX or --index; \
                         with --hosts, the position of this instance in the list)"
                            .into(),
                    ));
                }
                // With --hosts, a peer's index is its position in the list.
                for (pos, peer) in peers.iter_mut().enumerate() {
                    peer.index.get_or_insert(pos as u32);
                }
                if let Some(i) = self_index
                    && !peers.iter().any(|p| p.index == Some(i))
                    && hosts_given
                {
                    return Err(ConfigError::Index(format!(
                        "--index {i} is not a position in --hosts (0..{})",
                        peers.len()
                    )));
                }
                Some(BarrierSettings { port, token, job })
            }
        };
        let self_addrs = pod.self_addrs();
        let warnings = pod.warnings();

        Ok(Config {
            peers,
            self_index,
            self_target,
            self_addrs,
            mode: args.mode,
            probe: ProbeSettings {
                kind: probe_kind,
                tcp_port,
                timeout: probe_timeout,
            },
            dns,
            interval,
            deadline,
            concurrency,
            barrier,
            hostfile,
            command: args.command,
            warnings,
        })
    }

    /// Peers of an indexed Job: `--peers`/`--indices` with a template.
    fn indexed(args: &Args, pod: &mut PodView<'_>) -> Result<PeerPlan, ConfigError> {
        let count = args.peers;
        let subset = args.indices.as_ref().map(|list| &list.0);
        let indices: Vec<u32> = match (count, &subset) {
            (None, None) => {
                return Err(ConfigError::Conflict(
                    "no peers given: pass --peers N (the Job's completions), --indices, or --hosts"
                        .into(),
                ));
            }
            (Some(n), None) => (0..n).collect(),
            (None, Some(list)) => list.to_vec(),
            (Some(n), Some(list)) => {
                if let Some(bad) = list.iter().find(|&&i| i >= n) {
                    return Err(ConfigError::Indices(format!(
                        "index {bad} is not below --peers {n}"
                    )));
                }
                list.to_vec()
            }
        };

        let self_index = pod.optional_index()?;
        if let (Some(i), Some(n)) = (self_index, count)
            && i >= n
        {
            return Err(ConfigError::Index(format!(
                "this pod's index {i} is not below --peers {n}: --peers is the Job's \
                 completions count, this pod included"
            )));
        }
        let custom = match non_empty(args.template.clone()) {
            Some(t) => Some(Template::parse(&t)?),
            None => None,
        };
        let (need_job, need_service) = match &custom {
            Some(t) => (
                t.placeholders().any(|p| p == peers::Placeholder::Job),
                t.placeholders().any(|p| p == peers::Placeholder::Subdomain),
            ),
            None => (true, true),
        };
        let vars = pod.template_vars(need_job, need_service)?;
        let template = match custom {
            Some(t) => t,
            None => peers::default_template(&vars)?,
        };
        let peers = peers::indexed_peers(&indices, &template, &vars)?;
        let self_target = match self_index {
            Some(i) => Some(Target::Name(template.render(i, &vars)?)),
            None => None,
        };
        let job = vars
            .job
            .clone()
            .or_else(|| pod.job().ok())
            .unwrap_or_else(|| "peergate".into());
        Ok(PeerPlan {
            peers,
            self_index,
            self_target,
            job,
        })
    }
}

/// The peers and what they say about this pod.
struct PeerPlan {
    peers: Vec<Peer>,
    self_index: Option<u32>,
    self_target: Option<Target>,
    job: String,
}

/// Lazily derived facts about this pod: files are read only when a value
/// that needs them is asked for, so standalone use needs no kubelet files.
struct PodView<'a> {
    args: &'a Args,
    env: &'a dyn Environment,
    hosts_info: Option<Option<PodHostsInfo>>,
    resolv: Option<ResolvConf>,
}

impl<'a> PodView<'a> {
    fn new(args: &'a Args, env: &'a dyn Environment) -> Self {
        Self {
            args,
            env,
            hosts_info: None,
            resolv: None,
        }
    }

    fn optional_index(&self) -> Result<Option<u32>, ConfigError> {
        if let Some(i) = self.args.index {
            return Ok(Some(i));
        }
        match self.env.var("JOB_COMPLETION_INDEX") {
            Some(text) => identity::completion_index(&text)
                .map(Some)
                .map_err(|reason| {
                    ConfigError::Index(format!("JOB_COMPLETION_INDEX={text:?} is {reason}"))
                }),
            None => Ok(None),
        }
    }

    fn index(&self) -> Result<u32, ConfigError> {
        self.optional_index()?.ok_or(ConfigError::MissingIndex)
    }

    fn hostname(&self) -> Result<String, ConfigError> {
        non_empty(self.args.hostname.clone())
            .or_else(|| self.env.hostname())
            .ok_or_else(|| ConfigError::Unknown {
                what: "this pod's hostname",
                hint: "the kernel reports none; pass --hostname".into(),
            })
    }

    fn job(&self) -> Result<String, ConfigError> {
        if let Some(job) = non_empty(self.args.job.clone()) {
            return Ok(job);
        }
        let index = self.index()?;
        identity::job_from_hostname(&self.hostname()?, index)
    }

    /// The kubelet's lines for this pod. `required` makes an unreadable or
    /// malformed file an error; otherwise it only means "nothing known".
    fn hosts_info(&mut self, required: bool) -> Result<Option<PodHostsInfo>, ConfigError> {
        if let Some(info) = &self.hosts_info {
            return Ok(info.clone());
        }
        let hostname = match self.hostname() {
            Ok(h) => h,
            Err(e) if required => return Err(e),
            Err(_) => return Ok(None),
        };
        let info = match read_parsed(self.env, &self.args.hosts_file, hosts_file::parse_hosts) {
            Ok(entries) => hosts_file::pod_hosts_info(&entries, &hostname),
            Err(e) if required => return Err(e),
            Err(_) => None,
        };
        self.hosts_info = Some(info.clone());
        Ok(info)
    }

    fn resolv(&mut self) -> Result<&ResolvConf, ConfigError> {
        if self.resolv.is_none() {
            let path = self.args.resolv_conf.clone();
            let text = self
                .env
                .read_file(&path)
                .map_err(|source| ConfigError::ReadFile { path, source })?;
            self.resolv = Some(resolv_conf::parse(&text));
        }
        Ok(self.resolv.as_ref().expect("just set"))
    }

    /// One line for what was ignored in the files read so far.
    fn warnings(&self) -> Vec<String> {
        match &self.resolv {
            Some(conf) if !conf.notes.is_empty() => vec![format!(
                "{}: ignored what glibc ignores: {}",
                self.args.resolv_conf.display(),
                conf.notes.join("; ")
            )],
            _ => Vec::new(),
        }
    }

    /// Placeholder values: flags first, then the kubelet hosts line, then
    /// the resolv.conf search list. Only what the template needs must be
    /// derivable; other parts stay unknown when their sources are missing.
    fn template_vars(
        &mut self,
        need_job: bool,
        need_service: bool,
    ) -> Result<TemplateVars, ConfigError> {
        let job = if need_job {
            Some(self.job()?)
        } else {
            non_empty(self.args.job.clone())
        };
        let mut vars = TemplateVars {
            job,
            subdomain: non_empty(self.args.subdomain.clone()),
            namespace: non_empty(self.args.namespace.clone()),
            zone: non_empty(self.args.cluster_domain.clone()),
        };
        if vars.subdomain.is_none() || vars.namespace.is_none() || vars.zone.is_none() {
            let required = need_service && vars.subdomain.is_none();
            if let Some(info) = self.hosts_info(required)? {
                vars.subdomain = vars.subdomain.or(info.subdomain);
                vars.namespace = vars.namespace.or(info.namespace);
                vars.zone = vars.zone.or(info.zone);
            }
        }
        if vars.namespace.is_none() || vars.zone.is_none() {
            // An unreadable resolv.conf is reported where DNS needs it.
            if let Some((ns, zone)) = self
                .resolv()
                .ok()
                .and_then(|conf| resolv_conf::namespace_zone_from_search(&conf.search))
            {
                vars.namespace = vars.namespace.or(Some(ns));
                vars.zone = vars.zone.or(Some(zone));
            }
        }
        Ok(vars)
    }

    /// This pod's addresses from the hosts file, if it lists them.
    fn self_addrs(&mut self) -> Vec<IpAddr> {
        self.hosts_info(false)
            .ok()
            .flatten()
            .map(|i| i.addrs)
            .unwrap_or_default()
    }

    /// The families to resolve: explicit, or those of the pod's own
    /// addresses (a single-stack pod cannot reach the other family anyway,
    /// and asking for it doubles the DNS load).
    fn family(&mut self) -> Result<Family, ConfigError> {
        Ok(match self.args.ip_family {
            IpFamily::Ipv4 => Family::V4,
            IpFamily::Ipv6 => Family::V6,
            IpFamily::Dual => Family::Dual,
            IpFamily::Auto => {
                let addrs = self.hosts_info(false)?.map(|i| i.addrs).unwrap_or_default();
                let v4 = addrs.iter().any(IpAddr::is_ipv4);
                let v6 = addrs.iter().any(IpAddr::is_ipv6);
                match (v4, v6) {
                    (true, false) => Family::V4,
                    (false, true) => Family::V6,
                    _ => Family::Dual,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
        let args = crate::cli::parse_from(std::iter::once("peergate").chain(args.iter().copied()))
            .expect("valid arguments");
        Config::build(args, env)
    }

    fn names(config: &Config) -> Vec<String> {
        config.peers.iter().map(|p| p.display_name()).collect()
    }

    #[test]
    fn zero_configuration_in_an_indexed_job_pod() {
        let config = build(&pod(HOSTS), &["--peers", "3"]).unwrap();
        assert_eq!(
            config.peers[0].target,
            Target::Name("example-job-0.headless-svc.team-a.svc.k8s.local.".into())
        );
        assert_eq!(config.peers.len(), 3);
        assert_eq!(config.self_index, Some(2));
        assert_eq!(config.self_target, Some(config.peers[2].target.clone()));
        let dns = config.dns.unwrap();
        assert_eq!(dns.family, Family::V4, "single-stack pod: A records only");
        assert_eq!(dns.ndots, 5);
        assert_eq!(config.interval, Duration::from_secs(1));
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
        // --job given: the index is still known, but this pod is not among the peers.
        assert_eq!(config.self_index, Some(2));
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
                .peers
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
        assert_eq!(config.self_index, None);
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
        assert_eq!((c.probe.kind, c.probe.tcp_port), (ProbeKind::Tcp, 8080));
        let c = build(
            &pod(HOSTS),
            &["--peers", "3", "--probe", "tcp", "--port", "9000"],
        )
        .unwrap();
        assert_eq!(c.probe.tcp_port, 9000);
        let c = build(&pod(HOSTS), &["--peers", "3", "--interval", "5s"]).unwrap();
        assert_eq!(
            c.probe.timeout,
            Duration::from_secs(2),
            "default probe timeout is capped"
        );
        let c = build(
            &pod(HOSTS),
            &["--peers", "3", "--interval", "300ms", "--timeout", "never"],
        )
        .unwrap();
        assert_eq!(c.probe.timeout, Duration::from_millis(300));
        assert_eq!(c.deadline, None);
    }
}

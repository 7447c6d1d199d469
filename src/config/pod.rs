//! What this pod is, derived lazily from flags, variables and the kubelet's
//! files: a file is read only when a value that needs it is asked for, so
//! standalone use needs no kubelet files. A file named explicitly
//! (`--hosts-file`, `--resolv-conf`) must be readable either way.

use std::cell::OnceCell;
use std::net::IpAddr;
use std::path::Path;

use super::env::Environment;
use crate::addrconfig;
use crate::cli::{Args, IpFamily};
use crate::error::ConfigError;
use crate::hosts_file::{self, HostsEntry, PodHostsInfo};
use crate::identity;
use crate::peers::{self, TemplateVars};
use crate::resolv_conf::{self, ResolvConf};
use crate::values::Family;

pub(super) struct PodView<'a> {
    args: &'a Args,
    env: &'a dyn Environment,
    /// The kernel's hostname, read once.
    kernel_hostname: OnceCell<Option<String>>,
    hosts_entries: Option<Vec<HostsEntry>>,
    hosts_info: Option<Option<PodHostsInfo>>,
    resolv: Option<ResolvConf>,
}

/// A trimmed, non-empty value (an empty variable counts as unset).
pub(super) fn non_empty(value: Option<&String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl<'a> PodView<'a> {
    pub(super) fn new(args: &'a Args, env: &'a dyn Environment) -> Self {
        Self {
            args,
            env,
            kernel_hostname: OnceCell::new(),
            hosts_entries: None,
            hosts_info: None,
            resolv: None,
        }
    }

    /// Reads the files the user named explicitly: a typo in a path must not
    /// pass unnoticed just because the run happens not to need the file.
    pub(super) fn check_given_files(&mut self) -> Result<(), ConfigError> {
        if self.args.given("hosts_file") {
            self.hosts_entries()?;
        }
        if self.args.given("resolv_conf") {
            self.resolv()?;
        }
        Ok(())
    }

    /// This pod's completion index: `--index`, else `JOB_COMPLETION_INDEX`.
    pub(super) fn optional_index(&self) -> Result<Option<u32>, ConfigError> {
        if let Some(i) = self.args.index {
            return Ok(Some(i));
        }
        match self.env.var("JOB_COMPLETION_INDEX") {
            Some(text) => identity::completion_index(&text)
                .map(Some)
                .map_err(|reason| ConfigError::value("JOB_COMPLETION_INDEX", &text, reason)),
            None => Ok(None),
        }
    }

    fn index(&self) -> Result<u32, ConfigError> {
        self.optional_index()?.ok_or(ConfigError::MissingIndex)
    }

    pub(super) fn hostname(&self) -> Result<String, ConfigError> {
        non_empty(self.args.hostname.as_ref())
            .or_else(|| {
                self.kernel_hostname
                    .get_or_init(|| self.env.hostname())
                    .clone()
            })
            .ok_or_else(|| ConfigError::Unknown {
                what: "this pod's hostname",
                hint: "the kernel reports none; pass --hostname".into(),
            })
    }

    /// The Job name: `--job`, else the hostname without `-<index>`. Either
    /// way a DNS label, since peer names are built from it.
    pub(super) fn job(&self) -> Result<String, ConfigError> {
        if let Some(job) = self.label_flag("job", self.args.job.as_ref())? {
            return Ok(job);
        }
        let index = self.index()?;
        let hostname = self.hostname()?;
        let job = identity::job_from_hostname(&hostname, index)?;
        peers::validate_label(&job).map_err(|reason| {
            ConfigError::Hostname(format!(
                "the Job name `{job}` taken from hostname `{hostname}` is not a DNS label \
                 ({reason}); pass --job"
            ))
        })?;
        Ok(job)
    }

    /// A flag that must be one DNS label (a Job, Service or namespace name).
    fn label_flag(&self, id: &str, value: Option<&String>) -> Result<Option<String>, ConfigError> {
        let Some(value) = non_empty(value) else {
            return Ok(None);
        };
        peers::validate_label(&value)
            .map_err(|reason| ConfigError::value(self.args.name(id), &value, reason))?;
        Ok(Some(value))
    }

    /// `--cluster-domain`: a DNS name; a trailing dot is dropped (the
    /// templates add their own).
    fn zone_flag(&self) -> Result<Option<String>, ConfigError> {
        let Some(value) = non_empty(self.args.naming.cluster_domain.as_ref()) else {
            return Ok(None);
        };
        let zone = value.strip_suffix('.').unwrap_or(&value);
        peers::validate_dns_name(zone).map_err(|reason| {
            ConfigError::value(self.args.name("cluster_domain"), &value, reason)
        })?;
        Ok(Some(zone.to_owned()))
    }

    /// Reads one of the pod's files, naming it in the error.
    fn read(&self, path: &Path) -> Result<String, ConfigError> {
        self.env
            .read_file(path)
            .map_err(|source| ConfigError::ReadFile {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The hosts file, read and parsed once.
    fn hosts_entries(&mut self) -> Result<&[HostsEntry], ConfigError> {
        if self.hosts_entries.is_none() {
            let path = &self.args.hosts_file;
            let text = self.read(path)?;
            let entries =
                hosts_file::parse_hosts(&text).map_err(|reason| ConfigError::Malformed {
                    path: path.clone(),
                    reason,
                })?;
            self.hosts_entries = Some(entries);
        }
        Ok(self.hosts_entries.as_deref().expect("just set"))
    }

    /// The kubelet's lines for this pod. `required` makes an unknown
    /// hostname or an unreadable or malformed file an error; otherwise they
    /// only mean "nothing known".
    pub(super) fn hosts_info(
        &mut self,
        required: bool,
    ) -> Result<Option<PodHostsInfo>, ConfigError> {
        if let Some(info) = &self.hosts_info {
            return Ok(info.clone());
        }
        let hostname = match self.hostname() {
            Ok(h) => h,
            Err(e) if required => return Err(e),
            Err(_) => return Ok(None),
        };
        let info = match self.hosts_entries() {
            Ok(entries) => hosts_file::pod_hosts_info(entries, &hostname),
            Err(e) if required => return Err(e),
            Err(_) => None,
        };
        self.hosts_info = Some(info.clone());
        Ok(info)
    }

    /// resolv.conf, read and parsed once.
    pub(super) fn resolv(&mut self) -> Result<&ResolvConf, ConfigError> {
        if self.resolv.is_none() {
            let text = self.read(&self.args.resolv_conf)?;
            self.resolv = Some(resolv_conf::parse(&text));
        }
        Ok(self.resolv.as_ref().expect("just set"))
    }

    /// One line for what was ignored in the files read so far.
    pub(super) fn warnings(&self) -> Vec<String> {
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
    pub(super) fn template_vars(
        &mut self,
        need_job: bool,
        need_service: bool,
    ) -> Result<TemplateVars, ConfigError> {
        let job = if need_job {
            Some(self.job()?)
        } else {
            self.label_flag("job", self.args.job.as_ref())?
        };
        let mut vars = TemplateVars {
            job,
            subdomain: self.label_flag("subdomain", self.args.naming.subdomain.as_ref())?,
            namespace: self.label_flag("namespace", self.args.naming.namespace.as_ref())?,
            zone: self.zone_flag()?,
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
    pub(super) fn self_addrs(&mut self) -> Vec<IpAddr> {
        self.hosts_info(false)
            .ok()
            .flatten()
            .map(|i| i.addrs)
            .unwrap_or_default()
    }

    /// The families to resolve: explicit, else those of the pod's own
    /// addresses in the kubelet's hosts line, else those the host has
    /// addresses for ([`addrconfig`]), else both. A single-stack pod cannot
    /// reach the other family anyway, and asking for it doubles the DNS load.
    pub(super) fn family(&mut self) -> Result<Family, ConfigError> {
        let from = |v4: bool, v6: bool| match (v4, v6) {
            (true, false) => Some(Family::V4),
            (false, true) => Some(Family::V6),
            (true, true) => Some(Family::Dual),
            (false, false) => None,
        };
        Ok(match self.args.ip_family {
            IpFamily::Ipv4 => Family::V4,
            IpFamily::Ipv6 => Family::V6,
            IpFamily::Dual => Family::Dual,
            IpFamily::Auto => {
                let addrs = self.hosts_info(false)?.map(|i| i.addrs).unwrap_or_default();
                from(
                    addrs.iter().any(IpAddr::is_ipv4),
                    addrs.iter().any(IpAddr::is_ipv6),
                )
                .or_else(|| {
                    let read = |path: &str| self.env.read_file(Path::new(path)).ok();
                    let host = addrconfig::host_families(
                        read(addrconfig::ROUTE).as_deref(),
                        read(addrconfig::IF_INET6).as_deref(),
                    )?;
                    from(host.v4, host.v6)
                })
                .unwrap_or(Family::Dual)
            }
        })
    }
}

//! Who this pod is: parsers for the files and variables the kubelet and the
//! Job controller give every Indexed Job pod, and the derivation of the
//! pod's identity from them.
//!
//! Everything here is a pure function over text so it can be tested with
//! the exact layouts real pods see; reading the files is the caller's job.

use std::net::IpAddr;

use crate::error::ConfigError;

/// One non-comment line of a hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    pub addr: IpAddr,
    pub names: Vec<String>,
}

/// Parses hosts(5) text. Comments (`#` to end of line) and blank lines are
/// ignored, fields are separated by any run of spaces or tabs. A line whose
/// first field is not an IP address is an error: the file is malformed and
/// silently skipping it could hide the pod's own line.
pub fn parse_hosts(text: &str) -> Result<Vec<HostsEntry>, String> {
    let mut entries = Vec::new();
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        // Zone-scoped IPv6 literals (fe80::1%eth0) appear in some files; the
        // scope is irrelevant to us, the address is what counts.
        let addr_text = first.split('%').next().unwrap_or(first);
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("line {}: `{first}` is not an IP address", lineno + 1))?;
        let names: Vec<String> = fields.map(str::to_owned).collect();
        if names.is_empty() {
            return Err(format!(
                "line {}: address {addr} has no host name",
                lineno + 1
            ));
        }
        entries.push(HostsEntry { addr, names });
    }
    Ok(entries)
}

/// What the kubelet's line for this pod tells us. The kubelet writes, for a
/// pod with `hostname` and `subdomain` set:
/// `IP<TAB><host>.<subdomain>.<namespace>.svc.<zone><TAB><host>`, one line per
/// pod IP (two on dual-stack pods).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodHostsInfo {
    /// The pod's own addresses, in file order.
    pub addrs: Vec<IpAddr>,
    pub subdomain: Option<String>,
    pub namespace: Option<String>,
    pub zone: Option<String>,
}

/// Finds the pod's own lines in parsed hosts entries. Returns `None` when no
/// line names `hostname` at all.
pub fn pod_hosts_info(entries: &[HostsEntry], hostname: &str) -> Option<PodHostsInfo> {
    let mut info = PodHostsInfo::default();
    let mut found = false;
    let prefix = format!("{hostname}.");
    for entry in entries {
        let mentions_self = entry
            .names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(hostname) || starts_with_ignore_case(n, &prefix));
        if !mentions_self || entry.addr.is_loopback() {
            continue;
        }
        found = true;
        if !info.addrs.contains(&entry.addr) {
            info.addrs.push(entry.addr);
        }
        if info.subdomain.is_some() {
            continue;
        }
        for name in &entry.names {
            if !starts_with_ignore_case(name, &prefix) {
                continue;
            }
            let rest = name[prefix.len()..].trim_end_matches('.');
            if let Some((svc, ns, zone)) = split_service_fqdn(rest) {
                info.subdomain = Some(svc.to_owned());
                info.namespace = Some(ns.to_owned());
                info.zone = Some(zone.to_owned());
                break;
            }
        }
    }
    found.then_some(info)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Splits `<svc>.<ns>.svc.<zone>` into its parts.
fn split_service_fqdn(rest: &str) -> Option<(&str, &str, &str)> {
    let (svc, rest) = rest.split_once('.')?;
    let (ns, rest) = rest.split_once('.')?;
    let (marker, zone) = rest.split_once('.')?;
    (marker == "svc" && !svc.is_empty() && !ns.is_empty() && !zone.is_empty())
        .then_some((svc, ns, zone))
}

/// The parts of resolv.conf(5) that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    /// `options timeout:N` (seconds), when present.
    pub timeout_secs: Option<u64>,
    /// `options attempts:N`, when present.
    pub attempts: Option<usize>,
}

impl Default for ResolvConf {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout_secs: None,
            attempts: None,
        }
    }
}

/// Parses resolv.conf text with glibc's rules where they matter: comments
/// start with `#` or `;`, the last `search` or `domain` line wins, unknown
/// keywords and options are ignored, `ndots` is capped at 15.
pub fn parse_resolv_conf(text: &str) -> Result<ResolvConf, String> {
    let mut conf = ResolvConf::default();
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_ascii_whitespace();
        let Some(keyword) = fields.next() else {
            continue;
        };
        match keyword {
            "nameserver" => {
                let value = fields
                    .next()
                    .ok_or_else(|| format!("line {}: nameserver without an address", lineno + 1))?;
                let addr_text = value.split('%').next().unwrap_or(value);
                let addr: IpAddr = addr_text.parse().map_err(|_| {
                    format!(
                        "line {}: nameserver `{value}` is not an IP address",
                        lineno + 1
                    )
                })?;
                conf.nameservers.push(addr);
            }
            "search" => {
                conf.search = fields.map(|d| d.trim_end_matches('.').to_owned()).collect();
            }
            "domain" => {
                conf.search = fields
                    .next()
                    .map(|d| vec![d.trim_end_matches('.').to_owned()])
                    .unwrap_or_default();
            }
            "options" => {
                for opt in fields {
                    let (name, value) = opt.split_once(':').unwrap_or((opt, ""));
                    let number = || {
                        value.parse::<u64>().map_err(|_| {
                            format!("line {}: option `{opt}` needs a number", lineno + 1)
                        })
                    };
                    match name {
                        "ndots" => conf.ndots = number()?.min(15) as usize,
                        "timeout" => conf.timeout_secs = Some(number()?),
                        "attempts" => conf.attempts = Some(number()? as usize),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(conf)
}

/// Namespace and cluster zone from a ClusterFirst search list, whose first
/// entry the kubelet writes as `<ns>.svc.<zone>`.
pub fn namespace_zone_from_search(search: &[String]) -> Option<(String, String)> {
    let first = search.first()?;
    let (ns, rest) = first.split_once('.')?;
    let zone = rest.strip_prefix("svc.")?;
    (!ns.is_empty() && !zone.is_empty()).then(|| (ns.to_owned(), zone.to_owned()))
}

/// Parses a completion index as the Job controller writes it: a plain
/// non-negative decimal.
pub fn parse_index(source: &str, text: &str) -> Result<u32, ConfigError> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(ConfigError::Index(format!(
            "{source}={text:?} is negative; a completion index is 0 or more"
        )));
    }
    trimmed.parse::<u32>().map_err(|_| {
        ConfigError::Index(format!(
            "{source}={text:?} is not a number; expected the pod's completion index, e.g. 0"
        ))
    })
}

/// The Job name from a pod hostname: the Job controller sets the hostname
/// to `<job>-<index>`.
pub fn job_from_hostname(hostname: &str, index: u32) -> Result<String, ConfigError> {
    let suffix = format!("-{index}");
    match hostname.strip_suffix(&suffix) {
        Some(job) if !job.is_empty() => Ok(job.to_owned()),
        _ => Err(ConfigError::Hostname(format!(
            "hostname `{hostname}` does not end in `-{index}` (JOB_COMPLETION_INDEX={index}); \
             is this an Indexed Job pod? Pass --job to name the Job explicitly"
        ))),
    }
}

/// Trims what the kernel or a file gives as hostname (trailing newline).
pub fn clean_hostname(raw: &str) -> Option<String> {
    let name = raw.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET_HOSTS: &str = "# Kubernetes-managed hosts file.\n\
127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
fe00::0\tip6-mcastprefix\n\
fe00::1\tip6-allnodes\n\
fe00::2\tip6-allrouters\n\
10.244.1.17\texample-job-1.headless-svc.default.svc.cluster.local\texample-job-1\n";

    #[test]
    fn kubelet_hosts_file_yields_service_namespace_zone() {
        let entries = parse_hosts(KUBELET_HOSTS).unwrap();
        assert_eq!(entries.len(), 7);
        let info = pod_hosts_info(&entries, "example-job-1").unwrap();
        assert_eq!(info.addrs, vec!["10.244.1.17".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.subdomain.as_deref(), Some("headless-svc"));
        assert_eq!(info.namespace.as_deref(), Some("default"));
        assert_eq!(info.zone.as_deref(), Some("cluster.local"));
    }

    #[test]
    fn dual_stack_pod_has_two_lines_and_both_addresses() {
        let text = format!(
            "{KUBELET_HOSTS}fd00:10:244:1::11\texample-job-1.headless-svc.default.svc.cluster.local\texample-job-1\n"
        );
        let entries = parse_hosts(&text).unwrap();
        let info = pod_hosts_info(&entries, "example-job-1").unwrap();
        assert_eq!(
            info.addrs,
            vec![
                "10.244.1.17".parse::<IpAddr>().unwrap(),
                "fd00:10:244:1::11".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(info.subdomain.as_deref(), Some("headless-svc"));
    }

    #[test]
    fn ipv6_only_pod_line() {
        let text = "::1 localhost\nfd00::5 web-0.svc-a.team-x.svc.corp.example web-0\n";
        let info = pod_hosts_info(&parse_hosts(text).unwrap(), "web-0").unwrap();
        assert_eq!(info.addrs, vec!["fd00::5".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.namespace.as_deref(), Some("team-x"));
        assert_eq!(info.zone.as_deref(), Some("corp.example"));
    }

    #[test]
    fn pod_without_subdomain_has_only_the_short_name() {
        let text = "127.0.0.1 localhost\n10.0.0.9\texample-job-0\n";
        let info = pod_hosts_info(&parse_hosts(text).unwrap(), "example-job-0").unwrap();
        assert_eq!(info.addrs.len(), 1);
        assert_eq!(info.subdomain, None);
    }

    #[test]
    fn comments_spaces_and_extra_aliases_are_handled() {
        let text = "  # leading comment\n\n10.1.2.3   a-0.s.n.svc.z   a-0   alias # trailing\n";
        let entries = parse_hosts(text).unwrap();
        assert_eq!(entries[0].names, vec!["a-0.s.n.svc.z", "a-0", "alias"]);
        let info = pod_hosts_info(&entries, "a-0").unwrap();
        assert_eq!(info.subdomain.as_deref(), Some("s"));
    }

    #[test]
    fn other_pods_lines_and_loopback_are_not_ours() {
        let text = "127.0.1.1 example-job-1\n10.0.0.2 example-job-10.svc.ns.svc.z example-job-10\n";
        assert_eq!(
            pod_hosts_info(&parse_hosts(text).unwrap(), "example-job-1"),
            None
        );
    }

    #[test]
    fn a_name_that_is_not_a_service_fqdn_gives_no_service() {
        let text = "10.0.0.2 h-0.example.com h-0\n";
        let info = pod_hosts_info(&parse_hosts(text).unwrap(), "h-0").unwrap();
        assert_eq!(info.subdomain, None);
    }

    #[test]
    fn malformed_hosts_lines_are_errors() {
        assert!(
            parse_hosts("not-an-ip host\n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            parse_hosts("10.0.0.1\n")
                .unwrap_err()
                .contains("no host name")
        );
        assert!(parse_hosts("fe80::1%eth0 link\n").is_ok());
    }

    #[test]
    fn kubelet_resolv_conf() {
        let text = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
nameserver 10.96.0.10\n\
options ndots:5\n";
        let conf = parse_resolv_conf(text).unwrap();
        assert_eq!(
            conf.nameservers,
            vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(conf.search.len(), 3);
        assert_eq!(conf.ndots, 5);
        assert_eq!(
            namespace_zone_from_search(&conf.search),
            Some(("default".into(), "cluster.local".into()))
        );
    }

    #[test]
    fn resolv_conf_rules() {
        let text = "# comment\n; other comment\nnameserver fd00::a\nnameserver 10.0.0.1 # x\n\
domain first.example\nsearch a.svc.z b.example.\noptions rotate ndots:20 timeout:2 attempts:3\n\
sortlist 10.0.0.0/8\n";
        let conf = parse_resolv_conf(text).unwrap();
        assert_eq!(conf.nameservers.len(), 2);
        assert_eq!(conf.search, vec!["a.svc.z", "b.example"]);
        assert_eq!(conf.ndots, 15);
        assert_eq!(conf.timeout_secs, Some(2));
        assert_eq!(conf.attempts, Some(3));
        assert!(parse_resolv_conf("nameserver\n").is_err());
        assert!(parse_resolv_conf("nameserver dns.example\n").is_err());
        assert!(parse_resolv_conf("options ndots:x\n").is_err());
        assert_eq!(parse_resolv_conf("").unwrap(), ResolvConf::default());
    }

    #[test]
    fn search_fallback_needs_svc_marker() {
        assert_eq!(namespace_zone_from_search(&["example.com".into()]), None);
        assert_eq!(namespace_zone_from_search(&[]), None);
        assert_eq!(
            namespace_zone_from_search(&["ns1.svc.k8s.corp".into()]),
            Some(("ns1".into(), "k8s.corp".into()))
        );
    }

    #[test]
    fn index_parsing() {
        assert_eq!(parse_index("JOB_COMPLETION_INDEX", "7").unwrap(), 7);
        assert_eq!(parse_index("JOB_COMPLETION_INDEX", " 0\n").unwrap(), 0);
        let neg = parse_index("JOB_COMPLETION_INDEX", "-1")
            .unwrap_err()
            .to_string();
        assert!(neg.contains("negative"), "{neg}");
        let nan = parse_index("JOB_COMPLETION_INDEX", "two")
            .unwrap_err()
            .to_string();
        assert!(nan.contains("not a number"), "{nan}");
        assert!(parse_index("X", "").is_err());
    }

    #[test]
    fn job_name_from_hostname() {
        assert_eq!(
            job_from_hostname("example-job-2", 2).unwrap(),
            "example-job"
        );
        assert_eq!(job_from_hostname("a-b-c-10", 10).unwrap(), "a-b-c");
        assert!(job_from_hostname("example-job-2", 3).is_err());
        assert!(job_from_hostname("-2", 2).is_err());
        assert!(job_from_hostname("job-12", 2).is_err());
        assert_eq!(clean_hostname("pod-1\n").as_deref(), Some("pod-1"));
        assert_eq!(clean_hostname("  \n"), None);
    }
}

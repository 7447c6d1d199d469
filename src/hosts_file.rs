//! The hosts file (hosts(5)) and what the kubelet's lines in it say about
//! this pod: its addresses, its headless Service, namespace and cluster zone.
//!
//! Pure functions over text, so they are tested with the exact layouts real
//! pods see; reading the file is the caller's job.

use std::net::IpAddr;

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
    /// `<host>.<subdomain>.<namespace>.svc.<zone>`: the name the cluster DNS
    /// publishes for this pod (no trailing dot).
    pub fqdn: Option<String>,
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
                info.fqdn = Some(name.trim_end_matches('.').to_owned());
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
        assert_eq!(
            info.fqdn.as_deref(),
            Some("example-job-1.headless-svc.default.svc.cluster.local")
        );
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
        assert_eq!(info.fqdn, None);
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
}

//! resolv.conf(5): the nameservers, search list and `ndots` the resolver
//! uses, read as leniently as glibc reads them.
//!
//! A pod whose resolv.conf glibc accepts resolves fine for the workload, so
//! peergate must not refuse it either. What glibc ignores (a nameserver that
//! is not an address, a fourth nameserver, an unknown keyword or option) is
//! ignored here too and reported once as a warning; `ndots` takes glibc's
//! `atoi` reading. Options peergate has flags for (`timeout`, `attempts`:
//! `--dns-timeout`, and the gate's own retry loop) are not taken from here.
//!
//! A pure function over text; reading the file is the caller's job.

use std::net::{IpAddr, Ipv4Addr};

/// glibc's MAXNS: later nameserver lines are ignored.
pub const MAX_NAMESERVERS: usize = 3;

/// glibc's RES_MAXNDOTS: a larger `ndots` is read as this.
pub const MAX_NDOTS: usize = 15;

/// What peergate takes from resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// At most [`MAX_NAMESERVERS`]; `127.0.0.1` when the file names none, as
    /// glibc does.
    pub nameservers: Vec<IpAddr>,
    /// From the last `search` or `domain` line, without trailing dots.
    pub search: Vec<String>,
    pub ndots: usize,
    /// What was ignored and why, one entry per item, e.g.
    /// `line 2: nameserver dns.example is not an IP address`.
    pub notes: Vec<String>,
}

/// Options glibc knows. They are accepted silently; unknown ones are ignored
/// with a note, as glibc ignores them.
const GLIBC_OPTIONS: &[&str] = &[
    "ndots",
    "timeout",
    "attempts",
    "debug",
    "rotate",
    "no-check-names",
    "inet6",
    "ip6-bytestring",
    "ip6-dotint",
    "no-ip6-dotint",
    "edns0",
    "single-request",
    "single-request-reopen",
    "no-tld-query",
    "use-vc",
    "no-reload",
    "trust-ad",
    "no-aaaa",
];

/// Parses resolv.conf text. Never fails: see the module documentation.
///
/// Comments start with `#` or `;`; keywords and values are separated by
/// spaces or tabs; the last `search` or `domain` line wins.
pub fn parse(text: &str) -> ResolvConf {
    let mut nameservers = Vec::new();
    let mut search = Vec::new();
    let mut ndots = 1;
    let mut notes = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        let line = raw.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_ascii_whitespace();
        let Some(keyword) = fields.next() else {
            continue;
        };
        match keyword {
            "nameserver" => match fields.next() {
                None => notes.push(format!("line {lineno}: nameserver without an address")),
                Some(value) => match parse_nameserver(value) {
                    None => notes.push(format!(
                        "line {lineno}: nameserver {value} is not an IP address"
                    )),
                    Some(_) if nameservers.len() == MAX_NAMESERVERS => notes.push(format!(
                        "line {lineno}: nameserver {value} is beyond the first {MAX_NAMESERVERS}"
                    )),
                    Some(addr) => nameservers.push(addr),
                },
            },
            "search" => search = fields.map(|d| d.trim_end_matches('.').to_owned()).collect(),
            "domain" => {
                search = fields
                    .next()
                    .map(|d| vec![d.trim_end_matches('.').to_owned()])
                    .unwrap_or_default()
            }
            "options" => {
                for opt in fields {
                    let (name, value) = match opt.split_once(':') {
                        Some((name, value)) => (name, Some(value)),
                        None => (opt, None),
                    };
                    if name == "ndots" {
                        let (n, clean) = atoi(value.unwrap_or(""));
                        ndots = n.min(MAX_NDOTS);
                        if !clean {
                            notes.push(format!(
                                "line {lineno}: option {opt} is not a number (read as ndots:{ndots}, as glibc does)"
                            ));
                        }
                    } else if !GLIBC_OPTIONS.contains(&name) {
                        notes.push(format!("line {lineno}: unknown option {opt}"));
                    }
                }
            }
            "sortlist" => {}
            other => notes.push(format!("line {lineno}: unknown keyword {other}")),
        }
    }
    if nameservers.is_empty() {
        nameservers.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        notes.push("no usable nameserver line, using 127.0.0.1 as glibc does".into());
    }
    ResolvConf {
        nameservers,
        search,
        ndots,
        notes,
    }
}

/// An address, optionally with an IPv6 zone (`fe80::1%eth0`), whose zone is
/// dropped.
fn parse_nameserver(value: &str) -> Option<IpAddr> {
    let addr = value.split('%').next().unwrap_or(value);
    addr.parse().ok()
}

/// C's `atoi` on a non-negative option value: the leading digits, 0 when
/// there are none. `clean` says the whole value was digits.
fn atoi(value: &str) -> (usize, bool) {
    let digits = value.len() - value.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let n = value[..digits]
        .parse::<usize>()
        .unwrap_or(if digits == 0 { 0 } else { usize::MAX });
    (n, digits > 0 && digits == value.len())
}

/// Namespace and cluster zone from a ClusterFirst search list, whose first
/// entry the kubelet writes as `<ns>.svc.<zone>`.
pub fn namespace_zone_from_search(search: &[String]) -> Option<(String, String)> {
    let first = search.first()?;
    let (ns, rest) = first.split_once('.')?;
    let zone = rest.strip_prefix("svc.")?;
    (!ns.is_empty() && !zone.is_empty()).then(|| (ns.to_owned(), zone.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn kubelet_resolv_conf() {
        let text = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
nameserver 10.96.0.10\n\
options ndots:5\n";
        let conf = parse(text);
        assert_eq!(conf.nameservers, vec![ip("10.96.0.10")]);
        assert_eq!(conf.search.len(), 3);
        assert_eq!(conf.ndots, 5);
        assert!(conf.notes.is_empty(), "{:?}", conf.notes);
        assert_eq!(
            namespace_zone_from_search(&conf.search),
            Some(("default".into(), "cluster.local".into()))
        );
    }

    #[test]
    fn comments_last_search_wins_and_glibc_options_pass_silently() {
        let text = "# comment\n; other comment\nnameserver fd00::a\nnameserver 10.0.0.1 # x\n\
domain first.example\nsearch a.svc.z b.example.\n\
options rotate ndots:20 timeout:2 attempts:3 edns0 trust-ad\nsortlist 10.0.0.0/8\n";
        let conf = parse(text);
        assert_eq!(conf.nameservers, vec![ip("fd00::a"), ip("10.0.0.1")]);
        assert_eq!(conf.search, vec!["a.svc.z", "b.example"]);
        assert_eq!(conf.ndots, MAX_NDOTS, "capped like glibc");
        assert!(conf.notes.is_empty(), "{:?}", conf.notes);
        let conf = parse("search a.example b.example\ndomain c.example\nnameserver ::1\n");
        assert_eq!(conf.search, vec!["c.example"], "domain after search wins");
        assert_eq!(
            parse("nameserver fe80::1%eth0\n").nameservers,
            vec![ip("fe80::1")]
        );
    }

    #[test]
    fn what_glibc_ignores_is_ignored_and_noted() {
        let text = "nameserver dns.example\nnameserver\nnameserver 10.0.0.1\n\
options ndots:x bogus timeout:2\nnameservers 10.0.0.9\n";
        let conf = parse(text);
        assert_eq!(conf.nameservers, vec![ip("10.0.0.1")]);
        assert_eq!(conf.ndots, 0, "glibc's atoi reads `x` as 0");
        assert_eq!(
            conf.notes,
            [
                "line 1: nameserver dns.example is not an IP address",
                "line 2: nameserver without an address",
                "line 4: option ndots:x is not a number (read as ndots:0, as glibc does)",
                "line 4: unknown option bogus",
                "line 5: unknown keyword nameservers",
            ]
        );
    }

    #[test]
    fn ndots_reads_leading_digits_like_atoi() {
        assert_eq!(parse("options ndots:3x\n").ndots, 3);
        assert_eq!(parse("options ndots:\n").ndots, 0);
        assert_eq!(parse("options ndots:99999999999999999999999\n").ndots, 15);
        assert_eq!(parse("options ndots:2\n").ndots, 2);
        assert_eq!(parse("").ndots, 1, "glibc's default");
    }

    #[test]
    fn at_most_three_nameservers_and_loopback_when_none() {
        let conf = parse(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n",
        );
        assert_eq!(conf.nameservers.len(), 3);
        assert_eq!(
            conf.notes,
            ["line 4: nameserver 10.0.0.4 is beyond the first 3"]
        );
        let empty = parse("");
        assert_eq!(empty.nameservers, vec![ip("127.0.0.1")]);
        assert_eq!(empty.notes.len(), 1);
        assert!(empty.search.is_empty());
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
}

//! Which peers to wait for and what they are called: index lists, name
//! templates and explicit host lists. Pure functions only.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use crate::error::ConfigError;

/// The largest `--peers` accepted. Kubernetes caps Indexed Jobs at 100000
/// completions; beyond that a typo is more likely than a real job.
pub const MAX_PEERS: u32 = 100_000;

/// How a peer is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A DNS name. A trailing dot makes it absolute (one query per attempt);
    /// without one the resolv.conf search list applies.
    Name(String),
    /// An address given literally: no resolution needed.
    Addr(IpAddr),
}

/// One peer to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub index: Option<u32>,
    pub target: Target,
}

impl Peer {
    /// The name shown in logs and written to hostfiles: the DNS name without
    /// its trailing dot, or the address.
    pub fn display_name(&self) -> String {
        match &self.target {
            Target::Name(n) => display_name(n).to_owned(),
            Target::Addr(a) => a.to_string(),
        }
    }
}

/// A peer's name as logs, hostfiles and the hand-off variables show it:
/// without the trailing dot of an absolute DNS name.
pub fn display_name(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_name())
    }
}

/// Parses `--peers N`: the number of pods in the Job, 1..=MAX_PEERS.
pub fn peer_count(text: &str) -> Result<u32, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_owned())?;
    if n == 0 {
        return Err("0 peers: a Job has at least one pod (--peers counts this pod too)".into());
    }
    if n > u64::from(MAX_PEERS) {
        return Err(format!(
            "more than the maximum of {MAX_PEERS} (the Kubernetes limit for Indexed Jobs)"
        ));
    }
    Ok(n as u32)
}

/// A parsed `--indices` list: sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexList(pub Vec<u32>);

/// Parses an index list such as `0`, `0-3,7` or `1, 4-5`.
pub fn index_list(text: &str) -> Result<IndexList, String> {
    let mut set = BTreeSet::new();
    if text.trim().is_empty() {
        return Err("empty list; expected e.g. `0` or `0-3,7`".into());
    }
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("empty entry".into());
        }
        let num = |s: &str| match s.trim() {
            "" => Err(format!("`{part}` is not an index or a range such as `0-3`")),
            n => n
                .parse::<u32>()
                .map_err(|_| format!("`{n}` is not a non-negative whole number")),
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("range `{part}` runs backwards"));
        }
        if hi >= MAX_PEERS {
            return Err(format!(
                "index {hi} is not below the maximum of {MAX_PEERS}"
            ));
        }
        set.extend(lo..=hi);
    }
    Ok(IndexList(set.into_iter().collect()))
}

/// A name template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Job,
    Index,
    Subdomain,
    Namespace,
    Zone,
}

impl Placeholder {
    pub const ALL: [(&'static str, Placeholder); 5] = [
        ("job", Placeholder::Job),
        ("index", Placeholder::Index),
        ("subdomain", Placeholder::Subdomain),
        ("namespace", Placeholder::Namespace),
        ("zone", Placeholder::Zone),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Hole(Placeholder),
}

/// Values the template placeholders take for this pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateVars {
    pub job: Option<String>,
    pub subdomain: Option<String>,
    pub namespace: Option<String>,
    pub zone: Option<String>,
}

impl Template {
    /// Parses `{name}` placeholders; `{{` and `}}` stand for literal braces.
    /// The error is the reason, without the template.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((pos, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(format!("unmatched `}}` at offset {pos}")),
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!(
                            "unterminated placeholder `{{{name}` at offset {pos}"
                        ));
                    }
                    let hole = Placeholder::ALL
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, p)| *p)
                        .ok_or_else(|| {
                            let known: Vec<String> = Placeholder::ALL
                                .iter()
                                .map(|(n, _)| format!("{{{n}}}"))
                                .collect();
                            format!(
                                "unknown placeholder `{{{name}}}`; known: {}",
                                known.join(" ")
                            )
                        })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Hole(hole));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if parts.is_empty() {
            return Err("empty template".into());
        }
        Ok(Self { parts })
    }

    /// The placeholders this template uses.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Hole(h) => Some(*h),
            Part::Text(_) => None,
        })
    }

    /// The template of the name's first label (the host name): the parts
    /// before the first literal dot.
    pub fn host_label(&self) -> Template {
        let mut parts = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => match t.split_once('.') {
                    Some((head, _)) => {
                        if !head.is_empty() {
                            parts.push(Part::Text(head.to_owned()));
                        }
                        break;
                    }
                    None => parts.push(part.clone()),
                },
                Part::Hole(_) => parts.push(part.clone()),
            }
        }
        Template { parts }
    }

    /// Whether the template names `{index}` (without it every index gets
    /// the same name).
    pub fn has_index(&self) -> bool {
        self.placeholders().any(|p| p == Placeholder::Index)
    }

    /// Renders the name for one index and checks it is a valid DNS name.
    /// The error is the reason, without the template.
    pub fn render(&self, index: u32, vars: &TemplateVars) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Hole(Placeholder::Index) => out.push_str(&index.to_string()),
                Part::Hole(h) => {
                    let value = match h {
                        Placeholder::Job => &vars.job,
                        Placeholder::Subdomain => &vars.subdomain,
                        Placeholder::Namespace => &vars.namespace,
                        Placeholder::Zone => &vars.zone,
                        Placeholder::Index => unreachable!("handled above"),
                    };
                    let value = value.as_deref().ok_or_else(|| {
                        format!(
                            "`{{{}}}` is used but its value is unknown (see --{})",
                            h.name(),
                            match h {
                                Placeholder::Zone => "cluster-domain",
                                other => other.name(),
                            }
                        )
                    })?;
                    out.push_str(value);
                }
            }
        }
        validate_dns_name(&out).map_err(|reason| format!("yields `{out}`: {reason}"))?;
        Ok(out)
    }
}

/// Checks a host name: 1-63 byte labels of letters, digits and hyphens (and
/// underscores, which some clusters use), not starting or ending with a
/// hyphen, 253 bytes in all; one trailing dot allowed.
pub fn validate_dns_name(name: &str) -> Result<(), String> {
    let body = name.strip_suffix('.').unwrap_or(name);
    if body.is_empty() {
        return Err("empty name".into());
    }
    if body.len() > 253 {
        return Err(format!(
            "{} bytes is longer than the 253 allowed",
            body.len()
        ));
    }
    for label in body.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row or a leading dot)".into());
        }
        validate_label(label)?;
    }
    Ok(())
}

/// Checks one DNS label (a Job, Service or namespace name, a host name's
/// first part): see [`validate_dns_name`].
pub fn validate_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty name".into());
    }
    if label.len() > 63 {
        return Err(format!("label `{label}` is longer than 63 bytes"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!("label `{label}` contains `{c}`"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label `{label}` starts or ends with a hyphen"));
    }
    Ok(())
}

/// The default template: the absolute name when the namespace and zone are
/// known (one DNS query per attempt), else the relative name that goes
/// through the resolv.conf search list, as the seed's loop does.
pub fn default_template(vars: &TemplateVars) -> Result<Template, ConfigError> {
    if vars.subdomain.is_none() {
        return Err(ConfigError::Unknown {
            what: "the headless Service (subdomain)",
            hint: "the hosts file has no `<host>.<service>.<namespace>.svc.<zone>` line for this \
                   pod; set `subdomain:` in the pod template to the Service name, or pass \
                   --subdomain (or --template, or --hosts)"
                .into(),
        });
    }
    let text = if vars.namespace.is_some() && vars.zone.is_some() {
        "{job}-{index}.{subdomain}.{namespace}.svc.{zone}."
    } else {
        "{job}-{index}.{subdomain}"
    };
    Template::parse(text).map_err(ConfigError::Other)
}

/// Builds the indexed peers. The error is the reason, without the template.
pub fn indexed_peers(
    indices: &[u32],
    template: &Template,
    vars: &TemplateVars,
) -> Result<Vec<Peer>, String> {
    indices
        .iter()
        .map(|&i| {
            Ok(Peer {
                index: Some(i),
                target: Target::Name(template.render(i, vars)?),
            })
        })
        .collect()
}

/// Parses `--hosts a,b,c`: names or IP literals (IPv6 optionally in
/// brackets). Order is kept; duplicates are rejected. The error is the
/// reason, without the list.
pub fn parse_hosts_list(text: &str) -> Result<Vec<Peer>, String> {
    let mut peers: Vec<Peer> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, raw) in text.split(',').enumerate() {
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(format!("entry {} is empty", n + 1));
        }
        let unbracketed = entry
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .unwrap_or(entry);
        let target = if let Ok(addr) = unbracketed.parse::<IpAddr>() {
            Target::Addr(addr)
        } else {
            validate_dns_name(entry).map_err(|reason| format!("`{entry}`: {reason}"))?;
            Target::Name(entry.to_owned())
        };
        let peer = Peer {
            index: None,
            target,
        };
        // One set lookup per entry: comparing each entry with every earlier
        // one was quadratic (at 1000 hosts, most of a run's CPU).
        if !seen.insert(peer.display_name().to_ascii_lowercase()) {
            return Err(format!("`{entry}` is listed twice"));
        }
        peers.push(peer);
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> TemplateVars {
        TemplateVars {
            job: Some("example-job".into()),
            subdomain: Some("headless-svc".into()),
            namespace: Some("default".into()),
            zone: Some("cluster.local".into()),
        }
    }

    #[test]
    fn peer_count_bounds() {
        assert_eq!(peer_count("3"), Ok(3));
        assert_eq!(peer_count("1"), Ok(1));
        assert!(peer_count("0").unwrap_err().starts_with("0 peers"));
        assert_eq!(peer_count("-1").unwrap_err(), "not a whole number");
        assert!(peer_count("x").is_err());
        assert!(peer_count("").is_err());
        assert_eq!(peer_count("100000"), Ok(MAX_PEERS));
        assert!(
            peer_count("100001")
                .unwrap_err()
                .contains("maximum of 100000")
        );
        assert!(peer_count("99999999999999999999999").is_err());
    }

    #[test]
    fn index_lists() {
        assert_eq!(index_list("0").unwrap().0, vec![0]);
        assert_eq!(index_list("0-3,7").unwrap().0, vec![0, 1, 2, 3, 7]);
        assert_eq!(index_list(" 5, 1-2 ,2").unwrap().0, vec![1, 2, 5]);
        assert_eq!(index_list("99999").unwrap().0, vec![99999]);
        for bad in ["", "1,,2", "a", "3-1", "1-", "-1", "1-2-3", "0,100000"] {
            assert!(index_list(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn default_template_is_absolute_when_all_parts_are_known() {
        let t = default_template(&vars()).unwrap();
        assert_eq!(
            t.render(2, &vars()).unwrap(),
            "example-job-2.headless-svc.default.svc.cluster.local."
        );
        let partial = TemplateVars {
            namespace: None,
            ..vars()
        };
        let t = default_template(&partial).unwrap();
        assert_eq!(t.render(0, &partial).unwrap(), "example-job-0.headless-svc");
        let none = TemplateVars {
            subdomain: None,
            ..vars()
        };
        assert!(
            default_template(&none)
                .unwrap_err()
                .to_string()
                .contains("subdomain")
        );
    }

    #[test]
    fn templates_for_other_naming_schemes() {
        let t = Template::parse("train-workers-0-{index}.train").unwrap();
        assert_eq!(t.render(3, &vars()).unwrap(), "train-workers-0-3.train");
        let t = Template::parse("{{x}}{index}").unwrap();
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            vec![Placeholder::Index]
        );
        // Literal braces are kept but make an invalid DNS name.
        assert!(
            t.render(1, &vars())
                .unwrap_err()
                .to_string()
                .contains("contains `{`")
        );
    }

    #[test]
    fn host_labels() {
        let label = |t: &str| {
            Template::parse(t)
                .unwrap()
                .host_label()
                .render(3, &vars())
                .unwrap()
        };
        assert_eq!(
            label("{job}-{index}.{subdomain}.{namespace}.svc.{zone}."),
            "example-job-3"
        );
        assert_eq!(label("train-workers-0-{index}.train"), "train-workers-0-3");
        assert_eq!(label("w{index}"), "w3");
        assert_eq!(label("{subdomain}-{index}.x"), "headless-svc-3");
        let placeholders = |t: &str| {
            Template::parse(t)
                .unwrap()
                .host_label()
                .placeholders()
                .collect::<Vec<_>>()
        };
        assert_eq!(placeholders("n-{index}.{zone}"), [Placeholder::Index]);
    }

    #[test]
    fn template_errors() {
        let e = Template::parse("{job}-{idx}").unwrap_err().to_string();
        assert!(e.contains("unknown placeholder `{idx}`"), "{e}");
        let e = Template::parse("{job}-{index").unwrap_err().to_string();
        assert!(e.contains("unterminated"), "{e}");
        assert!(
            Template::parse("a}b")
                .unwrap_err()
                .to_string()
                .contains("unmatched")
        );
        assert!(Template::parse("").is_err());
        let e = Template::parse("{job}_{index}..x")
            .unwrap()
            .render(1, &vars())
            .unwrap_err();
        assert!(e.to_string().contains("empty label"), "{e}");
        let t = Template::parse("{job}-{index}.{subdomain}").unwrap();
        let e = t
            .render(1, &TemplateVars::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`{job}` is used but its value is unknown"),
            "{e}"
        );
    }

    #[test]
    fn dns_name_rules() {
        assert!(validate_dns_name("a.b.c.").is_ok());
        assert!(validate_dns_name(&"a".repeat(63)).is_ok());
        assert!(validate_dns_name(&"a".repeat(64)).is_err());
        assert!(validate_dns_name(&["abc"; 64].join(".")).is_err());
        assert!(validate_dns_name("-a.b").is_err());
        assert!(validate_dns_name("a b").is_err());
        assert!(validate_dns_name(".").is_err());
        assert!(validate_label("example-job").is_ok());
        assert!(validate_label("a.b").unwrap_err().contains("contains `.`"));
        assert!(
            validate_label("Bad Job")
                .unwrap_err()
                .contains("contains ` `")
        );
        assert!(validate_label("").is_err());
    }

    #[test]
    fn indexed_peer_names() {
        let t = default_template(&vars()).unwrap();
        let peers = indexed_peers(&[0, 2], &t, &vars()).unwrap();
        assert_eq!(peers[1].index, Some(2));
        assert_eq!(
            peers[1].display_name(),
            "example-job-2.headless-svc.default.svc.cluster.local"
        );
    }

    #[test]
    fn host_lists() {
        let peers = parse_hosts_list("10.0.0.1, node-b.example ,[fd00::1],::2").unwrap();
        assert_eq!(peers.len(), 4);
        assert_eq!(peers[0].target, Target::Addr("10.0.0.1".parse().unwrap()));
        assert_eq!(peers[1].target, Target::Name("node-b.example".into()));
        assert_eq!(peers[2].target, Target::Addr("fd00::1".parse().unwrap()));
        assert!(
            parse_hosts_list("a,,b")
                .unwrap_err()
                .to_string()
                .contains("entry 2")
        );
        assert!(parse_hosts_list("").is_err());
        assert!(
            parse_hosts_list("a,A")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(parse_hosts_list("bad_host!").is_err());
        // Far apart, with a trailing dot, or an address written two ways:
        // still the same host.
        for twice in ["a.example,b,c,A.example.", "[fd00::1],x,fd00::1"] {
            let err = parse_hosts_list(twice).unwrap_err();
            assert!(err.contains("is listed twice"), "{twice}: {err}");
        }
        let many: Vec<String> = (0..2000).map(|i| format!("pod-{i}.svc")).collect();
        assert_eq!(parse_hosts_list(&many.join(",")).unwrap().len(), 2000);
    }
}

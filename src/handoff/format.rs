//! The hostfile formats and the hand-off environment variables.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;

use serde::Serialize;

use crate::outcome::{GateOutcome, PeerOutcome};
use crate::peers::display_name;
pub use crate::values::HostfileFormat;

/// Number of peers the gate waited for, self included when self is a peer.
pub const ENV_WORLD_SIZE: &str = "PEERGATE_WORLD_SIZE";
/// This pod's position in the peer list (0-based). Equals the completion
/// index with `--peers N`; unset when this pod is not one of the peers.
pub const ENV_RANK: &str = "PEERGATE_RANK";
/// Name of the peer with index 0, or of the first peer when no peer has
/// index 0 (`--hosts`, `--indices` without 0). Unset when there are no peers.
pub const ENV_COORDINATOR: &str = "PEERGATE_COORDINATOR";
/// The coordinator's address: the one that answered the probe, else the first
/// one resolved. Unset when the coordinator has no address.
pub const ENV_COORDINATOR_ADDR: &str = "PEERGATE_COORDINATOR_ADDR";
/// Every peer's name in peer order, separated by single spaces.
///
/// Deliberately not `PEERGATE_PEERS`: that variable is the environment form
/// of the `--peers` flag, so a list there would break a nested peergate.
pub const ENV_PEER_NAMES: &str = "PEERGATE_PEER_NAMES";
/// The round of a serving sidecar's hand-off (1, 2, ...); unset otherwise.
pub const ENV_ROUND: &str = "PEERGATE_ROUND";

/// Render the outcome in `format`. `slots` is used by `openmpi` and `mpich`
/// only and is written as given (the CLI validates it).
///
/// Every format lists the peers in the outcome's order and ends with a
/// newline (an empty peer list gives an empty `hosts`/`openmpi`/`mpich`
/// file).
pub fn render(format: HostfileFormat, outcome: &GateOutcome, slots: u32) -> String {
    match format {
        HostfileFormat::Hosts => render_hosts(outcome),
        HostfileFormat::Openmpi => render_lines(outcome, |name| format!("{name} slots={slots}")),
        HostfileFormat::Mpich => render_lines(outcome, |name| format!("{name}:{slots}")),
        HostfileFormat::Json => render_json(outcome),
        HostfileFormat::Env => render_env(outcome),
    }
}

/// The hand-off variables, in a fixed order: [`ENV_WORLD_SIZE`], [`ENV_RANK`],
/// [`ENV_COORDINATOR`], [`ENV_COORDINATOR_ADDR`], [`ENV_PEER_NAMES`], and
/// [`ENV_ROUND`] for a serving sidecar's hand-off.
/// Variables without a value are left out rather than set empty, so
/// `${PEERGATE_RANK:?}` or `set -u` catch them.
pub fn env_vars(outcome: &GateOutcome) -> Vec<(String, String)> {
    let mut vars = vec![(ENV_WORLD_SIZE.to_owned(), outcome.peers.len().to_string())];
    if let Some(rank) = rank(outcome) {
        vars.push((ENV_RANK.to_owned(), rank.to_string()));
    }
    if let Some(coordinator) = coordinator(outcome) {
        vars.push((
            ENV_COORDINATOR.to_owned(),
            display_name(&coordinator.name).to_owned(),
        ));
        if let Some(addr) = preferred_addrs(coordinator).first() {
            vars.push((ENV_COORDINATOR_ADDR.to_owned(), addr.to_string()));
        }
    }
    let names: Vec<&str> = outcome
        .peers
        .iter()
        .map(|p| display_name(&p.name))
        .collect();
    vars.push((ENV_PEER_NAMES.to_owned(), names.join(" ")));
    if let Some(round) = outcome.round {
        vars.push((ENV_ROUND.to_owned(), round.to_string()));
    }
    vars
}

/// This pod's position among the peers: the position of the peer whose index
/// is our own completion index.
fn rank(outcome: &GateOutcome) -> Option<usize> {
    let own = outcome.self_index?;
    outcome.peers.iter().position(|p| p.index == Some(own))
}

fn coordinator(outcome: &GateOutcome) -> Option<&PeerOutcome> {
    outcome
        .peers
        .iter()
        .find(|p| p.index == Some(0))
        .or_else(|| outcome.peers.first())
}

/// The peer's name parsed as an address, when it is an IP literal (IPv6 with
/// or without brackets).
fn ip_literal(name: &str) -> Option<IpAddr> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse().ok()
}

/// The peer's addresses, best first: an IP literal name is its own (only)
/// address; otherwise the address that answered the probe comes first, then
/// the rest in the resolver's order, without duplicates.
fn preferred_addrs(peer: &PeerOutcome) -> Vec<IpAddr> {
    if let Some(literal) = ip_literal(display_name(&peer.name)) {
        return vec![literal];
    }
    let mut addrs: Vec<IpAddr> = Vec::with_capacity(peer.addrs.len() + 1);
    for addr in peer.reachable_via.iter().chain(&peer.addrs) {
        if !addrs.contains(addr) {
            addrs.push(*addr);
        }
    }
    addrs
}

/// `/etc/hosts` lines. A peer named by an IP literal gets one line mapping
/// the literal to itself: a bare address line is not hosts(5) syntax, and
/// glibc answers reverse lookups from it with an empty name. A peer without
/// any address becomes a comment, so the file still accounts for every peer
/// and stays valid.
fn render_hosts(outcome: &GateOutcome) -> String {
    let mut out = String::new();
    for peer in &outcome.peers {
        let name = display_name(&peer.name);
        let addrs = preferred_addrs(peer);
        if addrs.is_empty() {
            let _ = writeln!(out, "# {name}: no address");
            continue;
        }
        let name = match ip_literal(name) {
            Some(literal) => literal.to_string(),
            None => name.to_owned(),
        };
        for addr in addrs {
            let _ = writeln!(out, "{addr}\t{name}");
        }
    }
    out
}

/// One line per peer built from its name (the MPI hostfiles). Peers without
/// an address are still listed: MPI resolves names itself.
fn render_lines(outcome: &GateOutcome, line: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    for peer in &outcome.peers {
        out.push_str(&line(display_name(&peer.name)));
        out.push('\n');
    }
    out
}

/// The JSON document, keys in this order:
///
/// - `self_index`: this pod's completion index, or `null`;
/// - `round`: a serving sidecar's round (only in its hand-off);
/// - `world_size`: the number of peers;
/// - `peers[]`: `index` (completion index or `null` for `--hosts` peers),
///   `name` (no trailing dot), `addresses` (every resolved address, resolver
///   order, as strings), `reachable_via` (the address that answered, or
///   `null`), `time_to_reachable_ms` (milliseconds from the gate's start until
///   the peer answered, or `null`).
#[derive(Serialize)]
struct JsonHostfile<'a> {
    self_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    round: Option<u32>,
    world_size: usize,
    peers: Vec<JsonPeer<'a>>,
}

#[derive(Serialize)]
struct JsonPeer<'a> {
    index: Option<u32>,
    name: &'a str,
    addresses: &'a [IpAddr],
    reachable_via: Option<IpAddr>,
    time_to_reachable_ms: Option<u64>,
}

/// The document, laid out by [`PeerLines`]: one peer per line.
fn render_json(outcome: &GateOutcome) -> String {
    let doc = JsonHostfile {
        self_index: outcome.self_index,
        round: outcome.round,
        world_size: outcome.peers.len(),
        peers: outcome
            .peers
            .iter()
            .map(|peer| JsonPeer {
                index: peer.index,
                name: display_name(&peer.name),
                addresses: &peer.addrs,
                reachable_via: peer.reachable_via,
                time_to_reachable_ms: peer
                    .elapsed
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
            .collect(),
    };
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PeerLines::default());
    doc.serialize(&mut serializer)
        .expect("strings, numbers and addresses always serialize");
    out.push(b'\n');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// A serde_json layout: the document and the peer list one item per line
/// (two-space indent), each peer on a single line with `: ` and `, `, so
/// the file reads well and `grep` finds a peer's whole record.
#[derive(Default)]
struct PeerLines {
    /// Nesting depth: 1 inside the document, 2 inside `peers`.
    depth: usize,
    /// Whether the container being closed holds a value.
    has_value: bool,
}

impl PeerLines {
    /// Containers this deep or shallower put one item per line.
    const LINE_DEPTH: usize = 2;

    fn open<W: ?Sized + io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    fn close<W: ?Sized + io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        let multiline = self.depth <= Self::LINE_DEPTH;
        self.depth -= 1;
        if multiline && self.has_value {
            w.write_all(b"\n")?;
            w.write_all(&b"  ".repeat(self.depth))?;
        }
        w.write_all(bracket)
    }

    fn item<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if self.depth <= Self::LINE_DEPTH {
            w.write_all(if first { b"\n" } else { b",\n" })?;
            w.write_all(&b"  ".repeat(self.depth))
        } else if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
}

impl serde_json::ser::Formatter for PeerLines {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Quote `value` for a POSIX shell: inside single quotes nothing is special
/// except the single quote itself, written as `'\''` (close, escaped quote,
/// reopen).
pub fn shell_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// A file for `. FILE` in any POSIX shell: one `export NAME='value'` line per
/// variable of [`env_vars`].
fn render_env(outcome: &GateOutcome) -> String {
    let mut out = String::from("# peergate hand-off: load with `. FILE` in a POSIX shell\n");
    for (name, value) in env_vars(outcome) {
        let _ = writeln!(out, "export {name}={}", shell_quote(&value));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::process::Command;
    use std::time::Duration;

    use super::*;
    use crate::handoff::test_dir::TestDir;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn peer(index: Option<u32>, name: &str, addrs: &[&str], via: Option<&str>) -> PeerOutcome {
        PeerOutcome {
            index,
            name: name.to_owned(),
            addrs: addrs.iter().map(|a| ip(a)).collect(),
            reachable_via: via.map(ip),
            elapsed: via.map(|_| Duration::from_millis(40 + 100 * u64::from(index.unwrap_or(0)))),
        }
    }

    fn fqdn(i: u32) -> String {
        format!("example-job-{i}.headless-svc.default.svc.cluster.local.")
    }

    /// Three pods of an Indexed Job, IPv4 only, seen from pod 1.
    fn ipv4_job() -> GateOutcome {
        GateOutcome {
            self_index: Some(1),
            round: None,
            peers: (0..3)
                .map(|i| {
                    let addr = format!("10.244.{i}.5");
                    peer(Some(i), &fqdn(i), &[&addr], Some(&addr))
                })
                .collect(),
        }
    }

    /// Three pods on a dual-stack cluster: the resolver returned AAAA first,
    /// pod 0 answered over IPv4, pod 1 over IPv6, pod 2 is IPv6 only.
    fn dual_stack_job() -> GateOutcome {
        GateOutcome {
            self_index: Some(2),
            round: None,
            peers: vec![
                peer(
                    Some(0),
                    &fqdn(0),
                    &["fd00:10:244::5", "10.244.0.5"],
                    Some("10.244.0.5"),
                ),
                peer(
                    Some(1),
                    &fqdn(1),
                    &["fd00:10:244:1::5", "10.244.1.5"],
                    Some("fd00:10:244:1::5"),
                ),
                peer(
                    Some(2),
                    &fqdn(2),
                    &["fd00:10:244:2::5"],
                    Some("fd00:10:244:2::5"),
                ),
            ],
        }
    }

    /// `--hosts` peers: an IPv4 literal, an IPv6 literal, a name that never
    /// resolved (the gate timed out), and a plain name.
    fn hosts_peers(self_index: Option<u32>) -> GateOutcome {
        GateOutcome {
            self_index,
            round: None,
            peers: vec![
                peer(
                    None,
                    "192.168.7.20",
                    &["192.168.7.20"],
                    Some("192.168.7.20"),
                ),
                peer(None, "fd00::0:7", &["fd00::7"], Some("fd00::7")),
                peer(None, "db.example.", &[], None),
                peer(
                    None,
                    "cache.example",
                    &["192.168.7.30"],
                    Some("192.168.7.30"),
                ),
            ],
        }
    }

    #[test]
    fn hosts_ipv4_one_line_per_peer_without_trailing_dot() {
        assert_eq!(
            render(HostfileFormat::Hosts, &ipv4_job(), 1),
            "10.244.0.5\texample-job-0.headless-svc.default.svc.cluster.local\n\
             10.244.1.5\texample-job-1.headless-svc.default.svc.cluster.local\n\
             10.244.2.5\texample-job-2.headless-svc.default.svc.cluster.local\n"
        );
    }

    #[test]
    fn hosts_dual_stack_writes_every_address_the_answering_one_first() {
        assert_eq!(
            render(HostfileFormat::Hosts, &dual_stack_job(), 1),
            "10.244.0.5\texample-job-0.headless-svc.default.svc.cluster.local\n\
             fd00:10:244::5\texample-job-0.headless-svc.default.svc.cluster.local\n\
             fd00:10:244:1::5\texample-job-1.headless-svc.default.svc.cluster.local\n\
             10.244.1.5\texample-job-1.headless-svc.default.svc.cluster.local\n\
             fd00:10:244:2::5\texample-job-2.headless-svc.default.svc.cluster.local\n"
        );
    }

    #[test]
    fn hosts_writes_no_address_twice_and_keeps_an_answering_address_missing_from_dns() {
        // Two pods answering for one name (a replacement pod), resolver
        // repeating itself, and a barrier hello from an address DNS no
        // longer returns.
        let outcome = GateOutcome {
            self_index: None,
            round: None,
            peers: vec![peer(
                Some(0),
                "job-0.svc",
                &["10.0.0.8", "10.0.0.9", "10.0.0.8"],
                Some("10.0.0.7"),
            )],
        };
        assert_eq!(
            render(HostfileFormat::Hosts, &outcome, 1),
            "10.0.0.7\tjob-0.svc\n10.0.0.8\tjob-0.svc\n10.0.0.9\tjob-0.svc\n"
        );
    }

    #[test]
    fn hosts_ip_literals_map_once_to_themselves_and_unresolved_names_are_comments() {
        assert_eq!(
            render(HostfileFormat::Hosts, &hosts_peers(None), 1),
            "192.168.7.20\t192.168.7.20\n\
             fd00::7\tfd00::7\n\
             # db.example: no address\n\
             192.168.7.30\tcache.example\n"
        );
        let bracketed = GateOutcome {
            self_index: None,
            round: None,
            peers: vec![peer(None, "[fd00::9]", &[], None)],
        };
        assert_eq!(
            render(HostfileFormat::Hosts, &bracketed, 1),
            "fd00::9\tfd00::9\n"
        );
    }

    #[test]
    fn openmpi_and_mpich_list_every_peer_by_name_with_slots() {
        let outcome = ipv4_job();
        assert_eq!(
            render(HostfileFormat::Openmpi, &outcome, 4),
            "example-job-0.headless-svc.default.svc.cluster.local slots=4\n\
             example-job-1.headless-svc.default.svc.cluster.local slots=4\n\
             example-job-2.headless-svc.default.svc.cluster.local slots=4\n"
        );
        assert_eq!(
            render(HostfileFormat::Mpich, &outcome, 2),
            "example-job-0.headless-svc.default.svc.cluster.local:2\n\
             example-job-1.headless-svc.default.svc.cluster.local:2\n\
             example-job-2.headless-svc.default.svc.cluster.local:2\n"
        );
        // Names, not addresses, whatever was resolved; unresolved peers stay.
        let hosts = hosts_peers(None);
        assert_eq!(
            render(HostfileFormat::Openmpi, &hosts, 1),
            "192.168.7.20 slots=1\nfd00::0:7 slots=1\ndb.example slots=1\ncache.example slots=1\n"
        );
        assert_eq!(
            render(HostfileFormat::Mpich, &dual_stack_job(), 1)
                .lines()
                .count(),
            3
        );
    }

    #[test]
    fn empty_peer_list_gives_empty_line_formats() {
        let none = GateOutcome {
            self_index: Some(0),
            round: None,
            peers: vec![],
        };
        for format in [
            HostfileFormat::Hosts,
            HostfileFormat::Openmpi,
            HostfileFormat::Mpich,
        ] {
            assert_eq!(render(format, &none, 1), "", "{format}");
        }
    }

    fn parse_json(outcome: &GateOutcome) -> serde_json::Value {
        let text = render(HostfileFormat::Json, outcome, 1);
        assert!(text.ends_with("}\n"), "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"))
    }

    #[test]
    fn json_parses_back_with_every_field() {
        let doc = parse_json(&dual_stack_job());
        assert_eq!(doc["self_index"], 2);
        assert_eq!(doc["world_size"], 3);
        let peers = doc["peers"].as_array().expect("peers array");
        assert_eq!(peers.len(), 3);
        let first = &peers[0];
        assert_eq!(first["index"], 0);
        assert_eq!(
            first["name"],
            "example-job-0.headless-svc.default.svc.cluster.local"
        );
        assert_eq!(
            first["addresses"],
            serde_json::json!(["fd00:10:244::5", "10.244.0.5"])
        );
        assert_eq!(first["reachable_via"], "10.244.0.5");
        assert_eq!(first["time_to_reachable_ms"], 40);
        assert_eq!(peers[1]["reachable_via"], "fd00:10:244:1::5");
        assert_eq!(peers[2]["time_to_reachable_ms"], 240);
        let keys: Vec<&String> = first.as_object().expect("peer object").keys().collect();
        assert_eq!(
            keys.len(),
            5,
            "index, name, addresses, reachable_via, time_to_reachable_ms: {keys:?}"
        );
    }

    #[test]
    fn json_uses_null_for_unknowns_and_keeps_key_order() {
        let text = render(HostfileFormat::Json, &hosts_peers(None), 1);
        let doc = parse_json(&hosts_peers(None));
        assert_eq!(doc["self_index"], serde_json::Value::Null);
        assert_eq!(doc["world_size"], 4);
        let unresolved = &doc["peers"][2];
        assert_eq!(unresolved["index"], serde_json::Value::Null);
        assert_eq!(unresolved["name"], "db.example");
        assert_eq!(unresolved["addresses"], serde_json::json!([]));
        assert_eq!(unresolved["reachable_via"], serde_json::Value::Null);
        assert_eq!(unresolved["time_to_reachable_ms"], serde_json::Value::Null);
        assert!(
            text.contains(
                "    {\"index\": null, \"name\": \"db.example\", \"addresses\": [], \
                 \"reachable_via\": null, \"time_to_reachable_ms\": null},\n"
            ),
            "{text}"
        );
        let order = ["\"self_index\"", "\"world_size\"", "\"peers\""]
            .map(|k| text.find(k).expect("key present"));
        assert!(order.is_sorted(), "{text}");
    }

    #[test]
    fn json_layout_has_one_peer_per_line() {
        let peer_line = |i: u32| {
            format!(
                "    {{\"index\": {i}, \"name\": \"example-job-{i}.headless-svc.default.svc.cluster.local\", \
                 \"addresses\": [\"10.244.{i}.5\"], \"reachable_via\": \"10.244.{i}.5\", \
                 \"time_to_reachable_ms\": {}}}",
                40 + 100 * i
            )
        };
        assert_eq!(
            render(HostfileFormat::Json, &ipv4_job(), 1),
            format!(
                "{{\n  \"self_index\": 1,\n  \"world_size\": 3,\n  \"peers\": [\n{},\n{},\n{}\n  ]\n}}\n",
                peer_line(0),
                peer_line(1),
                peer_line(2)
            )
        );
        let none = GateOutcome {
            self_index: None,
            round: None,
            peers: vec![],
        };
        assert_eq!(
            render(HostfileFormat::Json, &none, 1),
            "{\n  \"self_index\": null,\n  \"world_size\": 0,\n  \"peers\": []\n}\n"
        );
        let two_addrs = GateOutcome {
            self_index: None,
            round: None,
            peers: vec![peer(None, "a", &["fd00::1", "10.0.0.1"], None)],
        };
        assert!(render(HostfileFormat::Json, &two_addrs, 1).contains(
            "    {\"index\": null, \"name\": \"a\", \"addresses\": [\"fd00::1\", \"10.0.0.1\"], \
                 \"reachable_via\": null, \"time_to_reachable_ms\": null}\n"
        ));
    }

    #[test]
    fn json_escapes_odd_names_and_handles_no_peers() {
        let odd = "a\"b\\c\n\u{7}é";
        let outcome = GateOutcome {
            self_index: Some(0),
            round: None,
            peers: vec![peer(Some(0), odd, &[], None)],
        };
        assert_eq!(parse_json(&outcome)["peers"][0]["name"], odd);
        let empty = parse_json(&GateOutcome {
            self_index: None,
            round: None,
            peers: vec![],
        });
        assert_eq!(empty["world_size"], 0);
        assert_eq!(empty["peers"], serde_json::json!([]));
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_vars_for_an_indexed_job() {
        assert_eq!(
            env_vars(&ipv4_job()),
            vars(&[
                ("PEERGATE_WORLD_SIZE", "3"),
                ("PEERGATE_RANK", "1"),
                (
                    "PEERGATE_COORDINATOR",
                    "example-job-0.headless-svc.default.svc.cluster.local"
                ),
                ("PEERGATE_COORDINATOR_ADDR", "10.244.0.5"),
                (
                    "PEERGATE_PEER_NAMES",
                    "example-job-0.headless-svc.default.svc.cluster.local \
                     example-job-1.headless-svc.default.svc.cluster.local \
                     example-job-2.headless-svc.default.svc.cluster.local"
                ),
            ])
        );
    }

    fn lookup(vars: &[(String, String)], name: &str) -> Option<String> {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn rank_is_the_position_of_this_pod_among_the_peers_or_absent() {
        // Unknown self index: no rank at all (not an empty one).
        let mut outcome = ipv4_job();
        outcome.self_index = None;
        assert_eq!(lookup(&env_vars(&outcome), ENV_RANK), None);
        assert_eq!(
            lookup(&env_vars(&outcome), ENV_WORLD_SIZE).as_deref(),
            Some("3")
        );

        // --indices 0,2,5 seen from pod 5: rank 2 of world size 3.
        let subset = GateOutcome {
            self_index: Some(5),
            round: None,
            peers: [0, 2, 5]
                .map(|i| peer(Some(i), &fqdn(i), &["10.0.0.1"], Some("10.0.0.1")))
                .to_vec(),
        };
        assert_eq!(lookup(&env_vars(&subset), ENV_RANK).as_deref(), Some("2"));

        // --indices 0 (wait for the leader only) seen from pod 4.
        let leader_only = GateOutcome {
            self_index: Some(4),
            round: None,
            peers: vec![peer(Some(0), &fqdn(0), &["10.0.0.1"], Some("10.0.0.1"))],
        };
        assert_eq!(lookup(&env_vars(&leader_only), ENV_RANK), None);

        // --hosts peers carry no index, so this pod cannot be placed.
        assert_eq!(lookup(&env_vars(&hosts_peers(Some(1))), ENV_RANK), None);
    }

    #[test]
    fn coordinator_is_index_zero_else_the_first_peer() {
        let subset = GateOutcome {
            self_index: Some(2),
            round: None,
            peers: vec![
                peer(Some(2), "job-2.svc", &["10.0.0.2"], Some("10.0.0.2")),
                peer(
                    Some(0),
                    "job-0.svc",
                    &["fd00::1", "10.0.0.1"],
                    Some("fd00::1"),
                ),
            ],
        };
        let vars = env_vars(&subset);
        assert_eq!(lookup(&vars, ENV_COORDINATOR).as_deref(), Some("job-0.svc"));
        assert_eq!(
            lookup(&vars, ENV_COORDINATOR_ADDR).as_deref(),
            Some("fd00::1")
        );

        let without_zero = GateOutcome {
            self_index: Some(3),
            round: None,
            peers: vec![
                peer(Some(3), "job-3.svc", &["10.0.0.3"], Some("10.0.0.3")),
                peer(Some(7), "job-7.svc", &["10.0.0.7"], Some("10.0.0.7")),
            ],
        };
        assert_eq!(
            lookup(&env_vars(&without_zero), ENV_COORDINATOR).as_deref(),
            Some("job-3.svc")
        );

        // An IP literal coordinator is its own address.
        let hosts = env_vars(&hosts_peers(None));
        assert_eq!(
            lookup(&hosts, ENV_COORDINATOR).as_deref(),
            Some("192.168.7.20")
        );
        assert_eq!(
            lookup(&hosts, ENV_COORDINATOR_ADDR).as_deref(),
            Some("192.168.7.20")
        );
        assert_eq!(
            lookup(&hosts, ENV_PEER_NAMES).as_deref(),
            Some("192.168.7.20 fd00::0:7 db.example cache.example")
        );
    }

    #[test]
    fn coordinator_without_address_has_no_addr_variable_and_no_peers_no_coordinator() {
        let unresolved = GateOutcome {
            self_index: Some(0),
            round: None,
            peers: vec![peer(Some(0), "job-0.svc", &[], None)],
        };
        let got = env_vars(&unresolved);
        assert_eq!(lookup(&got, ENV_COORDINATOR).as_deref(), Some("job-0.svc"));
        assert_eq!(lookup(&got, ENV_COORDINATOR_ADDR), None);

        let none = GateOutcome {
            self_index: None,
            round: None,
            peers: vec![],
        };
        assert_eq!(
            env_vars(&none),
            vars(&[("PEERGATE_WORLD_SIZE", "0"), ("PEERGATE_PEER_NAMES", "")])
        );
    }

    #[test]
    fn env_file_exports_every_variable_single_quoted() {
        assert_eq!(
            render(HostfileFormat::Env, &ipv4_job(), 1),
            "# peergate hand-off: load with `. FILE` in a POSIX shell\n\
             export PEERGATE_WORLD_SIZE='3'\n\
             export PEERGATE_RANK='1'\n\
             export PEERGATE_COORDINATOR='example-job-0.headless-svc.default.svc.cluster.local'\n\
             export PEERGATE_COORDINATOR_ADDR='10.244.0.5'\n\
             export PEERGATE_PEER_NAMES='example-job-0.headless-svc.default.svc.cluster.local \
             example-job-1.headless-svc.default.svc.cluster.local \
             example-job-2.headless-svc.default.svc.cluster.local'\n"
        );
    }

    #[test]
    fn shell_quote_escapes_only_the_single_quote() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(x) `y` \"z\" \\ *"), "'$(x) `y` \"z\" \\ *'");
    }

    /// Source `file` in a clean `sh` (working directory: the file's) and return every exported PEERGATE_*
    /// variable, or `None` when this machine has no /bin/sh.
    fn source_in_sh(file: &std::path::Path) -> Option<BTreeMap<String, String>> {
        if !std::path::Path::new("/bin/sh").exists() {
            assert!(
                !crate::ci::under_ci(),
                "/bin/sh is missing (required under CI)"
            );
            println!("skipped: no /bin/sh to source the env file with");
            return None;
        }
        // `env` prints exported variables only; NUL separated so values with
        // newlines survive. The file is sourced with `set -eu`, so a syntax
        // error or a stray expansion fails the test.
        let output = Command::new("/bin/sh")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(file.parent().expect("file in a directory"))
            .arg("-euc")
            .arg(". \"$1\"; exec env -0")
            .arg("sh")
            .arg(file)
            .output()
            .expect("run /bin/sh");
        assert!(
            output.status.success(),
            "sourcing failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).expect("UTF-8 environment");
        Some(
            stdout
                .split('\0')
                .filter_map(|entry| entry.split_once('='))
                .filter(|(name, _)| name.starts_with("PEERGATE_"))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    #[test]
    fn env_file_sourced_by_sh_gives_exactly_env_vars_even_for_odd_names() {
        let dir = TestDir::new();
        let odd = "it's $(touch pwned) `touch pwned` \"q\" \\n ${HOME:?} *\nsecond line";
        let outcomes = [
            ipv4_job(),
            hosts_peers(Some(0)),
            GateOutcome {
                self_index: Some(0),
                round: None,
                peers: vec![
                    peer(Some(0), odd, &["10.0.0.1"], Some("10.0.0.1")),
                    peer(Some(1), "plain", &["10.0.0.2"], Some("10.0.0.2")),
                ],
            },
        ];
        for (i, outcome) in outcomes.iter().enumerate() {
            let file = dir.join(&format!("peergate-{i}.env"));
            std::fs::write(&file, render(HostfileFormat::Env, outcome, 1)).expect("write env file");
            let Some(sourced) = source_in_sh(&file) else {
                return;
            };
            let expected: BTreeMap<String, String> = env_vars(outcome).into_iter().collect();
            assert_eq!(sourced, expected);
        }
        assert!(
            !dir.join("pwned").exists(),
            "sourcing ran a command substitution"
        );
    }
}

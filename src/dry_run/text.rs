//! `--dry-run`'s text: the facts of [`super::DryRun`], one line each.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{
    AwaitDryRun, BarrierEntry, DnsEntry, DryRun, ExchangeDryRun, OpenedEntry, PeerEntry,
    ProbeEntry, RunDryRun,
};
use crate::cli::one_line;
use crate::duration::human;
use crate::handoff;
use crate::rendezvous::topology::{MESH_MAX, Topology, UPLINKS};
use crate::values::{Family, HostfileFormat, ProbeKind};

/// Most names a text line lists before it abbreviates to the first few,
/// a count and the last.
const LISTED: usize = 5;
/// Names kept before the count when a list is abbreviated.
const HEAD: usize = 3;

impl RunDryRun {
    pub(super) fn text(&self) -> String {
        let r = &self.run;
        format!(
            "peergate run --dry-run: what it would do (nothing was sent)\n\
             wait      for each round of the sidecar's barrier, asking 127.0.0.1:{} (its \
             --await-port), {}\n\
             run       {} as a child in each round, with the hand-off variables, \
             PEERGATE_ROUND and PEERGATE_RESTARTS\n\
             restart   it when a round ends (SIGTERM to its group, SIGKILL after {}), at most \
             {} time(s); then exit 3 (its own failure: its code)\n",
            r.port,
            r.timeout.map_or_else(
                || "with no time limit".into(),
                |d| format!("for at most {} each (then exit 124)", human(d))
            ),
            shell_words(&r.command),
            human(r.grace),
            r.max_restarts,
        )
    }
}

impl ExchangeDryRun {
    pub(super) fn text(&self) -> String {
        let e = &self.exchange;
        let round = e.round.map_or_else(
            || "in the live round".to_owned(),
            |r| format!("in round {r} only (then exit 5)"),
        );
        let wait = |what: &str| match e.wait {
            None => format!("{what} without end"),
            Some(d) if d.is_zero() => "without waiting".to_owned(),
            Some(d) => format!("{what} for at most {} (then exit 124)", human(d)),
        };
        let action = match e.command {
            "barrier" => format!(
                "enter barrier `{}` and wait until every member has, {}",
                e.name,
                wait("waiting")
            ),
            "put" => format!(
                "publish `{}` = {} for this pod",
                e.name,
                e.value_bytes.map_or_else(
                    || "the value on stdin (not read now)".to_owned(),
                    |n| format!("{n} bytes")
                )
            ),
            _ => format!(
                "print `{}` of {}, {}, as {}",
                e.name,
                e.index.map_or_else(
                    || "every member, once all have published it".to_owned(),
                    |i| format!("index {i}")
                ),
                wait("waiting"),
                e.format.unwrap_or("text")
            ),
        };
        format!(
            "peergate {} --dry-run: what it would do (nothing was sent)\n\
             ask       the sidecar on 127.0.0.1:{} (its --await-port), {round}\n\
             {:<9} {action}\n",
            e.command, e.port, e.command,
        )
    }
}

impl AwaitDryRun {
    pub(super) fn text(&self) -> String {
        let w = &self.wait;
        let then = match &w.command {
            None => "exit 0".to_owned(),
            Some(cmd) => format!(
                "exec {} with the hand-off variables (same PID)",
                shell_words(cmd)
            ),
        };
        format!(
            "peergate await --dry-run: what it would do (nothing was sent)\n\
             wait      for the release of the sidecar's barrier, asking 127.0.0.1:{} \
             (its --await-port), {}\n\
             then      {then}\n",
            w.port,
            w.timeout.map_or_else(
                || "with no time limit".into(),
                |d| format!("for at most {} (then exit 124)", human(d))
            ),
        )
    }
}

impl DryRun {
    pub(super) fn text(&self) -> String {
        let mut out = String::from("peergate --dry-run: what a run would do (nothing was sent)\n");
        let mut line = |label: &str, text: String| {
            let _ = writeln!(out, "{label:<9} {}", one_line(&text));
        };
        line("pod", self.pod_text());
        line("peers", self.peers_text());
        if let Some(probe) = &self.probe {
            line(
                "probe",
                format!(
                    "{}; each missing peer every {}, answer within {}, {} at a time",
                    probe_text(probe),
                    human(self.interval),
                    human(probe.timeout),
                    self.concurrency
                ),
            );
        }
        if let Some(b) = &self.barrier {
            line("barrier", self.barrier_text(b));
            line("serve", serve_text(b));
        }
        line(
            "dns",
            match &self.dns {
                Some(d) => dns_text(d),
                None => "none needed: every peer is an address".into(),
            },
        );
        line(
            "timeout",
            match self.timeout {
                Some(d) => format!("{}, then exit 124 naming every missing peer", human(d)),
                None => "never (waits until every peer is there)".into(),
            },
        );
        line("hand-off", self.handoff_text());
        let env = self.handoff.env.iter().map(|(k, v)| match v {
            None => format!("{k}=<learned by the run>"),
            Some(v) if k == handoff::ENV_PEER_NAMES && self.peers.len() > LISTED => {
                let names: Vec<String> = v.split(' ').map(str::to_owned).collect();
                format!("{k}=<{} names: {}>", names.len(), abbreviated(&names))
            }
            Some(v) => format!("{k}={v}"),
        });
        line("env", env.collect::<Vec<_>>().join(" "));
        for w in &self.warnings {
            line("warning", w.clone());
        }
        out
    }

    fn pod_text(&self) -> String {
        let pod = &self.pod;
        let mut parts = vec![match (pod.index, pod.member) {
            (Some(i), true) => format!("index {i}"),
            (Some(i), false) => format!("index {i} (not one of the peers)"),
            (None, _) => "no index (not one of the peers)".into(),
        }];
        parts.push(match &pod.hostname {
            Some(h) => format!("hostname {h}"),
            None => "hostname unknown".into(),
        });
        if let Some(job) = &pod.job {
            parts.push(format!("Job {job}"));
        }
        if let Some(name) = &pod.name {
            parts.push(format!("name {name}"));
        }
        if !pod.addrs.is_empty() {
            parts.push(format!("addresses {}", join(&pod.addrs)));
        }
        parts.join(", ")
    }

    fn peers_text(&self) -> String {
        let names: Vec<String> = self.peers.iter().map(PeerEntry::text).collect();
        let whose = match (self.self_index(), self.pod.index) {
            (Some(i), _) if self.peers.iter().any(|p| p.index == Some(i)) => ", this pod included",
            (None, Some(_)) => ", this pod not among them",
            _ => "",
        };
        format!("{}{whose}: {}", names.len(), abbreviated(&names))
    }

    fn barrier_text(&self, b: &BarrierEntry) -> String {
        let topology = match b.topology {
            Topology::Mesh => format!("a full mesh (up to {MESH_MAX} pods)"),
            Topology::Tree => format!(
                "a tree (more than {MESH_MAX} pods), {UPLINKS} links up per pod, records flooded"
            ),
        };
        let announce = if b.announce.is_empty() {
            "announces the address its first link sees".into()
        } else {
            format!("announces {}", join(&b.announce))
        };
        let mut parts = vec![
            format!("Job {}, {} pods in {topology}", b.job, b.world),
            format!(
                "port {} on {}",
                b.port,
                b.listen
                    .map_or_else(|| "all addresses".into(), |ip| ip.to_string())
            ),
            if b.token {
                "token set".into()
            } else {
                "no token (--insecure-no-token: anyone who reaches the port can join)".into()
            },
            announce,
            format!(
                "dials every {}, connect timeout {}",
                human(self.interval),
                human(b.connect_timeout)
            ),
        ];
        if let Some(s) = &b.service {
            parts.push(format!(
                "Service {s} as the way in while no peer name resolves"
            ));
        }
        parts.join("; ")
    }

    fn handoff_text(&self) -> String {
        let serve = self.barrier.as_ref().is_some_and(|b| b.serve);
        let mut parts = Vec::new();
        if let Some(h) = &self.handoff.hostfile {
            let slots = match h.format {
                HostfileFormat::Openmpi | HostfileFormat::Mpich => {
                    format!(", {} slot(s) per host", h.slots)
                }
                _ => String::new(),
            };
            parts.push(format!(
                "write {} (format {}{slots}) {}",
                h.path.display(),
                h.format,
                if serve {
                    "at the release, again on every change"
                } else {
                    "once the gate opens"
                }
            ));
        }
        if let Some(cmd) = &self.handoff.command {
            parts.push(format!(
                "then exec {} with the variables below (same PID)",
                shell_words(cmd)
            ));
        }
        match (parts.is_empty(), serve) {
            (true, true) => {
                "none written; `peergate await -- COMMAND` gets the variables below".into()
            }
            (true, false) => "none: exit 0 once the gate opens".into(),
            _ => parts.join("; "),
        }
    }
}

fn probe_text(probe: &ProbeEntry) -> String {
    let prefix = if probe.kind == ProbeKind::Auto {
        "auto: "
    } else {
        ""
    };
    match &probe.opened {
        OpenedEntry::Icmp { socket, .. } => format!("{prefix}icmp echo ({socket} opened here)"),
        OpenedEntry::Tcp {
            port,
            fallback: Some(why),
            ..
        } => format!("auto: tcp connect to port {port} (no ICMP here: {why})"),
        OpenedEntry::Tcp { port, .. } => {
            format!("tcp connect to port {port} (accepted or refused: the host is up)")
        }
        OpenedEntry::Dns { .. } => "dns: a peer counts once its name resolves".into(),
        OpenedEntry::Failed { .. } => "icmp, which cannot be opened here (see the warning)".into(),
    }
}

fn serve_text(b: &BarrierEntry) -> String {
    let Some(await_port) = b.await_port.filter(|_| b.serve) else {
        return "no: exits once released".into();
    };
    let health = b.health_port.map_or_else(
        || "no health endpoints".into(),
        |p| format!("/livez /readyz /peers /metrics on port {p}"),
    );
    let install = b
        .install
        .as_ref()
        .map(|p| format!("; first copies itself to {}", p.display()))
        .unwrap_or_default();
    format!(
        "stays after the release: `peergate await` and `peergate run` on \
         127.0.0.1:{await_port}, {health}; exit 0 on SIGTERM{install}"
    )
}

fn dns_text(d: &DnsEntry) -> String {
    let records = match d.family {
        Family::V4 => "A",
        Family::V6 => "AAAA",
        Family::Dual => "A and AAAA",
    };
    let search = if d.search.is_empty() {
        "none".to_owned()
    } else {
        d.search.join(" ")
    };
    format!(
        "nameservers {}; search {search}; ndots {}; {} ({records}); query timeout {}",
        join(&d.nameservers),
        d.ndots,
        d.family,
        human(d.timeout)
    )
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a, b, c`, or `a, b, c, ... (+95 more), z` for a long list.
fn abbreviated(names: &[String]) -> String {
    if names.len() <= LISTED {
        return names.join(", ");
    }
    format!(
        "{}, ... (+{} more), {}",
        names[..HEAD].join(", "),
        names.len() - HEAD - 1,
        names[names.len() - 1]
    )
}

/// A command as a shell would need it typed: words with spaces or quotes
/// in single quotes.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                w.clone()
            } else {
                handoff::shell_quote(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_keep_the_first_few_a_count_and_the_last() {
        let names: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        assert_eq!(abbreviated(&names), "p0, p1, p2, p3, p4");
        let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        assert_eq!(abbreviated(&names), "p0, p1, p2, ... (+96 more), p99");
    }

    #[test]
    fn commands_are_shown_as_a_shell_would_take_them() {
        let cmd: Vec<String> = ["bash", "-c", "echo \"$(hostname)\" it's", "--x=1"]
            .map(Into::into)
            .to_vec();
        assert_eq!(
            shell_words(&cmd),
            r#"bash -c 'echo "$(hostname)" it'\''s' --x=1"#
        );
        assert_eq!(shell_words(&["".into()]), "''");
    }
}

//! The one answer both ends of `/await` agree on.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::outcome::{GateOutcome, PeerOutcome};

/// The body of `GET /await`: what `peergate await` needs to set the
/// hand-off variables of its command. The sidecar writes it, the client
/// reads it back; on the wire the keys are sorted (as `serde_json::Value`
/// writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitAnswer {
    /// This pod's index among the peers.
    pub rank: Option<u32>,
    /// The round this hand-off is of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    pub peers: Vec<AwaitPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitPeer {
    pub index: Option<u32>,
    pub name: String,
    #[serde(default)]
    pub addrs: Vec<IpAddr>,
}

impl AwaitAnswer {
    pub fn from_outcome(outcome: &GateOutcome) -> Self {
        AwaitAnswer {
            rank: outcome.self_index,
            round: outcome.round,
            peers: outcome
                .peers
                .iter()
                .map(|p| AwaitPeer {
                    index: p.index,
                    name: p.name.clone(),
                    addrs: p.addrs.clone(),
                })
                .collect(),
        }
    }

    /// The JSON text, keys sorted.
    pub fn to_json(&self) -> String {
        serde_json::to_value(self)
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    /// The hand-off it describes; a peer is reachable via its first address.
    pub fn into_outcome(self) -> GateOutcome {
        GateOutcome {
            self_index: self.rank,
            round: self.round,
            peers: self
                .peers
                .into_iter()
                .map(|p| PeerOutcome {
                    index: p.index,
                    name: p.name,
                    reachable_via: p.addrs.first().copied(),
                    addrs: p.addrs,
                    elapsed: None,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_await_answer_keeps_its_wire_form() {
        let outcome = GateOutcome {
            self_index: Some(1),
            round: None,
            peers: vec![PeerOutcome {
                index: Some(0),
                name: "job-0.svc".into(),
                addrs: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
                reachable_via: None,
                elapsed: None,
            }],
        };
        assert_eq!(
            AwaitAnswer::from_outcome(&outcome).to_json(),
            r#"{"peers":[{"addrs":["10.0.0.1","fd00::1"],"index":0,"name":"job-0.svc"}],"rank":1}"#
        );
        let none = GateOutcome {
            self_index: None,
            round: None,
            peers: Vec::new(),
        };
        assert_eq!(
            AwaitAnswer::from_outcome(&none).to_json(),
            r#"{"peers":[],"rank":null}"#
        );
    }
}

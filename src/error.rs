//! Configuration errors: everything that makes peergate exit 2 before it
//! starts waiting. Each variant renders as one line that names the cause and,
//! where there is one, the flag or variable that fixes it.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid completion index: {0}")]
    Index(String),
    #[error(
        "no completion index: JOB_COMPLETION_INDEX is not set (outside an Indexed Job pass --index, \
         or name the peers with --hosts)"
    )]
    MissingIndex,
    #[error("{0}")]
    Hostname(String),
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("invalid --peers: {0}")]
    Peers(String),
    #[error("invalid --indices: {0}")]
    Indices(String),
    #[error("invalid --template: {0}")]
    Template(String),
    #[error("invalid --hosts: {0}")]
    Hosts(String),
    #[error("invalid {flag}: {reason}")]
    Duration { flag: &'static str, reason: String },
    #[error("invalid --probe: {0}")]
    Probe(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot tell {what}: {hint}")]
    Unknown { what: &'static str, hint: String },
    #[error("{0}")]
    Other(String),
}

//! Configuration errors: everything that makes peergate exit 2 before it
//! starts waiting. Each variant renders as one line that names the cause and,
//! where there is one, the flag, variable or file that fixes it.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    /// A value is wrong. `what` names where it came from as the user wrote
    /// it (`--template`, `PEERGATE_HOSTS`, `JOB_COMPLETION_INDEX`), usually
    /// followed by the value.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
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
    /// Flags that do not go together, or one that needs another.
    #[error("{0}")]
    Conflict(String),
    #[error("cannot tell {what}: {hint}")]
    Unknown { what: &'static str, hint: String },
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// `invalid <what> `<value>`: <reason>`.
    pub fn value(what: impl Into<String>, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            what: format!("{} `{value}`", what.into()),
            reason: reason.into(),
        }
    }
}

//! peergate: wait until every peer of a Kubernetes Indexed Job (or any list
//! of hosts) resolves and answers, then get out of the way.
//!
//! The binary is a thin shell over this library; the modules are public so
//! the integration tests can drive the pure pieces directly.

pub mod addrconfig;
pub mod barrier;
pub mod cause;
#[cfg(test)]
#[path = "../tests/support/ci.rs"]
mod ci;
pub mod cli;
pub mod config;
pub mod dns;
pub mod duration;
pub mod error;
pub mod gate;
pub mod handoff;
pub mod hosts_file;
pub mod identity;
pub mod logging;
pub mod outcome;
pub mod peers;
pub mod probe;
pub mod report;
pub mod resolv_conf;
pub mod run;

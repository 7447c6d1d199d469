//! peergate: wait until every peer of a Kubernetes Indexed Job (or any list
//! of hosts) resolves and answers, then get out of the way.
//!
//! The binary is a thin shell over this library; the modules are public so
//! the integration tests can drive the pure pieces directly.

pub mod await_client;
pub mod cause;
pub mod cli;
pub mod config;
pub mod dns;
pub mod duration;
pub mod error;
pub mod gate;
pub mod handoff;
pub mod http;
pub mod identity;
pub mod outcome;
pub mod peers;
pub mod probe;
pub mod rendezvous;
pub mod report;
pub mod run;
pub mod schedule;

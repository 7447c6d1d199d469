//! peergate: wait until every peer of a Kubernetes Indexed Job (or any list
//! of hosts) resolves and answers, then get out of the way.
//!
//! The binary is a thin shell over this library. Public are only the
//! modules something outside the crate uses: what `main` calls (`cli`,
//! `config`, `dry_run`, `logging`, `run`) and what `fuzz/` drives (the barrier's frame
//! codec in `rendezvous::proto`, the health endpoints' request parser in
//! `sidecar::http`, also at `http`). Everything else is tested from inside.

mod addrconfig;
mod cause;
#[cfg(test)]
#[path = "../tests/support/ci.rs"]
mod ci;
pub mod cli;
pub mod config;
#[cfg(test)]
mod corpus;
mod dns;
pub mod dry_run;
mod duration;
mod error;
mod exit;
mod gate;
mod handoff;
mod hosts_file;
mod identity;
mod install;
pub mod logging;
mod net;
mod outcome;
mod peers;
mod probe;
pub mod rendezvous;
mod report;
mod resolv_conf;
pub mod run;
mod schedule;
mod sidecar;
mod supervise;
mod values;
/// The health endpoints' request parser, where `fuzz/` drives it.
pub use sidecar::http;

//! peergate: wait until every peer of a Kubernetes Indexed Job (or any list
//! of hosts) resolves and answers, then get out of the way.
//!
//! The binary is a thin shell over this library. Public are only the
//! modules something outside the crate uses: what `main` calls (`cli`,
//! `config`, `logging`, `run`) and the barrier's frame codec, which
//! `fuzz/` drives. Everything else is tested from inside.

mod addrconfig;
pub mod barrier;
mod cause;
#[cfg(test)]
#[path = "../tests/support/ci.rs"]
mod ci;
pub mod cli;
pub mod config;
mod dns;
mod duration;
mod error;
mod gate;
mod handoff;
mod hosts_file;
mod identity;
pub mod logging;
mod outcome;
mod peers;
mod probe;
mod report;
mod resolv_conf;
pub mod run;

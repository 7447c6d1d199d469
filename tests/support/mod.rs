//! Shared support for the end-to-end tests: an emulated Kubernetes Indexed Job
//! built from network namespaces, a bridge, dnsmasq and real processes.
//!
//! * [`ci`]: whether this is a CI run (where a skip is a failure).
//! * [`prereq`]: root and tool checks (skip on a laptop, fail under CI).
//! * [`proc`]: processes with exit times, signals and captured output.
//! * [`ports`]: free TCP ports from the kernel (bind port 0), for tests that
//!   run peergate on the loopback.
//! * [`bed`]: the test bed (cluster namespace, pods, DNS tiers, faults).
//! * [`scenario`]: scenarios declared as TOML in `tests/scenarios/`, and the
//!   one runner that executes and checks them.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

pub mod bed;
pub mod cgroups;
pub mod ci;
pub mod ports;
pub mod prereq;
pub mod proc;
pub mod scenario;

//! Moved to `crate::sidecar::serve` (issue 17): the sidecar's HTTP servers
//! live with the rest of the sidecar. Empty until `rendezvous/mod.rs`
//! drops its `pub mod serve;`.

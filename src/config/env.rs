//! The pod as peergate sees it: environment variables, files and the
//! hostname, behind a trait so every rule in `config` is testable without a
//! pod.

use std::path::Path;

use crate::identity;

/// The pod as peergate sees it.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
    fn hostname(&self) -> Option<String>;
}

/// The real process environment and file system.
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn hostname(&self) -> Option<String> {
        // The UTS hostname; /proc is there even in a scratch image. HOSTNAME
        // is the fallback some runtimes set when /proc is hidden.
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|h| identity::clean_hostname(&h))
            .or_else(|| {
                std::env::var("HOSTNAME")
                    .ok()
                    .and_then(|h| identity::clean_hostname(&h))
            })
    }
}

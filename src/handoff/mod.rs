//! Hand-off to the workload once the gate has opened.
//!
//! The gate knows every peer's name and address; the workload needs them in
//! its own dialect. This module turns a [`GateOutcome`] into
//!
//! - a file in one of the [`HostfileFormat`]s ([`render`]), written with
//!   [`write_atomic`] so a reader never sees half a file;
//! - environment variables ([`env_vars`], the same ones the `env` format
//!   writes) for a command started with [`exec`], which replaces peergate's
//!   process image so the command keeps peergate's PID.
//!
//! Everything here is synchronous and runs after the gate passed; the only
//! call meant for startup is [`check_destination`], so that a bad
//! `--write-hostfile` path fails (exit 2) before the wait instead of after it.
//!
//! [`GateOutcome`]: crate::outcome::GateOutcome

mod error;
mod exec;
mod format;
mod write;

pub use exec::exec;
pub use format::{
    ENV_COORDINATOR, ENV_COORDINATOR_ADDR, ENV_PEER_NAMES, env_vars, render, shell_quote,
};
pub use write::{check_destination, inspect_destination, write_atomic};

/// Scratch directories for the tests, removed on drop (also on panic).
#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    static NEXT: AtomicU32 = AtomicU32::new(0);

    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new() -> TestDir {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("peergate-handoff-test-{}-{n}", std::process::id()));
            std::fs::create_dir(&path).expect("create test directory");
            TestDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        pub(crate) fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        /// Names of the directory's entries, sorted.
        pub(crate) fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .expect("list test directory")
                .map(|e| {
                    e.expect("read entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

//! Prerequisite checks. Without root or a tool the e2e tests print why and
//! return; under CI (see [`super::ci`]) a missing prerequisite fails the test
//! instead. A scenario that runs a program of its own (`program = "python3"`
//! for `tests/strangers.py`) also needs that program, with the same rule.

use std::path::{Path, PathBuf};

/// Tools the bed runs, with the Debian packages that have them (`.ci/run`
/// installs these; docs/testing.md lists them).
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("dnsmasq", "dnsmasq-base"),
    ("unshare", "util-linux"),
    ("setpriv", "util-linux"),
    ("nft", "nftables"),
    ("ping", "iputils-ping"),
    ("getent", "libc-bin"),
    ("time", "time"),
    ("timeout", "coreutils"),
    ("bash", "bash"),
    ("sh", "dash"),
];

/// Finds `tool` on PATH or in the sbin directories (root's PATH may lack them).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Programs only some scenarios run, with their packages.
pub const SCENARIO_TOOLS: &[(&str, &str)] = &[("python3", "python3-minimal")];

/// Why the bed cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    missing_with(&[])
}

/// Why the bed cannot run `extra` programs (names looked up on PATH) here,
/// if it cannot.
pub fn missing_with(extra: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, /etc/netns)".into());
    }
    let extra = extra.iter().map(|&tool| {
        let pkg = SCENARIO_TOOLS
            .iter()
            .find(|(t, _)| *t == tool)
            .map_or(tool, |&(_, pkg)| pkg);
        (tool, pkg)
    });
    let absent: Vec<String> = TOOLS
        .iter()
        .copied()
        .chain(extra)
        .filter(|(tool, _)| which(tool).is_none())
        .map(|(tool, pkg)| format!("{tool} (package {pkg})"))
        .collect();
    if !absent.is_empty() {
        return Some(format!("missing tools: {}", absent.join(", ")));
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Some("kernel without network namespaces".into());
    }
    None
}

/// True when the caller may go on. Otherwise prints the reason and returns
/// false, or panics under CI (a skip in CI is a failure).
pub fn ready(test: &str) -> bool {
    ready_with(test, &[])
}

/// [`ready`], for a test that also runs the `extra` programs.
pub fn ready_with(test: &str, extra: &[&str]) -> bool {
    let Some(why) = missing_with(extra) else {
        wait_for_neighbour_room(test);
        return true;
    };
    skip(test, &why);
    false
}

/// Skips `test` for `why` with a printed reason, or fails it under CI,
/// where nothing may be skipped.
pub fn skip(test: &str, why: &str) {
    if super::ci::under_ci() {
        panic!("{test}: e2e prerequisites missing under CI: {why}");
    }
    // Straight to fd 2: libtest captures eprintln! of passing tests, and a
    // skip must be visible.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The kernel's neighbour tables are shared by every namespace; while another
/// bed (the 1000-peer benchmark) overflows them, pods cannot resolve ARP at
/// all. Waits while the kernel keeps refusing entries (checked over 0.3 s), up
/// to 3 minutes, then lets the test run (and report).
fn wait_for_neighbour_room(test: &str) {
    use std::io::Write;
    let limit = std::time::Duration::from_secs(180);
    let start = std::time::Instant::now();
    let mut told = false;
    loop {
        let before = super::bed::neighbour_table_fulls();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let Some(warning) = super::bed::neighbour_table_warning(before) else {
            return;
        };
        if start.elapsed() > limit {
            let _ = writeln!(std::io::stderr(), "{test}: running anyway: {warning}");
            return;
        }
        if !told {
            let _ = writeln!(std::io::stderr(), "{test}: waiting: {warning}");
            told = true;
        }
    }
}

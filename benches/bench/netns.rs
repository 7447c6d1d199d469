//! The lean beds' network namespace: one namespace whose loopback holds an
//! address per "pod", processes started straight into it (setns(2) between
//! fork and exec) and harness threads that join it. Shared by rounds.rs,
//! exchange.rs and soak.rs.

use crate::support::bed::{Bed, run_ok};
use std::fmt::Write as _;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Adds namespace `ns` to `bed` with loopback up and holding `addrs`; its
/// handle and path.
pub fn lean(bed: &mut Bed, ns: &str, addrs: &[Ipv4Addr]) -> Result<(File, PathBuf), String> {
    bed.add_namespace(ns);
    let mut script = String::from("link set lo up\n");
    for a in addrs {
        writeln!(script, "addr add {a}/32 dev lo").unwrap();
    }
    run_ok("ip", &["-n", ns, "-batch", "-"], Some(&script));
    let path = Path::new("/run/netns").join(ns);
    let file = File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
    Ok((file, path))
}

/// Makes `cmd` start inside `netns`, and die with the harness.
pub fn spawn_into(cmd: &mut Command, netns: &File) {
    let fd = netns.as_raw_fd();
    // SAFETY: setns and prctl are plain syscalls, async-signal-safe;
    // nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Moves the calling thread (only) into the namespace at `path`.
pub fn join(path: &Path) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    // SAFETY: setns(2) of this thread alone into one of the bench's namespaces.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

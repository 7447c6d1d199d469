//! Child processes with precise exit times.
//!
//! Every child runs in its own process group (so a kill reaches grandchildren
//! such as the `ping` of the seed loop) and gets SIGKILL when the spawning
//! thread dies (PR_SET_PDEATHSIG), a last resort should a test die without
//! unwinding. A waiter thread blocks in `wait()` and stamps the exit with an
//! `Instant`, so exit times do not depend on how often anybody polls.

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a process ended and when the waiter saw it.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub at: Instant,
}

impl Exit {
    /// Exit code, or None when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
    pub fn describe(&self) -> String {
        match (self.code(), self.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => format!("{:?}", self.status),
        }
    }
}

type Slot = Arc<(Mutex<Option<Exit>>, Condvar)>;

/// Has the kernel kill `cmd`'s process when the thread that spawned it
/// dies: the last resort should the harness die without cleaning up.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A spawned child. Dropping it kills the whole process group.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub pid: i32,
    pub started: Instant,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub argv: Vec<String>,
    slot: Slot,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr captured to `<dir>/<name>.{stdout,stderr}`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> std::io::Result<Proc> {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?)
            .process_group(0);
        die_with_parent(&mut cmd);
        let argv = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let mut child = cmd.spawn()?;
        let started = Instant::now();
        let pid = child.id() as i32;
        let slot: Slot = Arc::new((Mutex::new(None), Condvar::new()));
        let waiter = Arc::clone(&slot);
        std::thread::Builder::new()
            .name(format!("wait-{name}"))
            .spawn(move || {
                let status = child.wait().expect("wait for child");
                let exit = Exit {
                    status,
                    at: Instant::now(),
                };
                let (lock, cv) = &*waiter;
                *lock.lock().unwrap() = Some(exit);
                cv.notify_all();
            })?;
        Ok(Proc {
            name: name.to_string(),
            pid,
            started,
            stdout,
            stderr,
            argv,
            slot,
        })
    }

    /// The exit, if it happened already.
    pub fn exit(&self) -> Option<Exit> {
        *self.slot.0.lock().unwrap()
    }

    pub fn running(&self) -> bool {
        self.exit().is_none()
    }

    /// Waits at most `limit` for the exit.
    pub fn wait_for(&self, limit: Duration) -> Option<Exit> {
        let (lock, cv) = &*self.slot;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, limit, |e| e.is_none())
            .unwrap();
        *guard
    }

    /// Sends `sig` to the process itself (not its group), as kubelet does to a
    /// container's main process. Returns the send time. No-op once it exited.
    pub fn signal(&self, sig: i32) -> Instant {
        let at = Instant::now();
        let (lock, _) = &*self.slot;
        let guard = lock.lock().unwrap();
        if guard.is_none() {
            // SAFETY: plain kill(2); the pid is not reaped while the slot is empty
            // and we hold its lock, so it cannot have been reused.
            unsafe { libc::kill(self.pid, sig) };
        }
        at
    }

    /// SIGKILLs the whole process group and waits (bounded) for the exit.
    pub fn kill(&self) {
        if self.running() {
            // SAFETY: as above; the group id equals the pid (process_group(0)).
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            if self.wait_for(Duration::from_secs(5)).is_none() {
                eprintln!("warning: {} (pid {}) survived SIGKILL", self.name, self.pid);
            }
        }
        // Stragglers of an exited leader (a ping of the seed loop) are not
        // chased here: the pid may be reused. The bed kills whatever is left
        // inside its namespaces (`ip netns pids`) before deleting them.
    }

    pub fn read_stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn read_stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Signal number for a name such as "TERM" or "SIGINT".
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match name.trim_start_matches("SIG") {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "KILL" => libc::SIGKILL,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        _ => return None,
    })
}

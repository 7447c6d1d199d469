//! `peergate run -- COMMAND [ARGS]`: run the workload as a child and stay
//! beside it, instead of becoming it (that is `handoff::exec`).
//!
//! The child is the leader of a process group of its own, so everything it
//! starts can be signalled at once: [`Child::signal_group`] forwards a signal
//! to the whole group, [`Child::stop`] ends it (SIGTERM, a grace period,
//! SIGKILL), and dropping a [`Child`] that has not been reaped kills the
//! group rather than leaving it running unsupervised.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{debug, info, warn};

/// Why a command could not be started. Every message is one line naming
/// the program and, where there is one, the operating system's error.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `--` was given with nothing after it.
    #[error("no command given after --")]
    EmptyCommand,
    /// The program (or the interpreter named by its `#!` line) does not
    /// exist. A shell reports this as 127.
    #[error("cannot run {}: {}", program.to_string_lossy(), not_found_detail(program))]
    NotFound { program: OsString },
    /// The program exists but may not be executed (no execute bit, a
    /// directory, a noexec mount). A shell reports this as 126.
    #[error("cannot run {}: {source}", program.to_string_lossy())]
    NotExecutable {
        program: OsString,
        source: io::Error,
    },
    /// Any other reason the start failed (not an executable format, argument
    /// list too long, no processes left to fork). Reported as 126 too.
    #[error("cannot run {}: {source}", program.to_string_lossy())]
    Failed {
        program: OsString,
        source: io::Error,
    },
}

impl SpawnError {
    /// The process exit code for this error, after the shell: 127 when the
    /// program was not found, 126 when it could not be started, and
    /// peergate's usage code 2 for an empty command.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::EmptyCommand => 2,
            SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } | SpawnError::Failed { .. } => 126,
        }
    }
}

/// A missing `#!` interpreter is reported by the kernel as a missing
/// program, a common surprise in minimal images; say so.
fn not_found_detail(program: &OsString) -> &'static str {
    if program.as_encoded_bytes().contains(&b'/') {
        "no such file (or its #! interpreter is missing)"
    } else {
        "not found in PATH (or its #! interpreter is missing)"
    }
}

/// The operating system could not tell how the child ended (`waitpid`
/// failed, e.g. because something else reaped it).
#[derive(Debug, thiserror::Error)]
#[error("cannot wait for child process {pid}: {source}")]
pub struct WaitError {
    pub pid: u32,
    pub source: io::Error,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u8),
    /// A signal with this number killed it.
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The shell's convention: the exit code, or 128 plus the signal
    /// number (capped at 255).
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => u8::try_from(signal)
                .ok()
                .and_then(|signal| signal.checked_add(128))
                .unwrap_or(u8::MAX),
        }
    }

    fn from_std(status: std::process::ExitStatus) -> io::Result<ExitStatus> {
        if let Some(code) = status.code() {
            // WEXITSTATUS is the low 8 bits; anything else is not an exit.
            if let Ok(code) = u8::try_from(code) {
                return Ok(ExitStatus::Code(code));
            }
        } else if let Some(signal) = status.signal() {
            return Ok(ExitStatus::Signal(signal));
        }
        Err(io::Error::other(format!(
            "the child neither exited nor was killed ({status})"
        )))
    }
}

/// "exit code 3", "signal 9 (SIGKILL)", "signal 40".
impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => match signal_name(signal) {
                Some(name) => write!(f, "signal {signal} ({name})"),
                None => write!(f, "signal {signal}"),
            },
        }
    }
}

/// The names of the signals a log line is likely to show. The numbers
/// differ between architectures (SIGUSR1 is 10 on x86 and ARM, 16 on MIPS),
/// hence libc's constants.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return None,
    })
}

/// What is known about the group's leader, the spawned process.
#[derive(Debug, Clone, Copy)]
enum Leader {
    /// Not reaped: its PID, and so the group's ID, cannot have been reused.
    Running,
    /// Reaped with this status.
    Exited(ExitStatus),
    /// `waitpid` failed: whether the PID is still ours is unknown, so no
    /// group signal is sent on our own initiative any more.
    Lost,
}

/// A running command, leader of its own process group (the group's ID is
/// its PID).
///
/// A thread of its own blocks in wait(2) for the leader and hands its
/// status over, so nothing polls and no SIGCHLD handler is needed (tokio's
/// process driver would cost the binary's budget more than this).
///
/// Dropping a `Child` whose leader has not been reaped (no [`Child::wait`]
/// or [`Child::stop`] returned its status) sends SIGKILL to the whole
/// group; the leader is then reaped by that thread. A group
/// whose leader was reaped is left alone on drop: its ID could by then
/// belong to an unrelated group, so end stragglers with [`Child::stop`].
#[derive(Debug)]
pub struct Child {
    /// The waiting thread's report of the leader's end.
    exit: oneshot::Receiver<io::Result<std::process::ExitStatus>>,
    pid: u32,
    /// The group's ID, which is the leader's PID; always greater than 1.
    pgid: libc::pid_t,
    leader: Leader,
}

/// Starts `command` (program and arguments) with `env` added to the
/// inherited environment, as the leader of a new process group, with
/// stdin, stdout and stderr inherited.
///
/// A program without `/` is looked up in `PATH` (the `PATH` of `env` if it
/// sets one). The child shares peergate's session and terminal, but being
/// in another group it gets no terminal signals (a Ctrl-C reaches only
/// peergate, which forwards it with [`Child::signal_group`]). The flip side:
/// on a terminal the child is a background group, and reading from it stops
/// the child (SIGTTIN); a pod has no terminal, interactive use would need the
/// group made the terminal's foreground. Signals that peergate handles are
/// back at their defaults in the child.
pub fn spawn(command: &[OsString], env: &[(String, String)]) -> Result<Child, SpawnError> {
    let Some((program, args)) = command.split_first() else {
        return Err(SpawnError::EmptyCommand);
    };
    let mut std_command = std::process::Command::new(program);
    std_command
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .process_group(0);
    let mut child = std_command
        .spawn()
        .map_err(|source| classify(program, source))?;
    let pid = child.id();
    let pgid = libc::pid_t::try_from(pid).expect("PIDs fit in pid_t");
    let (tx, exit) = oneshot::channel();
    let waiter = std::thread::Builder::new()
        .name("peergate-wait".into())
        .spawn(move || {
            let _ = tx.send(child.wait());
        });
    if let Err(source) = waiter {
        // Nobody could reap it: do not leave it running unsupervised.
        let _ = kill(-pgid, libc::SIGKILL);
        return Err(SpawnError::Failed {
            program: program.clone(),
            source,
        });
    }
    debug!(pid, "started {}", program.to_string_lossy());
    Ok(Child {
        exit,
        pid,
        pgid,
        leader: Leader::Running,
    })
}

fn classify(program: &OsString, source: io::Error) -> SpawnError {
    let program = program.clone();
    match source.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound { program },
        io::ErrorKind::PermissionDenied => SpawnError::NotExecutable { program, source },
        _ => SpawnError::Failed { program, source },
    }
}

impl Child {
    /// The leader's PID, which is also the group's ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to every process of the child's group. A group with
    /// no process left (ESRCH) is not an error. After the leader was reaped
    /// this still signals the group, which is only right while some member
    /// is alive (that keeps its ID from being reused).
    pub fn signal_group(&self, signal: i32) -> io::Result<()> {
        self.kill_group(signal).map(|_delivered| ())
    }

    /// Whether the group had a process to signal.
    fn kill_group(&self, signal: i32) -> io::Result<bool> {
        kill(-self.pgid, signal)
    }

    /// Waits until the leader exits and reaps it; once it has, returns the
    /// same status at once. Cancel-safe: a `wait` dropped unfinished (a
    /// losing `tokio::select!` branch) loses nothing, the next call goes on.
    pub async fn wait(&mut self) -> Result<ExitStatus, WaitError> {
        if let Leader::Exited(status) = self.leader {
            return Ok(status);
        }
        let result = match (&mut self.exit).await {
            Ok(waited) => waited.and_then(ExitStatus::from_std),
            Err(_) => Err(io::Error::other("the thread waiting for it is gone")),
        };
        // No await point since the reap: a cancelled call cannot lose it.
        match result {
            Ok(status) => {
                self.leader = Leader::Exited(status);
                debug!(pid = self.pid, "child ended with {status}");
                Ok(status)
            }
            Err(source) => {
                self.leader = Leader::Lost;
                Err(WaitError {
                    pid: self.pid,
                    source,
                })
            }
        }
    }

    /// Ends the child: SIGTERM to the group, then SIGKILL to the group if
    /// the leader has not exited within `grace`, and once the leader has
    /// been reaped, SIGKILL to the group again, for stragglers that ignored
    /// SIGTERM or outlived the leader (ESRCH, nobody left, is the normal
    /// case). Returns how the leader ended.
    ///
    /// A leader that already exited is not signalled; its group still gets
    /// the final SIGKILL. Its ID cannot be reused while a member is alive,
    /// so that SIGKILL can only miss, not hit a stranger, unless the PIDs
    /// wrapped around since the reaping and the ID went to a new group.
    ///
    /// SIGKILL cannot be ignored, so this returns unless the leader is stuck
    /// in the kernel (uninterruptible sleep); bound it with a timeout where
    /// that matters. Dropped unfinished, the signals already sent stay
    /// sent and the leader is left unreaped (so Drop kills the group).
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus, WaitError> {
        let status = self.end_leader(grace).await?;
        match self.kill_group(libc::SIGKILL) {
            Ok(true) => info!(
                pid = self.pid,
                "killed what was left of the child's process group after the child ended"
            ),
            Ok(false) => {}
            Err(e) => warn!(
                pid = self.pid,
                "cannot send SIGKILL to the child's process group: {e}"
            ),
        }
        Ok(status)
    }

    async fn end_leader(&mut self, grace: Duration) -> Result<ExitStatus, WaitError> {
        if !matches!(self.leader, Leader::Running) {
            return self.wait().await;
        }
        self.send(libc::SIGTERM);
        if let Ok(result) = tokio::time::timeout(grace, self.wait()).await {
            return result;
        }
        warn!(
            pid = self.pid,
            "the child did not exit within {grace:?} of SIGTERM; sending SIGKILL to its process group"
        );
        self.send(libc::SIGKILL);
        self.wait().await
    }

    /// [`Child::signal_group`], logging a failure.
    fn send(&self, signal: i32) {
        debug!(
            pid = self.pid,
            "sending signal {signal} to the child's process group"
        );
        if let Err(e) = self.signal_group(signal) {
            warn!(
                pid = self.pid,
                "cannot send signal {signal} to the child's process group: {e}"
            );
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !matches!(self.leader, Leader::Running) {
            return;
        }
        match self.kill_group(libc::SIGKILL) {
            Ok(_) => debug!(pid = self.pid, "dropped unreaped; killed its process group"),
            Err(e) => warn!(
                pid = self.pid,
                "dropped unreaped, but cannot kill its process group: {e}"
            ),
        }
    }
}

/// kill(2): `signal` to the process `target`, or to the group `-target`.
/// Returns whether there was anyone to signal (ESRCH is `Ok(false)`).
///
/// 0 and -1 are refused: they would mean peergate's own group and every
/// process peergate may signal.
fn kill(target: libc::pid_t, signal: i32) -> io::Result<bool> {
    if target == 0 || target == -1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to send signal {signal} to pid {target}"),
        ));
    }
    // SAFETY: kill(2) takes two integers and reads or writes no memory of
    // this process; an invalid signal number is reported as EINVAL. Which
    // processes it reaches is checked above, not a matter of memory safety.
    let rc = unsafe { libc::kill(target, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::future::Future;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;
    use std::time::Instant;

    use tokio::time::{sleep, timeout};

    use super::*;
    use crate::handoff::test_dir::TestDir;

    /// The most any one wait in these tests may take.
    const BOUND: Duration = Duration::from_secs(5);

    fn sh(script: &str) -> Vec<OsString> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
        timeout(BOUND, future)
            .await
            .unwrap_or_else(|_| panic!("{what}: not done within {BOUND:?}"))
    }

    async fn exit_of(command: &[OsString], env: &[(String, String)]) -> ExitStatus {
        let mut child = spawn(command, env).expect("spawn");
        bounded("wait", child.wait()).await.expect("wait")
    }

    /// The line a script wrote to `path`, once it is all there.
    async fn written(path: &Path) -> String {
        bounded("the script's file", async {
            loop {
                if let Ok(text) = fs::read_to_string(path)
                    && text.ends_with('\n')
                {
                    return text;
                }
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// A line to `path`, by the shell itself: no command of its own for a
    /// signal to kill (and the shell to report), one write(2) to read.
    fn write_cmd(what: &str, path: &Path) -> String {
        format!("echo {what} > '{}'", path.display())
    }

    /// Whether `pid` has died: no such process, or a zombie waiting for
    /// whoever inherited it to reap it (which PID 1 of a container might
    /// never do).
    fn is_dead(pid: libc::pid_t) -> bool {
        if !kill(pid, 0).expect("kill(pid, 0)") {
            return true;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        state.is_some_and(|rest| rest.starts_with('Z'))
    }

    async fn until_dead(pid: libc::pid_t) {
        bounded("the process's death", async {
            while !is_dead(pid) {
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    fn pid_in(text: &str) -> libc::pid_t {
        text.trim().parse().expect("a PID")
    }

    #[tokio::test]
    async fn exit_codes_come_back() {
        assert_eq!(exit_of(&sh("exit 0"), &[]).await, ExitStatus::Code(0));
        let three = exit_of(&sh("exit 3"), &[]).await;
        assert_eq!(three, ExitStatus::Code(3));
        assert!(!three.success());
        assert_eq!(three.code(), 3);
        assert_eq!(exit_of(&sh("exit 255"), &[]).await.code(), 255);
        assert!(exit_of(&sh("true"), &[]).await.success());
    }

    #[tokio::test]
    async fn a_child_killed_by_a_signal_reports_it() {
        let status = exit_of(&sh("kill -KILL $$"), &[]).await;
        assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
        assert_eq!(status.code(), 137);
        assert!(!status.success());
    }

    #[tokio::test]
    async fn signal_group_reaches_the_child() {
        let mut child = spawn(&sh("exec sleep 30"), &[]).expect("spawn");
        child.signal_group(libc::SIGTERM).expect("signal");
        let status = bounded("wait", child.wait()).await.expect("wait");
        assert_eq!(status, ExitStatus::Signal(libc::SIGTERM));
        assert_eq!(status.code(), 143);
        // Nobody left in the group: not an error.
        child
            .signal_group(libc::SIGTERM)
            .expect("signal an empty group");
    }

    #[tokio::test]
    async fn env_is_added_and_path_is_searched() {
        // "sh" without a slash: found through the inherited PATH.
        let command = [
            "sh".into(),
            "-c".into(),
            r#"[ "$PEERGATE_SUPERVISE_TEST" = "a b" ] && [ -n "$PATH" ] && exit 42"#.into(),
        ];
        let env = [("PEERGATE_SUPERVISE_TEST".to_owned(), "a b".to_owned())];
        assert_eq!(exit_of(&command, &env).await, ExitStatus::Code(42));
        assert_eq!(exit_of(&command, &[]).await, ExitStatus::Code(1));
    }

    #[tokio::test]
    async fn the_child_leads_a_group_of_its_own() {
        let dir = TestDir::new();
        let out = dir.join("pgid");
        // Field 5 of /proc/self/stat (after the command's name) is the group.
        let script = format!(
            "set -- $(cut -d')' -f2 /proc/$$/stat); {}",
            write_cmd("$3", &out)
        );
        let mut child = spawn(&sh(&script), &[]).expect("spawn");
        let status = bounded("wait", child.wait()).await.expect("wait");
        assert!(status.success(), "{status}");
        assert_eq!(pid_in(&written(&out).await), child.pgid);
        assert_eq!(child.pid(), child.pgid as u32);
    }

    #[tokio::test]
    async fn wait_is_cancel_safe_and_repeatable() {
        let mut child = spawn(&sh("sleep 0.2; exit 5"), &[]).expect("spawn");
        let mut ticks = 0;
        let status = bounded("wait", async {
            loop {
                tokio::select! {
                    status = child.wait() => break status,
                    () = sleep(Duration::from_millis(20)) => ticks += 1,
                }
            }
        })
        .await
        .expect("wait");
        assert_eq!(status, ExitStatus::Code(5));
        assert!(ticks > 0, "the wait never lost a race");
        assert_eq!(child.wait().await.expect("again"), ExitStatus::Code(5));
    }

    #[tokio::test]
    async fn stop_lets_a_child_that_traps_term_exit_on_its_own() {
        let dir = TestDir::new();
        let ready = dir.join("ready");
        // A trapped signal ends `wait` at once; the sleep gets SIGTERM too.
        let script = format!(
            "trap 'exit 0' TERM; {}; sleep 30 & wait",
            write_cmd("1", &ready)
        );
        let mut child = spawn(&sh(&script), &[]).expect("spawn");
        written(&ready).await;
        let start = Instant::now();
        let status = bounded("stop", child.stop(Duration::from_secs(4)))
            .await
            .expect("stop");
        assert_eq!(status, ExitStatus::Code(0));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn stop_kills_a_child_that_ignores_term_after_the_grace() {
        let dir = TestDir::new();
        let ready = dir.join("ready");
        let script = format!("trap '' TERM; {}; sleep 30", write_cmd("1", &ready));
        let mut child = spawn(&sh(&script), &[]).expect("spawn");
        written(&ready).await;
        let grace = Duration::from_millis(200);
        let start = Instant::now();
        let status = bounded("stop", child.stop(grace)).await.expect("stop");
        assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
        assert_eq!(status.code(), 137);
        assert!(start.elapsed() >= grace, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn stop_leaves_no_grandchild_behind() {
        let dir = TestDir::new();
        let (plain, stubborn) = (dir.join("plain"), dir.join("stubborn"));
        // One grandchild dies of SIGTERM with the leader; the other ignores
        // it and outlives the leader until the final SIGKILL.
        let script = format!(
            "sleep 30 & {}; (trap '' TERM; exec sleep 30) & {}; wait",
            write_cmd("$!", &plain),
            write_cmd("$!", &stubborn)
        );
        let mut child = spawn(&sh(&script), &[]).expect("spawn");
        let plain = pid_in(&written(&plain).await);
        let stubborn = pid_in(&written(&stubborn).await);
        assert!(!is_dead(stubborn));
        let status = bounded("stop", child.stop(Duration::from_secs(4)))
            .await
            .expect("stop");
        assert_eq!(status, ExitStatus::Signal(libc::SIGTERM));
        until_dead(plain).await;
        until_dead(stubborn).await;
    }

    #[tokio::test]
    async fn stop_after_the_child_exited_returns_its_status() {
        let mut child = spawn(&sh("exit 7"), &[]).expect("spawn");
        bounded("wait", child.wait()).await.expect("wait");
        let status = bounded("stop", child.stop(Duration::from_millis(200)))
            .await
            .expect("stop");
        assert_eq!(status, ExitStatus::Code(7));
    }

    #[tokio::test]
    async fn dropping_an_unreaped_child_kills_its_group() {
        let dir = TestDir::new();
        let out = dir.join("grandchild");
        let script = format!("sleep 30 & {}; wait", write_cmd("$!", &out));
        let child = spawn(&sh(&script), &[]).expect("spawn");
        let grandchild = pid_in(&written(&out).await);
        let leader = child.pgid;
        drop(child);
        until_dead(leader).await;
        until_dead(grandchild).await;
    }

    #[test]
    fn an_empty_command_is_a_usage_error() {
        let error = spawn(&[], &[]).unwrap_err();
        assert!(matches!(error, SpawnError::EmptyCommand), "{error:?}");
        assert_eq!(error.exit_code(), 2);
        assert_eq!(error.to_string(), "no command given after --");
    }

    #[tokio::test]
    async fn a_missing_program_is_not_found_127() {
        let dir = TestDir::new();
        let missing = dir.join("no-such-program");
        let error = spawn(&[missing.clone().into(), "--flag".into()], &[]).unwrap_err();
        assert!(
            matches!(&error, SpawnError::NotFound { program } if Path::new(program) == missing),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), 127);
        assert_eq!(
            error.to_string(),
            format!(
                "cannot run {}: no such file (or its #! interpreter is missing)",
                missing.display()
            )
        );

        // A name without a slash, looked up in a PATH (from `env`) where
        // nothing is.
        let path = dir.path().to_string_lossy().into_owned();
        let error = spawn(
            &["peergate-test-no-such-command".into()],
            &[("PATH".to_owned(), path)],
        )
        .unwrap_err();
        assert_eq!(error.exit_code(), 127, "{error:?}");
        assert_eq!(
            error.to_string(),
            "cannot run peergate-test-no-such-command: not found in PATH \
             (or its #! interpreter is missing)"
        );
    }

    #[tokio::test]
    async fn a_file_without_execute_permission_is_126() {
        let dir = TestDir::new();
        let script = dir.join("train.sh");
        fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
        let error = spawn(&[script.clone().into()], &[]).unwrap_err();
        assert!(
            matches!(error, SpawnError::NotExecutable { .. }),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), 126);
        let message = error.to_string();
        assert!(message.contains(&*script.to_string_lossy()), "{message}");
        assert!(message.contains("Permission denied"), "{message}");
    }

    #[test]
    fn exit_statuses_read_like_the_shell() {
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal(libc::SIGTERM).success());
        assert_eq!(ExitStatus::Signal(libc::SIGINT).code(), 130);
        assert_eq!(ExitStatus::Signal(64).code(), 192);
        assert_eq!(ExitStatus::Signal(300).code(), 255);
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
        assert_eq!(ExitStatus::Signal(9).to_string(), "signal 9 (SIGKILL)");
        assert_eq!(
            ExitStatus::Signal(libc::SIGUSR1).to_string(),
            format!("signal {} (SIGUSR1)", libc::SIGUSR1)
        );
        assert_eq!(ExitStatus::Signal(40).to_string(), "signal 40");
    }

    #[test]
    fn kill_refuses_the_targets_that_mean_everyone() {
        for target in [0, -1] {
            let error = kill(target, 0).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        }
    }
}

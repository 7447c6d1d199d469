//! The rusage wrapper: `bench --rusage-wrap OUT -- PROGRAM ARGS...` runs the
//! program, waits for it with wait4(2) and writes one line to OUT:
//! `start_ns end_ns utime_us stime_us maxrss_kb code`, times on
//! CLOCK_MONOTONIC (the clock behind `Instant`, shared by every process of
//! the machine), CPU and RSS of the program and the children it waited for
//! (the seed loop's `ping`s and `sleep`s count). It exits with the program's
//! code (128 + signal when killed), so the bed sees the program's outcome.
//! SIGTERM and SIGINT sent to the wrapper are passed on to the program (the
//! harness stops sidecars this way, as the kubelet does), so the recorded
//! code is the program's answer to the signal.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

pub const FLAG: &str = "--rusage-wrap";

/// One wrapped run, as read back by the harness.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub start_ns: u64,
    pub end_ns: u64,
    pub cpu_us: u64,
    pub maxrss_kb: u64,
    pub code: i32,
}

impl Usage {
    pub fn wall_s(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    pub fn read(path: &Path) -> Option<Usage> {
        let text = std::fs::read_to_string(path).ok()?;
        let f: Vec<i64> = text
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        let [start, end, utime, stime, rss, code] = f[..] else {
            return None;
        };
        Some(Usage {
            start_ns: start as u64,
            end_ns: end as u64,
            cpu_us: (utime + stime) as u64,
            maxrss_kb: rss as u64,
            code: code as i32,
        })
    }
}

/// `<out>.start`: the start time alone, written as soon as the program runs.
fn start_path(out: &Path) -> std::path::PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".start");
    s.into()
}

/// The start time (CLOCK_MONOTONIC ns) of a program still running under the
/// wrapper that records into `out`.
pub fn started_ns(out: &Path) -> Option<u64> {
    std::fs::read_to_string(start_path(out))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The argv that runs `argv` under the wrapper, recording into `out`.
pub fn wrapped(out: &Path, argv: &[String]) -> Vec<String> {
    let me = std::env::current_exe().expect("current_exe");
    let mut v = vec![
        me.display().to_string(),
        FLAG.to_string(),
        out.display().to_string(),
        "--".to_string(),
    ];
    v.extend(argv.iter().cloned());
    v
}

/// The wrapped program, for the signal handler (0 until it runs).
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; the pid is our child, not
        // reaped before the wait below returns.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Passes SIGTERM and SIGINT on to the program. No SA_RESTART: wait4 then
/// returns EINTR and is called again.
fn forward_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: an all-zero sigaction is valid; we set the handler and an
        // empty mask before installing it.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn main(args: &[String]) -> ! {
    let (out, argv) = match args {
        [out, dash, _prog, ..] if dash == "--" => (out, &args[2..]),
        _ => {
            eprintln!("usage: bench {FLAG} OUT -- PROGRAM [ARGS...]");
            std::process::exit(2);
        }
    };
    let start = now_ns();
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // A no-op pre_exec makes std fork instead of posix_spawn (vfork): the
    // kernel adds the RSS of the image a process replaces at exec to its
    // ru_maxrss. A vfork child's image is the wrapper's whole memory (text
    // and libraries included, about 2.5 MB); a fork child's is only the
    // anonymous pages copied at fork, far below any program measured here.
    // SAFETY: the closure does nothing.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench {FLAG}: cannot run {}: {e}", argv[0]);
            std::process::exit(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    CHILD.store(pid, Ordering::SeqCst);
    forward_signals();
    // The start is known before the end for programs that keep running (a
    // sidecar); written after the spawn so that it costs the program nothing.
    if let Err(e) = std::fs::write(start_path(Path::new(out)), format!("{start}\n")) {
        eprintln!("bench {FLAG}: write {out}.start: {e}");
    }
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 overwrites it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            eprintln!("bench {FLAG}: wait4: {err}");
            std::process::exit(125);
        }
    }
    let end = now_ns();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    let line = format!(
        "{start} {end} {} {} {} {code}\n",
        us(ru.ru_utime),
        us(ru.ru_stime),
        ru.ru_maxrss
    );
    if let Err(e) = std::fs::write(out, line) {
        eprintln!("bench {FLAG}: write {out}: {e}");
    }
    std::process::exit(code);
}

//! A fleet of processes in one network namespace, started and reaped by a
//! small launcher process: `bench --fleet-launch NETNS DIR` (this binary
//! re-executed).
//!
//! Why a launcher and not the benchmark process itself: at exec(2) the
//! kernel adds the RSS of the image a process replaces to its ru_maxrss.
//! A child forked from the benchmark (megabytes of heap by then) would
//! report at least that as its peak RSS. The launcher's heap is small, so
//! the children's peak RSS is their own. It is also the one place where a
//! single `wait4(-1)` reaper is right: the launcher's only children are
//! the fleet.
//!
//! Protocol: the harness writes each child's argv to `DIR/argv/<i>`
//! (NUL-separated) and sends `spawn A B` lines (indices A..B) on the
//! launcher's stdin. The launcher appends one line per event to
//! `DIR/events`:
//!
//! ```text
//! S <i> <pid> <start_ns>                       spawned (start taken before fork)
//! F <i> <error>                                could not spawn
//! D <A> <B>                                    a spawn command is done
//! E <pid> <exit_ns> <code> <cpu_us> <maxrss_kb>  reaped (code: 128 + signal if killed)
//! ```
//!
//! Each child runs in the namespace (setns(2) between fork and exec), with
//! stdout/stderr to `DIR/p<i>.{stdout,stderr}` and PR_SET_PDEATHSIG. When
//! its stdin closes, the launcher kills the children still running, reaps
//! them and exits; the harness kills the launcher's process group if it
//! does not. Times are CLOCK_MONOTONIC, like the rusage wrapper's.

use crate::support::proc::die_with_parent;
use crate::wrap::now_ns;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FLAG: &str = "--fleet-launch";

/// How one process ended, as the launcher's reaper saw it.
#[derive(Clone, Copy, Debug)]
pub struct Reaped {
    pub at_ns: u64,
    /// Exit code, or 128 + signal.
    pub code: i32,
    pub cpu_us: u64,
    pub maxrss_kb: u64,
}

fn argv_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("argv").join(i.to_string())
}

/// The launcher process. Never returns.
pub fn launcher_main(args: &[String]) -> ! {
    let [netns, dir] = args else {
        eprintln!("usage: bench {FLAG} NETNS DIR");
        std::process::exit(2);
    };
    let netns = File::open(netns).unwrap_or_else(|e| {
        eprintln!("bench {FLAG}: open {netns}: {e}");
        std::process::exit(2);
    });
    let dir = PathBuf::from(dir);
    let events = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events"))
            .unwrap_or_else(|e| {
                eprintln!("bench {FLAG}: open events: {e}");
                std::process::exit(2);
            }),
    ));
    let emit = |events: &Mutex<File>, line: String| {
        // One write per line, O_APPEND: lines never interleave.
        let _ = events.lock().unwrap().write_all(line.as_bytes());
    };
    // Raised priority for the spawning thread too: it shares the machine
    // with every process started so far, whereas a kubelet is not slowed by
    // the pods of other nodes. The children get normal priority back.
    raise_priority();
    let reaped: Arc<Mutex<HashSet<i32>>> = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reaper = {
        let (events, reaped, stop) = (events.clone(), reaped.clone(), stop.clone());
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reap(&events, &reaped, &stop))
            .expect("spawn the reaper thread")
    };
    let mut spawned: Vec<i32> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["spawn", a, b] = words[..] else {
            eprintln!("bench {FLAG}: unknown command {line:?}");
            continue;
        };
        let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else {
            eprintln!("bench {FLAG}: bad range in {line:?}");
            continue;
        };
        for i in a..b {
            match spawn_one(&netns, &dir, i) {
                Ok((pid, start)) => {
                    spawned.push(pid);
                    emit(&events, format!("S {i} {pid} {start}\n"));
                }
                Err(e) => emit(&events, format!("F {i} {e}\n")),
            }
        }
        emit(&events, format!("D {a} {b}\n"));
    }
    // Stdin closed: the harness is done (or gone). Kill what still runs.
    {
        // Under the lock the reaper cannot reap, so a pid not in the set is
        // an unreaped child of ours.
        let reaped = reaped.lock().unwrap();
        for &pid in spawned.iter().filter(|p| !reaped.contains(p)) {
            // SAFETY: kill(2) of our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while reaped.lock().unwrap().len() < spawned.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let code = if reaped.lock().unwrap().len() < spawned.len() {
        eprintln!("bench {FLAG}: children survived SIGKILL");
        1
    } else {
        let _ = reaper.join();
        0
    };
    std::process::exit(code);
}

fn spawn_one(netns: &File, dir: &Path, i: usize) -> std::io::Result<(i32, u64)> {
    let raw = std::fs::read(argv_path(dir, i))?;
    let argv: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let Some((prog, args)) = argv.split_first() else {
        return Err(std::io::Error::other("empty argv"));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join(format!("p{i}.stdout")))?)
        .stderr(File::create(dir.join(format!("p{i}.stderr")))?);
    let fd = netns.as_raw_fd();
    // SAFETY: setns and prctl are plain syscalls, async-signal-safe;
    // nothing else runs between fork and exec. (A pre_exec closure also
    // makes std fork rather than vfork: see the module doc.)
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                || libc::setpriority(libc::PRIO_PROCESS, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = now_ns();
    // The reaper owns the exit; dropping the Child neither waits nor kills.
    let child = cmd.spawn()?;
    Ok((child.id() as i32, start))
}

/// Reaps every child: waitid(WNOWAIT) stamps the exit the moment it is
/// known, then wait4 collects the status and rusage under the lock that
/// guards the kill at the end (so a pid is never killed after it was reaped
/// and could be reused). Raised priority: the measured processes compete
/// for CPU, and the exit time is taken here.
fn reap(events: &Mutex<File>, reaped: &Mutex<HashSet<i32>>, stop: &AtomicBool) {
    raise_priority();
    loop {
        // SAFETY: an all-zero siginfo is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid out-pointer.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => {
                    // No child right now (none yet, or all gone).
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                _ => {
                    eprintln!("bench {FLAG}: waitid: {}", std::io::Error::last_os_error());
                    return;
                }
            }
        }
        let at_ns = now_ns();
        // SAFETY: reading the pid of a CLD_* siginfo that waitid filled.
        let pid = unsafe { info.si_pid() };
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is valid; wait4 overwrites it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let mut set = reaped.lock().unwrap();
        // SAFETY: wait4 on a child known to be a zombie.
        if unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
            continue;
        }
        set.insert(pid);
        drop(set);
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        let us = |t: libc::timeval| (t.tv_sec * 1_000_000 + t.tv_usec) as u64;
        let line = format!(
            "E {pid} {at_ns} {code} {} {}\n",
            us(ru.ru_utime) + us(ru.ru_stime),
            ru.ru_maxrss
        );
        let _ = events.lock().unwrap().write_all(line.as_bytes());
    }
}

/// Nice -10 for the calling thread (the launcher runs as root).
fn raise_priority() {
    // SAFETY: plain syscalls on this thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10);
    }
}

/// What the harness knows from the events so far.
#[derive(Default)]
struct State {
    /// When the events were last read (callers poll often; reading every
    /// few milliseconds is plenty: the times come from the launcher).
    read_at: Option<Instant>,
    offset: u64,
    partial: String,
    pids: Vec<i32>,
    starts: Vec<u64>,
    exits: HashMap<i32, Reaped>,
    failed: Vec<(usize, String)>,
    done: Vec<(usize, usize)>,
}

/// The harness's handle on a launcher and its fleet.
pub struct Fleet {
    launcher: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
    state: RefCell<State>,
}

impl Fleet {
    /// Starts a launcher for `n` processes in namespace `ns`, files in `dir`.
    pub fn start(ns: &str, dir: &Path, n: usize) -> std::io::Result<Fleet> {
        std::fs::create_dir_all(dir.join("argv"))?;
        File::create(dir.join("events"))?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg(FLAG)
            .arg(Path::new("/run/netns").join(ns))
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(File::create(dir.join("launcher.stdout"))?)
            .stderr(File::create(dir.join("launcher.stderr"))?)
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut launcher = cmd.spawn()?;
        let stdin = launcher.stdin.take();
        Ok(Fleet {
            launcher,
            stdin,
            dir: dir.to_path_buf(),
            state: RefCell::new(State {
                pids: vec![0; n],
                starts: vec![0; n],
                ..State::default()
            }),
        })
    }

    pub fn stderr_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("p{i}.stderr"))
    }

    pub fn write_argv(&self, i: usize, argv: &[String]) -> std::io::Result<()> {
        let mut raw = Vec::new();
        for a in argv {
            raw.extend_from_slice(a.as_bytes());
            raw.push(0);
        }
        std::fs::write(argv_path(&self.dir, i), raw)
    }

    /// Has the launcher start processes `from..to`, and waits (at most
    /// `limit`) until it has. Errors name the processes it could not start.
    pub fn spawn(&mut self, from: usize, to: usize, limit: Duration) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("launcher stdin closed")?;
        writeln!(stdin, "spawn {from} {to}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("launcher: {e}"))?;
        let deadline = Instant::now() + limit;
        loop {
            self.refresh();
            let st = self.state.borrow();
            if st.done.contains(&(from, to)) {
                let failed: Vec<String> = st
                    .failed
                    .iter()
                    .filter(|(i, _)| (from..to).contains(i))
                    .take(5)
                    .map(|(i, e)| format!("pod {i}: {e}"))
                    .collect();
                return if failed.is_empty() {
                    Ok(())
                } else {
                    Err(format!("could not start {}", failed.join(", ")))
                };
            }
            drop(st);
            if Instant::now() > deadline {
                return Err(format!(
                    "the launcher had not started {from}..{to} after {limit:?}"
                ));
            }
            if let Ok(Some(status)) = self.launcher.try_wait() {
                return Err(format!("the launcher exited: {status}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads the events appended since the last read, at most every 20 ms.
    fn refresh(&self) {
        let mut st = self.state.borrow_mut();
        if st
            .read_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(20))
        {
            return;
        }
        st.read_at = Some(Instant::now());
        let Ok(mut f) = File::open(self.dir.join("events")) else {
            return;
        };
        if f.seek(SeekFrom::Start(st.offset)).is_err() {
            return;
        }
        let mut buf = String::new();
        let Ok(read) = f.read_to_string(&mut buf) else {
            return;
        };
        st.offset += read as u64;
        let text = std::mem::take(&mut st.partial) + &buf;
        let (complete, rest) = match text.rfind('\n') {
            Some(at) => text.split_at(at + 1),
            None => ("", text.as_str()),
        };
        st.partial = rest.to_string();
        for line in complete.lines() {
            let w: Vec<&str> = line.splitn(3, ' ').collect();
            let num = |k: usize| w.get(k).and_then(|x| x.parse::<u64>().ok());
            match w.first().copied() {
                Some("S") => {
                    let f: Vec<u64> = line[2..]
                        .split(' ')
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if let [i, pid, start] = f[..]
                        && (i as usize) < st.pids.len()
                    {
                        st.pids[i as usize] = pid as i32;
                        st.starts[i as usize] = start;
                    }
                }
                Some("F") => {
                    if let Some(i) = num(1) {
                        let e = w.get(2).copied().unwrap_or("").to_string();
                        st.failed.push((i as usize, e));
                    }
                }
                Some("D") => {
                    if let (Some(a), Some(b)) = (num(1), num(2)) {
                        st.done.push((a as usize, b as usize));
                    }
                }
                Some("E") => {
                    let f: Vec<i64> = line[2..]
                        .split(' ')
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if let [pid, at, code, cpu, rss] = f[..] {
                        st.exits.insert(
                            pid as i32,
                            Reaped {
                                at_ns: at as u64,
                                code: code as i32,
                                cpu_us: cpu as u64,
                                maxrss_kb: rss as u64,
                            },
                        );
                    }
                }
                _ => eprintln!("bench: fleet: unknown event {line:?}"),
            }
        }
    }

    /// Pid of process `i` (0: not started).
    pub fn pid(&self, i: usize) -> i32 {
        self.refresh();
        self.state.borrow().pids[i]
    }

    /// Start time (CLOCK_MONOTONIC ns) of process `i`.
    pub fn start_ns(&self, i: usize) -> u64 {
        self.refresh();
        self.state.borrow().starts[i]
    }

    pub fn exit_of(&self, i: usize) -> Option<Reaped> {
        self.refresh();
        let st = self.state.borrow();
        let pid = st.pids[i];
        (pid != 0).then(|| st.exits.get(&pid).copied()).flatten()
    }

    /// Waits until every started process has been reaped, at most `limit`.
    pub fn wait_all(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.refresh();
            let st = self.state.borrow();
            let running = st
                .pids
                .iter()
                .filter(|&&p| p != 0 && !st.exits.contains_key(&p))
                .count();
            drop(st);
            if running == 0 {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // EOF: the launcher kills what still runs, reaps it and exits.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.launcher.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Still there: kill its process group (the launcher and any child
        // left), then reap the launcher.
        let pgid = self.launcher.id() as i32;
        // SAFETY: the launcher is our unreaped child, so its group exists.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.launcher.wait();
    }
}

//! Container e2e: the tutorial's three-pod Indexed Job emulated with Docker,
//! with peergate running from its FROM scratch image (issue 4).
//!
//! Each "pod" is modelled the way Kubernetes builds one. A long-lived sandbox
//! container (images/sandbox: busybox sleeping) owns the network namespace,
//! the hostname `example-job-<i>` and the network alias
//! `example-job-<i>.headless-svc` that Docker's embedded DNS answers. peergate
//! joins it with `--network container:<sandbox>`, as an init container joins
//! its pod, non-root, with every capability dropped and a read-only root
//! filesystem. The sandbox matters: Docker deletes a container's DNS record
//! the moment that container exits, while a pod's record outlives its init
//! container.
//!
//! Docker writes no kubelet-style FQDN line into /etc/hosts and no search list
//! into resolv.conf, so the gates get `--subdomain headless-svc` (the flag a
//! user needs under Docker, see examples/compose.yaml). The networks are
//! `--internal` and every sandbox uses `--dns 127.0.0.1`: names the embedded
//! DNS does not know are then forwarded to the container's own loopback,
//! where nothing answers, so no query leaves the test's containers, the
//! result does not depend on the host's resolver, and a missing peer looks
//! like it does on an offline engine (no answer rather than NXDOMAIN).
//!
//! One `#[test]` per scenario (`scenarios::*`), so one failing scenario
//! does not hide the others. They run in parallel threads, as libtest
//! schedules them, each on its own `--internal` network with its own
//! names (the run's unique prefix, then the scenario's), so their DNS
//! answers never mix.
//!
//! The images are built once per test process, by the first test that needs
//! them (a `OnceLock`; a failed build fails every test with its message):
//! images/build.sh makes the static release binary the FROM scratch image
//! needs (the test build of this crate is linked for the host, dynamically
//! on glibc), unless `PEERGATE_TEST_IMAGE` names one (as CI does with the
//! image it built before the tests), which is then left in place. Every
//! container and network a scenario creates is removed by a Drop guard,
//! also when an assertion fails; the images this process built are removed
//! when it exits (an `atexit` handler: statics are never dropped).
//!
//! Without a usable Docker daemon or a static /bin/busybox each test prints
//! why and passes; under CI (`CI` set to anything but `false` or `0`) that
//! is a failure.

#[path = "support/ci.rs"]
mod ci;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const JOB: &str = "example-job";
/// What the image runs under in the tests: the restricted Pod Security
/// Standard's terms (non-root, no capabilities, read-only root).
const RESTRICTED: [&str; 7] = [
    "--user",
    "65532:65532",
    "--cap-drop",
    "ALL",
    "--read-only",
    "--security-opt",
    "no-new-privileges",
];
const SUBDOMAIN: &str = "headless-svc";
/// Hang protection only: each gate's own `--timeout` ends it long before.
const GATE_DEADLINE: Duration = Duration::from_secs(120);
/// The gates' `--timeout` where every peer exists: generous, since a failing
/// gate then shows its causes in the logs instead of hanging the suite.
const PASS_TIMEOUT: &str = "60s";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peer_name(i: usize) -> String {
    format!("{JOB}-{i}.{SUBDOMAIN}")
}

// ---------------------------------------------------------------------------
// docker helpers

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

/// Runs docker and returns its trimmed stdout; panics with stderr on failure.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn run_script(script: &Path, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{}\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => return Some(format!("docker CLI not runnable: {e}")),
        Ok(out) if !out.status.success() => {
            return Some(format!(
                "docker daemon not usable: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(_) => {}
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("/bin/busybox missing (apt-get install busybox-static)".into());
    }
    if Command::new("bash").arg("--version").output().is_err() {
        return Some("bash missing (runs images/*/build.sh)".into());
    }
    None
}

/// True when the test may go on; otherwise prints the reason and returns
/// false, or panics under CI.
fn ready(test: &str) -> bool {
    let Some(why) = missing_prerequisite() else {
        return true;
    };
    if ci::under_ci() {
        panic!("{test}: prerequisite missing under CI: {why}");
    }
    // Straight to fd 2: libtest captures the output of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    false
}

// ---------------------------------------------------------------------------
// cleanup guards

enum Kind {
    Container,
    Network,
    Image,
    Volume,
}

/// A Docker object this run created; removed when dropped.
struct Created {
    kind: Kind,
    name: String,
}

impl Created {
    fn new(kind: Kind, name: impl Into<String>) -> Self {
        Created {
            kind,
            name: name.into(),
        }
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        let args: &[&str] = match self.kind {
            Kind::Container => &["rm", "--force", "--volumes"],
            Kind::Network => &["network", "rm"],
            Kind::Image => &["image", "rm", "--force"],
            Kind::Volume => &["volume", "rm", "--force"],
        };
        let _ = Command::new("docker")
            .args(args)
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------
// images, shared by every scenario of this process

struct Images {
    peergate: String,
    sandbox: String,
}

/// This process's unique prefix for every Docker object it creates.
fn run_prefix() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| format!("pge2e-{}-{:x}", std::process::id(), now_ns() % 0xffff_ffff))
}

/// Images this process built, removed when it exits.
static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn remove_built_images() {
    let names = match BUILT.lock() {
        Ok(mut names) => std::mem::take(&mut *names),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    for name in names {
        drop(Created::new(Kind::Image, name));
    }
}

/// Registered before the build starts: a half-built image is removed too.
fn remove_at_exit(image: &str) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: atexit only records the function, which takes no
        // arguments and does not unwind (every failure in it is ignored).
        let rc = unsafe { libc::atexit(remove_built_images) };
        assert_eq!(rc, 0, "atexit");
    });
    BUILT.lock().unwrap().push(image.to_string());
}

/// The images, built by the first caller; every later caller waits for
/// that build and gets its result.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            std::panic::catch_unwind(|| build_images(run_prefix())).map_err(|e| panic_text(&*e))
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("the test images could not be built: {e}"))
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn build_images(run: &str) -> Images {
    let peergate = match std::env::var("PEERGATE_TEST_IMAGE") {
        Ok(image) if !image.is_empty() => {
            docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
            image
        }
        _ => {
            let tag = format!("{run}-peergate:test");
            remove_at_exit(&tag);
            run_script(&repo().join("images/build.sh"), &["--tag", &tag]);
            tag
        }
    };
    let sandbox = format!("{run}-sandbox:test");
    remove_at_exit(&sandbox);
    run_script(&repo().join("images/sandbox/build.sh"), &[&sandbox]);
    Images { peergate, sandbox }
}

// ---------------------------------------------------------------------------
// one emulated Job per scenario

/// A gate's result: `docker run` returns the container's exit code.
struct Gate {
    index: usize,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Gate {
    fn describe(&self) -> String {
        format!(
            "gate {} exit {:?}\n--- stderr ---\n{}--- stdout ---\n{}",
            self.index, self.code, self.stderr, self.stdout
        )
    }
}

struct Job<'a> {
    // Declared first so containers go before the network they sit on.
    containers: Vec<Created>,
    _network: Created,
    prefix: String,
    images: &'a Images,
}

impl<'a> Job<'a> {
    fn new(images: &'a Images, prefix: String) -> Self {
        let net = format!("{prefix}-net");
        // Registered before creation: a half-created network is still removed.
        let network = Created::new(Kind::Network, net.clone());
        docker_ok(&["network", "create", "--internal", &net]);
        Job {
            containers: Vec::new(),
            _network: network,
            prefix,
            images,
        }
    }

    fn sandbox(&self, i: usize) -> String {
        format!("{}-pod-{i}", self.prefix)
    }

    /// Starts pod `i`'s sandbox with extra `docker run` options.
    fn start_pod(&mut self, i: usize, extra: &[&str]) {
        let name = self.sandbox(i);
        self.containers
            .push(Created::new(Kind::Container, name.clone()));
        let hostname = format!("{JOB}-{i}");
        let alias = peer_name(i);
        let network = format!("{}-net", self.prefix);
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            name.as_str(),
            "--hostname",
            hostname.as_str(),
            "--network",
            network.as_str(),
            "--network-alias",
            alias.as_str(),
            "--dns",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        args.push(&self.images.sandbox);
        docker_ok(&args);
    }

    /// Starts a serving barrier (a native sidecar) in pod `i`, detached,
    /// with extra `docker run` options and peergate arguments; returns the
    /// container's name.
    fn start_sidecar(&mut self, i: usize, docker: &[&str], peergate: &[&str]) -> String {
        let name = format!("{}-sidecar-{i}", self.prefix);
        self.containers
            .push(Created::new(Kind::Container, name.clone()));
        let network = format!("--network=container:{}", self.sandbox(i));
        let index = format!("--env=JOB_COMPLETION_INDEX={i}");
        let head = ["run", "--detach", "--name", &name, &network, &index];
        let tail = [
            self.images.peergate.as_str(),
            "--mode",
            "barrier",
            "--serve",
            "--subdomain",
            SUBDOMAIN,
            "--timeout",
            PASS_TIMEOUT,
        ];
        docker_ok(&[&head[..], docker, &RESTRICTED[..], &tail[..], peergate].concat());
        name
    }

    /// Stops a sidecar as the kubelet does (SIGTERM) and checks it exits 0;
    /// returns its log.
    fn stop_sidecar(&self, name: &str) -> String {
        docker_ok(&["stop", "--time", "10", name]);
        let code = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", name]);
        let logs = docker(&["logs", name]);
        let logs = String::from_utf8_lossy(&logs.stderr).into_owned();
        assert_eq!(code, "0", "{name} on SIGTERM:\n{logs}");
        logs
    }

    /// Starts peergate in pod `i` (attached, in a thread) with `peergate_args`;
    /// the receiver yields its result.
    fn spawn_gate(&mut self, i: usize, peergate_args: &[&str]) -> mpsc::Receiver<Gate> {
        let name = format!("{}-gate-{i}", self.prefix);
        self.containers
            .push(Created::new(Kind::Container, name.clone()));
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--name", &name])
            .arg(format!("--network=container:{}", self.sandbox(i)))
            .arg(format!("--env=JOB_COMPLETION_INDEX={i}"))
            .args(RESTRICTED)
            .arg(&self.images.peergate)
            .args(peergate_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker run: {e}"));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let gate = match child.wait_with_output() {
                Ok(out) => Gate {
                    index: i,
                    code: out.status.code(),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                },
                Err(e) => Gate {
                    index: i,
                    code: None,
                    stdout: String::new(),
                    stderr: format!("waiting for docker run failed: {e}"),
                },
            };
            let _ = tx.send(gate);
        });
        rx
    }

    /// Waits for a gate, killing its container past the hang deadline.
    fn wait(&self, i: usize, rx: mpsc::Receiver<Gate>) -> Gate {
        match rx.recv_timeout(GATE_DEADLINE) {
            Ok(gate) => gate,
            Err(_) => {
                let name = format!("{}-gate-{i}", self.prefix);
                let _ = docker(&["kill", &name]);
                let logs = docker(&["logs", &name]);
                panic!(
                    "{name} still running after {GATE_DEADLINE:?}; logs:\n{}",
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
    }

    /// A container's State.FinishedAt (or another State time), in ns since the epoch.
    fn state_time(&self, container: &str, field: &str) -> u128 {
        let value = docker_ok(&[
            "inspect",
            "--format",
            &format!("{{{{.State.{field}}}}}"),
            container,
        ]);
        parse_rfc3339_utc(&value)
            .unwrap_or_else(|| panic!("{container}: cannot parse {field} {value:?}"))
    }
}

/// Wall-clock time in ns since the epoch (the Docker daemon runs on this host).
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Parses Docker's `2026-11-27T03:47:18.206398123Z` into ns since the epoch.
fn parse_rfc3339_utc(s: &str) -> Option<u128> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: i64 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Days from civil (proleptic Gregorian), after H. Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u128::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u128::try_from(nanos).ok()?)
}

// ---------------------------------------------------------------------------
// scenarios

fn pass_args() -> Vec<&'static str> {
    vec![
        "--peers",
        "3",
        "--subdomain",
        SUBDOMAIN,
        "--timeout",
        PASS_TIMEOUT,
    ]
}

fn assert_exit(gate: &Gate, want: i32) {
    assert_eq!(gate.code, Some(want), "{}", gate.describe());
}

fn assert_reached_all(gate: &Gate) {
    for j in 0..3 {
        let peer = peer_name(j);
        assert!(
            gate.stderr
                .lines()
                .any(|l| l.contains("peer reachable") && l.contains(&peer)),
            "gate {} never logged {peer} reachable\n{}",
            gate.index,
            gate.describe()
        );
    }
}

/// The probe `auto` chose, from the text log's `probe="..."` field.
fn chosen_probe(gate: &Gate) -> Option<&'static str> {
    ["icmp", "tcp"]
        .into_iter()
        .find(|p| gate.stderr.contains(&format!("probe=\"{p}\"")))
}

/// Issue check 1a: All three pods at once: every gate exits 0 having reached every peer,
/// over ICMP (Docker opens ping_group_range in each container netns).
fn all_three_pass(images: &Images, prefix: String) {
    let mut job = Job::new(images, prefix);
    for i in 0..3 {
        job.start_pod(i, &[]);
    }
    let rxs: Vec<_> = (0..3).map(|i| job.spawn_gate(i, &pass_args())).collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        let gate = job.wait(i, rx);
        assert_exit(&gate, 0);
        assert_reached_all(&gate);
        assert_eq!(chosen_probe(&gate), Some("icmp"), "{}", gate.describe());
    }
}

/// Issue check 1b: Pod 2 (sandbox and gate) starts 2 s after the others: gates 0 and 1
/// keep waiting for it, then all three exit 0.
fn one_pod_late(images: &Images, prefix: String) {
    let mut job = Job::new(images, prefix);
    job.start_pod(0, &[]);
    job.start_pod(1, &[]);
    let early: Vec<_> = (0..2).map(|i| job.spawn_gate(i, &pass_args())).collect();
    thread::sleep(Duration::from_secs(2));
    // Taken before asking for pod 2: its DNS record and address exist a little
    // before Docker stamps StartedAt, so that stamp is no lower bound.
    let pod2_requested = now_ns();
    job.start_pod(2, &[]);
    let late = job.spawn_gate(2, &pass_args());
    for (i, rx) in early.into_iter().enumerate() {
        let gate = job.wait(i, rx);
        assert_exit(&gate, 0);
        assert_reached_all(&gate);
        // The gate really was held: it ended only after pod 2 was asked for.
        let finished = job.state_time(&format!("{}-gate-{i}", job.prefix), "FinishedAt");
        assert!(
            finished >= pod2_requested,
            "gate {i} finished before the late pod was started\n{}",
            gate.describe()
        );
    }
    let gate = job.wait(2, late);
    assert_exit(&gate, 0);
    assert_reached_all(&gate);
}

/// Issue check 2: Pod 2 never starts, `--timeout 3s`: exit 124 naming the missing peer,
/// whose name the embedded DNS forwards upstream and gets no answer for, so
/// the cause is a DNS failure and not NXDOMAIN.
fn missing_peer_times_out(images: &Images, prefix: String) {
    let mut job = Job::new(images, prefix);
    job.start_pod(0, &[]);
    job.start_pod(1, &[]);
    let args = ["--peers", "3", "--subdomain", SUBDOMAIN, "--timeout", "3s"];
    let rxs: Vec<_> = (0..2).map(|i| job.spawn_gate(i, &args)).collect();
    let missing = peer_name(2);
    for (i, rx) in rxs.into_iter().enumerate() {
        let gate = job.wait(i, rx);
        assert_exit(&gate, 124);
        let unreachable: Vec<&str> = gate
            .stderr
            .lines()
            .filter(|l| l.contains("unreachable") && l.contains(&missing))
            .collect();
        assert!(
            !unreachable.is_empty(),
            "no 'unreachable' line names {missing}\n{}",
            gate.describe()
        );
        assert!(
            unreachable
                .iter()
                .all(|l| l.contains("DNS") && !l.contains("NXDOMAIN")),
            "cause for {missing} should be a DNS failure, not NXDOMAIN\n{}",
            gate.describe()
        );
        for j in 0..2 {
            assert!(
                !gate
                    .stderr
                    .lines()
                    .any(|l| l.contains("unreachable") && l.contains(&peer_name(j))),
                "existing peer {j} reported unreachable\n{}",
                gate.describe()
            );
        }
    }
}

/// Issue check 3: ping_group_range closed in every pod and no capabilities: ICMP cannot
/// open, auto falls back to TCP (refused still means up), all exit 0.
fn no_icmp_falls_back_to_tcp(images: &Images, prefix: String) {
    let mut job = Job::new(images, prefix);
    for i in 0..3 {
        job.start_pod(i, &["--sysctl", "net.ipv4.ping_group_range=1 0"]);
    }
    // The sysctl belongs to the netns the gate joins: check it took effect.
    let range = docker_ok(&[
        "exec",
        &job.sandbox(0),
        "/bin/busybox",
        "cat",
        "/proc/sys/net/ipv4/ping_group_range",
    ]);
    assert_eq!(
        range.split_whitespace().collect::<Vec<_>>(),
        ["1", "0"],
        "sysctl not applied"
    );
    let rxs: Vec<_> = (0..3).map(|i| job.spawn_gate(i, &pass_args())).collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        let gate = job.wait(i, rx);
        assert_exit(&gate, 0);
        assert_reached_all(&gate);
        assert_eq!(chosen_probe(&gate), Some("tcp"), "{}", gate.describe());
    }
}

/// Issue check 4: `--log-format json`: every line peergate writes is a JSON object.
fn json_logs(images: &Images, prefix: String) {
    let mut job = Job::new(images, prefix);
    for i in 0..3 {
        job.start_pod(i, &[]);
    }
    let mut args = pass_args();
    args.extend(["--log-format", "json"]);
    let rxs: Vec<_> = (0..3).map(|i| job.spawn_gate(i, &args)).collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        let gate = job.wait(i, rx);
        assert_exit(&gate, 0);
        let mut lines = 0;
        for line in gate.stderr.lines().chain(gate.stdout.lines()) {
            if line.trim().is_empty() {
                continue;
            }
            lines += 1;
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("gate {i}: not JSON ({e}): {line:?}\n{}", gate.describe())
            });
            assert!(value.is_object(), "gate {i}: not an object: {line}");
        }
        assert!(lines > 0, "gate {i} logged nothing\n{}", gate.describe());
        let reached = gate
            .stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "peer reachable")
            .count();
        assert_eq!(
            reached,
            3,
            "gate {i}: JSON 'peer reachable' lines\n{}",
            gate.describe()
        );
    }
}

/// Issue 11: the barrier as a native sidecar. In each pod a sidecar
/// container (`--mode barrier --serve`) and an init-container stand-in
/// (`peergate await`) share the sandbox's network namespace. Pod 2 comes
/// late; every await exits 0 once it has arrived; then each sidecar gets
/// SIGTERM (`docker stop`, as the kubelet ends a finished pod) and exits 0.
fn sidecar_barrier(images: &Images, prefix: String) {
    let mut job = Job::new(images, prefix);
    let await_args = ["await", "--timeout", PASS_TIMEOUT];
    let mut sidecars = Vec::new();
    let mut awaits = Vec::new();
    for i in 0..2 {
        job.start_pod(i, &[]);
        sidecars.push(job.start_sidecar(
            i,
            &["--env=PEERGATE_TOKEN=container-e2e-uid"],
            &["--peers", "3"],
        ));
        awaits.push(job.spawn_gate(i, &await_args));
    }
    thread::sleep(Duration::from_secs(2));
    job.start_pod(2, &[]);
    sidecars.push(job.start_sidecar(
        2,
        &["--env=PEERGATE_TOKEN=container-e2e-uid"],
        &["--peers", "3"],
    ));
    awaits.push(job.spawn_gate(2, &await_args));
    for (i, rx) in awaits.into_iter().enumerate() {
        let gate = job.wait(i, rx);
        assert_exit(&gate, 0);
        assert!(
            gate.stderr.trim().is_empty(),
            "await is silent when all goes well\n{}",
            gate.describe()
        );
    }
    for name in &sidecars {
        let logs = job.stop_sidecar(name);
        assert!(logs.contains("all 3 peers met"), "{name}:\n{logs}");
        assert!(
            logs.contains("SIGTERM: left the barrier"),
            "{name}:\n{logs}"
        );
        assert!(
            !logs.contains("container-e2e-uid"),
            "the token is never logged"
        );
    }
}

/// examples/job-supervised.yaml in Docker: each pod's sidecar copies
/// itself (`--install`) into a volume its workload container shares (an
/// emptyDir: world-writable), and the workload, an image without peergate
/// (the busybox sandbox), runs `peergate run` from there, gets round 1 and
/// the hand-off variables, and exits with its command's 0.
fn supervised_run(images: &Images, prefix: String) {
    let mut job = Job::new(images, prefix);
    let mut volumes = Vec::new();
    let mut sidecars = Vec::new();
    for i in 0..2 {
        job.start_pod(i, &[]);
        let volume = format!("{}-bin-{i}", job.prefix);
        volumes.push(Created::new(Kind::Volume, volume.clone()));
        docker_ok(&["volume", "create", &volume]);
        let mount = format!("--volume={volume}:/peergate-bin");
        // An emptyDir is writable by any user: so is this volume.
        docker_ok(&[
            "run",
            "--rm",
            "--user",
            "0",
            &mount,
            "--entrypoint",
            "/bin/busybox",
            &images.sandbox,
            "chmod",
            "1777",
            "/peergate-bin",
        ]);
        let peergate = ["--peers", "2", "--install", "/peergate-bin/peergate"];
        let docker = [mount.as_str(), "--env=PEERGATE_TOKEN=container-run-uid"];
        sidecars.push(job.start_sidecar(i, &docker, &peergate));
    }
    let mut workloads = Vec::new();
    for i in 0..2 {
        let name = format!("{}-workload-{i}", job.prefix);
        job.containers
            .push(Created::new(Kind::Container, name.clone()));
        let network = format!("--network=container:{}", job.sandbox(i));
        let mount = format!("--volume={}-bin-{i}:/peergate-bin:ro", job.prefix);
        // The workload API from the installed copy: publish, wait for
        // both pods, read both values.
        let script = "echo round=$PEERGATE_ROUND rank=$PEERGATE_RANK size=$PEERGATE_WORLD_SIZE \
                      restarts=$PEERGATE_RESTARTS; P=/peergate-bin/peergate; \
                      $P put port $((8000 + PEERGATE_RANK)) && $P barrier both --timeout 30s \
                      && $P get port --all --wait 30s";
        // The sidecar may still be copying: retry until the binary is
        // there, as the kubelet's startupProbe makes the pod wait.
        let start = format!(
            "for n in $(seq 100); do [ -x /peergate-bin/peergate ] && break; sleep 0.1; done; \
             exec /peergate-bin/peergate run --timeout {PASS_TIMEOUT} -- /bin/busybox sh -c '{script}'"
        );
        let out = Command::new("docker")
            .args(["run", "--name", &name, &network, &mount])
            .args(RESTRICTED)
            .args([
                "--entrypoint",
                "/bin/busybox",
                &images.sandbox,
                "sh",
                "-c",
                &start,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker run: {e}"));
        workloads.push(out);
    }
    for (i, child) in workloads.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "workload {i}:\n{stderr}{stdout}"
        );
        assert_eq!(
            stdout.trim(),
            format!("round=1 rank={i} size=2 restarts=0\n0 8000\n1 8001"),
            "workload {i}:\n{stderr}"
        );
        assert!(
            stderr.contains("round 1: the command completed"),
            "{stderr}"
        );
    }
    for name in &sidecars {
        let logs = job.stop_sidecar(name);
        assert!(
            logs.contains("installed peergate at /peergate-bin/peergate"),
            "{logs}"
        );
        assert!(logs.contains("the group is finishing"), "{name}:\n{logs}");
    }
    drop(job);
    drop(volumes);
}

/// The image contract the examples rely on: non-root, `/peergate` as the
/// entrypoint.
fn image_config(images: &Images, _prefix: String) {
    let config = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.User}} {{json .Config.Entrypoint}}",
        &images.peergate,
    ]);
    assert_eq!(config, r#""65532:65532" ["/peergate"]"#, "image config");
}

/// Runs one scenario: skips (or fails under CI) without Docker, takes the
/// shared images, and gives the scenario names of its own.
fn run(test: &str, short: &str, scenario: fn(&Images, String)) {
    if !ready(test) {
        return;
    }
    scenario(images(), format!("{}-{short}", run_prefix()));
}

/// One test per scenario: `(test name, short name in Docker object names)`.
macro_rules! scenarios {
    ($($name:ident => $short:literal),* $(,)?) => {
        mod scenarios {
            $(
                #[test]
                fn $name() {
                    super::run(stringify!($name), $short, super::$name);
                }
            )*
        }
    };
}

scenarios!(
    image_config => "image",
    all_three_pass => "all",
    sidecar_barrier => "sidecar",
    supervised_run => "run",
    one_pod_late => "late",
    missing_peer_times_out => "missing",
    no_icmp_falls_back_to_tcp => "tcp",
    json_logs => "json",
);

//! The test bed: an emulated Indexed Job.
//!
//! Layout (all names unique per bed, `<id>` = `pg<pid>x<n>`):
//!
//! ```text
//!  namespace <id>c ("cluster")                     namespace <id>p<i> (pod i)
//!  ┌───────────────────────────────────┐           ┌──────────────────────────┐
//!  │ br0 10.244.0.1 / fd00:10:244::1   │  veth     │ eth0 10.244.1.x          │
//!  │     10.244.0.2 / fd00:10:244::2   │──v<slot>──│      fd00:10:244::1xx    │
//!  │ dnsmasq (cluster DNS) on .1       │           │ hostname <job>-<i> (UTS) │
//!  │ dnsmasq (negative cache) on .2    │           │ /etc/netns/<ns>/hosts    │
//!  └───────────────────────────────────┘           │ /etc/netns/<ns>/resolv.. │
//!                                                  └──────────────────────────┘
//! ```
//!
//! Every veth is created inside the cluster namespace with its peer moved
//! straight into the pod namespace, so nothing is ever added to the root
//! namespace. Each bed is isolated in its own namespaces, so all beds reuse the
//! same address plan without colliding. Dropping the bed kills every process,
//! deletes every namespace and /etc/netns directory and the bed's work dir.

use super::proc::{Exit, Proc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Address families of the pod network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
    Dual,
}

impl Family {
    pub fn v4(self) -> bool {
        self != Family::Ipv6
    }
    pub fn v6(self) -> bool {
        self != Family::Ipv4
    }
}

#[derive(Clone, Debug)]
pub struct BedConfig {
    pub job: String,
    pub subdomain: String,
    pub namespace: String,
    pub zone: String,
    pub family: Family,
    /// TTL of the cluster DNS answers (`--local-ttl`; CoreDNS uses 5 s).
    pub dns_ttl: u32,
    /// Put a caching dnsmasq with `--neg-ttl <n>` in front of the cluster DNS
    /// (CoreDNS cache / NodeLocal DNSCache); pods then query the cache.
    pub neg_cache_ttl: Option<u32>,
    /// Start the cluster DNS when the bed is created (else: `start_dns`).
    pub dns_up: bool,
    /// Entries of the negative-cache tier (`--cache-size`). A small cache
    /// evicts entries long before their TTL once many pods query it
    /// (CoreDNS's `cache` holds 9984 per kind by default).
    pub cache_size: u32,
}

impl Default for BedConfig {
    fn default() -> Self {
        BedConfig {
            job: "example-job".into(),
            subdomain: "headless-svc".into(),
            namespace: "default".into(),
            zone: "cluster.local".into(),
            family: Family::Ipv4,
            dns_ttl: 5,
            neg_cache_ttl: None,
            dns_up: true,
            cache_size: 1000,
        }
    }
}

/// Which dnsmasq a question is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The authoritative cluster DNS (hosts file, NXDOMAIN for the rest).
    Cluster,
    /// The negative-cache tier in front of it (only with `neg_cache_ttl`).
    Cache,
}

/// One query line of a dnsmasq log (`query[A] name from 10.244.1.10`).
#[derive(Clone, Debug)]
pub struct DnsQuery {
    pub qtype: String,
    pub name: String,
    pub from: IpAddr,
}

/// A handle to a process started through the bed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcId(pub usize);

/// What to run inside a pod.
#[derive(Clone, Debug, Default)]
pub struct PodCommand {
    /// Stem of the captured output files `<pod dir>/<name>.{stdout,stderr}`.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment (the pod gets PATH, HOSTNAME, JOB_COMPLETION_INDEX).
    pub env: Vec<(String, String)>,
    /// Run as uid/gid 65534 with no capabilities (bounding set cleared).
    pub unprivileged: bool,
    /// Wrap in `/usr/bin/time -v -o <pod dir>/<name>.time` (CPU, peak RSS).
    /// The process id is then time's, so signals do not reach the program.
    pub time_v: bool,
    /// CPU and memory limits: a cgroup of its own, as a container's
    /// `resources.limits` (see `cgroups`).
    pub limits: super::cgroups::Limits,
}

impl PodCommand {
    pub fn new(name: &str, argv: &[&str]) -> Self {
        PodCommand {
            name: name.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// One pod incarnation (a sandbox). A replaced pod gets a new incarnation
/// with a new namespace and new addresses under the same index and hostname.
#[derive(Clone, Debug)]
pub struct Pod {
    pub index: usize,
    pub generation: u32,
    pub hostname: String,
    pub fqdn: String,
    pub ns: String,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// Cluster-side end of the veth (in the cluster namespace).
    pub port: String,
    /// Working directory of the pod's processes (mode 0777).
    pub dir: PathBuf,
    pub alive: bool,
}

impl Pod {
    /// Addresses in kubelet order (IPv4 first in dual-stack).
    pub fn ips(&self) -> Vec<IpAddr> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
            .collect()
    }
    /// The primary pod IP.
    pub fn ip(&self) -> IpAddr {
        self.ips()[0]
    }
}

const V4_NET: [u8; 2] = [10, 244];
const V6_PREFIX: [u16; 3] = [0xfd00, 0x10, 0x244];
const CMD_LIMIT: Duration = Duration::from_secs(20);
const DNS_READY_LIMIT: Duration = Duration::from_secs(5);

/// `ip netns add/del` race on the first mount of /run/netns; serialise them.
static NETNS_LOCK: Mutex<()> = Mutex::new(());
static BED_COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: std::sync::Once = std::sync::Once::new();

pub struct Bed {
    pub id: String,
    pub cfg: BedConfig,
    /// Work dir of the bed: DNS files and logs, pod dirs.
    pub dir: PathBuf,
    pub created: Instant,
    fulls_at_start: u64,
    cluster: String,
    namespaces: Vec<String>,
    pods: BTreeMap<usize, Vec<Pod>>,
    procs: Vec<Proc>,
    proc_pod: Vec<Option<(usize, u32)>>,
    /// Each process's cgroup directories (empty without limits).
    proc_cgroups: Vec<Vec<PathBuf>>,
    /// The bed's cgroups, made when a process first has limits; dropped
    /// (removed) after the processes are killed.
    cgroups: Option<super::cgroups::Cgroups>,
    dns: Option<Proc>,
    cache: Option<Proc>,
    records: Vec<(String, IpAddr)>,
    next_host: u32,
    next_slot: u32,
}

fn v4_addr(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(V4_NET[0], V4_NET[1], (n >> 8) as u8, n as u8)
}

fn v6_addr(n: u32) -> Ipv6Addr {
    let [a, b, c] = V6_PREFIX;
    Ipv6Addr::new(a, b, c, 0, 0, 0, (n >> 16) as u16, n as u16)
}

impl Bed {
    /// Creates the cluster namespace, bridge and (if `cfg.dns_up`) the DNS.
    /// Panics with the failing command on error; whatever was created is
    /// cleaned up by Drop during the unwind.
    pub fn new(cfg: BedConfig) -> Bed {
        SWEEP.call_once(sweep_stale);
        let id = format!(
            "pg{}x{}",
            std::process::id(),
            BED_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join("peergate-e2e").join(&id);
        std::fs::create_dir_all(&dir).expect("create bed dir");
        let mut bed = Bed {
            cluster: format!("{id}c"),
            id,
            cfg,
            dir,
            created: Instant::now(),
            fulls_at_start: neighbour_table_fulls(),
            namespaces: Vec::new(),
            pods: BTreeMap::new(),
            procs: Vec::new(),
            proc_pod: Vec::new(),
            proc_cgroups: Vec::new(),
            cgroups: None,
            dns: None,
            cache: None,
            records: Vec::new(),
            next_host: 0x10a,
            next_slot: 0,
        };
        let cl = bed.cluster.clone();
        bed.add_namespace(&cl);
        ip(&["-n", &cl, "link", "set", "lo", "up"]);
        ip(&["-n", &cl, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &cl,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
        ]);
        // A bridge without a fixed MAC takes the lowest MAC of its ports and
        // changes it when that port goes (a deleted pod): neighbours' ARP
        // entries for the DNS address then point nowhere for ~30 s.
        ip(&[
            "-n",
            &cl,
            "link",
            "set",
            "br0",
            "address",
            "02:70:67:00:00:01",
        ]);
        ip(&["-n", &cl, "link", "set", "br0", "up"]);
        for host in [1, 2] {
            if bed.cfg.family.v4() {
                let a = format!("{}/16", v4_addr(host));
                ip(&["-n", &cl, "addr", "add", &a, "dev", "br0"]);
            }
            if bed.cfg.family.v6() {
                let a = format!("{}/64", v6_addr(host));
                ip(&["-n", &cl, "addr", "add", &a, "dev", "br0", "nodad"]);
            }
        }
        bed.write_records();
        if bed.cfg.dns_up {
            bed.start_dns();
        }
        if bed.cfg.neg_cache_ttl.is_some() {
            bed.start_cache();
        }
        bed
    }

    /// Name of the cluster namespace (bridge + DNS).
    pub fn cluster_ns(&self) -> &str {
        &self.cluster
    }

    /// Seconds since the bed was created, for log lines.
    pub fn elapsed(&self) -> Duration {
        self.created.elapsed()
    }

    /// Creates a namespace owned (and deleted) by the bed. Use it to build
    /// other topologies (a router namespace, a namespace with many addresses).
    pub fn add_namespace(&mut self, name: &str) {
        {
            let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            ip(&["netns", "add", name]);
        }
        self.namespaces.push(name.to_string());
    }

    /// Runs a command inside namespace `ns` (no UTS or env changes), bounded
    /// by 20 s; panics on a non-zero exit.
    pub fn ns_exec(&self, ns: &str, argv: &[&str]) -> String {
        let mut full = vec!["netns", "exec", ns];
        full.extend_from_slice(argv);
        run_ok("ip", &full, None)
    }

    /// Connects namespace `ns` to the bridge with a fresh address (per the
    /// bed family) on interface `ifname`. Returns (cluster-side port, v4, v6).
    pub fn connect(
        &mut self,
        ns: &str,
        ifname: &str,
    ) -> (String, Option<Ipv4Addr>, Option<Ipv6Addr>) {
        let port = format!("v{}", self.next_slot);
        self.next_slot += 1;
        let cl = self.cluster.clone();
        ip(&[
            "-n", &cl, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", ns,
        ]);
        ip(&["-n", &cl, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        let v4 = self.cfg.family.v4().then(|| v4_addr(self.alloc_host()));
        let v6 = self.cfg.family.v6().then(|| v6_addr(self.alloc_host()));
        if let Some(a) = v4 {
            ip(&["-n", ns, "addr", "add", &format!("{a}/16"), "dev", ifname]);
        }
        if let Some(a) = v6 {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
        }
        ip(&["-n", ns, "link", "set", ifname, "up"]);
        (port, v4, v6)
    }

    fn alloc_host(&mut self) -> u32 {
        loop {
            let n = self.next_host;
            self.next_host += 1;
            assert!(n < 0xfe00, "bed address plan exhausted");
            if (n & 0xff) != 0 && (n & 0xff) != 0xff {
                return n;
            }
        }
    }

    /// The address pods use as their nameserver (the cache tier if any).
    pub fn resolver_ip(&self) -> IpAddr {
        let host = if self.cfg.neg_cache_ttl.is_some() {
            2
        } else {
            1
        };
        self.tier_ip(host)
    }

    fn tier_ip(&self, host: u32) -> IpAddr {
        if self.cfg.family.v4() {
            IpAddr::V4(v4_addr(host))
        } else {
            IpAddr::V6(v6_addr(host))
        }
    }

    pub fn hostname(&self, index: usize) -> String {
        format!("{}-{index}", self.cfg.job)
    }

    /// `<job>-<i>.<svc>.<ns>.svc.<zone>` (no trailing dot).
    pub fn fqdn(&self, index: usize) -> String {
        format!(
            "{}.{}.{}.svc.{}",
            self.hostname(index),
            self.cfg.subdomain,
            self.cfg.namespace,
            self.cfg.zone
        )
    }

    /// The headless Service's own name: like CoreDNS, the bed answers it with
    /// the address of every published pod.
    pub fn service_fqdn(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.cfg.subdomain, self.cfg.namespace, self.cfg.zone
        )
    }

    /// Creates the sandbox of pod `index` (a new incarnation if it existed):
    /// namespace, veth, addresses, kubelet-style hosts and resolv.conf. The DNS
    /// record is not published yet (see [`Bed::publish`]).
    pub fn start_pod(&mut self, index: usize) -> &Pod {
        let generation = self.pods.get(&index).map_or(0, |v| v.len() as u32);
        if let Some(prev) = self.pod(index)
            && prev.alive
        {
            panic!("pod {index} is still alive; delete it first");
        }
        let ns = if generation == 0 {
            format!("{}p{index}", self.id)
        } else {
            format!("{}p{index}g{generation}", self.id)
        };
        self.add_namespace(&ns);
        let (port, v4, v6) = self.connect(&ns, "eth0");
        let dir = self.dir.join(if generation == 0 {
            format!("pod{index}")
        } else {
            format!("pod{index}-g{generation}")
        });
        std::fs::create_dir_all(&dir).expect("pod dir");
        set_mode(&dir, 0o777);
        let pod = Pod {
            index,
            generation,
            hostname: self.hostname(index),
            fqdn: self.fqdn(index),
            ns,
            v4,
            v6,
            port,
            dir,
            alive: true,
        };
        self.write_pod_files(&pod);
        let list = self.pods.entry(index).or_default();
        list.push(pod);
        list.last().unwrap()
    }

    fn write_pod_files(&self, pod: &Pod) {
        let etc = Path::new("/etc/netns").join(&pod.ns);
        std::fs::create_dir_all(&etc).expect("create /etc/netns/<ns>");
        let mut hosts = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\n",
        );
        for a in pod.ips() {
            writeln!(hosts, "{a}\t{}\t{}", pod.fqdn, pod.hostname).unwrap();
        }
        write_file(&etc.join("hosts"), &hosts);
        let c = &self.cfg;
        let resolv = format!(
            "search {ns}.svc.{z} svc.{z} {z}\nnameserver {dns}\noptions ndots:5\n",
            ns = c.namespace,
            z = c.zone,
            dns = self.resolver_ip()
        );
        write_file(&etc.join("resolv.conf"), &resolv);
    }

    /// All incarnations of pod `index`, oldest first.
    pub fn incarnations(&self, index: usize) -> &[Pod] {
        self.pods.get(&index).map_or(&[], |v| v.as_slice())
    }

    /// The latest incarnation of pod `index`.
    pub fn pod(&self, index: usize) -> Option<&Pod> {
        self.pods.get(&index).and_then(|v| v.last())
    }

    fn live_pod(&self, index: usize) -> &Pod {
        match self.pod(index) {
            Some(p) if p.alive => p,
            _ => panic!("pod {index} is not running"),
        }
    }

    /// Publishes pod `index`'s current addresses under its FQDN and under
    /// the Service's name, replacing any older (stale) record of the pod, and
    /// waits until dnsmasq reloaded.
    pub fn publish(&mut self, index: usize) {
        let pod = self.live_pod(index).clone();
        self.drop_records(index);
        for a in pod.ips() {
            self.records.push((pod.fqdn.clone(), a));
            self.records.push((self.service_fqdn(), a));
        }
        self.reload_records();
    }

    /// Removes every record of pod `index` (its FQDN is NXDOMAIN afterwards;
    /// the Service's name no longer lists it).
    pub fn unpublish(&mut self, index: usize) {
        self.drop_records(index);
        self.reload_records();
    }

    fn drop_records(&mut self, index: usize) {
        let fqdn = self.fqdn(index);
        let service = self.service_fqdn();
        let old: Vec<IpAddr> = self
            .records
            .iter()
            .filter(|(n, _)| *n == fqdn)
            .map(|(_, a)| *a)
            .collect();
        self.records
            .retain(|(n, a)| *n != fqdn && !(*n == service && old.contains(a)));
    }

    /// Adds an arbitrary record (`name` without trailing dot).
    pub fn add_record(&mut self, name: &str, addr: IpAddr) {
        self.records.push((name.to_string(), addr));
        self.reload_records();
    }

    /// Adds many arbitrary records with one reload of the cluster DNS (a
    /// thousand [`Bed::add_record`] calls would cost a thousand reloads).
    pub fn add_records(&mut self, records: &[(String, IpAddr)]) {
        self.records.extend(records.iter().cloned());
        self.reload_records();
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.join("dns-records")
    }

    fn write_records(&self) {
        let mut s = String::new();
        for (name, a) in &self.records {
            writeln!(s, "{a}\t{name}").unwrap();
        }
        let tmp = self.dir.join("dns-records.tmp");
        write_file(&tmp, &s);
        std::fs::rename(&tmp, self.hosts_path()).expect("replace dns records");
    }

    fn reload_records(&mut self) {
        self.write_records();
        let Some(dns) = &self.dns else { return };
        if !dns.running() {
            return;
        }
        let marker = format!("read {} - ", self.hosts_path().display());
        let log = self.dns_log_path(Tier::Cluster);
        let before = count_lines(&log, &marker);
        let deadline = Instant::now() + DNS_READY_LIMIT;
        // A SIGHUP that lands while dnsmasq is busy can be merged with an
        // earlier one; re-send until the reload shows up in the log.
        while Instant::now() < deadline {
            dns.signal(libc::SIGHUP);
            let resend = Instant::now() + Duration::from_millis(500);
            while Instant::now() < resend {
                if count_lines(&log, &marker) > before {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        panic!("cluster DNS did not reload its records within {DNS_READY_LIMIT:?}");
    }

    pub fn dns_log_path(&self, tier: Tier) -> PathBuf {
        self.dir.join(match tier {
            Tier::Cluster => "dns-cluster.log",
            Tier::Cache => "dns-cache.log",
        })
    }

    fn listen_args(&self, host: u32) -> Vec<String> {
        let mut v = Vec::new();
        if self.cfg.family.v4() {
            v.push(format!("--listen-address={}", v4_addr(host)));
        }
        if self.cfg.family.v6() {
            v.push(format!("--listen-address={}", v6_addr(host)));
        }
        v
    }

    /// Starts the cluster DNS (no-op if it runs) and waits until it serves.
    pub fn start_dns(&mut self) {
        if self.dns.as_ref().is_some_and(|d| d.running()) {
            return;
        }
        let log = self.dns_log_path(Tier::Cluster);
        let mut args = dnsmasq_common(&log);
        args.extend(self.listen_args(1));
        args.push(format!("--addn-hosts={}", self.hosts_path().display()));
        // Names in the cluster zone that are not in the records are NXDOMAIN,
        // as CoreDNS answers; everything else too (no upstream exists here).
        args.push(format!("--local=/{}/", self.cfg.zone));
        args.push("--local=/#/".into());
        args.push(format!("--local-ttl={}", self.cfg.dns_ttl));
        let marker = format!("read {} - ", self.hosts_path().display());
        let before = count_lines(&log, &marker);
        let p = self.spawn_dnsmasq("dns-cluster", args);
        wait_log(&p, &log, &marker, before);
        self.dns = Some(p);
    }

    /// Stops the cluster DNS: queries to it then get ICMP port unreachable.
    pub fn stop_dns(&mut self) {
        if let Some(p) = self.dns.take() {
            p.kill();
        }
    }

    pub fn dns_running(&self) -> bool {
        self.dns.as_ref().is_some_and(|d| d.running())
    }

    fn start_cache(&mut self) {
        let ttl = self.cfg.neg_cache_ttl.expect("cache tier configured");
        let log = self.dns_log_path(Tier::Cache);
        let mut args = dnsmasq_common(&log);
        args.extend(self.listen_args(2));
        args.push(format!("--server={}", self.tier_ip(1)));
        args.push(format!("--neg-ttl={ttl}"));
        args.push(format!("--cache-size={}", self.cfg.cache_size));
        let p = self.spawn_dnsmasq("dns-cache", args);
        wait_log(&p, &log, "using nameserver", 0);
        self.cache = Some(p);
    }

    fn spawn_dnsmasq(&self, name: &str, args: Vec<String>) -> Proc {
        let mut cmd = Command::new(super::prereq::which("ip").expect("ip"));
        cmd.args(["netns", "exec", &self.cluster, "dnsmasq"])
            .args(args);
        Proc::spawn(name, cmd, &self.dir).expect("spawn dnsmasq")
    }

    /// Every query a DNS tier logged so far, in order.
    pub fn dns_queries(&self, tier: Tier) -> Vec<DnsQuery> {
        let text = std::fs::read_to_string(self.dns_log_path(tier)).unwrap_or_default();
        text.lines().filter_map(parse_query).collect()
    }

    /// Number of queries tier `tier` received from address `from`.
    pub fn dns_query_count(&self, tier: Tier, from: IpAddr) -> usize {
        self.dns_queries(tier)
            .iter()
            .filter(|q| q.from == from)
            .count()
    }

    /// The wrapper that runs `c` inside pod `pod`: network namespace (with its
    /// /etc/netns files), a UTS namespace with the pod hostname, pod env.
    fn pod_command(&self, pod: &Pod, c: &PodCommand, cgroups: &[PathBuf]) -> Command {
        let ip = super::prereq::which("ip").expect("ip");
        // `ip netns exec` mounts a sysfs of the pod's namespace over /sys,
        // which hides /sys/fs/cgroup: a container joins its cgroups first,
        // then execs into the pod (the same process, so what it runs stays
        // in them).
        let mut cmd = if cgroups.is_empty() {
            Command::new(ip)
        } else {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!(
                    "{}exec \"$0\" \"$@\"",
                    super::cgroups::Cgroups::join_script(cgroups)
                ))
                .arg(ip);
            sh
        };
        cmd.args([
            "netns", "exec", &pod.ns, "unshare", "--uts", "--", "sh", "-c",
        ])
        .arg("printf %s \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"")
        .arg(&pod.hostname);
        if c.time_v {
            let out = pod.dir.join(format!("{}.time", c.name));
            cmd.args(["/usr/bin/time", "-v", "-o"]).arg(out);
        }
        if c.unprivileged {
            cmd.args([
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]);
        }
        cmd.args(&c.argv)
            .current_dir(&pod.dir)
            .env_clear()
            // The binary under test first: a workload's script calls
            // `peergate put`, `get` and `barrier` as it would in an image.
            .env("PATH", pod_path())
            .env("HOSTNAME", &pod.hostname)
            .env("HOME", &pod.dir)
            .env("JOB_COMPLETION_INDEX", pod.index.to_string());
        if let Ok(v) = std::env::var("RUST_BACKTRACE") {
            cmd.env("RUST_BACKTRACE", v);
        }
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `c` in the latest incarnation of pod `index`.
    pub fn spawn(&mut self, index: usize, c: &PodCommand) -> ProcId {
        let pod = self.live_pod(index).clone();
        let dirs = if c.limits.is_empty() {
            Vec::new()
        } else {
            let id = self.id.clone();
            let cgroups = match &mut self.cgroups {
                Some(cg) => cg,
                slot => slot.insert(
                    super::cgroups::Cgroups::new(&id).unwrap_or_else(|e| panic!("cgroups: {e}")),
                ),
            };
            let name = format!(
                "p{index}g{}-{}-{}",
                pod.generation,
                c.name,
                self.procs.len()
            );
            cgroups
                .create(&name, c.limits)
                .unwrap_or_else(|e| panic!("cgroup for {name}: {e}"))
        };
        let cmd = self.pod_command(&pod, c, &dirs);
        let p = Proc::spawn(&c.name, cmd, &pod.dir)
            .unwrap_or_else(|e| panic!("spawn {:?} in pod {index}: {e}", c.argv));
        self.procs.push(p);
        self.proc_pod.push(Some((index, pod.generation)));
        self.proc_cgroups.push(dirs);
        ProcId(self.procs.len() - 1)
    }

    /// Peak memory (bytes) and CPU throttling (periods, time) of a process
    /// started with limits, from its cgroup.
    pub fn usage(&self, id: ProcId) -> Option<super::cgroups::Usage> {
        let dirs = self.proc_cgroups.get(id.0).filter(|d| !d.is_empty())?;
        Some(super::cgroups::Usage {
            peak: super::cgroups::Cgroups::peak(dirs),
            throttled: super::cgroups::Cgroups::throttled(dirs),
        })
    }

    /// Runs `c` in pod `index` to completion (bounded by `limit`, then killed).
    /// Returns the exit (None on timeout), stdout and stderr.
    pub fn run_in_pod(
        &mut self,
        index: usize,
        c: &PodCommand,
        limit: Duration,
    ) -> (Option<Exit>, String, String) {
        let id = self.spawn(index, c);
        let p = &self.procs[id.0];
        let exit = p.wait_for(limit);
        if exit.is_none() {
            p.kill();
        }
        (exit, p.read_stdout(), p.read_stderr())
    }

    pub fn proc(&self, id: ProcId) -> &Proc {
        &self.procs[id.0]
    }

    /// Processes started in pod `index` (all incarnations), oldest first.
    pub fn pod_procs(&self, index: usize) -> Vec<ProcId> {
        (0..self.procs.len())
            .filter(|&i| self.proc_pod[i].is_some_and(|(p, _)| p == index))
            .map(ProcId)
            .collect()
    }

    /// Deletes the latest incarnation of pod `index`: its processes are
    /// killed and its namespace removed. With `keep_record` its DNS record
    /// stays (a terminating pod still listed), else the name becomes NXDOMAIN.
    pub fn delete_pod(&mut self, index: usize, keep_record: bool) {
        let pod = self.live_pod(index).clone();
        for i in 0..self.procs.len() {
            if self.proc_pod[i] == Some((index, pod.generation)) {
                self.procs[i].kill();
            }
        }
        // The kernel tears a network namespace down asynchronously (a work
        // queue, slow under load), and until then its eth0 still answers.
        // Deleting the veth cuts the pod off at once.
        ip(&["-n", &self.cluster, "link", "del", &pod.port]);
        self.remove_namespace(&pod.ns);
        if let Some(p) = self.pods.get_mut(&index).and_then(|v| v.last_mut()) {
            p.alive = false;
        }
        if !keep_record {
            self.unpublish(index);
        }
    }

    fn remove_namespace(&mut self, ns: &str) {
        kill_ns_pids(ns);
        {
            let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let _ = run("ip", &["netns", "del", ns], None);
        }
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        self.namespaces.retain(|n| n != ns);
    }

    /// Link of pod `index` up or down (the cluster-side veth, a pulled cable).
    pub fn set_link(&mut self, index: usize, up: bool) {
        let port = self.live_pod(index).port.clone();
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.cluster, "link", "set", &port, state]);
    }

    /// Drops (or stops dropping) ICMP/ICMPv6 echo requests arriving in pod
    /// `index`, with an nftables table inside the pod's namespace.
    pub fn drop_icmp(&mut self, index: usize, on: bool) {
        let ns = self.live_pod(index).ns.clone();
        let script = if on {
            "table inet pgfault {\n chain input {\n  type filter hook input priority 0; policy accept;\n  icmp type echo-request drop\n  icmpv6 type echo-request drop\n }\n}\n"
        } else {
            "delete table inet pgfault\n"
        };
        run_ok(
            "ip",
            &["netns", "exec", &ns, "nft", "-f", "-"],
            Some(script),
        );
    }

    /// Drops every packet between addresses `a` and `b`, both ways, on the
    /// cluster's bridge (nftables in the cluster namespace): a broken path
    /// between two nodes. Neither end sees a reset or an error: what it
    /// sends just goes unanswered.
    pub fn black_hole(&mut self, a: IpAddr, b: IpAddr) {
        let family = if a.is_ipv4() { "ip" } else { "ip6" };
        let script = format!(
            "add table bridge pghole\n\
             add chain bridge pghole forward {{ type filter hook forward priority 0; policy accept; }}\n\
             add rule bridge pghole forward {family} saddr {a} {family} daddr {b} drop\n\
             add rule bridge pghole forward {family} saddr {b} {family} daddr {a} drop\n"
        );
        run_ok(
            "ip",
            &["netns", "exec", &self.cluster, "nft", "-f", "-"],
            Some(&script),
        );
    }

    /// Opens ("0 2147483647") or closes ("1 0") unprivileged ICMP sockets in
    /// pod `index` (`net.ipv4.ping_group_range` is per network namespace).
    pub fn set_ping_group_range(&mut self, index: usize, open: bool) {
        let ns = self.live_pod(index).ns.clone();
        let value = if open { "0 2147483647" } else { "1 0" };
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sh",
                "-c",
                "printf '%s\\n' \"$1\" > /proc/sys/net/ipv4/ping_group_range",
                "sh",
                value,
            ],
            None,
        );
    }

    /// Logs of every process and DNS tier, for a failure report.
    pub fn dump(&self, tail_lines: usize) -> String {
        let mut s = String::new();
        if let Some(warning) = neighbour_table_warning(self.fulls_at_start) {
            writeln!(s, "!!! during this test {warning}").unwrap();
        }
        for p in self.dns.iter().chain(self.cache.iter()) {
            let state = p.exit().map_or("running".into(), |e| e.describe());
            writeln!(s, "--- bed `{}`: {state}", p.name).unwrap();
        }
        for (i, p) in self.procs.iter().enumerate() {
            let who = match self.proc_pod[i] {
                Some((idx, g)) => format!("pod {idx} gen {g}"),
                None => "bed".into(),
            };
            let state = p.exit().map_or("still running".into(), |e| e.describe());
            writeln!(s, "--- {who} `{}`: {}: {state}", p.name, p.argv.join(" ")).unwrap();
            for (label, text) in [("stdout", p.read_stdout()), ("stderr", p.read_stderr())] {
                for line in tail(&text, tail_lines) {
                    writeln!(s, "  {label}| {line}").unwrap();
                }
            }
        }
        for tier in [Tier::Cluster, Tier::Cache] {
            if let Ok(text) = std::fs::read_to_string(self.dns_log_path(tier)) {
                writeln!(s, "--- {tier:?} DNS log (last {tail_lines} lines)").unwrap();
                for line in tail(&text, tail_lines) {
                    writeln!(s, "  {line}").unwrap();
                }
            }
        }
        s
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for p in &self.procs {
            p.kill();
        }
        for p in self.dns.iter().chain(self.cache.iter()) {
            p.kill();
        }
        for ns in self.namespaces.clone().into_iter().rev() {
            self.remove_namespace(&ns);
        }
        if std::env::var_os("PEERGATE_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("bed {}: kept {}", self.id, self.dir.display());
        }
    }
}

/// The kernel's ARP and NDP tables are shared by all network namespaces;
/// non-permanent entries are capped by gc_thresh3 (set in the root
/// namespace). When something else on the machine (a 1000-peer benchmark bed)
/// fills them, new neighbours fail with ENOBUFS and pods cannot even reach the
/// DNS server. The kernel counts those failures ("table_fulls"); this sums
/// them over both tables and all CPUs.
pub fn neighbour_table_fulls() -> u64 {
    ["arp_cache", "ndisc_cache"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/net/stat/{t}")).ok())
        .map(|text| {
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
            let Some(col) = header.iter().position(|h| *h == "table_fulls") else {
                return 0;
            };
            lines
                .filter_map(|l| l.split_whitespace().nth(col))
                .filter_map(|h| u64::from_str_radix(h, 16).ok())
                .sum::<u64>()
        })
        .sum()
}

/// A warning when neighbour allocations failed for lack of room since
/// `fulls_before` (a [`neighbour_table_fulls`] reading).
pub fn neighbour_table_warning(fulls_before: u64) -> Option<String> {
    let now = neighbour_table_fulls();
    (now > fulls_before).then(|| {
        format!(
            "the kernel refused {} ARP/NDP entries for lack of room (table_fulls in \
             /proc/net/stat/{{arp,ndisc}}_cache; the tables are shared by all namespaces, \
             limit net.ipv4.neigh.default.gc_thresh3): is a large bed or benchmark running \
             at the same time? Pods then fail with ENOBUFS and cannot reach the DNS server.",
            now - fulls_before
        )
    })
}

fn dnsmasq_common(log: &Path) -> Vec<String> {
    [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--user=root",
        "--group=root",
        "--pid-file=",
        "--log-queries",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--log-facility={}", log.display())])
    .collect()
}

/// Waits until `log` holds more than `before` lines containing `marker`.
fn wait_log(p: &Proc, log: &Path, marker: &str, before: usize) {
    let deadline = Instant::now() + DNS_READY_LIMIT;
    while Instant::now() < deadline {
        if count_lines(log, marker) > before {
            return;
        }
        if let Some(e) = p.exit() {
            panic!(
                "{} died at start ({}): {}",
                p.name,
                e.describe(),
                p.read_stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{} not ready within {DNS_READY_LIMIT:?}", p.name);
}

fn count_lines(path: &Path, marker: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains(marker)).count())
        .unwrap_or(0)
}

fn parse_query(line: &str) -> Option<DnsQuery> {
    let rest = &line[line.find("query[")? + 6..];
    let (qtype, rest) = rest.split_once("] ")?;
    let (name, from) = rest.split_once(" from ")?;
    Some(DnsQuery {
        qtype: qtype.to_string(),
        name: name.to_string(),
        from: from.trim().parse().ok()?,
    })
}

fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, 0o644);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Runs `prog args` bounded by 20 s; returns (success, stdout, stderr).
pub fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let exe = super::prereq::which(prog).unwrap_or_else(|| PathBuf::from(prog));
    let mut child = Command::new(exe)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    // Output of these commands is small; reading after the exit is safe. Read
    // in threads anyway so a chatty command cannot fill a pipe and stall.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CMD_LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{prog} {}` did not finish within {CMD_LIMIT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    (status.success(), out, err)
}

/// Like [`run`], panicking with the command and its stderr on failure.
pub fn run_ok(prog: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = run(prog, args, stdin);
    assert!(ok, "`{prog} {}` failed: {}", args.join(" "), err.trim());
    out
}

fn ip(args: &[&str]) -> String {
    run_ok("ip", args, None)
}

/// Kills every process left in namespace `ns` (ours by construction: only the
/// bed starts processes in its namespaces).
fn kill_ns_pids(ns: &str) {
    let (_, out, _) = run("ip", &["netns", "pids", ns], None);
    for pid in out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        // SAFETY: plain kill(2) of a process inside our namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Removes namespaces, /etc/netns dirs and work dirs that a bed of a test
/// process which no longer exists left behind (e.g. killed with SIGKILL).
fn sweep_stale() {
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix("pg") else {
            return false;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            return false;
        };
        match pid.parse::<u32>() {
            Ok(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => false,
        }
    };
    let (_, list, _) = run("ip", &["netns", "list"], None);
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if dead(name) {
            eprintln!("removing stale test namespace {name}");
            kill_ns_pids(name);
            let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let _ = run("ip", &["netns", "del", name], None);
        }
    }
    for base in [
        PathBuf::from("/etc/netns"),
        std::env::temp_dir().join("peergate-e2e"),
    ] {
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                if dead(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// A pod's PATH: the directory of the peergate under test, then the usual.
fn pod_path() -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_peergate"));
    let dir = bin.parent().expect("the binary is in a directory");
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        dir.display()
    )
}

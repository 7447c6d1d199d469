//! CPU and memory limits for the bed's containers, as a kubelet sets them
//! from `resources.limits`: one cgroup per container (per process the bed
//! starts), under a cgroup of the bed's own. cgroup v1 (the `cpu` and
//! `memory` hierarchies) or v2 (a unified hierarchy with both controllers).
//!
//! A CPU limit of `m` millicores is a CFS quota of `m` × 100 µs per 100 ms
//! period, as the kubelet writes it; a memory limit is the cgroup's hard
//! limit, so a container over it is OOM-killed (exit 137). The process
//! joins its cgroup before it execs the program ([`Cgroups::join_script`]),
//! so everything it runs is counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a limited container used, from its cgroup.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Peak memory, bytes.
    pub peak: Option<u64>,
    /// Periods its CPU quota throttled it, and for how long in all.
    pub throttled: Option<(u64, Duration)>,
}

/// A container's limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.cpu_millis.is_none() && self.memory_bytes.is_none()
    }
}

/// `50m` or `0.05` (cores) as millicores.
pub fn parse_cpu(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let millis = match t.strip_suffix('m') {
        Some(m) => m.parse::<u32>().map_err(|_| format!("bad cpu `{text}`"))?,
        None => {
            let cores: f64 = t.parse().map_err(|_| format!("bad cpu `{text}`"))?;
            (cores * 1000.0).round() as u32
        }
    };
    if millis == 0 {
        return Err(format!("cpu `{text}` is zero"));
    }
    Ok(millis)
}

/// `16Mi`, `512Ki`, `1Gi` or bytes.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad memory `{text}`"))?;
    let unit = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("bad memory unit in `{text}` (Ki, Mi, Gi)")),
    };
    Ok(n * unit)
}

#[derive(Clone, Debug)]
enum Layout {
    /// (cpu dir, memory dir) of the bed's own cgroups.
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
    },
    V2 {
        root: PathBuf,
    },
}

/// The bed's cgroups: created on first use, removed on drop.
#[derive(Debug)]
pub struct Cgroups {
    layout: Layout,
    /// Every container cgroup created (cpu and memory dirs on v1).
    created: Vec<PathBuf>,
}

/// The path of this process's cgroup in hierarchy `controller` (v1) or
/// in the unified one (`""`), from /proc/self/cgroup.
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names
            .split(',')
            .any(|n| n == controller)
            .then(|| path.to_owned())
    })
}

/// Why this machine cannot limit the bed's containers, if it cannot.
pub fn unavailable() -> Option<String> {
    Cgroups::layout().err()
}

impl Cgroups {
    fn layout() -> Result<Layout, String> {
        let v1 = Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists()
            && Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
        if v1 {
            let cpu = own_path("cpu").ok_or("no cpu cgroup in /proc/self/cgroup")?;
            let memory = own_path("memory").ok_or("no memory cgroup in /proc/self/cgroup")?;
            return Ok(Layout::V1 {
                cpu: Path::new("/sys/fs/cgroup/cpu").join(cpu.trim_start_matches('/')),
                memory: Path::new("/sys/fs/cgroup/memory").join(memory.trim_start_matches('/')),
            });
        }
        let controllers =
            std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if has("cpu") && has("memory") {
            let own = own_path("").unwrap_or_else(|| "/".into());
            return Ok(Layout::V2 {
                root: Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/')),
            });
        }
        Err("no cgroup v1 cpu and memory hierarchies, nor a cgroup v2 with both controllers".into())
    }

    /// The bed's cgroups (`bed` names them), or why not.
    pub fn new(bed: &str) -> Result<Cgroups, String> {
        let layout = match Self::layout()? {
            Layout::V1 { cpu, memory } => Layout::V1 {
                cpu: cpu.join(format!("peergate-{bed}")),
                memory: memory.join(format!("peergate-{bed}")),
            },
            Layout::V2 { root } => {
                // A v2 cgroup with processes cannot delegate controllers, so
                // the bed's goes beside this process's, under its parent.
                let parent = root.parent().unwrap_or(&root).to_path_buf();
                let subtree = parent.join("cgroup.subtree_control");
                let _ = std::fs::write(&subtree, "+cpu +memory");
                let dir = parent.join(format!("peergate-{bed}"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
                std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory")
                    .map_err(|e| format!("enable cpu and memory in {}: {e}", dir.display()))?;
                Layout::V2 { root: dir }
            }
        };
        if let Layout::V1 { cpu, memory } = &layout {
            for d in [cpu, memory] {
                std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
            }
        }
        Ok(Cgroups {
            layout,
            created: Vec::new(),
        })
    }

    /// Creates container `name`'s cgroup with `limits`; the directories a
    /// process must join (one per hierarchy).
    pub fn create(&mut self, name: &str, limits: Limits) -> Result<Vec<PathBuf>, String> {
        let write = |path: PathBuf, value: String| {
            std::fs::write(&path, &value)
                .map_err(|e| format!("write {value} to {}: {e}", path.display()))
        };
        let dirs = match &self.layout {
            Layout::V1 { cpu, memory } => {
                let (c, m) = (cpu.join(name), memory.join(name));
                for d in [&c, &m] {
                    std::fs::create_dir_all(d)
                        .map_err(|e| format!("mkdir {}: {e}", d.display()))?;
                }
                if let Some(millis) = limits.cpu_millis {
                    write(c.join("cpu.cfs_period_us"), "100000".into())?;
                    write(
                        c.join("cpu.cfs_quota_us"),
                        (u64::from(millis) * 100).to_string(),
                    )?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    write(m.join("memory.limit_in_bytes"), bytes.to_string())?;
                }
                vec![c, m]
            }
            Layout::V2 { root } => {
                let d = root.join(name);
                std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
                if let Some(millis) = limits.cpu_millis {
                    write(
                        d.join("cpu.max"),
                        format!("{} 100000", u64::from(millis) * 100),
                    )?;
                }
                if let Some(bytes) = limits.memory_bytes {
                    write(d.join("memory.max"), bytes.to_string())?;
                    let _ = write(d.join("memory.swap.max"), "0".into());
                }
                vec![d]
            }
        };
        self.created.extend(dirs.iter().cloned());
        Ok(dirs)
    }

    /// Shell that moves the running shell into `dirs` (before it execs).
    pub fn join_script(dirs: &[PathBuf]) -> String {
        dirs.iter()
            .map(|d| format!("echo $$ > '{}/cgroup.procs' && ", d.display()))
            .collect()
    }

    /// Peak memory of the container whose cgroups are `dirs`, in bytes.
    pub fn peak(dirs: &[PathBuf]) -> Option<u64> {
        dirs.iter().find_map(|d| {
            ["memory.max_usage_in_bytes", "memory.peak"]
                .iter()
                .find_map(|f| std::fs::read_to_string(d.join(f)).ok())
                .and_then(|t| t.trim().parse().ok())
        })
    }

    /// Times container `dirs` was throttled by its CPU quota, and for how
    /// long in all (from cpu.stat).
    pub fn throttled(dirs: &[PathBuf]) -> Option<(u64, Duration)> {
        dirs.iter().find_map(|d| {
            let text = std::fs::read_to_string(d.join("cpu.stat")).ok()?;
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            };
            let periods = field("nr_throttled ")?;
            let time = field("throttled_time ")
                .map(Duration::from_nanos)
                .or_else(|| field("throttled_usec ").map(Duration::from_micros))?;
            Some((periods, time))
        })
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        // The bed killed every process first; a cgroup is removable once
        // its last task is gone, which can take a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut dirs: Vec<PathBuf> = self.created.drain(..).rev().collect();
        match &self.layout {
            Layout::V1 { cpu, memory } => dirs.extend([cpu.clone(), memory.clone()]),
            Layout::V2 { root } => dirs.push(root.clone()),
        }
        for d in dirs {
            while std::fs::remove_dir(&d).is_err() && d.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn quantities_parse_as_kubernetes_writes_them() {
    assert_eq!(parse_cpu("50m"), Ok(50));
    assert_eq!(parse_cpu("0.25"), Ok(250));
    assert_eq!(parse_cpu("2"), Ok(2000));
    assert!(parse_cpu("0m").is_err() && parse_cpu("fast").is_err());
    assert_eq!(parse_memory("16Mi"), Ok(16 << 20));
    assert_eq!(parse_memory("512Ki"), Ok(512 << 10));
    assert_eq!(parse_memory("1000"), Ok(1000));
    assert!(parse_memory("16MB").is_err());
}

//! Hardware detection: CPU topology (cores, SMT siblings, packages), NUMA nodes, caches, memory,
//! cgroup limits and io_uring support, read from sysfs/procfs (or hwloc with the `hwloc`
//! feature). Detection never fails: a missing source gives a logged default. Owns only reading
//! the machine; the profiles in `config` decide what to do with it.
//!
//! ```
//! let hw = percore::runtime::detect::Hardware::detect();
//! assert!(hw.logical_cpus >= 1);
//! println!("{} cores, io_uring: {}", hw.physical_cores, hw.io_uring.available);
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaNode {
    /// Node id.
    pub id: usize,
    /// Logical CPUs on the node.
    pub cpus: Vec<usize>,
    /// Memory the node reports (may under-report on VMs: size pools from `memory_total`).
    pub memory_bytes: u64,
}

/// One CPU cache as seen from CPU 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cache {
    /// 1, 2, 3…
    pub level: u8,
    /// "Data", "Instruction" or "Unified".
    pub kind: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Line size in bytes.
    pub line_bytes: u64,
    /// CPUs sharing this cache.
    pub shared_cpus: Vec<usize>,
}

/// What the io_uring probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoUringSupport {
    /// A ring could be created.
    pub available: bool,
    /// Why not, or the kernel version when it is.
    pub reason: String,
    /// Opcodes we use that the kernel supports.
    pub ops: Vec<String>,
    /// Multishot accept and multishot recv work: both were armed on a throwaway ring and
    /// produced a completion that kept them armed (kernel 6.0+). The io_uring backend needs
    /// them.
    pub multishot: bool,
}

/// Opcodes the io_uring backend cannot run without (names as in [`IoUringSupport::ops`]).
pub const URING_REQUIRED_OPS: [&str; 7] = [
    "Accept",
    "Recv",
    "Send",
    "Connect",
    "PollAdd",
    "AsyncCancel",
    "Close",
];

impl IoUringSupport {
    /// What the io_uring backend needs and this probe did not find, in words (`None`: all
    /// there). `IoBackend::Auto` picks mio when this is `Some`; an explicit `uring` fails to
    /// start with it.
    pub fn missing_required(&self) -> Option<String> {
        if !self.available {
            return Some(format!("a usable ring ({})", self.reason));
        }
        let ops: Vec<&str> = URING_REQUIRED_OPS
            .iter()
            .copied()
            .filter(|op| !self.ops.iter().any(|o| o == op))
            .collect();
        if !ops.is_empty() {
            return Some(format!("opcodes {} ({})", ops.join(", "), self.reason));
        }
        if !self.multishot {
            return Some(format!(
                "multishot accept/recv (kernel 6.0+; {})",
                self.reason
            ));
        }
        None
    }
}

/// The machine as detected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hardware {
    /// Where the topology came from: "sysfs", "hwloc" or "default".
    pub source: String,
    /// Online logical CPUs.
    pub logical_cpus: usize,
    /// The online logical CPU ids.
    pub cpu_ids: Vec<usize>,
    /// Physical cores (SMT siblings counted once).
    pub physical_cores: usize,
    /// SMT sibling groups: each inner list is one physical core's logical CPUs.
    pub smt_siblings: Vec<Vec<usize>>,
    /// CPU packages (sockets).
    pub packages: usize,
    /// NUMA nodes (one node with every CPU when the machine reports none).
    pub numa_nodes: Vec<NumaNode>,
    /// Caches seen from CPU 0.
    pub caches: Vec<Cache>,
    /// MemTotal.
    pub memory_total: u64,
    /// MemAvailable.
    pub memory_available: u64,
    /// cgroup v2 CPU limit in CPUs (cpu.max), if any.
    pub cgroup_cpu_limit: Option<f64>,
    /// cgroup v2 memory limit in bytes (memory.max), if any.
    pub cgroup_memory_limit: Option<u64>,
    /// io_uring probe result.
    pub io_uring: IoUringSupport,
}

impl Hardware {
    /// Detects the current machine (hwloc first with the `hwloc` feature, else sysfs/procfs).
    pub fn detect() -> Hardware {
        #[cfg(feature = "hwloc")]
        {
            match hwloc_topology() {
                Ok(hw) => return hw,
                Err(e) => tracing::info!(error = %e, "hwloc topology unavailable; using sysfs"),
            }
        }
        Hardware::detect_from(Path::new("/"))
    }

    /// Detects from a filesystem root (tests pass a fake sysfs/procfs tree).
    pub fn detect_from(root: &Path) -> Hardware {
        let sys = root.join("sys/devices/system");
        let p = |rel: &str| -> PathBuf { sys.join(rel) };
        let mut source = "sysfs".to_string();

        let cpu_ids = read(&p("cpu/online"))
            .and_then(|s| parse_cpu_list(&s).ok())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                tracing::info!(cpus = n, "no /sys cpu list; using available_parallelism");
                source = "default".into();
                (0..n).collect()
            });

        // Physical cores: group CPUs by (physical_package_id, core_id) from each CPU's topology.
        let mut cores: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        let mut packages = std::collections::BTreeSet::new();
        let mut no_topology = 0usize;
        for &c in &cpu_ids {
            let topo = p(&format!("cpu/cpu{c}/topology"));
            let pkg = read_num(&topo.join("physical_package_id")).unwrap_or(0) as usize;
            let core = read_num(&topo.join("core_id")).map_or_else(
                || {
                    no_topology += 1;
                    c
                },
                |v| v as usize,
            );
            packages.insert(pkg);
            cores.entry((pkg, core)).or_default().push(c);
        }
        if no_topology > 0 {
            tracing::info!(
                cpus = no_topology,
                "no /sys cpu topology for some CPUs; counting each as its own physical core"
            );
        }
        let smt_siblings: Vec<Vec<usize>> = cores.into_values().collect();

        let mut numa_nodes = Vec::new();
        if let Ok(entries) = std::fs::read_dir(p("node")) {
            let mut ids: Vec<usize> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
                .collect();
            ids.sort_unstable();
            for id in ids {
                let cpus = read(&p(&format!("node/node{id}/cpulist")))
                    .and_then(|s| parse_cpu_list(&s).ok())
                    .unwrap_or_default();
                let memory_bytes = read(&p(&format!("node/node{id}/meminfo")))
                    .and_then(|s| parse_meminfo_field(&s, "MemTotal"))
                    .unwrap_or(0);
                numa_nodes.push(NumaNode {
                    id,
                    cpus,
                    memory_bytes,
                });
            }
        }

        let meminfo = read(&root.join("proc/meminfo")).unwrap_or_default();
        let memory_total = parse_meminfo_field(&meminfo, "MemTotal").unwrap_or_else(|| {
            tracing::info!("no /proc/meminfo; assuming 1 GiB");
            1 << 30
        });
        let memory_available =
            parse_meminfo_field(&meminfo, "MemAvailable").unwrap_or(memory_total);
        if numa_nodes.is_empty() {
            tracing::info!("no /sys NUMA nodes; assuming one node holding every CPU");
            numa_nodes.push(NumaNode {
                id: 0,
                cpus: cpu_ids.clone(),
                memory_bytes: memory_total,
            });
        }

        let mut caches = Vec::new();
        let first = cpu_ids.first().copied().unwrap_or(0);
        for i in 0..8 {
            let d = p(&format!("cpu/cpu{first}/cache/index{i}"));
            let Some(level) = read_num(&d.join("level")) else {
                break;
            };
            caches.push(Cache {
                level: level as u8,
                kind: read(&d.join("type")).unwrap_or_default().trim().to_string(),
                size_bytes: read(&d.join("size"))
                    .and_then(|s| parse_size(&s))
                    .unwrap_or(0),
                line_bytes: read_num(&d.join("coherency_line_size")).unwrap_or(64),
                shared_cpus: read(&d.join("shared_cpu_list"))
                    .and_then(|s| parse_cpu_list(&s).ok())
                    .unwrap_or_default(),
            });
        }

        if caches.is_empty() {
            tracing::info!("no /sys cache description; cache sizes unknown (none assumed)");
        }

        let cg = root.join("sys/fs/cgroup");
        let cgroup_cpu_limit = read(&cg.join("cpu.max")).and_then(|s| parse_cpu_max(&s));
        let cgroup_memory_limit =
            read(&cg.join("memory.max")).and_then(|s| s.trim().parse::<u64>().ok());

        Hardware {
            source,
            logical_cpus: cpu_ids.len(),
            physical_cores: smt_siblings.len().max(1),
            cpu_ids,
            smt_siblings,
            packages: packages.len().max(1),
            numa_nodes,
            caches,
            memory_total,
            memory_available,
            cgroup_cpu_limit,
            cgroup_memory_limit,
            io_uring: probe_io_uring(),
        }
    }

    /// CPUs usable under the cgroup limit (at least 1).
    pub fn usable_cpus(&self) -> usize {
        let n = self.logical_cpus;
        match self.cgroup_cpu_limit {
            Some(l) => (l.ceil() as usize).clamp(1, n.max(1)),
            None => n.max(1),
        }
    }

    /// Memory usable under the cgroup limit.
    pub fn usable_memory(&self) -> u64 {
        match self.cgroup_memory_limit {
            Some(l) => l.min(self.memory_total),
            None => self.memory_total,
        }
    }

    /// One CPU per physical core, in order (the first sibling of each core), then the remaining
    /// SMT siblings: the order in which workers are placed.
    pub fn placement_order(&self) -> Vec<usize> {
        let mut first: Vec<usize> = self
            .smt_siblings
            .iter()
            .filter_map(|s| s.first().copied())
            .collect();
        let rest = self
            .smt_siblings
            .iter()
            .flat_map(|s| s.iter().skip(1).copied());
        first.extend(rest);
        first
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_num(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// The error of [`parse_cpu_list`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad CPU list item {0:?}: expected N or N-M")]
pub struct CpuListError(pub String);

/// Parses a kernel CPU list such as `0-3,5,7-8` (whitespace and an empty list are fine).
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = Vec::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| CpuListError(part.into()))?,
                    b.trim().parse().map_err(|_| CpuListError(part.into()))?,
                );
                if a > b || b - a > 1 << 16 {
                    return Err(CpuListError(part.into()));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| CpuListError(part.into()))?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Reads `Field:   123 kB` from a meminfo text (also NUMA `Node 0 Field:` lines), in bytes.
pub fn parse_meminfo_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.split_whitespace().last()? != field {
            return None;
        }
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        Some(match it.next() {
            Some("kB") => n * 1024,
            _ => n,
        })
    })
}

/// Parses a sysfs cache size such as `32K`, `1M` or `1024`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1024),
        b'M' | b'm' => (&s[..s.len() - 1], 1024 * 1024),
        b'G' | b'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mul)
}

/// Parses cgroup v2 `cpu.max` (`max 100000` or `200000 100000`) into CPUs.
pub fn parse_cpu_max(s: &str) -> Option<f64> {
    let mut it = s.split_whitespace();
    let quota = it.next()?;
    let period: f64 = it.next().unwrap_or("100000").parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    Some(quota.parse::<f64>().ok()? / period)
}

/// Creates a small io_uring and probes the opcodes percore uses, once per process (the result
/// is cached: a thread that has used io_uring can see `EINTR` from a blocking socket call with
/// a timeout when the kernel later runs io_uring task work on it, so the probe should not run
/// again and again on the caller's thread). Never panics.
pub fn probe_io_uring() -> IoUringSupport {
    static PROBE: std::sync::OnceLock<IoUringSupport> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            // On a throwaway thread: the probe arms operations, and the ring's teardown can
            // leave io_uring task work that interrupts the caller's next blocking call.
            std::thread::Builder::new()
                .name("percore-probe".into())
                .spawn(probe_io_uring_uncached)
                .ok()
                .and_then(|t| t.join().ok())
                .unwrap_or_else(probe_io_uring_uncached)
        })
        .clone()
}

fn probe_io_uring_uncached() -> IoUringSupport {
    let kernel = read(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default();
    let kernel = kernel.trim().to_string();
    let new_enough = kernel
        .split(['.', '-'])
        .take(2)
        .map(|p| p.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>()
        .as_slice()
        >= [6, 0].as_slice();
    if read(Path::new("/proc/sys/kernel/io_uring_disabled")).is_some_and(|v| v.trim() == "2") {
        return IoUringSupport {
            available: false,
            reason: "disabled by /proc/sys/kernel/io_uring_disabled=2".into(),
            ops: vec![],
            multishot: false,
        };
    }
    let mut ring = match io_uring::IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            return IoUringSupport {
                available: false,
                reason: format!(
                    "io_uring_setup failed: {e} (containers often forbid it; the mio/std fallbacks are used)"
                ),
                ops: vec![],
                multishot: false,
            };
        }
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return IoUringSupport {
            available: true,
            reason: format!("kernel {kernel}; opcode probe failed: {e}"),
            ops: vec![],
            multishot: false,
        };
    }
    use io_uring::opcode as op;
    let wanted: [(&str, u8); 14] = [
        ("Read", op::Read::CODE),
        ("Write", op::Write::CODE),
        ("Readv", op::Readv::CODE),
        ("Writev", op::Writev::CODE),
        ("Fsync", op::Fsync::CODE),
        ("Accept", op::Accept::CODE),
        ("Connect", op::Connect::CODE),
        ("Recv", op::Recv::CODE),
        ("Send", op::Send::CODE),
        ("ProvideBuffers", op::ProvideBuffers::CODE),
        ("Timeout", op::Timeout::CODE),
        ("Close", op::Close::CODE),
        ("PollAdd", op::PollAdd::CODE),
        ("AsyncCancel", op::AsyncCancel::CODE),
    ];
    let ops = wanted
        .iter()
        .filter(|(_, code)| probe.is_supported(*code))
        .map(|(n, _)| n.to_string())
        .collect();
    let (multishot, reason) = if !new_enough {
        (false, format!("kernel {kernel}"))
    } else {
        match trial_multishot(&mut ring) {
            Ok(()) => (true, format!("kernel {kernel}")),
            Err(why) => (false, format!("kernel {kernel}; {why}")),
        }
    };
    IoUringSupport {
        available: true,
        reason,
        ops,
        multishot,
    }
}

/// Arms a multishot accept on a loopback listener and a multishot recv (buffer select on a
/// group that has no buffers) on a socketpair, in `ring`, and checks that the kernel accepted
/// both: the accept yields a connection with `IORING_CQE_F_MORE`, the recv fails with
/// `ENOBUFS` (a kernel without multishot recv rejects the SQE with `EINVAL`).
fn trial_multishot(ring: &mut io_uring::IoUring) -> Result<(), String> {
    use io_uring::{cqueue, opcode, types};
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut pair = [0; 2];
    // SAFETY: `pair` is valid for two c_ints; the result is checked.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            pair.as_mut_ptr(),
        )
    } < 0
    {
        return Err(format!("socketpair: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned here only.
    let (a, b) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(pair[0]),
            std::os::fd::OwnedFd::from_raw_fd(pair[1]),
        )
    };
    // SAFETY: writes one byte from a valid buffer to our socket.
    unsafe { libc::write(b.as_raw_fd(), b"x".as_ptr() as *const libc::c_void, 1) };
    const ACCEPT: u64 = 1;
    const RECV: u64 = 2;
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(ACCEPT);
    // Buffer group 0x7ffe is never registered on this ring.
    let recv = opcode::RecvMulti::new(types::Fd(a.as_raw_fd()), 0x7ffe)
        .build()
        .user_data(RECV);
    // SAFETY: the SQEs carry no pointers into memory that could go away before completion
    // (the ring is dropped, cancelling them, while the fds still live).
    let pushed = unsafe {
        let mut sq = ring.submission();
        sq.push(&accept).is_ok() && sq.push(&recv).is_ok()
    };
    if !pushed {
        return Err("probe ring full".into());
    }
    ring.submit().map_err(|e| format!("submit: {e}"))?;
    let client = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let (mut accept_ok, mut recv_ok) = (None, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while (accept_ok.is_none() || recv_ok.is_none()) && std::time::Instant::now() < deadline {
        let ts = types::Timespec::new().nsec(10_000_000);
        let args = types::SubmitArgs::new().timespec(&ts);
        let _ = ring.submitter().submit_with_args(1, &args);
        for cqe in ring.completion() {
            match cqe.user_data() {
                ACCEPT => {
                    if cqe.result() >= 0 {
                        // SAFETY: the kernel gave us this fd; nothing else owns it.
                        unsafe { libc::close(cqe.result()) };
                    }
                    accept_ok = Some(if cqe.result() >= 0 && cqueue::more(cqe.flags()) {
                        Ok(())
                    } else {
                        Err(format!(
                            "multishot accept: {}",
                            std::io::Error::from_raw_os_error(-cqe.result().min(0))
                        ))
                    });
                }
                RECV => {
                    recv_ok = Some(if cqe.result() == -libc::ENOBUFS || cqe.result() > 0 {
                        Ok(())
                    } else {
                        Err(format!(
                            "multishot recv: {}",
                            std::io::Error::from_raw_os_error(-cqe.result().min(0))
                        ))
                    });
                }
                _ => {}
            }
        }
    }
    drop(client);
    accept_ok.unwrap_or_else(|| Err("multishot accept: no completion".into()))?;
    recv_ok.unwrap_or_else(|| Err("multishot recv: no completion".into()))?;
    Ok(())
}

#[cfg(feature = "hwloc")]
fn hwloc_topology() -> Result<Hardware, String> {
    use hwlocality::Topology;
    use hwlocality::object::types::ObjectType;
    let topo = Topology::new().map_err(|e| e.to_string())?;
    // Start from sysfs for memory, caches, cgroups and io_uring, then take hwloc's view of
    // cores, packages and NUMA nodes, which is authoritative where they differ.
    let mut hw = Hardware::detect_from(Path::new("/"));
    let pus = |o: &hwlocality::object::TopologyObject| -> Vec<usize> {
        o.cpuset()
            .map_or_else(Vec::new, |s| s.iter_set().map(usize::from).collect())
    };
    let cores: Vec<Vec<usize>> = topo
        .objects_with_type(ObjectType::Core)
        .map(pus)
        .filter(|v| !v.is_empty())
        .collect();
    if !cores.is_empty() {
        hw.smt_siblings = cores;
        hw.physical_cores = hw.smt_siblings.len();
    }
    let packages = topo.objects_with_type(ObjectType::Package).count();
    if packages > 0 {
        hw.packages = packages;
    }
    let nodes: Vec<NumaNode> = topo
        .objects_with_type(ObjectType::NUMANode)
        .map(|o| NumaNode {
            id: o.os_index().unwrap_or(0),
            cpus: pus(o),
            memory_bytes: o.total_memory(),
        })
        .collect();
    if !nodes.is_empty() {
        hw.numa_nodes = nodes;
    }
    hw.source = "hwloc".into();
    Ok(hw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,5,7-8\n").unwrap(),
            vec![0, 1, 2, 3, 5, 7, 8]
        );
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn sizes_and_meminfo() {
        assert_eq!(parse_size("32K\n"), Some(32 * 1024));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
        let mi = "MemTotal:       24684096 kB\nMemAvailable:   23315272 kB\n";
        assert_eq!(parse_meminfo_field(mi, "MemTotal"), Some(24684096 * 1024));
        assert_eq!(
            parse_meminfo_field("Node 0 MemTotal: 10 kB", "MemTotal"),
            Some(10240)
        );
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max("150000 100000"), Some(1.5));
    }

    proptest! {
        #[test]
        fn cpu_list_round_trips(mut cpus in prop::collection::btree_set(0usize..512, 0..64)) {
            let v: Vec<usize> = std::mem::take(&mut cpus).into_iter().collect();
            let text = v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_cpu_list(&text).unwrap(), v);
        }

        #[test]
        fn cpu_list_never_panics(s in ".{0,40}") {
            let _ = parse_cpu_list(&s);
        }
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn fake_sysfs_with_smt_and_two_numa_nodes() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "sys/devices/system/cpu/online", "0-3\n");
        // Two cores with two hyperthreads each: (0,2) and (1,3).
        for (cpu, core) in [(0, 0), (1, 1), (2, 0), (3, 1)] {
            write(
                r,
                &format!("sys/devices/system/cpu/cpu{cpu}/topology/core_id"),
                &format!("{core}\n"),
            );
            write(
                r,
                &format!("sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id"),
                "0\n",
            );
        }
        write(r, "sys/devices/system/cpu/cpu0/cache/index0/level", "1\n");
        write(r, "sys/devices/system/cpu/cpu0/cache/index0/type", "Data\n");
        write(r, "sys/devices/system/cpu/cpu0/cache/index0/size", "48K\n");
        write(
            r,
            "sys/devices/system/cpu/cpu0/cache/index0/shared_cpu_list",
            "0,2\n",
        );
        write(r, "sys/devices/system/node/node0/cpulist", "0,2\n");
        write(r, "sys/devices/system/node/node1/cpulist", "1,3\n");
        write(
            r,
            "sys/devices/system/node/node1/meminfo",
            "Node 1 MemTotal: 1024 kB\n",
        );
        write(
            r,
            "proc/meminfo",
            "MemTotal: 4096 kB\nMemAvailable: 2048 kB\n",
        );
        write(r, "sys/fs/cgroup/cpu.max", "300000 100000\n");
        let hw = Hardware::detect_from(r);
        assert_eq!(hw.logical_cpus, 4);
        assert_eq!(hw.physical_cores, 2);
        assert_eq!(hw.smt_siblings, vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(hw.placement_order(), vec![0, 1, 2, 3]);
        assert_eq!(hw.numa_nodes.len(), 2);
        assert_eq!(hw.numa_nodes[1].memory_bytes, 1024 * 1024);
        assert_eq!(hw.caches[0].size_bytes, 48 * 1024);
        assert_eq!(hw.memory_total, 4096 * 1024);
        assert_eq!(hw.cgroup_cpu_limit, Some(3.0));
        assert_eq!(hw.usable_cpus(), 3);
    }

    #[test]
    fn empty_root_falls_back_to_defaults() {
        let d = tempfile::tempdir().unwrap();
        let hw = Hardware::detect_from(d.path());
        assert_eq!(hw.source, "default");
        assert!(hw.logical_cpus >= 1);
        assert_eq!(hw.numa_nodes.len(), 1);
        assert_eq!(hw.memory_total, 1 << 30);
    }

    /// Every source that falls back to a default says so in the log.
    #[test]
    fn each_default_is_logged() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || w.clone())
            .finish();
        let d = tempfile::tempdir().unwrap();
        tracing::subscriber::with_default(sub, || Hardware::detect_from(d.path()));
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        for what in [
            "no /sys cpu list",
            "no /sys cpu topology",
            "no /sys NUMA nodes",
            "no /proc/meminfo",
            "no /sys cache description",
        ] {
            assert!(log.contains(what), "missing {what:?} in:\n{log}");
        }
    }
}

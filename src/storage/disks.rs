//! What the machine's disks are, for `percore info`: the block devices under `/sys/block`
//! (rotational or not, NVMe, logical and physical sector sizes, size), the filesystem a data
//! directory lives on (from `/proc/self/mountinfo`) and its direct-I/O alignment (`statx`).
//! Read-only; blocking (call it off the workers). Must not touch any store.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::file::{DioAlign, dio_align};

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name (`nvme0n1`, `sda`, `vda`).
    pub name: String,
    /// Spinning disk (`queue/rotational`).
    pub rotational: bool,
    /// An NVMe namespace.
    pub nvme: bool,
    /// Logical sector size in bytes.
    pub logical_block: u32,
    /// Physical sector size in bytes.
    pub physical_block: u32,
    /// Size in bytes.
    pub bytes: u64,
    /// Model string, where the device has one.
    pub model: Option<String>,
}

/// The filesystem a directory is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataDir {
    /// The directory asked about.
    pub path: PathBuf,
    /// Filesystem type (`ext4`, `xfs`, `tmpfs`, …).
    pub fs_type: String,
    /// What is mounted (`/dev/vda1`, `tmpfs`, …).
    pub source: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Direct-I/O alignment from `statx` on a file there (`None`: not reported, so direct
    /// I/O falls back to buffered).
    pub dio: Option<DioAlign>,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The block devices with a non-zero size (loop devices without a backing file are left out).
pub fn block_devices() -> Vec<BlockDevice> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let base = e.path();
        let num = |rel: &str| read_trim(&base.join(rel)).and_then(|s| s.parse::<u64>().ok());
        let sectors = num("size").unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        out.push(BlockDevice {
            nvme: name.starts_with("nvme"),
            rotational: num("queue/rotational") == Some(1),
            logical_block: num("queue/logical_block_size").unwrap_or(512) as u32,
            physical_block: num("queue/physical_block_size").unwrap_or(512) as u32,
            bytes: sectors * 512,
            model: read_trim(&base.join("device/model")).filter(|m| !m.is_empty()),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Undoes the octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem `dir` is on and its direct-I/O alignment (`None` if `dir` does not exist).
pub fn data_dir(dir: &Path) -> Option<DataDir> {
    let canon = dir.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(PathBuf, String, String)> = None;
    for line in info.lines() {
        // id parent major:minor root mount-point options ... - fstype source super-options
        let f: Vec<&str> = line.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() < dash + 3 || f.len() < 5 {
            continue;
        }
        let mp = PathBuf::from(unescape(f[4]));
        if canon.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mp, f[dash + 1].to_string(), unescape(f[dash + 2])));
        }
    }
    let (mount_point, fs_type, source) = best?;
    let probe = canon.join(format!(".percore-dio-probe-{}", std::process::id()));
    let dio = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .ok()
        .and_then(|f| {
            let a = dio_align(&f);
            let _ = std::fs::remove_file(&probe);
            a
        });
    Some(DataDir {
        path: canon,
        fs_type,
        source,
        mount_point,
        dio,
    })
}

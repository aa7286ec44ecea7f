//! [`DirLock`]: one process at a time per store directory. A `LOCK` file held with
//! `flock(LOCK_EX | LOCK_NB)` and holding the owner's pid; a second opener gets
//! [`StorageError::Locked`] naming that pid. The kernel drops the lock when the holder exits
//! (also on `kill -9`), so a crash never leaves a stale lock. Must not touch the store's data.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::error::{Result, StorageError};

/// The held lock of a store directory; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock of `dir` (creating `dir/LOCK`), or fails with `Locked { pid }`.
    /// Blocking but short (no waiting for other processes); call it from the blocking pool
    /// when on a worker.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join("LOCK");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::io("open", &path, e))?;
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut s = String::new();
                let _ = f.read_to_string(&mut s);
                return Err(StorageError::Locked {
                    path,
                    pid: s.trim().parse().unwrap_or(0),
                });
            }
            Err(e) => return Err(StorageError::io("flock", &path, e.into())),
        }
        let write = |f: &mut std::fs::File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            f.flush()
        };
        write(&mut f).map_err(|e| StorageError::io("write", &path, e))?;
        Ok(DirLock { _file: f, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(d.path()).unwrap();
        match DirLock::acquire(d.path()) {
            Err(StorageError::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        DirLock::acquire(d.path()).expect("free again after drop");
    }
}

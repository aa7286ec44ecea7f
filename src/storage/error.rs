//! [`StorageError`]: every way a storage call fails, with the file and offset where one is
//! known and what to do next. Owns no I/O.

use std::io;
use std::path::PathBuf;

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed on `path`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fdatasync", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The disk (or the filesystem's quota) is full. Nothing acknowledged is lost; writes are
    /// accepted again once space is freed.
    #[error("no space left on the device holding {path}; free space, then retry the write")]
    DiskFull {
        /// The file that could not grow.
        path: PathBuf,
    },
    /// Another process holds the store's lock.
    #[error("{path} is locked by pid {pid}; stop that process or open another directory")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The process holding it (0 if it could not be read).
        pid: u32,
    },
    /// A key is longer than the configured limit.
    #[error("key of {len} bytes is over the limit of {max} bytes (KvOptions::max_key_bytes)")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value is longer than the configured limit.
    #[error("value of {len} bytes is over the limit of {max} bytes (KvOptions::max_value_bytes)")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Stored bytes failed their checksum or framing check.
    #[error("corrupt data in {path} at offset {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// A block or byte range outside the device or file.
    #[error("{what} is out of range (the store holds {limit})")]
    OutOfRange {
        /// The request.
        what: String,
        /// The bound it broke.
        limit: u64,
    },
    /// An option is invalid.
    #[error("invalid storage option {name} = {value}: {why}")]
    Config {
        /// The option.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The store was closed (or its shard stopped) before the operation finished.
    #[error("the store is closed")]
    Closed,
    /// The owning shard did not answer in time.
    #[error("the shard owning the key did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// An earlier write failed in a way that leaves the log's tail unknown (e.g. `EIO` on
    /// `fdatasync`): the shard refuses writes until reopened, as PostgreSQL does after an
    /// fsync failure, because the kernel may have dropped the dirty pages.
    #[error("{path}: a previous write or sync failed ({why}); reopen the store to recover")]
    Poisoned {
        /// The segment.
        path: PathBuf,
        /// The original error.
        why: String,
    },
}

impl StorageError {
    /// An I/O error on `path` during `op`; `ENOSPC`/`EDQUOT` become [`StorageError::DiskFull`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StorageError::DiskFull { path },
            _ => StorageError::Io { op, path, source },
        }
    }

    /// A copy of this error for reporting one failure under several keys.
    pub(crate) fn duplicate(&self) -> StorageError {
        match self {
            StorageError::Io { op, path, source } => StorageError::Io {
                op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(c) => std::io::Error::from_raw_os_error(c),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            StorageError::DiskFull { path } => StorageError::DiskFull { path: path.clone() },
            StorageError::Locked { path, pid } => StorageError::Locked {
                path: path.clone(),
                pid: *pid,
            },
            StorageError::KeyTooLarge { len, max } => StorageError::KeyTooLarge {
                len: *len,
                max: *max,
            },
            StorageError::ValueTooLarge { len, max } => StorageError::ValueTooLarge {
                len: *len,
                max: *max,
            },
            StorageError::Corrupt { path, offset, what } => StorageError::Corrupt {
                path: path.clone(),
                offset: *offset,
                what: what.clone(),
            },
            StorageError::OutOfRange { what, limit } => StorageError::OutOfRange {
                what: what.clone(),
                limit: *limit,
            },
            StorageError::Config { name, value, why } => StorageError::Config {
                name,
                value: value.clone(),
                why,
            },
            StorageError::Closed => StorageError::Closed,
            StorageError::Timeout(t) => StorageError::Timeout(*t),
            StorageError::Poisoned { path, why } => StorageError::Poisoned {
                path: path.clone(),
                why: why.clone(),
            },
        }
    }

    /// True for [`StorageError::DiskFull`].
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }
}

/// `Result` with a [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

//! Storage: file I/O on the runtime's event loops ([`file`]), fixed-size blocks ([`block`]),
//! the log-structured key-value store ([`kv`]), named objects ([`object`]), durable actor
//! state ([`journal`]: a write-ahead log of events plus snapshots), the directory lock
//! ([`lock`]), what the machine's disks are ([`disks`]) and the typed errors
//! ([`StorageError`]).
//!
//! Everything here runs on the runtime's threads without blocking them: file operations are
//! io_uring SQEs on the worker's event loop, or run on a small blocking pool on the mio
//! backend (the same semantics; `PERCORE_IO=uring|mio` picks, like for the network).
//! Shared-nothing: each app worker owns its shard of a store.
//!
//! Must not import `transport` (what both need lives in `runtime::io`).

pub mod block;
pub mod disks;
pub mod error;
pub mod file;
pub mod journal;
pub mod kv;
pub mod lock;
pub mod object;
pub mod object_service;

pub use block::BlockStore;
pub use error::StorageError;
pub use journal::{Durable, Journal, JournalOptions};
pub use object::{ObjectMeta, ObjectStore};
pub use object_service::{ObjectService, ObjectUpload};

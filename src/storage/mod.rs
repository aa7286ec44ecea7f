//! Storage: file I/O on the runtime's event loops ([`file`]), the log-structured key-value
//! store ([`kv`]), the directory lock ([`lock`]) and the typed errors ([`StorageError`]).
//!
//! Everything here runs on the runtime's threads without blocking them: file operations are
//! io_uring SQEs on the worker's event loop, or run on a small blocking pool on the mio
//! backend (the same semantics; `PERCORE_IO=uring|mio` picks, like for the network).
//! Shared-nothing: each app worker owns its shard of a store.
//!
//! Must not import `transport` (what both need lives in `runtime::io`).

pub mod error;
pub mod file;
pub mod kv;
pub mod lock;

pub use error::StorageError;

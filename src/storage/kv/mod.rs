//! The log-structured key-value store (Bitcask/WiscKey family): append-only segment files of
//! CRC-checked frames, an ordered in-memory index, atomic write batches, prefix and range
//! scans, tombstones, background compaction, hint files for fast restarts, and recovery that
//! cuts a torn tail and never returns corrupt data.
//!
//! - [`KvShard`]: one shard, owned by one thread; the engine.
//! - [`KvStore`]: one shard per app worker behind a sharded actor; the API most users want.
//! - [`KvOptions`] / [`Durability`]: the knobs, from code, TOML or the environment.
//! - [`check`]: the read-only scan behind `percore storage check DIR`.
//!
//! Crash semantics: a write is acknowledged only when its [`Durability`] promise holds
//! (`Sync` and `GroupCommit`: after an `fdatasync` covering it). After a crash every
//! acknowledged write is present, every batch is all or nothing, and nothing corrupt is
//! returned (tested by SIGKILLing a writer process, `tests/storage_kv_crash.rs`).
//!
//! Must not touch: transport (storage and transport never import each other), other stores.

mod cache;
mod compaction;
mod flusher;
pub mod hint;
mod key;
mod options;
pub mod record;
mod recovery;
mod shard;
mod store;

pub use options::{Durability, KvOptions, parse_durability};
pub use recovery::{Corruption, OpenReport, check};
pub use shard::{KvShard, KvStats, Op, PendingRead, WriteBatch};
pub(crate) use store::check_meta;
pub use store::{KvStore, ShardActor, ShardMsg};

//! Durable actor state: [`Journal`] keeps a state value `S` whose changes are events written
//! ahead to a log (WAL) before they are applied, and snapshots of the whole state that let the
//! log behind them be deleted. Reopening loads the newest snapshot and replays the events after
//! it, so an actor that opens its journal in `started` comes back after a crash (or `kill -9`)
//! with every persisted event applied.
//!
//! Files in the journal's directory:
//! - `wal-<first seq>.log`: frames in the key-value store's [record](super::kv::record) format
//!   (CRC32C per frame; a frame holds the events of one `persist_all`, all or nothing);
//! - `snapshot`: one frame holding the state (serde JSON) and the sequence number it covers,
//!   replaced atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! Crash semantics: [`persist`](Journal::persist) returns after `fdatasync`; an event it
//! returned for is never lost, an event whose write was cut off by a crash is dropped whole
//! (the torn tail is truncated at open). A failed sync poisons the journal (later calls fail):
//! the kernel may have dropped the dirty pages, so only a reopen knows what is on disk.
//!
//! Must not touch: the key-value store's files, the actor runtime (the journal is a value an
//! actor owns).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Result, StorageError};
use super::file::{File, FileIo, run_blocking, sync_dir};
use super::kv::record::{Kind, decode_frame, encode_frame};
use super::lock::DirLock;

/// A state that changes only by events.
pub trait Durable: Serialize + DeserializeOwned + 'static {
    /// A change, as written to the log.
    type Event: Serialize + DeserializeOwned;

    /// Applies one event. Must be deterministic: replay applies the same events again.
    fn apply(&mut self, event: &Self::Event);
}

/// Options of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// Take a snapshot (and drop the log behind it) after this many events; `None`: only
    /// when [`Journal::snapshot`] is called. Default 10,000.
    pub snapshot_every: Option<u64>,
    /// Largest encoded event. Default 1 MiB.
    pub max_event_bytes: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            snapshot_every: Some(10_000),
            max_event_bytes: 1 << 20,
        }
    }
}

/// What opening a journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalReport {
    /// Sequence number covered by the snapshot loaded (0: none).
    pub snapshot_seq: u64,
    /// Events replayed from the log.
    pub replayed: u64,
    /// Bytes of a torn tail cut off.
    pub truncated: u64,
}

/// A state with its write-ahead log and snapshots (see the module docs).
pub struct Journal<S: Durable> {
    state: S,
    dir: PathBuf,
    io: FileIo,
    opts: JournalOptions,
    wal: File,
    wal_len: u64,
    /// Sequence number of the last event applied.
    seq: u64,
    since_snapshot: u64,
    poisoned: Option<String>,
    report: JournalReport,
    _lock: DirLock,
}

fn wal_name(first: u64) -> String {
    format!("wal-{first:016x}.log")
}

fn json_err(path: &Path, e: serde_json::Error) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        what: format!("does not decode: {e}"),
    }
}

impl<S: Durable> Journal<S> {
    /// Opens the journal in `dir` (creating it with `init()` as the state), loading the
    /// snapshot and replaying the log after it.
    pub async fn open(
        io: FileIo,
        dir: &Path,
        opts: JournalOptions,
        init: impl FnOnce() -> S,
    ) -> Result<Journal<S>> {
        let d = dir.to_path_buf();
        let (lock, snap, mut wals) = run_blocking(move || -> Result<_> {
            std::fs::create_dir_all(&d).map_err(|e| StorageError::io("mkdir", &d, e))?;
            let lock = DirLock::acquire(&d)?;
            let sp = d.join("snapshot");
            let snap = match std::fs::read(&sp) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(StorageError::io("read", &sp, e)),
            };
            let _ = std::fs::remove_file(d.join("snapshot.tmp"));
            let mut wals = Vec::new();
            for e in std::fs::read_dir(&d).map_err(|e| StorageError::io("read_dir", &d, e))? {
                let name = e
                    .map_err(|e| StorageError::io("read_dir", &d, e))?
                    .file_name()
                    .to_string_lossy()
                    .into_owned();
                if let Some(hex) = name
                    .strip_prefix("wal-")
                    .and_then(|n| n.strip_suffix(".log"))
                    && let Ok(first) = u64::from_str_radix(hex, 16)
                {
                    wals.push(first);
                }
            }
            wals.sort_unstable();
            Ok((lock, snap, wals))
        })
        .await??;
        let mut report = JournalReport::default();
        let (mut state, mut seq) = match snap {
            None => (init(), 0),
            Some(bytes) => {
                let sp = dir.join("snapshot");
                let f = decode_frame(&bytes, usize::MAX).map_err(|e| StorageError::Corrupt {
                    path: sp.clone(),
                    offset: 0,
                    what: e.to_string(),
                })?;
                let e = f.entries.first().ok_or_else(|| StorageError::Corrupt {
                    path: sp.clone(),
                    offset: 0,
                    what: "empty snapshot".into(),
                })?;
                let s: S = serde_json::from_slice(e.value).map_err(|e| json_err(&sp, e))?;
                report.snapshot_seq = f.seq;
                (s, f.seq)
            }
        };
        // Replay every log in order, applying events after the snapshot.
        if wals.is_empty() {
            wals.push(seq + 1);
        }
        let last = *wals.last().expect("one at least");
        let mut wal = None;
        let mut wal_len = 0;
        for first in wals {
            let path = dir.join(wal_name(first));
            let f = File::create(&io, &path).await?;
            let len = f.len()?;
            let buf = f.read_at(vec![0; len as usize], 0).await?;
            let mut at = 0usize;
            while at < buf.len() {
                let Ok(frame) = decode_frame(&buf[at..], usize::MAX) else {
                    break;
                };
                for (i, e) in frame.entries.iter().enumerate() {
                    let s = frame.seq + i as u64;
                    if s > seq {
                        let ev: S::Event =
                            serde_json::from_slice(e.value).map_err(|e| json_err(&path, e))?;
                        state.apply(&ev);
                        seq = s;
                        report.replayed += 1;
                    }
                }
                at += frame.len;
            }
            if first == last {
                if (at as u64) < len {
                    report.truncated = len - at as u64;
                    f.std()
                        .set_len(at as u64)
                        .map_err(|e| StorageError::io("ftruncate", &path, e))?;
                    f.sync_data().await?;
                }
                wal_len = at as u64;
                wal = Some(f);
            }
        }
        sync_dir(dir).await?;
        Ok(Journal {
            state,
            dir: dir.to_path_buf(),
            io,
            opts,
            wal: wal.expect("the last log is opened"),
            wal_len,
            seq,
            since_snapshot: report.replayed,
            poisoned: None,
            report,
            _lock: lock,
        })
    }

    /// The current state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Sequence number of the last event applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// What opening found.
    pub fn report(&self) -> &JournalReport {
        &self.report
    }

    /// Writes `event` to the log, syncs, then applies it. Returns once it is durable.
    pub async fn persist(&mut self, event: S::Event) -> Result<()> {
        self.persist_all(vec![event]).await
    }

    /// Writes `events` as one frame (all or nothing across a crash) with one sync, then
    /// applies them in order.
    pub async fn persist_all(&mut self, events: Vec<S::Event>) -> Result<()> {
        if let Some(why) = &self.poisoned {
            return Err(StorageError::Poisoned {
                path: self.dir.clone(),
                why: why.clone(),
            });
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(events.len());
        for e in &events {
            let b = serde_json::to_vec(e).map_err(|e| StorageError::Io {
                op: "encode event",
                path: self.dir.clone(),
                source: std::io::Error::other(e),
            })?;
            if b.len() > self.opts.max_event_bytes {
                return Err(StorageError::ValueTooLarge {
                    len: b.len(),
                    max: self.opts.max_event_bytes,
                });
            }
            encoded.push(b);
        }
        let entries: Vec<(Kind, &[u8], &[u8])> = encoded
            .iter()
            .map(|b| (Kind::Put, &b""[..], b.as_slice()))
            .collect();
        let mut frame = Vec::new();
        encode_frame(&mut frame, self.seq + 1, &entries);
        let n = frame.len() as u64;
        // A failed write leaves `wal_len` where it was: the next frame overwrites the partial.
        self.wal.write_all_at(frame, self.wal_len).await?;
        if let Err(e) = self.wal.sync_data().await {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        self.wal_len += n;
        for e in &events {
            self.state.apply(e);
        }
        self.seq += events.len() as u64;
        self.since_snapshot += events.len() as u64;
        if self
            .opts
            .snapshot_every
            .is_some_and(|every| self.since_snapshot >= every)
        {
            self.snapshot().await?;
        }
        Ok(())
    }

    /// Writes a snapshot of the state, then starts a new log and deletes the old ones.
    pub async fn snapshot(&mut self) -> Result<()> {
        let json = serde_json::to_vec(&self.state).map_err(|e| StorageError::Io {
            op: "encode snapshot",
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut frame = Vec::new();
        encode_frame(&mut frame, self.seq, &[(Kind::Put, b"snapshot", &json)]);
        let tmp = self.dir.join("snapshot.tmp");
        let f = File::create(&self.io, &tmp).await?;
        f.std()
            .set_len(0)
            .map_err(|e| StorageError::io("ftruncate", &tmp, e))?;
        f.write_all_at(frame, 0).await?;
        f.sync_data().await?;
        let (t, dst) = (tmp.clone(), self.dir.join("snapshot"));
        run_blocking(move || {
            std::fs::rename(&t, &dst).map_err(|e| StorageError::io("rename", &dst, e))
        })
        .await??;
        // The snapshot covers everything up to `seq`: a new log starts after it.
        let next = self.dir.join(wal_name(self.seq + 1));
        let wal = File::create(&self.io, &next).await?;
        wal.std()
            .set_len(0)
            .map_err(|e| StorageError::io("ftruncate", &next, e))?;
        sync_dir(&self.dir).await?;
        let keep = wal_name(self.seq + 1);
        let dir = self.dir.clone();
        run_blocking(move || {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with("wal-") && n.ends_with(".log") && n != keep {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        })
        .await?;
        sync_dir(&self.dir).await?;
        self.wal = wal;
        self.wal_len = 0;
        self.since_snapshot = 0;
        Ok(())
    }
}

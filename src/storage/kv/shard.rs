//! [`KvShard`]: one shard of the log-structured key-value store, owned by one thread (an app
//! worker, or a `block_on` thread). Append-only segment files of [`record`](super::record)
//! frames, an ordered in-memory index (key → segment, offset, length), write batches as
//! single frames (all or nothing across a crash), a background flusher that turns appends into
//! writes and syncs by the [`Durability`] mode, hint files for sealed segments, and background
//! compaction ([`compaction`](super::compaction)).
//!
//! Every disk operation is a future on the shard's [`FileIo`] route, so the owning worker
//! never waits for the disk. The only awaits of a write are a segment switch (when the next
//! segment is not prepared yet) and its durability promise.
//!
//! Reads see writes as soon as they are appended (before they are durable), as in Redis: a
//! write that is then lost in a crash was never acknowledged. A read whose bytes are still in
//! the write buffer is served from memory; else from the page cache without blocking
//! (`preadv2(RWF_NOWAIT)`); else with an asynchronous read. Every value read is checked
//! against its entry CRC.
//!
//! Must not touch: other shards, sockets, the actor layer (the sharded front is `store.rs`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::cache::RecentCache;
use super::hint::HintWriter;
use super::key::{self, IndexKey, KeyRef};
use super::options::{Durability, KvOptions};
use super::record::{self, Kind};
use super::recovery::{self, OpenReport};
use crate::runtime::JoinHandle;
use crate::storage::error::{Result, StorageError};
use crate::storage::file::{File, FileIo, sync_dir};
use crate::storage::lock::DirLock;

/// Where an entry lives: segment slot, offset and length. 12 bytes per key in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) slot: u32,
    pub(crate) off: u32,
    pub(crate) len: u32,
}

/// One segment file.
pub(crate) struct Seg {
    pub(crate) id: u64,
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// Bytes appended (written or still queued).
    pub(crate) len: u64,
    /// Bytes of entries that the index still points at.
    pub(crate) live: u64,
    /// Offsets of entries the index stopped pointing at while this process had the segment
    /// (recorded only with compaction on). A one-way hint for compaction: an offset here is
    /// certainly garbage, because a location is never reused, so compaction skips it without
    /// an index lookup; an entry not here may still be garbage (superseded before the store
    /// was opened) and is looked up. At most one offset per entry of the segment.
    pub(crate) dead: Vec<u32>,
    /// Entries of the active segment, for its hint file; `None` once written (or for a
    /// segment whose hint exists).
    pub(crate) hint: Option<HintWriter>,
    /// No more appends.
    pub(crate) sealed: bool,
    /// Appended bytes are all written and synced and the hint file exists (compaction input).
    pub(crate) settled: bool,
}

/// Bytes appended but not yet written, for one segment.
struct Chunk {
    slot: u32,
    off: u64,
    bytes: Vec<u8>,
    end_lsn: u64,
    /// Being written (frozen: new appends start another chunk).
    in_flight: bool,
}

type Waiter = Box<dyn FnOnce(Result<()>)>;

/// A sealed segment whose hint file can be written: (slot, hint path, hint bytes).
pub(crate) type HintDue = (u32, PathBuf, Vec<u8>);

/// One borrowed operation of [`KvShard::write_ops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Set a key.
    Put(&'a [u8], &'a [u8]),
    /// Remove a key.
    Delete(&'a [u8]),
}

/// A set of puts and deletes applied atomically: after a crash, all of them or none.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Kind, Vec<u8>, Vec<u8>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push((Kind::Put, key.into(), value.into()));
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push((Kind::Delete, key.into(), Vec::new()));
        self
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().map(|o| o.1.as_slice())
    }
}

/// Counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct KvStats {
    /// Keys in the index.
    pub keys: usize,
    /// Segment files.
    pub segments: usize,
    /// Bytes in segment files (appended).
    pub bytes: u64,
    /// Bytes the index points at.
    pub live_bytes: u64,
    /// Syncs issued by the flusher.
    pub syncs: u64,
    /// Writes issued by the flusher.
    pub writes: u64,
    /// Compactions finished.
    pub compactions: u64,
    /// Segments sealed.
    pub seals: u64,
    /// Bytes of recently written log kept for reads.
    pub cache_bytes: usize,
}

/// The mutable state of a shard (behind one `RefCell`, never borrowed across an await).
pub(crate) struct State {
    pub(crate) dir: PathBuf,
    pub(crate) opts: KvOptions,
    pub(crate) index: BTreeMap<IndexKey, Loc>,
    pub(crate) segs: Vec<Option<Seg>>,
    /// Segment id → slot, in log order.
    pub(crate) order: BTreeMap<u64, u32>,
    pub(crate) active: u32,
    pub(crate) seq: u64,
    queue: VecDeque<Chunk>,
    appended_lsn: u64,
    written_lsn: u64,
    synced_lsn: u64,
    first_pending: Option<Instant>,
    waiters: VecDeque<(u64, Waiter)>,
    /// A prepared next segment (opened and preallocated).
    spare: Option<Seg>,
    preparing: bool,
    /// Segments whose first bytes are queued: the directory needs a sync with them.
    new_files: bool,
    pub(crate) poisoned: Option<String>,
    pub(crate) closed: bool,
    pub(crate) stats: KvStats,
    pub(crate) compacting: bool,
    /// `flush()` asked for a write and sync now, whatever the mode.
    force_flush: bool,
    /// Recently written chunks, for reads.
    pub(crate) cache: RecentCache,
}

/// A tiny single-thread notification (several waiters, one flag).
#[derive(Default)]
pub(crate) struct Notify {
    set: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    pub(crate) fn notify(&self) {
        self.set.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits for a notification (or `deadline`); consumes the flag.
    pub(crate) async fn wait(&self, deadline: Option<Instant>) {
        let mut sleep = deadline.map(|d| Box::pin(crate::runtime::sleep_until(d)));
        std::future::poll_fn(|cx| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            if let Some(s) = sleep.as_mut()
                && s.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Shared innards of a shard.
pub(crate) struct Inner {
    pub(crate) st: RefCell<State>,
    pub(crate) io: FileIo,
    pub(crate) kick: Rc<Notify>,
    pub(crate) spare_ready: Notify,
    /// The flusher wrote what was queued (writers held back by the queue limit go on).
    pub(crate) drained: Notify,
    /// Wakes the compaction task (a segment was sealed, or `close`).
    pub(crate) compact_kick: Rc<Notify>,
    pub(crate) tasks: RefCell<Vec<JoinHandle<()>>>,
    pub(crate) report: OpenReport,
    /// Released by `close` (or drop).
    lock: RefCell<Option<DirLock>>,
}

/// One shard of the key-value store. Cheap to clone (shared); not `Send`: it lives on the
/// thread that opened it.
#[derive(Clone)]
pub struct KvShard {
    pub(crate) inner: Rc<Inner>,
}

pub(crate) fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.seg"))
}

pub(crate) fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.hint"))
}

/// The id of the first segment after `id` when a new one is started (ids between are left for
/// compaction outputs).
pub(crate) fn next_major(id: u64) -> u64 {
    ((id >> 16) + 1) << 16
}

/// Borrowed operations as the record writer takes them.
fn record_ops<'a>(ops: &[Op<'a>]) -> Vec<(Kind, &'a [u8], &'a [u8])> {
    ops.iter()
        .map(|o| match *o {
            Op::Put(k, v) => (Kind::Put, k, v),
            Op::Delete(k) => (Kind::Delete, k, &[][..]),
        })
        .collect()
}

impl KvShard {
    /// Opens (or creates) the shard in `dir`: takes the directory lock, rebuilds the index
    /// from hint files and segments (truncating a torn tail, reporting corrupt records with
    /// file and offset), and starts the background flusher and compaction.
    pub async fn open(io: FileIo, dir: &Path, opts: KvOptions) -> Result<KvShard> {
        opts.validate()?;
        let d = dir.to_path_buf();
        let lock = crate::storage::file::run_blocking(move || {
            std::fs::create_dir_all(&d).map_err(|e| StorageError::io("mkdir", &d, e))?;
            DirLock::acquire(&d)
        })
        .await??;
        let rec = recovery::recover(&io, dir, &opts).await?;
        let last_id = rec.segs.iter().map(|s| s.id).max().unwrap_or(0);
        let mut st = State {
            dir: dir.to_path_buf(),
            opts,
            index: rec.index,
            segs: Vec::new(),
            order: BTreeMap::new(),
            active: 0,
            seq: rec.max_seq + 1,
            queue: VecDeque::new(),
            appended_lsn: 0,
            written_lsn: 0,
            synced_lsn: 0,
            first_pending: None,
            waiters: VecDeque::new(),
            spare: None,
            preparing: false,
            new_files: false,
            poisoned: None,
            closed: false,
            stats: KvStats::default(),
            compacting: false,
            force_flush: false,
            cache: RecentCache::new(0),
        };
        st.cache = RecentCache::new(st.opts.read_cache_bytes);
        for s in rec.segs {
            let slot = st.segs.len() as u32;
            st.order.insert(s.id, slot);
            st.segs.push(Some(s));
        }
        let active = new_segment(&io, dir, next_major(last_id), &st.opts).await?;
        let slot = st.insert_seg(active);
        st.active = slot;
        st.new_files = true;
        let inner = Rc::new(Inner {
            st: RefCell::new(st),
            io,
            kick: Rc::default(),
            spare_ready: Notify::default(),
            drained: Notify::default(),
            compact_kick: Rc::default(),
            tasks: RefCell::new(Vec::new()),
            report: rec.report,
            lock: RefCell::new(Some(lock)),
        });
        let shard = KvShard { inner };
        shard.sync_new_files().await?;
        shard.start_tasks();
        Ok(shard)
    }

    fn start_tasks(&self) {
        let weak = Rc::downgrade(&self.inner);
        let kick = self.inner.kick.clone();
        let flusher = crate::runtime::spawn_local(async move {
            super::flusher::run(weak, kick).await;
        });
        let mut tasks = vec![flusher];
        if self.inner.st.borrow().opts.compaction {
            let weak = Rc::downgrade(&self.inner);
            let kick = self.inner.compact_kick.clone();
            tasks.push(crate::runtime::spawn_local(async move {
                super::compaction::run(weak, kick).await;
            }));
        }
        *self.inner.tasks.borrow_mut() = tasks;
    }

    async fn sync_new_files(&self) -> Result<()> {
        let dir = self.inner.st.borrow().dir.clone();
        sync_dir(&dir).await?;
        self.inner.st.borrow_mut().new_files = false;
        Ok(())
    }

    /// What opening found: segments, keys, torn tails truncated, corrupt records.
    pub fn report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The shard's directory.
    pub fn dir(&self) -> PathBuf {
        self.inner.st.borrow().dir.clone()
    }

    /// Counters.
    pub fn stats(&self) -> KvStats {
        let st = self.inner.st.borrow();
        let mut s = st.stats.clone();
        s.keys = st.index.len();
        s.segments = st.order.len();
        s.bytes = st.segs.iter().flatten().map(|g| g.len).sum();
        s.live_bytes = st.segs.iter().flatten().map(|g| g.live).sum();
        s.cache_bytes = st.cache.bytes();
        s
    }

    /// True when `key` is in the index (no disk access).
    pub fn contains(&self, key: &[u8]) -> bool {
        key::get(&self.inner.st.borrow().index, key).is_some()
    }

    /// Keys in the shard.
    pub fn len(&self) -> usize {
        self.inner.st.borrow().index.len()
    }

    /// True when the shard holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`; returns when the durability mode's promise holds.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let lsn = self.append(&[(Kind::Put, key, value)], |_| {}).await?;
        self.durable(lsn).await
    }

    /// Removes `key`; returns whether it existed (when the durability promise holds).
    pub async fn delete(&self, key: &[u8]) -> Result<bool> {
        let existed = Cell::new(false);
        let lsn = self
            .append(&[(Kind::Delete, key, &[])], |had| existed.set(had[0]))
            .await?;
        self.durable(lsn).await?;
        Ok(existed.get())
    }

    /// Applies `batch` atomically; returns when the durability promise holds.
    pub async fn write(&self, batch: &WriteBatch) -> Result<()> {
        let lsn = self.write_begin(batch).await?;
        self.durable(lsn).await
    }

    /// Appends `batch` (visible to reads at once) and returns its log position, to pass to
    /// [`durable`](Self::durable) or [`on_durable`](Self::on_durable).
    pub async fn write_begin(&self, batch: &WriteBatch) -> Result<u64> {
        let ops: Vec<(Kind, &[u8], &[u8])> = batch
            .ops
            .iter()
            .map(|(k, a, b)| (*k, a.as_slice(), b.as_slice()))
            .collect();
        self.append(&ops, |_| {}).await
    }

    /// Applies borrowed operations atomically, like [`write`](Self::write) without building an
    /// owned [`WriteBatch`] (no allocation per key or value: the bytes are encoded straight
    /// into the write queue).
    pub async fn write_ops(&self, ops: &[Op<'_>]) -> Result<()> {
        let ops = record_ops(ops);
        let lsn = self.append(&ops, |_| {}).await?;
        self.durable(lsn).await
    }

    /// Appends borrowed operations atomically without waiting, when that is possible: returns
    /// the batch's log position (pass it to [`on_durable`](Self::on_durable)), or `Ok(None)`
    /// when the write would have to wait — the write queue is over its limit, or the active
    /// segment is full and the next one is not ready — and nothing was appended: use
    /// [`write_begin`](Self::write_begin) then. For callers on an event loop that must answer
    /// at once (a protocol's `dispatch`), keeping their own order behind a write that waits.
    /// Limits are checked as in [`write_ops`](Self::write_ops).
    pub fn try_write_ops(&self, ops: &[Op<'_>]) -> Result<Option<u64>> {
        let ops = record_ops(ops);
        let mut st = self.inner.st.borrow_mut();
        st.check_writable()?;
        let need = st.frame_len_within_limits(&ops)?;
        if ops.is_empty() {
            return Ok(Some(st.appended_lsn));
        }
        if st.queued_bytes() > st.queue_limit() {
            return Ok(None);
        }
        let a = st.seg(st.active);
        if !(a.len == 0 || a.len + need <= st.opts.max_segment_bytes) {
            match st.spare.take() {
                Some(spare) => st.rotate(spare),
                None => return Ok(None),
            }
        }
        let (lsn, _) = st.append_frame(&ops);
        drop(st);
        self.inner.kick.notify();
        Ok(Some(lsn))
    }

    /// Waits until the write at `lsn` is as durable as the mode promises.
    pub async fn durable(&self, lsn: u64) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.on_durable(
            lsn,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap_or(Err(StorageError::Closed))
    }

    /// Calls `done` once the write at `lsn` is as durable as the mode promises (at once for
    /// `Durability::None`).
    pub fn on_durable(&self, lsn: u64, done: Box<dyn FnOnce(Result<()>)>) {
        let mut st = self.inner.st.borrow_mut();
        if let Some(why) = &st.poisoned {
            let e = st.poison_error(why.clone());
            drop(st);
            return done(Err(e));
        }
        let mode = st.opts.durability;
        if (mode == Durability::None && lsn != u64::MAX) || st.synced_lsn >= lsn {
            drop(st);
            return done(Ok(()));
        }
        st.waiters.push_back((lsn, done));
        drop(st);
        if mode == Durability::Sync {
            self.inner.kick.notify();
        }
    }

    /// Writes and syncs everything appended so far, whatever the mode.
    pub async fn flush(&self) -> Result<()> {
        if self.inner.st.borrow().synced_lsn >= self.inner.st.borrow().appended_lsn {
            return Ok(());
        }
        self.flush_forced().await
    }

    /// A flush that runs even when nothing is pending (it also writes due hint files).
    async fn flush_forced(&self) -> Result<()> {
        let lsn = self.inner.st.borrow().appended_lsn;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.inner.st.borrow_mut();
            st.waiters.push_back((
                lsn,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            ));
            st.force_flush = true;
        }
        self.inner.kick.notify();
        // A forced flush: the flusher syncs when any waiter asks for it, whatever the mode.
        rx.await.unwrap_or(Err(StorageError::Closed))
    }

    /// Checks sizes, makes room, encodes and appends one frame; updates the index. `had`
    /// receives, per op, whether the key existed before.
    async fn append(&self, ops: &[(Kind, &[u8], &[u8])], had: impl FnOnce(&[bool])) -> Result<u64> {
        let frame_len = {
            let st = self.inner.st.borrow();
            st.check_writable()?;
            st.frame_len_within_limits(ops)?
        };
        if ops.is_empty() {
            return Ok(self.inner.st.borrow().appended_lsn);
        }
        // Writers that never wait (`Durability::None`) still let the flusher and compaction
        // run, and stop while more than `queue_limit` bytes wait to be written.
        crate::runtime::consume_budget().await;
        loop {
            let (queued, limit) = {
                let st = self.inner.st.borrow();
                (st.queued_bytes(), st.queue_limit())
            };
            if queued <= limit {
                break;
            }
            self.inner.kick.notify();
            self.inner.drained.wait(None).await;
        }
        self.make_room(frame_len).await?;
        let mut st = self.inner.st.borrow_mut();
        st.check_writable()?;
        let (lsn, existed) = st.append_frame(ops);
        drop(st);
        had(&existed);
        self.inner.kick.notify();
        Ok(lsn)
    }

    /// Switches to a new segment if `need` bytes do not fit in the active one.
    async fn make_room(&self, need: u64) -> Result<()> {
        enum Next {
            Fits,
            Rotated,
            Wait,
            Prepare,
        }
        loop {
            let next = {
                let mut st = self.inner.st.borrow_mut();
                let a = st.seg(st.active);
                if a.len == 0 || a.len + need <= st.opts.max_segment_bytes {
                    Next::Fits
                } else if let Some(spare) = st.spare.take() {
                    st.rotate(spare);
                    Next::Rotated
                } else if st.preparing {
                    Next::Wait
                } else {
                    st.preparing = true;
                    Next::Prepare
                }
            };
            match next {
                Next::Fits => return Ok(()),
                Next::Rotated => {
                    self.inner.kick.notify();
                    return Ok(());
                }
                Next::Wait => {
                    self.inner.spare_ready.wait(None).await;
                    continue;
                }
                Next::Prepare => {}
            }
            let r = self.prepare_spare().await;
            self.inner.st.borrow_mut().preparing = false;
            self.inner.spare_ready.notify();
            r?;
        }
    }

    /// Prepares the next segment in the background once the active one is half full, so that
    /// a rotation does not wait for `open` and `fallocate`.
    pub(crate) async fn ensure_spare(&self) {
        {
            let mut st = self.inner.st.borrow_mut();
            if !st.wants_spare() || st.closed || st.poisoned.is_some() {
                return;
            }
            st.preparing = true;
        }
        let r = self.prepare_spare().await;
        self.inner.st.borrow_mut().preparing = false;
        self.inner.spare_ready.notify();
        if let Err(e) = r {
            tracing::warn!(%e, "could not prepare the next segment; retrying at the switch");
        }
    }

    /// Opens (and preallocates) the next segment, ready for the next rotation.
    pub(crate) async fn prepare_spare(&self) -> Result<()> {
        let (dir, id, opts) = {
            let st = self.inner.st.borrow();
            let last = st.order.keys().next_back().copied().unwrap_or(0);
            (st.dir.clone(), next_major(last), st.opts.clone())
        };
        let seg = new_segment(&self.inner.io, &dir, id, &opts).await?;
        self.inner.st.borrow_mut().spare = Some(seg);
        Ok(())
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.get_now(key) {
            Ok(r) => r,
            Err(pending) => pending.read().await,
        }
    }

    /// Answers from memory or the page cache without waiting (`Ok`), or hands back the read
    /// that has to wait for the disk (`Err`).
    pub fn get_now(&self, key: &[u8]) -> std::result::Result<Result<Option<Vec<u8>>>, PendingRead> {
        let st = self.inner.st.borrow();
        let Some(&loc) = key::get(&st.index, key) else {
            return Ok(Ok(None));
        };
        st.read_now(key, loc)
    }

    /// Up to `limit` pairs with keys in `range`, in key order.
    pub async fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let found: Vec<(Box<[u8]>, Loc)> = {
            let st = self.inner.st.borrow();
            st.index
                .range::<KeyRef, _>((start.map(KeyRef::new), end.map(KeyRef::new)))
                .take(limit)
                .map(|(k, l)| (Box::<[u8]>::from(k.as_bytes()), *l))
                .collect()
        };
        let mut out = Vec::with_capacity(found.len());
        for (k, loc) in found {
            let r = {
                let st = self.inner.st.borrow();
                // The key may have changed since the range was taken: read what it is now.
                match key::get(&st.index, &k) {
                    Some(l) if *l == loc => st.read_now(&k, loc),
                    Some(&l) => st.read_now(&k, l),
                    None => continue,
                }
            };
            let v = match r {
                Ok(v) => v?,
                Err(p) => p.read().await?,
            };
            if let Some(v) = v {
                out.push((k.into_vec(), v));
            }
        }
        Ok(out)
    }

    /// Up to `limit` pairs whose keys start with `prefix`, in key order.
    pub async fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = prefix_end(prefix);
        let end_b = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.scan(Bound::Included(prefix), end_b, limit).await
    }

    /// Runs one compaction now (if there is anything sealed to compact) and waits for it.
    pub async fn compact(&self) -> Result<bool> {
        super::compaction::compact_once(&self.inner, true).await
    }

    /// Flushes and syncs everything, stops the background tasks and releases the directory
    /// lock once the last clone is dropped. Later calls fail with `Closed`.
    pub async fn close(&self) -> Result<()> {
        {
            let mut st = self.inner.st.borrow_mut();
            if st.closed {
                return Ok(());
            }
            // No more writes; the active segment is sealed so that the flush below writes its
            // hint too and the next open reads hint files only.
            st.closed = true;
            let a = st.active;
            let s = st.seg_mut(a);
            s.sealed |= s.len > 0;
        }
        let r = self.flush_forced().await;
        self.inner.kick.notify();
        self.inner.compact_kick.notify();
        // The tasks see `closed` and end (a compaction in progress finishes first).
        let tasks: Vec<_> = self.inner.tasks.borrow_mut().drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        self.inner.lock.borrow_mut().take();
        r
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no bound).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A read that has to wait for the disk.
pub struct PendingRead {
    file: File,
    off: u64,
    len: usize,
    key: Box<[u8]>,
}

impl PendingRead {
    /// Reads and checks the entry.
    pub async fn read(self) -> Result<Option<Vec<u8>>> {
        let buf = self.file.read_at(vec![0; self.len], self.off).await?;
        decode_value_owned(&self.file, self.off, buf, &self.key).map(Some)
    }
}

/// Checks the entry in `buf` (its CRC, that it is a put of `key`) and returns the value.
fn check_entry(file: &File, off: u64, buf: &[u8], key: &[u8]) -> Result<std::ops::Range<usize>> {
    let corrupt = |what: String| StorageError::Corrupt {
        path: file.path().to_path_buf(),
        offset: off,
        what,
    };
    let e = record::decode_entry(buf).map_err(|e| corrupt(e.to_string()))?;
    if e.key != key || e.kind != Kind::Put {
        return Err(corrupt("the index points at another entry".into()));
    }
    let start = record::ENTRY_HEADER + e.key.len();
    Ok(start..start + e.value.len())
}

/// The value of the entry in `buf` (borrowed bytes: copied once).
fn decode_value(file: &File, off: u64, buf: &[u8], key: &[u8]) -> Result<Vec<u8>> {
    check_entry(file, off, buf, key).map(|r| buf[r].to_vec())
}

/// The value of the entry in `buf`, reusing its allocation (no second copy).
fn decode_value_owned(file: &File, off: u64, mut buf: Vec<u8>, key: &[u8]) -> Result<Vec<u8>> {
    let r = check_entry(file, off, &buf, key)?;
    buf.truncate(r.end);
    buf.drain(..r.start);
    Ok(buf)
}

/// Creates segment `id` in `dir`, preallocated to the segment size when asked (a full disk
/// fails here, before anything is written into it; the file is then removed).
pub(crate) async fn new_segment(io: &FileIo, dir: &Path, id: u64, opts: &KvOptions) -> Result<Seg> {
    let path = seg_path(dir, id);
    let file = File::create(io, &path).await?;
    if opts.preallocate {
        match file
            .allocate(libc::FALLOC_FL_KEEP_SIZE, 0, opts.max_segment_bytes)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_disk_full() => {
                let p = path.clone();
                let _ = crate::storage::file::run_blocking(move || std::fs::remove_file(p)).await;
                return Err(e);
            }
            // Filesystems without fallocate (EOPNOTSUPP): write without reserving.
            Err(_) => {}
        }
    }
    Ok(Seg {
        id,
        file,
        path,
        len: 0,
        live: 0,
        dead: Vec::new(),
        hint: Some(HintWriter::new()),
        sealed: false,
        settled: false,
    })
}

impl State {
    pub(crate) fn seg(&self, slot: u32) -> &Seg {
        self.segs[slot as usize]
            .as_ref()
            .expect("the index and the active slot only name live segments")
    }

    pub(crate) fn seg_mut(&mut self, slot: u32) -> &mut Seg {
        self.segs[slot as usize]
            .as_mut()
            .expect("the index and the active slot only name live segments")
    }

    pub(crate) fn insert_seg(&mut self, s: Seg) -> u32 {
        let id = s.id;
        let slot = match self.segs.iter().position(|x| x.is_none()) {
            Some(i) => {
                self.segs[i] = Some(s);
                self.cache.purge_slot(i as u32);
                i as u32
            }
            None => {
                self.segs.push(Some(s));
                (self.segs.len() - 1) as u32
            }
        };
        self.order.insert(id, slot);
        slot
    }

    pub(crate) fn poison_error(&self, why: String) -> StorageError {
        StorageError::Poisoned {
            path: self.dir.clone(),
            why,
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed {
            return Err(StorageError::Closed);
        }
        if let Some(why) = &self.poisoned {
            return Err(self.poison_error(why.clone()));
        }
        Ok(())
    }

    /// Seals the active segment and makes `spare` the active one.
    fn rotate(&mut self, spare: Seg) {
        let old = self.active;
        self.seg_mut(old).sealed = true;
        self.stats.seals += 1;
        let slot = self.insert_seg(spare);
        self.active = slot;
        self.new_files = true;
    }

    /// Encodes one frame into the write queue and applies it to the index.
    fn append_frame(&mut self, ops: &[(Kind, &[u8], &[u8])]) -> (u64, Vec<bool>) {
        let seq = self.seq;
        self.seq += 1;
        let slot = self.active;
        let seg_off = self.seg(slot).len;
        let reuse = matches!(self.queue.back(), Some(c) if c.slot == slot && !c.in_flight);
        if !reuse {
            self.queue.push_back(Chunk {
                slot,
                off: seg_off,
                bytes: Vec::with_capacity(64 << 10),
                end_lsn: self.appended_lsn,
                in_flight: false,
            });
        }
        let chunk = self.queue.back_mut().expect("pushed above");
        let start = chunk.bytes.len();
        let locs = record::encode_frame(&mut chunk.bytes, seq, ops);
        let n = (chunk.bytes.len() - start) as u64;
        self.appended_lsn += n;
        chunk.end_lsn = self.appended_lsn;
        self.first_pending.get_or_insert_with(Instant::now);
        let frame_off = seg_off;
        self.seg_mut(slot).len += n;
        let mut existed = Vec::with_capacity(ops.len());
        for (&(kind, key, _), (eoff, elen)) in ops.iter().zip(locs) {
            let loc = Loc {
                slot,
                off: (frame_off + eoff as u64) as u32,
                len: elen as u32,
            };
            if let Some(h) = self.seg_mut(slot).hint.as_mut() {
                h.push(kind, key, loc.off, loc.len);
                h.seq(seq);
            }
            let old = match kind {
                Kind::Put => {
                    self.seg_mut(slot).live += elen as u64;
                    // An overwrite updates in place (no new key allocation).
                    match key::get_mut(&mut self.index, key) {
                        Some(cur) => Some(std::mem::replace(cur, loc)),
                        None => self.index.insert(IndexKey::from(key), loc),
                    }
                }
                Kind::Delete => key::remove(&mut self.index, key),
            };
            if let Some(o) = old
                && let Some(Some(s)) = self.segs.get_mut(o.slot as usize)
            {
                s.live = s.live.saturating_sub(o.len as u64);
                if self.opts.compaction {
                    s.dead.push(o.off);
                }
            }
            existed.push(old.is_some());
        }
        (self.appended_lsn, existed)
    }

    /// Reads an entry without waiting: from the write queue, else from the page cache.
    fn read_now(
        &self,
        key: &[u8],
        loc: Loc,
    ) -> std::result::Result<Result<Option<Vec<u8>>>, PendingRead> {
        let off = loc.off as u64;
        let len = loc.len as usize;
        for c in &self.queue {
            if c.slot == loc.slot
                && off >= c.off
                && off + len as u64 <= c.off + c.bytes.len() as u64
            {
                let s = (off - c.off) as usize;
                let seg = self.seg(loc.slot);
                return Ok(decode_value(&seg.file, off, &c.bytes[s..s + len], key).map(Some));
            }
        }
        let seg = self.seg(loc.slot);
        if let Some(b) = self.cache.get(loc.slot, off, len) {
            return Ok(decode_value(&seg.file, off, b, key).map(Some));
        }
        let mut buf = vec![0; len];
        match seg.file.try_read_cached(&mut buf, off) {
            Some(n) if n == len => Ok(decode_value_owned(&seg.file, off, buf, key).map(Some)),
            _ => Err(PendingRead {
                file: seg.file.clone(),
                off,
                len,
                key: key.into(),
            }),
        }
    }
}

/// What the flusher should do now.
pub(crate) enum FlushPlan {
    /// Nothing queued, nobody waiting.
    Idle,
    /// Wait until then (or a kick).
    Later(Instant),
    /// Write the queue, and sync if `sync`.
    Now { sync: bool },
}

impl State {
    pub(crate) fn plan(&self, now: Instant) -> FlushPlan {
        let queued: usize = self.queue.iter().map(|c| c.bytes.len()).sum();
        let waiting = self.waiters.front().is_some();
        let unsynced = self.synced_lsn < self.appended_lsn;
        let seal_pending = self.segs.iter().flatten().any(|s| s.sealed && !s.settled);
        if queued == 0 && !waiting && !seal_pending && !self.force_flush {
            return FlushPlan::Idle;
        }
        let since = self.first_pending.unwrap_or(now);
        match self.opts.durability {
            Durability::Sync => {
                if waiting || seal_pending || self.force_flush {
                    FlushPlan::Now { sync: true }
                } else if queued > 0 {
                    // Appended by a caller that has not asked to wait yet: written soon.
                    FlushPlan::Later(since + Duration::from_millis(1))
                } else {
                    FlushPlan::Idle
                }
            }
            Durability::GroupCommit {
                interval,
                max_bytes,
            } => {
                let forced = self.force_flush;
                if queued >= max_bytes || now >= since + interval || seal_pending || forced {
                    FlushPlan::Now {
                        sync: unsynced || waiting || seal_pending,
                    }
                } else {
                    FlushPlan::Later(since + interval)
                }
            }
            Durability::None => {
                if waiting || seal_pending || self.force_flush {
                    // flush() or a seal asked for durability.
                    FlushPlan::Now { sync: true }
                } else if queued >= self.opts.write_buffer_bytes
                    || now >= since + self.opts.flush_interval
                {
                    FlushPlan::Now { sync: false }
                } else {
                    FlushPlan::Later(since + self.opts.flush_interval)
                }
            }
        }
    }

    /// Marks the queued chunks in flight and returns copies to write.
    pub(crate) fn take_writes(&mut self) -> Vec<(File, u64, Vec<u8>, u64)> {
        self.first_pending = None;
        self.force_flush = false;
        let mut out = Vec::new();
        for c in self.queue.iter_mut() {
            c.in_flight = true;
        }
        for c in &self.queue {
            let seg = self.seg(c.slot);
            out.push((seg.file.clone(), c.off, c.bytes.clone(), c.end_lsn));
        }
        out
    }

    /// Bytes appended and not yet written.
    /// The frame length of `ops`, or the error for a key, a value or a whole batch over the
    /// limits (a frame must fit in one segment).
    fn frame_len_within_limits(&self, ops: &[(Kind, &[u8], &[u8])]) -> Result<u64> {
        for (_, k, v) in ops {
            if k.len() > self.opts.max_key_bytes {
                return Err(StorageError::KeyTooLarge {
                    len: k.len(),
                    max: self.opts.max_key_bytes,
                });
            }
            if v.len() > self.opts.max_value_bytes {
                return Err(StorageError::ValueTooLarge {
                    len: v.len(),
                    max: self.opts.max_value_bytes,
                });
            }
        }
        let need = record::frame_len(ops.iter().map(|(_, k, v)| (k.len(), v.len()))) as u64;
        if need > self.opts.max_segment_bytes {
            return Err(StorageError::ValueTooLarge {
                len: need as usize,
                max: self.opts.max_segment_bytes as usize,
            });
        }
        Ok(need)
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.queue.iter().map(|c| c.bytes.len()).sum()
    }

    /// Queued bytes beyond which writers wait for the flusher: 16 write buffers (at least
    /// 16 MiB, room for the writes that arrive while a segment switch is synced), so a writer
    /// that never waits cannot grow the queue without bound.
    pub(crate) fn queue_limit(&self) -> usize {
        (16 * self.opts.write_buffer_bytes).max(16 << 20)
    }

    pub(crate) fn written_lsn(&self) -> u64 {
        self.written_lsn
    }

    /// A chunk (the front of the queue) was written.
    pub(crate) fn written(&mut self, end_lsn: u64) {
        if self.queue.front().is_some_and(|c| c.end_lsn == end_lsn)
            && let Some(c) = self.queue.pop_front()
        {
            self.cache.insert(c.slot, c.off, c.bytes);
        }
        self.written_lsn = self.written_lsn.max(end_lsn);
        self.stats.writes += 1;
    }

    /// Files to sync: every segment that is not settled (the active one and sealed ones
    /// waiting for their hint), and whether the directory needs a sync too.
    pub(crate) fn take_sync_list(&mut self) -> (Vec<File>, Option<PathBuf>) {
        let files = self
            .segs
            .iter()
            .flatten()
            .filter(|s| !s.settled)
            .map(|s| s.file.clone())
            .collect();
        let dir = std::mem::take(&mut self.new_files).then(|| self.dir.clone());
        (files, dir)
    }

    /// Everything written up to `lsn` is synced: complete the waiters it covers, and return
    /// the sealed segments whose hint can now be written.
    pub(crate) fn synced(&mut self, lsn: u64) -> (Vec<Waiter>, Vec<HintDue>) {
        self.synced_lsn = self.synced_lsn.max(lsn);
        self.stats.syncs += 1;
        let mut done = Vec::new();
        while let Some((l, _)) = self.waiters.front() {
            if *l > self.synced_lsn {
                break;
            }
            done.push(self.waiters.pop_front().expect("front exists").1);
        }
        let mut hints = Vec::new();
        let queued_slots: Vec<u32> = self.queue.iter().map(|c| c.slot).collect();
        for (slot, s) in self.segs.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            // `hint` is taken once: a second flush running meanwhile (close's) skips it.
            if s.sealed
                && !s.settled
                && !queued_slots.contains(&(slot as u32))
                && let Some(h) = s.hint.take()
            {
                hints.push((slot as u32, hint_path(&self.dir, s.id), h.finish()));
            }
        }
        (done, hints)
    }

    /// A write or sync failed: refuse further writes and fail every waiter.
    pub(crate) fn poison(&mut self, why: String) -> Vec<(Waiter, StorageError)> {
        tracing::error!(dir = %self.dir.display(), %why, "key-value shard stops taking writes");
        self.poisoned = Some(why.clone());
        let mut out = Vec::new();
        while let Some((_, w)) = self.waiters.pop_front() {
            out.push((w, self.poison_error(why.clone())));
        }
        out
    }

    pub(crate) fn wants_spare(&self) -> bool {
        let a = self.seg(self.active);
        self.spare.is_none() && !self.preparing && a.len * 2 > self.opts.max_segment_bytes
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
        let st = self.st.get_mut();
        while let Some((_, w)) = st.waiters.pop_front() {
            w(Err(StorageError::Closed));
        }
    }
}

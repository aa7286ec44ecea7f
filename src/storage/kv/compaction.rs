//! Compaction: rewrites the live entries of the oldest sealed segments into new segments and
//! deletes the old ones. Runs as a local task beside the writers; it never holds the shard's
//! state across an await, so readers and writers wait at most for one index update per output
//! segment.
//!
//! Why it is safe:
//! - Inputs are a *prefix* of the log (every sealed, settled segment from the oldest on), so
//!   nothing older than them survives and their tombstones can go.
//! - An entry is copied only if the index points at it when it is read; the index is switched
//!   to the copy only if it still points at the original (a compare-and-swap), so a write that
//!   lands meanwhile wins.
//! - Outputs get ids just after the newest input and before the next segment, so after a crash
//!   between writing outputs and deleting inputs, replaying inputs then outputs gives the same
//!   index. Inputs are deleted only after the outputs, their hint files and the directory are
//!   synced.
//!
//! Must not touch: the write queue or the active segment.

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::hint::HintWriter;
use super::hint::decode_hint;
use super::key;
use super::record::{ENTRY_HEADER, FRAME_HEADER, Kind, decode_entry, encode_frame_raw};
use super::shard::{Inner, Loc, Notify, Seg, hint_path, seg_path};
use crate::storage::error::{Result, StorageError};
use crate::storage::file::{File, run_blocking, sync_dir};

/// Index entries moved to an output segment between two yields to the worker's other tasks.
const MOVES_PER_STEP: usize = 4096;

/// How often the task looks at the garbage ratio when no segment was sealed meanwhile.
const LOOK_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn run(weak: Weak<Inner>, kick: Rc<Notify>) {
    loop {
        kick.wait(Some(Instant::now() + LOOK_EVERY)).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.st.borrow().closed {
            return;
        }
        // Woken when a segment settles, and once a second (deletes and overwrites make
        // garbage in sealed segments too).
        if !wants(&inner) {
            continue;
        }
        if let Err(e) = compact_once(&inner, false).await {
            tracing::warn!(%e, "compaction failed; the inputs stay as they are");
        }
    }
}

fn wants(inner: &Inner) -> bool {
    wants_state(&inner.st.borrow())
}

fn wants_state(st: &super::shard::State) -> bool {
    let (mut total, mut garbage) = (0u64, 0u64);
    for &slot in st.order.values() {
        let s = st.seg(slot);
        if !(s.sealed && s.settled) {
            break;
        }
        total += s.len;
        garbage += s.len.saturating_sub(s.live);
    }
    total > 0
        && garbage >= st.opts.compaction_min_garbage_bytes
        && garbage as f64 >= st.opts.compaction_min_garbage_ratio * total as f64
}

struct Input {
    slot: u32,
    file: File,
    len: u64,
    path: std::path::PathBuf,
    id: u64,
}

/// Compacts the sealed prefix if it has enough garbage (or any, when `force`). Returns whether
/// a compaction ran.
pub(crate) async fn compact_once(inner: &Rc<Inner>, force: bool) -> Result<bool> {
    let (inputs, limit) = {
        let mut st = inner.st.borrow_mut();
        if st.compacting || st.closed {
            return Ok(false);
        }
        let mut inputs = Vec::new();
        for (&id, &slot) in &st.order {
            let s = st.seg(slot);
            if !(s.sealed && s.settled) {
                break;
            }
            inputs.push(Input {
                slot,
                file: s.file.clone(),
                len: s.len,
                path: s.path.clone(),
                id,
            });
        }
        let Some(last) = inputs.last() else {
            return Ok(false);
        };
        if !force && !wants_state(&st) {
            return Ok(false);
        }
        let limit = st
            .order
            .range(last.id + 1..)
            .next()
            .map_or(u64::MAX, |(id, _)| *id);
        st.compacting = true;
        (inputs, limit)
    };
    let r = compact(inner, &inputs, limit).await;
    inner.st.borrow_mut().compacting = false;
    r.map(|()| true)
}

/// Entries per output frame: frames stay small, like write batches.
const FRAME_BYTES: u64 = 64 << 10;

/// One output segment being built: closed frames in `bytes`, the open frame's entries in
/// `frame`.
struct Output {
    bytes: Vec<u8>,
    frame: Vec<u8>,
    /// (where it was, offset in `frame`, length) of the open frame's entries.
    open: Vec<(Loc, u32, u32)>,
    hint: HintWriter,
    /// (where it was, offset and length in the output); the key is read back from the
    /// output's bytes, so no key is copied into a separate allocation.
    moves: Vec<(Loc, u32, u32)>,
    last_seq: u64,
}

impl Output {
    fn new() -> Output {
        Output {
            bytes: Vec::new(),
            frame: Vec::new(),
            open: Vec::new(),
            hint: HintWriter::new(),
            moves: Vec::new(),
            last_seq: 0,
        }
    }

    fn add(&mut self, raw: &[u8], from: Loc, seq: u64) {
        self.open
            .push((from, self.frame.len() as u32, raw.len() as u32));
        self.frame.extend_from_slice(raw);
        self.last_seq = seq;
    }

    /// Wraps the open entries into a frame at the end of `bytes`.
    fn close_frame(&mut self, seq: u64) {
        if self.open.is_empty() {
            return;
        }
        let first =
            encode_frame_raw(&mut self.bytes, seq, self.open.len() as u32, &self.frame) as u32;
        for (from, rel, len) in self.open.drain(..) {
            let at = (first + rel) as usize;
            let klen = u16::from_le_bytes([self.bytes[at + 1], self.bytes[at + 2]]) as usize;
            let key = &self.bytes[at + ENTRY_HEADER..at + ENTRY_HEADER + klen];
            self.hint.push(Kind::Put, key, first + rel, len);
            self.moves.push((from, first + rel, len));
        }
        self.hint.seq(seq);
        self.frame.clear();
    }
}

async fn compact(inner: &Rc<Inner>, inputs: &[Input], limit: u64) -> Result<()> {
    let (dir, max_seg) = {
        let st = inner.st.borrow();
        (st.dir.clone(), st.opts.max_segment_bytes)
    };
    let mut next_id = inputs.last().expect("checked by the caller").id + 1;
    let mut out = Output::new();
    let mut outputs = 0usize;
    for input in inputs {
        let buf = input.file.read_at(vec![0; input.len as usize], 0).await?;
        // Where the entries are: from the hint file (no value is decoded for a dead entry),
        // or by scanning the segment when its hint is missing or unusable.
        let hp = hint_path(&dir, input.id);
        let hint_bytes = run_blocking(move || std::fs::read(hp)).await?.ok();
        let hinted = hint_bytes
            .as_deref()
            .and_then(|b| decode_hint(b).ok())
            .filter(|h| {
                h.entries
                    .iter()
                    .all(|e| e.offset as u64 + e.len as u64 <= input.len)
            });
        let (seq, entries): (u64, Vec<(Kind, u32, u32)>) = match hinted {
            Some(h) => (
                h.max_seq,
                h.entries
                    .iter()
                    .map(|e| (e.kind, e.offset, e.len))
                    .collect(),
            ),
            None => {
                let sc = super::recovery::scan_segment(&buf, max_seg as usize);
                (
                    sc.entries.iter().map(|e| e.0).max().unwrap_or(0),
                    sc.entries.iter().map(|e| (e.1, e.3, e.4)).collect(),
                )
            }
        };
        // Entries that died while this process had the input: skipped without a lookup
        // (an index lookup per entry was most of compaction's time under overwrites).
        let dead = {
            let mut st = inner.st.borrow_mut();
            let mut d = std::mem::take(&mut st.seg_mut(input.slot).dead);
            d.sort_unstable();
            d
        };
        for (n, (kind, off, len)) in entries.into_iter().enumerate() {
            if kind != Kind::Put || dead.binary_search(&off).is_ok() {
                continue;
            }
            let raw = &buf[off as usize..(off + len) as usize];
            if raw.len() < ENTRY_HEADER {
                continue;
            }
            let klen = u16::from_le_bytes([raw[1], raw[2]]) as usize;
            let Some(key) = raw.get(ENTRY_HEADER..ENTRY_HEADER + klen) else {
                continue;
            };
            let loc = Loc {
                slot: input.slot,
                off,
                len,
            };
            if key::get(&inner.st.borrow().index, key) != Some(&loc) {
                continue; // overwritten or deleted since: garbage
            }
            // A live entry is copied verbatim, after checking its CRC: compaction never
            // carries damaged bytes forward (the inputs then stay, and the error is logged).
            decode_entry(raw).map_err(|e| StorageError::Corrupt {
                path: input.path.clone(),
                offset: off as u64,
                what: e.to_string(),
            })?;
            if out.frame.len() as u64 + raw.len() as u64 > FRAME_BYTES {
                out.close_frame(seq);
            }
            if !out.bytes.is_empty()
                && out.bytes.len() as u64 + (FRAME_HEADER + out.frame.len() + raw.len()) as u64
                    > max_seg
            {
                out.close_frame(seq);
                if next_id >= limit {
                    return Ok(()); // no id left between the inputs and the next segment
                }
                finish(
                    inner,
                    &dir,
                    next_id,
                    std::mem::replace(&mut out, Output::new()),
                )
                .await?;
                next_id += 1;
                outputs += 1;
            }
            out.add(raw, loc, seq);
            if n % 4096 == 4095 {
                crate::runtime::yield_now().await;
            }
        }
        // Yield between inputs so that a long compaction does not hold the worker.
        crate::runtime::yield_now().await;
    }
    let last_seq = out.last_seq;
    out.close_frame(last_seq);
    if !out.bytes.is_empty() {
        if next_id >= limit {
            return Ok(());
        }
        finish(inner, &dir, next_id, out).await?;
        outputs += 1;
    }
    sync_dir(&dir).await?;
    // Every live entry of the inputs now has a durable copy the index points at (or was
    // overwritten): the inputs can go.
    {
        let mut st = inner.st.borrow_mut();
        for i in inputs {
            st.order.remove(&i.id);
            st.segs[i.slot as usize] = None;
            st.cache.purge_slot(i.slot);
        }
        st.stats.compactions += 1;
    }
    let doomed: Vec<_> = inputs
        .iter()
        .map(|i| (i.path.clone(), hint_path(&dir, i.id)))
        .collect();
    run_blocking(move || {
        for (seg, hint) in doomed {
            let _ = std::fs::remove_file(hint);
            if let Err(e) = std::fs::remove_file(&seg) {
                tracing::warn!(path = %seg.display(), %e, "could not remove a compacted segment");
            }
        }
    })
    .await?;
    sync_dir(&dir).await?;
    tracing::debug!(inputs = inputs.len(), outputs, "compaction finished");
    Ok(())
}

/// Writes and syncs one output segment and its hint, registers it, and moves the index
/// entries that still point at the originals.
async fn finish(inner: &Rc<Inner>, dir: &std::path::Path, id: u64, out: Output) -> Result<()> {
    let path = seg_path(dir, id);
    let file = File::create(&inner.io, &path).await?;
    let len = out.bytes.len() as u64;
    let bytes = file.write_all_at(out.bytes, 0).await?;
    file.sync_data().await?;
    let hf = File::create(&inner.io, &hint_path(dir, id)).await?;
    hf.write_all_at(out.hint.finish(), 0).await?;
    hf.sync_data().await?;
    let slot = inner.st.borrow_mut().insert_seg(Seg {
        id,
        file,
        path,
        len,
        live: 0,
        dead: Vec::new(),
        hint: None,
        sealed: true,
        settled: true,
    });
    // The index moves in steps of `MOVES_PER_STEP`, yielding between them, so that a large
    // output segment does not hold the worker (each move is a compare-and-swap on its own).
    for chunk in out.moves.chunks(MOVES_PER_STEP) {
        {
            let mut st = inner.st.borrow_mut();
            for (old, off, elen) in chunk {
                let at = *off as usize;
                let klen = u16::from_le_bytes([bytes[at + 1], bytes[at + 2]]) as usize;
                let key = &bytes[at + ENTRY_HEADER..at + ENTRY_HEADER + klen];
                if let Some(cur) = key::get_mut(&mut st.index, key)
                    && *cur == *old
                {
                    *cur = Loc {
                        slot,
                        off: *off,
                        len: *elen,
                    };
                    st.seg_mut(slot).live += *elen as u64;
                    let o = st.seg_mut(old.slot);
                    o.live = o.live.saturating_sub(*elen as u64);
                }
            }
        }
        crate::runtime::yield_now().await;
    }
    Ok(())
}

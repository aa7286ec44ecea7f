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
use super::record::{Kind, decode_frame, encode_frame};
use super::shard::{Inner, Loc, Notify, Seg, hint_path, seg_path};
use crate::storage::error::Result;
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

/// One output segment being built.
struct Output {
    bytes: Vec<u8>,
    hint: HintWriter,
    /// (key, where it was, offset and length in the output).
    moves: Vec<(Box<[u8]>, Loc, u32, u32)>,
}

impl Output {
    fn new() -> Output {
        Output {
            bytes: Vec::new(),
            hint: HintWriter::new(),
            moves: Vec::new(),
        }
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
        let mut at = 0usize;
        while at < buf.len() {
            // Settled segments were checked when written or recovered; stop at anything odd.
            let Ok(f) = decode_frame(&buf[at..], max_seg as usize) else {
                break;
            };
            for e in &f.entries {
                if e.kind != Kind::Put {
                    continue;
                }
                let loc = Loc {
                    slot: input.slot,
                    off: (at + e.offset) as u32,
                    len: e.len as u32,
                };
                let live = inner.st.borrow().index.get(e.key) == Some(&loc);
                if !live {
                    continue;
                }
                let one = super::record::frame_len([(e.key.len(), e.value.len())]) as u64;
                if !out.bytes.is_empty() && out.bytes.len() as u64 + one > max_seg {
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
                let base = out.bytes.len();
                let locs = encode_frame(&mut out.bytes, f.seq, &[(Kind::Put, e.key, e.value)]);
                let (eoff, elen) = locs[0];
                let off = (base + eoff) as u32;
                out.hint.push(Kind::Put, e.key, off, elen as u32);
                out.hint.seq(f.seq);
                out.moves.push((e.key.into(), loc, off, elen as u32));
            }
            at += f.len;
        }
        // Yield between inputs so that a long compaction does not hold the worker.
        crate::runtime::yield_now().await;
    }
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
    file.write_all_at(out.bytes, 0).await?;
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
        hint: None,
        sealed: true,
        settled: true,
    });
    // The index moves in steps of `MOVES_PER_STEP`, yielding between them, so that a large
    // output segment does not hold the worker (each move is a compare-and-swap on its own).
    for chunk in out.moves.chunks(MOVES_PER_STEP) {
        {
            let mut st = inner.st.borrow_mut();
            for (key, old, off, elen) in chunk {
                if let Some(cur) = st.index.get_mut(key)
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

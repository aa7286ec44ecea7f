//! The flusher of a shard: one local task that turns appended frames into writes and syncs by
//! the durability mode ([`State::plan`](super::shard::State)), completes the writers waiting
//! for durability, writes the hint file of each sealed segment once its data is synced, and
//! prepares the next segment ahead of time. One flush runs at a time; frames appended meanwhile
//! share the next one (group commit). A failed write or sync poisons the shard (see
//! [`StorageError::Poisoned`](crate::storage::StorageError::Poisoned)).
//! Must not touch the index (only the shard's append path and compaction change it).

use std::rc::{Rc, Weak};
use std::time::Instant;

use super::shard::{FlushPlan, Inner, KvShard, Notify};
use crate::storage::file::{File, sync_dir};

pub(crate) async fn run(weak: Weak<Inner>, kick: Rc<Notify>) {
    loop {
        let wait = {
            let Some(inner) = weak.upgrade() else { return };
            let plan = inner.st.borrow().plan(Instant::now());
            match plan {
                FlushPlan::Now { sync } => {
                    flush_once(&inner, sync).await;
                    KvShard {
                        inner: inner.clone(),
                    }
                    .ensure_spare()
                    .await;
                    continue;
                }
                FlushPlan::Later(t) => Some(t),
                FlushPlan::Idle => {
                    if inner.st.borrow().closed {
                        return;
                    }
                    None
                }
            }
        };
        kick.wait(wait).await;
    }
}

/// Writes every queued chunk in order and, if `sync`, syncs the segments that need it and the
/// directory, then completes the waiters and writes due hint files.
pub(crate) async fn flush_once(inner: &Rc<Inner>, sync: bool) {
    let writes = inner.st.borrow_mut().take_writes();
    for (file, off, bytes, end) in writes {
        match file.write_all_at(bytes, off).await {
            Ok(_) => inner.st.borrow_mut().written(end),
            Err(e) => return fail(inner, format!("write: {e}")),
        }
    }
    inner.drained.notify();
    if !sync {
        return;
    }
    let (files, dir) = inner.st.borrow_mut().take_sync_list();
    for f in files {
        if let Err(e) = f.sync_data().await {
            return fail(inner, format!("fdatasync: {e}"));
        }
    }
    if let Some(d) = dir
        && let Err(e) = sync_dir(&d).await
    {
        return fail(inner, format!("directory fsync: {e}"));
    }
    let (done, hints) = {
        let mut st = inner.st.borrow_mut();
        let lsn = st.written_lsn();
        st.synced(lsn)
    };
    for (slot, path, bytes) in hints {
        let r = async {
            let f = File::create(&inner.io, &path).await?;
            f.write_all_at(bytes, 0).await?;
            f.sync_data().await
        }
        .await;
        if let Err(e) = r {
            // Without a hint the segment is scanned at the next open: slower, not wrong.
            tracing::warn!(path = %path.display(), %e, "could not write a hint file");
        }
        let mut st = inner.st.borrow_mut();
        if let Some(Some(s)) = st.segs.get_mut(slot as usize) {
            s.settled = true;
        }
        drop(st);
        inner.compact_kick.notify();
    }
    // Hints first: a seal is rare (one per segment), and a caller of `flush()` then finds
    // every sealed segment settled.
    for w in done {
        w(Ok(()));
    }
}

fn fail(inner: &Rc<Inner>, why: String) {
    inner.drained.notify();
    let failed = inner.st.borrow_mut().poison(why);
    for (w, e) in failed {
        w(Err(e));
    }
}

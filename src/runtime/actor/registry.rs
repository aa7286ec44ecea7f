//! [`ActorRegistry`]: the runtime's list of live actors, by start order, for graceful shutdown in
//! reverse order and for reports. Owns actor ids and the index; it holds weak references only,
//! so it never keeps an actor alive. It also carries the runtime-wide actor tables that every
//! mailbox must reach: dead letters, names, watches and per-type counters. The mesh carries one
//! per runtime (every mailbox already holds the mesh) but never reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::dead_letters::DeadLetters;
use super::mailbox::ActorProbe;
use super::names::Names;
use super::stats::TypeStatsTable;
use super::watch::Watch;

/// Index entries visited per lock hold when walking every actor (a scrape of 100,000 actors
/// must not hold the lock that actor starts and stops need for more than a few microseconds).
const WALK_CHUNK: usize = 1024;

/// Live actors of one runtime.
///
/// A slab rather than a map: 32 bytes an actor, O(1) insert and remove; shutdown sorts by id.
pub(crate) struct ActorRegistry {
    /// Next actor id (= start order).
    next: AtomicU64,
    index: Mutex<slab::Slab<(u64, Weak<dyn ActorProbe>)>>,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) names: Names,
    pub(crate) watch: Watch,
    pub(crate) types: TypeStatsTable,
}

impl Default for ActorRegistry {
    fn default() -> Self {
        ActorRegistry {
            next: AtomicU64::new(1),
            index: Mutex::new(slab::Slab::new()),
            dead_letters: DeadLetters::default(),
            names: Names::default(),
            watch: Watch::default(),
            types: TypeStatsTable::default(),
        }
    }
}

impl ActorRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, slab::Slab<(u64, Weak<dyn ActorProbe>)>> {
        // Critical sections only insert or remove entries: a poisoned lock is still consistent.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives a new actor its id and index key, builds it with `make(id, key)`, and indexes it
    /// before anyone else can see it (so shutdown sees actors whose start is still in flight).
    pub(crate) fn register<P: ActorProbe + 'static>(
        &self,
        make: impl FnOnce(u64, u32) -> Arc<P>,
    ) -> Arc<P> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut index = self.lock();
        let entry = index.vacant_entry();
        // Slab keys are dense (live actors); 2^32 live actors would need 700 GiB.
        let key = u32::try_from(entry.key()).expect("fewer than 2^32 live actors");
        let actor = make(id, key);
        let probe: Arc<dyn ActorProbe> = actor.clone();
        entry.insert((id, Arc::downgrade(&probe)));
        actor
    }

    /// Removes the actor registered as `(id, key)` (a no-op if it is gone already).
    pub(crate) fn unregister(&self, id: u64, key: u32) {
        let mut index = self.lock();
        if index.get(key as usize).is_some_and(|(s, _)| *s == id) {
            index.remove(key as usize);
        }
    }

    /// The live actors, newest first.
    pub(crate) fn newest_first(&self) -> Vec<Arc<dyn ActorProbe>> {
        let mut all: Vec<(u64, Weak<dyn ActorProbe>)> = self
            .lock()
            .iter()
            .map(|(_, (id, w))| (*id, w.clone()))
            .collect();
        all.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
        all.into_iter().filter_map(|(_, w)| w.upgrade()).collect()
    }

    /// Calls `f` on every live actor, taking the index lock for [`WALK_CHUNK`] entries at a
    /// time (never for the whole walk).
    pub(crate) fn walk(&self, mut f: impl FnMut(&dyn ActorProbe)) {
        let mut key = 0usize;
        let mut batch: Vec<Arc<dyn ActorProbe>> = Vec::with_capacity(WALK_CHUNK);
        loop {
            {
                let index = self.lock();
                let end = index.capacity();
                if key >= end {
                    return;
                }
                let stop = (key + WALK_CHUNK).min(end);
                for k in key..stop {
                    if let Some((_, w)) = index.get(k)
                        && let Some(p) = w.upgrade()
                    {
                        batch.push(p);
                    }
                }
                key = stop;
            }
            // Outside the lock: `f` may be slow, and dropping the last reference to an actor
            // unindexes it (which takes the lock).
            for p in batch.drain(..) {
                f(&*p);
            }
            // Off the workers (a scrape renders on its own thread), give the CPU back between
            // chunks: where that thread shares a CPU with a worker, the worker waits at most
            // one chunk for it.
            if crate::runtime::executor::current_worker().is_none() {
                std::thread::yield_now();
            }
        }
    }

    /// Live actors.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

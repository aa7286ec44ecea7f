//! [`ActorRegistry`]: the runtime's list of live actors, by start order, for graceful shutdown in
//! reverse order and for reports. Owns actor ids and the index; it holds weak references only,
//! so it never keeps an actor alive. The mesh carries one per runtime (every mailbox already
//! holds the mesh) but never reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::mailbox::ActorProbe;

/// Live actors of one runtime.
///
/// A slab rather than a map: 32 bytes an actor, O(1) insert and remove; shutdown sorts by id.
pub(crate) struct ActorRegistry {
    /// Next actor id (= start order).
    next: AtomicU64,
    index: Mutex<slab::Slab<(u64, Weak<dyn ActorProbe>)>>,
}

impl Default for ActorRegistry {
    fn default() -> Self {
        ActorRegistry {
            next: AtomicU64::new(1),
            index: Mutex::new(slab::Slab::new()),
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
}

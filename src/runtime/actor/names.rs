//! [`Names`]: the runtime's registry of named actors — `register(name, addr)` and a typed
//! `lookup::<A>(name)`. Names are unique per runtime; an entry disappears when its actor stops
//! for good (a supervised restart keeps the address, so it keeps the name). Owns the name table
//! only; the mailbox tells it when an actor terminates.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use super::{Actor, Addr};

/// Why a name could not be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Another live actor holds the name.
    #[error("the name {name:?} is taken by actor {holder}; unregister it first or pick another")]
    Taken {
        /// The name asked for.
        name: String,
        /// The id of the actor holding it.
        holder: u64,
    },
    /// The actor has already stopped.
    #[error("actor {0} has stopped; only live actors can be named")]
    Stopped(u64),
}

struct Entry {
    id: u64,
    /// An `Addr<A>`, typed at lookup.
    addr: Box<dyn Any + Send + Sync>,
}

/// Named actors of one runtime.
#[derive(Default)]
pub(crate) struct Names {
    table: Mutex<HashMap<String, Entry>>,
    /// Set at the first registration, never cleared: until then an actor's termination skips
    /// the lock (1,000,000 actors stopping paid for it).
    used: AtomicBool,
}

impl Names {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Critical sections insert or remove whole entries: a poisoned lock is still consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register<A: Actor>(&self, name: &str, addr: &Addr<A>) -> Result<(), NameError>
    where
        A::Msg: Send,
    {
        // Dekker with `forget`: flag, fence, then read the actor's state here; state store,
        // fence, then read the flag there. One of the two sees the other's store.
        self.used.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let mut t = self.lock();
        // Checked under the lock: termination removes names under it too, so a name is never
        // left behind by an actor that terminated between the check and the insert.
        if !addr.is_registrable() {
            return Err(NameError::Stopped(addr.id()));
        }
        if let Some(e) = t.get(name) {
            return Err(NameError::Taken {
                name: name.to_string(),
                holder: e.id,
            });
        }
        t.insert(
            name.to_string(),
            Entry {
                id: addr.id(),
                addr: Box::new(addr.clone()),
            },
        );
        Ok(())
    }

    pub(crate) fn lookup<A: Actor>(&self, name: &str) -> Option<Addr<A>> {
        self.lock()
            .get(name)
            .and_then(|e| e.addr.downcast_ref::<Addr<A>>().cloned())
    }

    /// Removes `name`; true if it was registered.
    pub(crate) fn unregister(&self, name: &str) -> bool {
        let mut t = self.lock();
        t.remove(name).is_some()
    }

    /// Removes every name of actor `id` (it stopped for good).
    pub(crate) fn forget(&self, id: u64) {
        // The caller has stored the actor's terminated state; see `register` for the pairing.
        fence(Ordering::SeqCst);
        if !self.used.load(Ordering::SeqCst) {
            return;
        }
        // Under the lock: `register` checks liveness under it, so a name cannot be added for
        // an actor whose termination passed here.
        let mut t = self.lock();
        if !t.is_empty() {
            t.retain(|_, e| e.id != id);
        }
    }

    /// Registered names with their actor ids, sorted by name.
    pub(crate) fn list(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self.lock().iter().map(|(k, e)| (k.clone(), e.id)).collect();
        v.sort();
        v
    }
}

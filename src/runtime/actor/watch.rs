//! [`Watch`]: monitors, links and exit trapping between actors, and the detailed reasons of
//! pending exit signals. Keyed by actor id, so mailboxes stay small: an actor nobody watches
//! costs nothing here. Owns who is told what when an incarnation ends; the run loop calls
//! [`Watch::fire`] once per incarnation, after its supervisor (if any) has decided.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::exit::{Down, ExitReason};
use super::mailbox::ActorProbe;

type Notify = Box<dyn FnOnce(Down) + Send>;
/// Delivers a `Down` to an actor that traps exits; false when its mailbox could not take it.
type Trap = Arc<dyn Fn(Down) -> bool + Send + Sync>;

enum Watcher {
    /// A monitor: told once, whatever the reason.
    Monitor(Notify),
    /// A link to `peer`: a failure here kills it (or is delivered to it if it traps exits).
    Link(Arc<dyn ActorProbe>),
}

#[derive(Default)]
struct Tables {
    watchers: HashMap<u64, Vec<Watcher>>,
    traps: HashMap<u64, Trap>,
    /// Detailed reasons of exits requested by signal ([`ExitReason::Linked`], `Failed` from
    /// `Context::fail`, `Killed`), read by the run loop when the incarnation ends.
    pending: HashMap<u64, ExitReason>,
}

/// Monitors, links, traps and pending exit reasons of one runtime.
#[derive(Default)]
pub(crate) struct Watch {
    /// Entries in the three tables: an actor's exit skips the lock when nothing is watched.
    used: AtomicUsize,
    tables: Mutex<Tables>,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // Critical sections insert or remove whole entries: a poisoned lock is still consistent.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn monitor(&self, target: u64, notify: Notify) {
        let mut t = self.lock();
        t.watchers
            .entry(target)
            .or_default()
            .push(Watcher::Monitor(notify));
        self.used.fetch_add(1, Ordering::AcqRel);
    }

    /// Links `a` and `b` both ways.
    pub(crate) fn link(&self, a: Arc<dyn ActorProbe>, b: Arc<dyn ActorProbe>) {
        let mut t = self.lock();
        t.watchers
            .entry(a.id())
            .or_default()
            .push(Watcher::Link(b.clone()));
        t.watchers.entry(b.id()).or_default().push(Watcher::Link(a));
        self.used.fetch_add(2, Ordering::AcqRel);
    }

    /// Removes the link between `a` and `b` (both directions).
    pub(crate) fn unlink(&self, a: u64, b: u64) {
        let mut t = self.lock();
        let mut removed = 0;
        for (from, to) in [(a, b), (b, a)] {
            if let Some(v) = t.watchers.get_mut(&from) {
                let before = v.len();
                v.retain(|w| !matches!(w, Watcher::Link(p) if p.id() == to));
                removed += before - v.len();
            }
        }
        self.used.fetch_sub(removed, Ordering::AcqRel);
    }

    pub(crate) fn set_trap(&self, id: u64, trap: Option<Trap>) {
        let mut t = self.lock();
        let had = match trap {
            Some(f) => t.traps.insert(id, f).is_some(),
            None => t.traps.remove(&id).is_some(),
        };
        let now = t.traps.contains_key(&id);
        match (had, now) {
            (false, true) => {
                self.used.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.used.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// Records why actor `id` is being made to exit (the first reason wins, except that a kill
    /// overrides a softer one).
    pub(crate) fn set_pending(&self, id: u64, reason: ExitReason) {
        let mut t = self.lock();
        match t.pending.get(&id) {
            None => {
                t.pending.insert(id, reason);
                self.used.fetch_add(1, Ordering::AcqRel);
            }
            Some(ExitReason::Killed) => {}
            Some(_) if reason == ExitReason::Killed => {
                t.pending.insert(id, reason);
            }
            Some(_) => {}
        }
    }

    /// Takes the pending exit reason of `id`, if any.
    pub(crate) fn take_pending(&self, id: u64) -> Option<ExitReason> {
        if self.used.load(Ordering::Acquire) == 0 {
            return None;
        }
        let r = self.lock().pending.remove(&id);
        if r.is_some() {
            self.used.fetch_sub(1, Ordering::AcqRel);
        }
        r
    }

    /// True when some actor is watched, trapping or has a pending exit reason.
    pub(crate) fn in_use(&self) -> bool {
        self.used.load(Ordering::Acquire) != 0
    }

    /// The incarnation of actor `down.id` ended: tells its monitors, propagates a failure over
    /// its links, and drops them all (a restarted actor watches anew). With `for_good` its trap
    /// is removed too.
    pub(crate) fn fire(&self, down: &Down, for_good: bool) {
        if !self.in_use() {
            return;
        }
        let (list, peers_traps) = {
            let mut t = self.lock();
            let list = t.watchers.remove(&down.id).unwrap_or_default();
            let mut removed = list.len();
            // Drop the reverse halves of this actor's links.
            for w in &list {
                if let Watcher::Link(p) = w
                    && let Some(v) = t.watchers.get_mut(&p.id())
                {
                    let before = v.len();
                    v.retain(|w| !matches!(w, Watcher::Link(q) if q.id() == down.id));
                    removed += before - v.len();
                }
            }
            if for_good && t.traps.remove(&down.id).is_some() {
                removed += 1;
            }
            self.used.fetch_sub(removed, Ordering::AcqRel);
            let traps: Vec<Option<Trap>> = list
                .iter()
                .map(|w| match w {
                    Watcher::Link(p) => t.traps.get(&p.id()).cloned(),
                    Watcher::Monitor(_) => None,
                })
                .collect();
            (list, traps)
        };
        // Outside the lock: notices send messages and kills send envelopes.
        for (w, trap) in list.into_iter().zip(peers_traps) {
            match w {
                Watcher::Monitor(notify) => notify(down.clone()),
                Watcher::Link(peer) => {
                    if !down.reason.is_failure() {
                        continue;
                    }
                    match trap {
                        Some(deliver) => {
                            if !deliver(down.clone()) {
                                peer.record_undelivered_notice();
                            }
                        }
                        None => {
                            self.set_pending(
                                peer.id(),
                                ExitReason::Linked {
                                    id: down.id,
                                    name: down.name.clone(),
                                },
                            );
                            peer.signal_exit();
                        }
                    }
                }
            }
        }
    }
}

//! [`DeadLetters`]: the runtime's bounded record of messages the runtime dropped because their
//! actor could not take them (it stopped, was killed, failed in the handler, or terminated with
//! messages still queued or in flight). Owns the record and its counters; the mailbox and the
//! run loop report into it. A send refused with `Stopped` hands the message back to the sender
//! and is not a dead letter: nothing was lost.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Entries kept by default ([`DeadLetters::capacity`]); older ones are dropped and counted.
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 1024;

/// Why a message became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// It was queued when the actor stopped for good (killed, failed and not restarted, or its
    /// runtime shut down with a stop-now).
    ActorStopped,
    /// It arrived after the actor had terminated (it was in flight on a ring).
    Terminated,
    /// Its handler failed (panicked or returned an error) while handling it.
    HandlerFailed,
    /// A `Down` notice for an actor that traps exits found its mailbox full or closed.
    NoticeUndelivered,
}

/// One message the runtime could not deliver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// The target actor's name.
    pub actor: String,
    /// The target actor's id.
    pub actor_id: u64,
    /// The message's Rust type.
    pub message_type: &'static str,
    /// Why it was dropped.
    pub reason: DeadLetterReason,
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Most distinct actor names counted separately in [`DeadLetters::by_actor`]; the rest are
/// summed under `"other"` (keeps the metric's label set bounded).
const MAX_NAMES: usize = 256;

/// The runtime's dead-letter queue: bounded, oldest dropped first (and counted).
#[derive(Debug)]
pub struct DeadLetters {
    capacity: usize,
    total: AtomicU64,
    evicted: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    recent: VecDeque<DeadLetter>,
    by_actor: HashMap<String, u64>,
}

impl Default for DeadLetters {
    fn default() -> Self {
        DeadLetters::with_capacity(DEFAULT_DEAD_LETTER_CAPACITY)
    }
}

impl DeadLetters {
    /// A queue keeping the latest `capacity` entries (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        DeadLetters {
            capacity: capacity.max(1),
            total: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Critical sections push, pop and count only: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `count` messages of type `message_type` for `actor` dropped for `reason`.
    pub(crate) fn record(
        &self,
        actor: &str,
        actor_id: u64,
        message_type: &'static str,
        reason: DeadLetterReason,
        count: usize,
    ) {
        if count == 0 {
            return;
        }
        self.total.fetch_add(count as u64, Ordering::Relaxed);
        let at_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut g = self.lock();
        let known = g.by_actor.len();
        match g.by_actor.get_mut(actor) {
            Some(n) => *n += count as u64,
            None if known < MAX_NAMES => {
                g.by_actor.insert(actor.to_string(), count as u64);
            }
            None => *g.by_actor.entry("other".to_string()).or_insert(0) += count as u64,
        }
        // Only the newest `capacity` of a large batch can survive: skip the rest at once.
        let keep = count.min(self.capacity);
        let evict = (g.recent.len() + keep).saturating_sub(self.capacity);
        g.recent.drain(..evict);
        self.evicted
            .fetch_add((evict + count - keep) as u64, Ordering::Relaxed);
        for _ in 0..keep {
            g.recent.push_back(DeadLetter {
                actor: actor.to_string(),
                actor_id,
                message_type,
                reason,
                at_unix_ms,
            });
        }
        tracing::debug!(
            actor,
            actor_id,
            message_type,
            ?reason,
            count,
            "dead letters"
        );
    }

    /// The entries kept, oldest first.
    pub fn recent(&self) -> Vec<DeadLetter> {
        self.lock().recent.iter().cloned().collect()
    }

    /// Dead letters ever recorded (kept or not).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Entries dropped from the queue because it was full (they are still in `total`).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// How many entries the queue keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Dead letters per target actor name (at most 256 names, the rest as `"other"`).
    pub fn by_actor(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .lock()
            .by_actor
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort();
        v
    }

    /// Empties the kept entries (the counters stay).
    pub fn clear(&self) {
        self.lock().recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_oldest_dropped_and_counted() {
        let d = DeadLetters::with_capacity(3);
        d.record("a", 1, "u8", DeadLetterReason::ActorStopped, 2);
        d.record("b", 2, "u16", DeadLetterReason::Terminated, 2);
        assert_eq!(d.total(), 4);
        assert_eq!(d.evicted(), 1);
        let r = d.recent();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].actor, "a");
        assert_eq!(r[2].message_type, "u16");
        // A batch larger than the queue keeps its newest entries only.
        d.record("c", 3, "u32", DeadLetterReason::HandlerFailed, 10);
        assert_eq!(d.total(), 14);
        assert_eq!(d.evicted(), 1 + 3 + 7);
        assert!(d.recent().iter().all(|e| e.actor == "c"));
        assert_eq!(
            d.by_actor(),
            vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 10)]
        );
    }
}

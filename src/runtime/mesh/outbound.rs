//! The sending side a mesh node's thread owns: a producer to every other node, a per-target
//! overflow queue for when a ring is full (so nothing is dropped and per-sender order holds),
//! the list of rings written this turn, and what keyed sends remember of the last push to each
//! target (`keyed::Last`). Sends are written unpublished; [`Outbound::flush`] publishes every ring
//! once at the end of a turn and wakes only targets that sleep. Owns ring producers and the
//! overflow; must not run envelopes (that is the receiving side's).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::keyed::{Last, disarm_cursor};
use super::{Envelope, MeshShared, OUTBOUND, OWN_NODE};
use crate::runtime::ring::Producer;

/// The sending side a node's thread owns: producers to every other node, overflow queues.
pub(crate) struct Outbound {
    pub(crate) mesh: Arc<MeshShared>,
    pub(crate) me: usize,
    pub(super) producers: Vec<Option<Producer<Envelope>>>,
    pub(super) overflow: Vec<VecDeque<Envelope>>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Per target: the key and kind of the last envelope pushed to it, while it is still the
    /// most recent push and unpublished, and the send credits held for that key. See
    /// [`send_keyed`](super::send_keyed).
    pub(super) last: Vec<Last>,
    sent: u64,
}

impl Outbound {
    pub(crate) fn new(
        mesh: Arc<MeshShared>,
        me: usize,
        producers: Vec<Option<Producer<Envelope>>>,
    ) -> Self {
        let n = producers.len();
        Outbound {
            mesh,
            me,
            producers,
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            dirty: Vec::with_capacity(n),
            is_dirty: vec![false; n],
            last: (0..n).map(|_| Last::NONE).collect(),
            sent: 0,
        }
    }

    /// Installs this outbound as the current thread's; returns the previous one.
    pub(crate) fn install(self) {
        let me = (self.mesh.id, u32::try_from(self.me).unwrap_or(u32::MAX));
        OWN_NODE.with(|n| n.set(me));
        disarm_cursor();
        OUTBOUND.with(|o| *o.borrow_mut() = Some(self));
    }

    pub(crate) fn uninstall() -> Option<Outbound> {
        let _ = OWN_NODE.try_with(|n| n.set((0, u32::MAX)));
        disarm_cursor();
        OUTBOUND.with(|o| o.borrow_mut().take())
    }

    pub(super) fn push(&mut self, to: usize, env: Envelope) {
        self.reset_last(to);
        self.push_env(to, env);
    }

    /// Writes `env` (ring, or overflow when the ring is full) without touching `last`.
    pub(super) fn push_env(&mut self, to: usize, env: Envelope) {
        let q = &mut self.overflow[to];
        if q.is_empty() {
            if let Some(p) = self.producers[to].as_mut() {
                match p.push(env) {
                    Ok(()) => {}
                    Err(full) => q.push_back(full.0),
                }
            }
        } else {
            q.push_back(env);
        }
        self.sent += 1;
        if !self.is_dirty[to] {
            self.is_dirty[to] = true;
            self.dirty.push(to);
        }
    }

    /// Publishes the ring to `to` now (mid-turn) and wakes it if it sleeps: used when a full
    /// batch is ready, so the target works while this thread goes on sending instead of
    /// waiting for the end of the turn.
    pub(super) fn publish_now(&mut self, to: usize) {
        if !self.overflow[to].is_empty() {
            return; // the overflow must go first, at flush
        }
        if let Some(p) = self.producers[to].as_mut()
            && p.publish() > 0
        {
            self.mesh.nodes[to].notify();
        }
    }

    /// Publishes everything pushed since the last flush and wakes sleeping targets. Envelopes
    /// still in overflow (ring full) stay dirty for the next flush. Returns how many targets
    /// still have overflow.
    pub(crate) fn flush(&mut self) -> usize {
        let mut still = 0;
        let mut i = 0;
        while i < self.dirty.len() {
            let to = self.dirty[i];
            self.reset_last(to);
            let Some(p) = self.producers[to].as_mut() else {
                i += 1;
                continue;
            };
            let q = &mut self.overflow[to];
            while let Some(env) = q.pop_front() {
                if let Err(full) = p.push(env) {
                    q.push_front(full.0);
                    break;
                }
            }
            let published = p.publish();
            if published > 0 {
                self.mesh.nodes[to].notify();
            }
            if self.overflow[to].is_empty() {
                self.is_dirty[to] = false;
                self.dirty.swap_remove(i);
            } else {
                still += 1;
                i += 1;
            }
        }
        if self.sent > 0 {
            self.mesh.nodes[self.me]
                .metrics
                .messages_out
                .fetch_add(self.sent, Ordering::Relaxed);
            self.sent = 0;
        }
        still
    }

    pub(crate) fn has_overflow(&self) -> bool {
        !self.dirty.is_empty()
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // Dropped by this thread's TLS teardown without `uninstall` (e.g. a thread unwinding):
        // the cursor must not outlive what it points into. (Dropped elsewhere, this only costs
        // that thread its next fast path.)
        disarm_cursor();
        for to in 0..self.last.len() {
            self.reset_last(to);
        }
    }
}

//! The receiving side a mesh node's thread owns: its ring consumers, drained together with the
//! node's injector once per turn. Owns the consumers; runs what arrives (contained: a panicking
//! envelope is logged, the worker goes on).

use std::sync::atomic::Ordering;

use super::{Envelope, NodeShared, run_envelope};
use crate::runtime::ring::Consumer;

/// The receiving side a node's thread owns.
pub(crate) struct Inbound {
    pub(crate) consumers: Vec<Consumer<Envelope>>,
}

impl Inbound {
    /// Runs up to `budget` envelopes from the injector and each ring. Returns how many ran.
    pub(crate) fn drain(&mut self, node: &NodeShared, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            match node.injector.pop() {
                Some(env) => {
                    run_envelope(env);
                    n += 1;
                }
                None => break,
            }
        }
        // The depth gauge: what waited in the rings when this turn began draining them (one
        // more load of each tail, whose line the batch pop reads next anyway).
        let mut depth = 0;
        for c in &mut self.consumers {
            depth += c.len();
            n += c.pop_batch(budget, run_envelope);
        }
        node.metrics
            .ring_depth
            .store(depth as u64, Ordering::Relaxed);
        if n > 0 {
            node.metrics
                .messages_in
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    /// Drops every waiting envelope without running it (worker exit).
    pub(crate) fn discard(&mut self, node: &NodeShared) {
        while node.injector.pop().is_some() {}
        for c in &mut self.consumers {
            c.pop_batch(usize::MAX, drop);
        }
    }

    /// True when any envelope is waiting.
    pub(crate) fn has_pending(&self, node: &NodeShared) -> bool {
        !node.injector.is_empty() || self.consumers.iter().any(|c| !c.is_empty())
    }
}

//! [`ExternalNode`]: how a thread outside the app workers (an I/O or accelerator worker) joins
//! the mesh, with ring ends of its own. Owns the attachment and gives the ring ends back when
//! dropped.

use std::sync::Arc;

use super::{Inbound, MeshShared, NodeEnds, Outbound, current_node, flush_current};
use crate::runtime::RuntimeError;
use crate::runtime::executor::Notifier;

/// A thread outside the app workers (an I/O or accelerator worker) that has joined the mesh.
///
/// While attached, [`Addr::try_tell`](crate::runtime::Addr::try_tell) and friends called on this
/// thread go over this node's rings, unpublished until [`ExternalNode::flush`]: call it once per
/// event-loop iteration. Closures other threads send with
/// [`Handle::run_on_node`](crate::runtime::Handle::run_on_node) run in
/// [`ExternalNode::run_pending`]. Not `Send`: it belongs to the thread that attached it.
pub struct ExternalNode {
    id: usize,
    mesh: Arc<MeshShared>,
    inbound: Inbound,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ExternalNode {
    pub(crate) fn attach(mesh: &Arc<MeshShared>, index: usize) -> Result<Self, RuntimeError> {
        let slot = mesh
            .pending_external
            .get(index)
            .ok_or(RuntimeError::ExternalNode {
                index,
                reason: "index out of range (the config reserves io_workers + accel_workers external nodes)",
            })?;
        let ends = slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(RuntimeError::ExternalNode {
                index,
                reason: "already attached by another thread",
            })?;
        let id = mesh.app_workers + index;
        if current_node(mesh.id).is_some() {
            return Err(RuntimeError::ExternalNode {
                index,
                reason: "this thread is already a node of this runtime",
            });
        }
        Outbound::new(mesh.clone(), id, ends.outbound).install();
        Ok(ExternalNode {
            id,
            mesh: mesh.clone(),
            inbound: Inbound {
                consumers: ends.inbound,
            },
            _not_send: std::marker::PhantomData,
        })
    }

    /// This node's index in the mesh (app workers are `0..workers`, external nodes follow).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Sets the function other threads call to wake this node's loop when they publish to it
    /// (e.g. write an eventfd or a `mio::Waker`).
    pub fn set_wake(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        let _ = self.mesh.nodes[self.id]
            .notifier
            .set(Notifier::custom(wake));
    }

    /// Publishes every envelope pushed since the last flush and wakes the targets.
    pub fn flush(&self) {
        flush_current();
    }

    /// Runs up to `max` closures sent to this node. Returns how many ran.
    pub fn run_pending(&mut self, max: usize) -> usize {
        self.inbound.drain(&self.mesh.nodes[self.id], max)
    }

    /// True when closures are waiting for [`ExternalNode::run_pending`].
    pub fn has_pending(&self) -> bool {
        self.inbound.has_pending(&self.mesh.nodes[self.id])
    }
}

impl Drop for ExternalNode {
    fn drop(&mut self) {
        flush_current();
        if let Some(mut ob) = Outbound::uninstall() {
            // Envelopes still waiting for ring room go through the injectors instead.
            for (to, q) in ob.overflow.iter_mut().enumerate() {
                for env in q.drain(..) {
                    self.mesh.nodes[to].injector.push(env);
                    self.mesh.nodes[to].notify();
                }
            }
            // Give the ring ends back so another thread may attach later.
            let idx = self.id - self.mesh.app_workers;
            let inbound = std::mem::take(&mut self.inbound.consumers);
            *self.mesh.pending_external[idx]
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(NodeEnds {
                outbound: std::mem::take(&mut ob.producers),
                inbound,
            });
        }
    }
}

//! The work queue of one accelerator worker: jobs (tasks, pipelines, control closures) ordered
//! by priority, FIFO within one; the signal the worker spins on before sleeping; and the batch
//! rule (small GPU tasks at the head of the queue share one submission). Owns the queue only.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::accel::{Output, PipelineOutput, SPIN};
use super::pipeline::Pipeline;
use super::task::{ComputeTask, Priority, Tensor};
use super::ticket::Completer;
use super::worker::WorkerState;

pub(crate) type Control = Box<dyn FnOnce(&mut WorkerState) + Send>;

pub(crate) enum Work {
    Task(ComputeTask, Completer<Output>),
    Pipeline(Pipeline, Vec<Tensor>, Completer<PipelineOutput>),
    Control(Control),
}

pub(crate) struct Job {
    pub(crate) prio: Priority,
    pub(crate) seq: u64,
    pub(crate) work: Work,
}

impl PartialEq for Job {
    fn eq(&self, o: &Self) -> bool {
        self.prio == o.prio && self.seq == o.seq
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Job {
    /// Max-heap order: higher priority first, then lower sequence number (FIFO).
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.prio.cmp(&o.prio).then(o.seq.cmp(&self.seq))
    }
}

pub(crate) struct Queue {
    pub(crate) heap: BinaryHeap<Job>,
    pub(crate) seq: u64,
    pub(crate) stopping: bool,
}

pub(crate) struct Shared {
    pub(crate) q: Mutex<Queue>,
    pub(crate) cv: Condvar,
    /// Set (under the queue lock) when work or a mesh closure arrives; the worker spins on it
    /// before sleeping.
    pub(crate) signal: AtomicBool,
    /// Largest storage binding of the device (validation before dispatch).
    pub(crate) max_binding: AtomicU64,
    pub(crate) on_gpu: AtomicBool,
    /// A GPU was asked for and none is usable: CPU work reports `Ran::CpuFallback`.
    pub(crate) degraded: AtomicBool,
    pub(crate) inline_tasks: AtomicU64,
}

impl Shared {
    /// Tasks waiting now.
    pub(crate) fn queue_len(&self) -> usize {
        self.q.lock().map_or(0, |q| q.heap.len())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // Critical sections only push/pop the heap; a poisoned lock holds a consistent heap.
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, prio: Priority, work: Work) -> bool {
        let mut q = self.lock();
        if q.stopping {
            return false;
        }
        let seq = q.seq;
        q.seq += 1;
        q.heap.push(Job { prio, seq, work });
        self.signal.store(true, Ordering::Release);
        drop(q);
        self.cv.notify_one();
        true
    }
}

pub(crate) trait Pending {
    fn pending(&self) -> bool;
}
impl Pending for crate::runtime::ExternalNode {
    fn pending(&self) -> bool {
        self.has_pending()
    }
}

/// Waits for work (spinning briefly first) and pops the next job, plus further small tasks to
/// share its submission. `None`: stopping and empty. An empty vector: mesh closures to run.
pub(crate) fn next_batch(
    shared: &Shared,
    st: &WorkerState,
    node: Option<&dyn Pending>,
) -> Option<Vec<Job>> {
    let spin_until = Instant::now() + SPIN;
    while !shared.signal.load(Ordering::Acquire) && Instant::now() < spin_until {
        if node.is_some_and(|n| n.pending()) {
            return Some(Vec::new());
        }
        // Yield rather than spin: a submitter sharing this core gets to run.
        std::thread::yield_now();
    }
    let mut q = shared.lock();
    loop {
        let signalled = shared.signal.swap(false, Ordering::AcqRel);
        if let Some(first) = q.heap.pop() {
            let mut batch = vec![first];
            if st.batchable(&batch[0]) {
                while batch.len() < st.opts.max_batch.max(1) {
                    match q.heap.peek() {
                        Some(j) if st.batchable(j) => batch.extend(q.heap.pop()),
                        _ => break,
                    }
                }
            }
            if !q.heap.is_empty() {
                shared.signal.store(true, Ordering::Release);
            }
            return Some(batch);
        }
        if q.stopping {
            return None;
        }
        if signalled || node.is_some_and(|n| n.pending()) {
            return Some(Vec::new());
        }
        // The timeout is a safety net only: every push and mesh wake-up notifies.
        q = shared
            .cv
            .wait_timeout(q, Duration::from_millis(100))
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

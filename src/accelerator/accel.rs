//! The front of the accelerator layer: [`Accel`] (start workers on a policy, submit tasks and
//! pipelines, results as [`Ticket`]s or actor messages, calibrate, stats, shutdown), the
//! [`Accelerator`] trait actors use, and what comes back ([`Output`], [`PipelineOutput`],
//! [`AccelWorkerStats`]). Owns the worker handles; the queue is `queue.rs`', the thread and
//! device `worker.rs`'. Uses only the runtime's public API; must not touch transport, storage
//! or ml.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use super::cpu::{self, CPU_MAX_BUFFER};
use super::device::AdapterInfo;
use super::device::GpuStats;
use super::error::AccelError;
use super::pipeline::{Crossover, Pipeline, Place, Ran};
use super::policy::{AccelOptions, Selection};
use super::task::{ComputeTask, Priority, Tensor};
use super::ticket::{Callback, Completer, Slot, Ticket};
use crate::runtime::{Actor, Addr, Handle, TrySendError};

use super::queue::{Queue, Shared, Work};
use super::worker::{WorkerState, worker_main};

/// The result of a task: its output tensors and where it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The outputs, in the order the kernel documents.
    pub tensors: Vec<Tensor>,
    /// Where it ran.
    pub ran: Ran,
}

/// The result of a pipeline: the last stage's outputs and where each stage ran.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineOutput {
    /// The last stage's outputs.
    pub tensors: Vec<Tensor>,
    /// One entry per stage.
    pub stages: Vec<Ran>,
}

/// Submit, poll, wait: the contract of anything that runs [`ComputeTask`]s.
pub trait Accelerator {
    /// Queues `task`; errors found before dispatch (shapes, sizes) are in the ticket at once.
    fn submit(&self, task: ComputeTask) -> Ticket<Output>;
    /// Takes the result if it is ready.
    fn poll(&self, ticket: &mut Ticket<Output>) -> Option<Result<Output, AccelError>> {
        ticket.try_take()
    }
    /// Blocks until the result is ready (not on an app worker: await the ticket there).
    fn wait(&self, ticket: Ticket<Output>) -> Result<Output, AccelError> {
        ticket.wait()
    }
}

/// The former name of [`AccelWorkerStats`].
#[deprecated(since = "0.1.0", note = "renamed AccelWorkerStats")]
pub type WorkerStats = AccelWorkerStats;

/// Counters of one accelerator worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccelWorkerStats {
    /// Worker index.
    pub worker: usize,
    /// The backend in use now (`gpu` or `cpu`).
    pub backend: String,
    /// The adapter, when it has a GPU.
    pub adapter: Option<String>,
    /// Tasks run on the GPU.
    pub gpu_tasks: u64,
    /// Tasks run on the CPU backend by choice.
    pub cpu_tasks: u64,
    /// Tasks meant for the GPU rerun on the CPU after a device failure (or run on the CPU
    /// because a GPU was asked for and none was usable).
    pub fallback_tasks: u64,
    /// Tiny CPU tasks run inline on the submitting thread (see
    /// [`AccelOptions::inline_cpu_flops`]); not counted in the other task counters.
    pub inline_tasks: u64,
    /// GPU submissions that carried more than one task.
    pub batched_submissions: u64,
    /// Most tasks in one submission.
    pub largest_batch: u64,
    /// Pipelines run.
    pub pipelines: u64,
    /// Device counters (pipeline cache, buffer pool), when it has a GPU.
    pub gpu: Option<GpuStats>,
}

pub(crate) struct WorkerHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) thread: Option<JoinHandle<()>>,
    pub(crate) selection: Selection,
    pub(crate) adapter: Option<AdapterInfo>,
}

/// A set of accelerator workers. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Accel {
    workers: Vec<WorkerHandle>,
    inline_cpu_flops: f64,
    cpu_threads: usize,
    next: AtomicUsize,
    handle: Option<Handle>,
    /// Renders the queues into the runtime's `/metrics` while this lives.
    _metrics: Option<crate::runtime::user_metrics::Collector>,
}

impl std::fmt::Debug for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accel")
            .field("workers", &self.workers.len())
            .field("adapter", &self.adapter().map(|a| a.name))
            .finish()
    }
}

/// How long an idle worker spins before sleeping: a sleeping thread woken from the other core
/// costs tens of microseconds on some VMs, which would dominate a tiny kernel's round trip.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

impl Accel {
    /// Starts one worker outside any runtime with `opts`.
    pub fn start(opts: AccelOptions) -> Result<Accel, AccelError> {
        Self::start_n(opts, 1, None)
    }

    /// Starts one worker with options from the environment (`PERCORE_ACCEL`, `WGPU_BACKEND`).
    pub fn from_env() -> Result<Accel, AccelError> {
        Self::start(AccelOptions::from_env()?)
    }

    /// Starts `accel_workers` workers (at least one) for the runtime behind `handle`; worker
    /// `i < accel_workers` joins the ring mesh as external node `io_workers + i`.
    pub fn start_on(handle: &Handle, opts: AccelOptions) -> Result<Accel, AccelError> {
        let n = handle.config().accel_workers.max(1);
        Self::start_n(opts, n, Some(handle.clone()))
    }

    fn start_n(opts: AccelOptions, n: usize, handle: Option<Handle>) -> Result<Accel, AccelError> {
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let shared = Arc::new(Shared {
                q: Mutex::new(Queue {
                    heap: BinaryHeap::new(),
                    seq: 0,
                    stopping: false,
                }),
                cv: Condvar::new(),
                signal: AtomicBool::new(false),
                max_binding: AtomicU64::new(CPU_MAX_BUFFER),
                on_gpu: AtomicBool::new(false),
                degraded: AtomicBool::new(false),
                inline_tasks: AtomicU64::new(0),
            });
            let (tx, rx) = mpsc::channel();
            let sh = shared.clone();
            let o = opts.clone();
            let attach = handle.as_ref().and_then(|h| {
                let c = h.config();
                (i < c.accel_workers).then(|| (h.clone(), c.io_workers + i))
            });
            let thread = std::thread::Builder::new()
                .name(format!("percore-accel-{i}"))
                .spawn(move || worker_main(i, o, sh, tx, attach))
                .map_err(|e| AccelError::Start(e.to_string()))?;
            let (selection, adapter) = rx
                .recv()
                .map_err(|_| AccelError::Start("worker thread exited during start".into()))?;
            workers.push(WorkerHandle {
                shared,
                thread: Some(thread),
                selection,
                adapter,
            });
        }
        let metrics = handle.as_ref().map(|h| {
            let shared: Vec<std::sync::Weak<Shared>> =
                workers.iter().map(|w| Arc::downgrade(&w.shared)).collect();
            let c: crate::runtime::user_metrics::Collector = Arc::new(move |out| {
                let live: Vec<(usize, Arc<Shared>)> = shared
                    .iter()
                    .enumerate()
                    .filter_map(|(i, w)| Some((i, w.upgrade()?)))
                    .collect();
                type Get = fn(&Shared) -> f64;
                let series: [(&str, &str, &str, Get); 4] = [
                    (
                        "percore_accel_queue_depth",
                        "gauge",
                        "Tasks waiting in the accelerator worker's queue.",
                        |s| s.queue_len() as f64,
                    ),
                    (
                        "percore_accel_on_gpu",
                        "gauge",
                        "1 while the accelerator worker runs on a GPU.",
                        |s| s.on_gpu.load(Ordering::Relaxed) as u8 as f64,
                    ),
                    (
                        "percore_accel_degraded",
                        "gauge",
                        "1 when a GPU was asked for and none is usable (CPU fallback).",
                        |s| s.degraded.load(Ordering::Relaxed) as u8 as f64,
                    ),
                    (
                        "percore_accel_inline_tasks_total",
                        "counter",
                        "Tiny CPU tasks run inline on the submitting thread.",
                        |s| s.inline_tasks.load(Ordering::Relaxed) as f64,
                    ),
                ];
                for (name, kind, help, get) in series {
                    out.family(name, kind, help);
                    for (i, s) in &live {
                        out.sample(name, &[("worker", &i.to_string())], get(s));
                    }
                }
            });
            h.metrics_registry().add_collector(&c);
            c
        });
        Ok(Accel {
            workers,
            inline_cpu_flops: opts.inline_cpu_flops,
            cpu_threads: opts.cpu_threads,
            next: AtomicUsize::new(0),
            handle,
            _metrics: metrics,
        })
    }

    fn pick(&self) -> &WorkerHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        &self.workers[i]
    }

    /// The adapter worker 0 opened (`None`: CPU backend).
    pub fn adapter(&self) -> Option<AdapterInfo> {
        self.workers.first().and_then(|w| w.adapter.clone())
    }

    /// What worker 0's selection decided, and why.
    pub fn selection(&self) -> Option<&Selection> {
        self.workers.first().map(|w| &w.selection)
    }

    /// True while worker 0 runs tasks on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.workers
            .first()
            .is_some_and(|w| w.shared.on_gpu.load(Ordering::Acquire))
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    fn submit_with(&self, task: ComputeTask, cb: Option<Callback<Output>>) -> Ticket<Output> {
        let w = self.pick();
        let limit = w.shared.max_binding.load(Ordering::Acquire);
        let slot = Slot::new(cb);
        if let Err(e) = task.validate(limit) {
            slot.complete(Err(e));
            return Ticket::new(slot);
        }
        // Tiny work for the CPU backend runs right here: handing it to the worker thread and
        // back costs more than the kernel (BENCHMARKS.md, accelerator section).
        let on_cpu = task.place == Place::Cpu || !w.shared.on_gpu.load(Ordering::Acquire);
        if slot.has_no_callback()
            && on_cpu
            && task.kernel.flops(&task.shapes()) < self.inline_cpu_flops
        {
            let ran = if task.place != Place::Cpu && w.shared.degraded.load(Ordering::Acquire) {
                Ran::CpuFallback
            } else {
                Ran::Cpu
            };
            w.shared.inline_tasks.fetch_add(1, Ordering::Relaxed);
            slot.complete(cpu::run(&task, self.cpu_threads).map(|tensors| Output { tensors, ran }));
            return Ticket::new(slot);
        }
        let prio = task.priority;
        // A refused push drops the completer, which reports `Stopped`.
        w.shared
            .push(prio, Work::Task(task, Completer::new(slot.clone())));
        Ticket::new(slot)
    }

    /// Queues `task` and delivers the result to `addr` as the message `make(result)`, sent from
    /// the worker thread (over the mesh when this set was started with [`Accel::start_on`]).
    /// When the mailbox is full the message is handed to the actor's worker, which waits for
    /// room; when the actor has stopped it is dropped.
    pub fn submit_to<A: Actor>(
        &self,
        task: ComputeTask,
        addr: Addr<A>,
        make: impl FnOnce(Result<Output, AccelError>) -> A::Msg + Send + 'static,
    ) {
        let handle = self.handle.clone();
        let cb = Box::new(move |r| {
            let msg = make(r);
            match addr.try_tell(msg) {
                Ok(()) | Err(TrySendError::Stopped(_)) => {}
                Err(TrySendError::Full(msg)) => {
                    let a2 = addr.clone();
                    let spawned = handle.as_ref().is_some_and(|h| {
                        // Detached: dropping a JoinHandle would cancel the task.
                        h.spawn_on(addr.worker(), move || async move {
                            let _ = a2.tell(msg).await;
                        })
                        .map(|j| j.detach())
                        .is_ok()
                    });
                    if !spawned {
                        tracing::warn!(
                            "accelerator result dropped: mailbox full and no runtime handle"
                        );
                    }
                }
            }
        });
        // The result goes to the actor; the ticket itself is not needed.
        drop(self.submit_with(task, Some(cb)));
    }

    /// Runs `pipeline` on `inputs` as one job on one worker.
    pub fn run_pipeline(&self, pipeline: Pipeline, inputs: Vec<Tensor>) -> Ticket<PipelineOutput> {
        if pipeline.stages.is_empty() {
            return Ticket::ready(Err(AccelError::Pipeline("no stages".into())));
        }
        let slot = Slot::new(None);
        // A refused push drops the completer, which reports `Stopped`.
        self.pick().shared.push(
            Priority::Normal,
            Work::Pipeline(pipeline, inputs, Completer::new(slot.clone())),
        );
        Ticket::new(slot)
    }

    fn control<R: Send + 'static>(
        &self,
        w: &WorkerHandle,
        f: impl FnOnce(&mut WorkerState) -> R + Send + 'static,
    ) -> Result<R, AccelError> {
        let (tx, rx) = mpsc::channel();
        let ok = w.shared.push(
            Priority::High,
            Work::Control(Box::new(move |st| {
                let _ = tx.send(f(st));
            })),
        );
        if !ok {
            return Err(AccelError::Stopped);
        }
        rx.recv().map_err(|_| AccelError::Stopped)
    }

    /// Measures (again) the crossover of every worker's device and stores it for the device.
    /// Blocks; returns worker 0's. A CPU-only worker returns [`Crossover::cpu_only`].
    pub fn calibrate(&self) -> Result<Crossover, AccelError> {
        let mut first = None;
        for w in &self.workers {
            let c = self.control(w, |st| st.calibrate())?;
            first.get_or_insert(c);
        }
        first.ok_or(AccelError::Stopped)
    }

    /// Every worker's counters. Blocks until each worker has answered (queued behind the job it
    /// is running), so call it from a thread that may block, not from host-stage code.
    pub fn stats(&self) -> Vec<AccelWorkerStats> {
        self.workers
            .iter()
            .filter_map(|w| self.control(w, |st| st.snapshot()).ok())
            .collect()
    }

    /// Destroys every worker's GPU device as a driver reset would lose it; later tasks take the
    /// CPU fallback path. Returns how many devices were destroyed. A test hook: only with the
    /// `testing` feature.
    #[cfg(any(test, feature = "testing"))]
    pub fn destroy_devices(&self) -> usize {
        self.workers
            .iter()
            .filter_map(|w| self.control(w, |st| st.destroy_device()).ok())
            .filter(|d| *d)
            .count()
    }

    /// Makes each worker's next `n` GPU batches fail as out-of-memory, as a full device would:
    /// they rerun on the CPU backend (one warning per worker) while the device stays in use for
    /// later work. For testing fallback paths where device memory cannot be exhausted on
    /// purpose. Returns how many workers have a device. A test hook: only with the `testing`
    /// feature.
    #[cfg(any(test, feature = "testing"))]
    pub fn fail_next_batches_as_oom(&self, n: u32) -> usize {
        self.workers
            .iter()
            .filter_map(|w| self.control(w, move |st| st.inject_oom(n)).ok())
            .filter(|d| *d)
            .count()
    }

    /// Stops the workers after the queued work has run and joins them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for w in &self.workers {
            w.shared.lock().stopping = true;
            w.shared.cv.notify_all();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                // Dropped on a worker's own thread (its last `Arc` released inside a host stage
                // or callback): that worker exits by itself once its loop sees `stopping`.
                if t.thread().id() != std::thread::current().id() {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for Accel {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Accelerator for Accel {
    fn submit(&self, task: ComputeTask) -> Ticket<Output> {
        self.submit_with(task, None)
    }
}

impl Accel {
    /// Queues `task`; await the ticket (or poll / wait on it). Same as
    /// [`Accelerator::submit`], without importing the trait.
    pub fn submit(&self, task: ComputeTask) -> Ticket<Output> {
        self.submit_with(task, None)
    }
}

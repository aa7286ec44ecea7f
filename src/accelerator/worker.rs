//! Accelerator workers and the front actors use: [`Accel`] starts one dedicated thread per
//! accelerator worker; each owns one device and queue (`gpu::GpuDevice`) or
//! the CPU backend, a priority work queue, and the device's crossover. Small tasks that are
//! queued together go to the GPU in one submission. Device loss, out of device memory or no
//! adapter reroute work to the CPU backend with one warning per worker and cause. Results come
//! back through [`Ticket`]s (await them on an actor, the worker wakes the task) or as actor
//! messages ([`Accel::submit_to`]): when started on a runtime the worker thread joins the ring
//! mesh as an external node (`Handle::attach_external(io_workers + i)`), so such messages travel
//! over its SPSC rings. Owns worker threads and queues; uses only the runtime's public API and
//! must not touch transport, storage or ml.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cpu::{self, CPU_MAX_BUFFER};
use super::device::AdapterInfo;
use super::device::GpuStats;
use super::error::AccelError;
#[cfg(feature = "gpu")]
use super::gpu::{DeviceFailure, GpuDevice};
use super::pipeline::{Crossover, Pipeline, Place, Ran, Stage, stored_crossover};
use super::policy::{AccelOptions, Selection};
use super::task::{ComputeTask, Kernel, Priority, Shape, Tensor};
use super::ticket::{Callback, Completer, Slot, Ticket};
use crate::runtime::{Actor, Addr, Handle, TrySendError};

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

type Control = Box<dyn FnOnce(&mut WorkerState) + Send>;

enum Work {
    Task(ComputeTask, Completer<Output>),
    Pipeline(Pipeline, Vec<Tensor>, Completer<PipelineOutput>),
    Control(Control),
}

struct Job {
    prio: Priority,
    seq: u64,
    work: Work,
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

struct Queue {
    heap: BinaryHeap<Job>,
    seq: u64,
    stopping: bool,
}

struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
    /// Set (under the queue lock) when work or a mesh closure arrives; the worker spins on it
    /// before sleeping.
    signal: AtomicBool,
    /// Largest storage binding of the device (validation before dispatch).
    max_binding: AtomicU64,
    on_gpu: AtomicBool,
    /// A GPU was asked for and none is usable: CPU work reports `Ran::CpuFallback`.
    degraded: AtomicBool,
    inline_tasks: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Critical sections only push/pop the heap; a poisoned lock holds a consistent heap.
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, prio: Priority, work: Work) -> bool {
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

/// The state a worker thread owns.
pub(crate) struct WorkerState {
    // `index` and `warned` serve the GPU paths (logs, one warning per cause).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    index: usize,
    opts: AccelOptions,
    #[cfg(feature = "gpu")]
    gpu: Option<GpuDevice>,
    device_key: Option<String>,
    crossover: Option<Crossover>,
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    warned: Vec<&'static str>,
    stats: AccelWorkerStats,
    shared: Arc<Shared>,
    selection: Selection,
}

struct WorkerHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    selection: Selection,
    adapter: Option<AdapterInfo>,
}

/// A set of accelerator workers. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Accel {
    workers: Vec<WorkerHandle>,
    inline_cpu_flops: f64,
    cpu_threads: usize,
    next: AtomicUsize,
    handle: Option<Handle>,
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
const SPIN: Duration = Duration::from_micros(50);

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
        Ok(Accel {
            workers,
            inline_cpu_flops: opts.inline_cpu_flops,
            cpu_threads: opts.cpu_threads,
            next: AtomicUsize::new(0),
            handle,
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
    /// CPU fallback path. Returns how many devices were destroyed.
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
    /// purpose. Returns how many workers have a device.
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

fn worker_main(
    index: usize,
    opts: AccelOptions,
    shared: Arc<Shared>,
    ready: mpsc::Sender<(Selection, Option<AdapterInfo>)>,
    attach: Option<(Handle, usize)>,
) {
    let mut node = match &attach {
        Some((h, ext)) => match h.attach_external(*ext) {
            Ok(n) => {
                let sh = shared.clone();
                n.set_wake(Arc::new(move || {
                    let _q = sh.lock();
                    sh.signal.store(true, Ordering::Release);
                    sh.cv.notify_one();
                }));
                Some(n)
            }
            Err(e) => {
                tracing::warn!(worker = index, error = %e, "accelerator worker could not join the mesh; results are delivered through wakers only");
                None
            }
        },
        None => None,
    };
    let mut st = WorkerState::open(index, opts, shared.clone());
    let _ = ready.send((st.selection.clone(), st.adapter_info()));
    loop {
        if let Some(n) = node.as_mut() {
            n.run_pending(256);
        }
        let batch = match next_batch(&shared, &st, node.as_ref().map(|n| n as &dyn Pending)) {
            Some(b) => b,
            None => break,
        };
        if !batch.is_empty() {
            // A panic (in host-stage code, say) must not take the worker down: the batch's
            // completers report `Stopped` as they unwind, and the loop goes on.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.run(batch)));
            if run.is_err() {
                tracing::error!(
                    worker = index,
                    "accelerator job panicked; its tickets report Stopped"
                );
            }
        }
        if let Some(n) = node.as_ref() {
            n.flush();
        }
    }
    // Stopping: fail whatever is still queued, so no ticket waits forever.
    let rest: Vec<Job> = shared.lock().heap.drain().collect();
    for j in rest {
        match j.work {
            Work::Task(_, s) => s.complete(Err(AccelError::Stopped)),
            Work::Pipeline(_, _, s) => s.complete(Err(AccelError::Stopped)),
            Work::Control(_) => {}
        }
    }
    if let Some(n) = node.as_ref() {
        n.flush();
    }
}

trait Pending {
    fn pending(&self) -> bool;
}
impl Pending for crate::runtime::ExternalNode {
    fn pending(&self) -> bool {
        self.has_pending()
    }
}

/// Waits for work (spinning briefly first) and pops the next job, plus further small tasks to
/// share its submission. `None`: stopping and empty. An empty vector: mesh closures to run.
fn next_batch(shared: &Shared, st: &WorkerState, node: Option<&dyn Pending>) -> Option<Vec<Job>> {
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

impl WorkerState {
    fn open(index: usize, opts: AccelOptions, shared: Arc<Shared>) -> WorkerState {
        #[cfg(feature = "gpu")]
        let (sel, gpu) = GpuDevice::open(&opts);
        #[cfg(not(feature = "gpu"))]
        let sel = {
            let mut s = super::policy::choose(opts.backend, &[]);
            if opts.backend == super::policy::AccelBackend::Gpu {
                s.reason =
                    "policy gpu: no wgpu adapter (built without the `gpu` feature); tasks run on the CPU backend"
                        .into();
            }
            s
        };
        #[cfg(feature = "gpu")]
        let device_key = gpu.as_ref().map(|g| {
            format!(
                "{} | {} | {}",
                g.info().name,
                g.info().backend,
                g.info().driver
            )
        });
        #[cfg(not(feature = "gpu"))]
        let device_key: Option<String> = None;
        let on_gpu = device_key.is_some();
        if sel.degraded {
            tracing::warn!(worker = index, backend = "cpu", reason = %sel.reason, "accelerator backend chosen");
        } else {
            tracing::info!(worker = index, backend = if on_gpu { "gpu" } else { "cpu" }, reason = %sel.reason, "accelerator backend chosen");
        }
        #[cfg(feature = "gpu")]
        if let Some(g) = &gpu {
            shared.max_binding.store(g.max_binding(), Ordering::Release);
        }
        shared.on_gpu.store(on_gpu, Ordering::Release);
        shared.degraded.store(sel.degraded, Ordering::Release);
        if let Some(path) = opts.crossover_file.as_deref().filter(|p| p.exists()) {
            if let Err(e) = super::pipeline::load_crossovers(path) {
                tracing::warn!(worker = index, error = %e, "crossover file ignored");
            }
        }
        let crossover = device_key.as_deref().and_then(stored_crossover);
        let mut warned = Vec::new();
        if sel.degraded {
            warned.push("no-adapter");
        }
        let mut st = WorkerState {
            index,
            opts,
            #[cfg(feature = "gpu")]
            gpu,
            device_key,
            crossover,
            warned,
            stats: AccelWorkerStats {
                worker: index,
                ..AccelWorkerStats::default()
            },
            shared,
            selection: sel,
        };
        st.stats.backend = if on_gpu { "gpu" } else { "cpu" }.into();
        st.stats.adapter = st.adapter_info().map(|a| a.name);
        st
    }

    fn has_gpu(&self) -> bool {
        #[cfg(feature = "gpu")]
        {
            self.gpu.is_some()
        }
        #[cfg(not(feature = "gpu"))]
        {
            false
        }
    }

    fn adapter_info(&self) -> Option<AdapterInfo> {
        #[cfg(feature = "gpu")]
        {
            self.gpu.as_ref().map(|g| g.info().clone())
        }
        #[cfg(not(feature = "gpu"))]
        {
            None
        }
    }

    fn batchable(&self, j: &Job) -> bool {
        match &j.work {
            Work::Task(t, _) => {
                self.has_gpu()
                    && t.place == Place::Device
                    && t.bytes() <= self.opts.small_task_bytes
            }
            _ => false,
        }
    }

    fn snapshot(&self) -> AccelWorkerStats {
        let mut s = self.stats.clone();
        s.inline_tasks = self.shared.inline_tasks.load(Ordering::Relaxed);
        s.backend = if self.has_gpu() { "gpu" } else { "cpu" }.into();
        #[cfg(feature = "gpu")]
        {
            s.gpu = self.gpu.as_ref().map(|g| g.stats());
        }
        s
    }

    fn inject_oom(&mut self, n: u32) -> bool {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu.as_mut() {
            g.fail_next_as_oom(n);
            return true;
        }
        let _ = n;
        false
    }

    fn destroy_device(&mut self) -> bool {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu.as_mut() {
            g.destroy();
            return true;
        }
        false
    }

    /// One warning per worker and cause.
    #[cfg(feature = "gpu")]
    fn warn_once(&mut self, cause: &'static str, detail: &str) {
        if !self.warned.contains(&cause) {
            self.warned.push(cause);
            tracing::warn!(worker = self.index, cause, %detail, "accelerator: work rerouted to the CPU backend");
        }
    }

    fn run(&mut self, batch: Vec<Job>) {
        let mut tasks = Vec::new();
        for j in batch {
            match j.work {
                Work::Control(f) => f(self),
                Work::Pipeline(p, inputs, slot) => {
                    self.stats.pipelines += 1;
                    let r = self.run_pipeline(&p, inputs);
                    slot.complete(r);
                }
                Work::Task(t, slot) => tasks.push((t, slot)),
            }
        }
        if tasks.is_empty() {
            return;
        }
        let threads = self.opts.cpu_threads;
        // Placement per task.
        let mut gpu_tasks = Vec::new();
        for (t, slot) in tasks {
            let to_gpu = self.has_gpu()
                && match t.place {
                    Place::Device => true,
                    Place::Cpu => false,
                    Place::Auto => {
                        let flops = t.kernel.flops(&t.shapes());
                        self.crossover().offload(flops)
                    }
                };
            if to_gpu {
                gpu_tasks.push((t, slot));
            } else {
                // Asked for a GPU and got none (no adapter, lost device): that is the fallback.
                let ran = if self.selection.degraded && t.place != Place::Cpu {
                    self.stats.fallback_tasks += 1;
                    Ran::CpuFallback
                } else {
                    self.stats.cpu_tasks += 1;
                    Ran::Cpu
                };
                let r = cpu::run(&t, threads).map(|tensors| Output { tensors, ran });
                slot.complete(r);
            }
        }
        if gpu_tasks.is_empty() {
            return;
        }
        #[cfg(feature = "gpu")]
        {
            let result = {
                let Some(g) = self.gpu.as_mut() else {
                    unreachable_cpu(gpu_tasks, threads);
                    return;
                };
                let outs: Result<Vec<Vec<Shape>>, AccelError> = gpu_tasks
                    .iter()
                    .map(|(t, _)| t.validate(g.max_binding()))
                    .collect();
                match outs {
                    Ok(outs) => {
                        let refs: Vec<(&Kernel, &[Tensor], &[Shape])> = gpu_tasks
                            .iter()
                            .zip(&outs)
                            .map(|((t, _), o)| (&t.kernel, &t.inputs[..], &o[..]))
                            .collect();
                        g.run_batch(&refs).map_err(Some)
                    }
                    Err(_) => Err(None),
                }
            };
            let n = gpu_tasks.len() as u64;
            match result {
                Ok(results) => {
                    self.stats.gpu_tasks += n;
                    if n > 1 {
                        self.stats.batched_submissions += 1;
                    }
                    self.stats.largest_batch = self.stats.largest_batch.max(n);
                    for ((_, slot), tensors) in gpu_tasks.into_iter().zip(results) {
                        slot.complete(Ok(Output {
                            tensors,
                            ran: Ran::Gpu,
                        }));
                    }
                }
                Err(failure) => {
                    // A device failure reroutes the batch to the CPU; a task that no longer
                    // validates (the device changed under it) gets its typed error from there.
                    let ran = if failure.is_some() {
                        Ran::CpuFallback
                    } else {
                        Ran::Cpu
                    };
                    if let Some(f) = failure {
                        self.on_failure(&f);
                    }
                    for (t, slot) in gpu_tasks {
                        if ran == Ran::CpuFallback {
                            self.stats.fallback_tasks += 1;
                        } else {
                            self.stats.cpu_tasks += 1;
                        }
                        slot.complete(cpu::run(&t, threads).map(|tensors| Output { tensors, ran }));
                    }
                }
            }
        }
        #[cfg(not(feature = "gpu"))]
        unreachable_cpu(gpu_tasks, threads);
    }

    #[cfg(feature = "gpu")]
    fn on_failure(&mut self, f: &DeviceFailure) {
        match f {
            DeviceFailure::Lost(_) => {
                self.warn_once("device-lost", &f.to_string());
                // The device is gone for good: this worker continues on the CPU backend.
                self.gpu = None;
                self.selection.degraded = true;
                self.shared.degraded.store(true, Ordering::Release);
                self.selection.adapter = None;
                self.selection.reason = format!("{}; then {f}", self.selection.reason);
                self.shared
                    .max_binding
                    .store(CPU_MAX_BUFFER, Ordering::Release);
                self.shared.on_gpu.store(false, Ordering::Release);
                self.crossover = Some(Crossover::cpu_only());
            }
            DeviceFailure::OutOfMemory(_) => self.warn_once("out-of-memory", &f.to_string()),
            DeviceFailure::Other(_) => self.warn_once("device-error", &f.to_string()),
        }
    }

    fn crossover(&mut self) -> Crossover {
        if let Some(c) = &self.crossover {
            return c.clone();
        }
        let c = self
            .device_key
            .as_deref()
            .and_then(stored_crossover)
            .unwrap_or_else(|| self.calibrate());
        self.crossover = Some(c.clone());
        c
    }

    /// Times `n x n x n` matmuls on both backends (best of 3, upload and readback included on
    /// the GPU) for growing `n` and stores the crossover for this device.
    fn calibrate(&mut self) -> Crossover {
        #[cfg(feature = "gpu")]
        {
            let threads = self.opts.cpu_threads;
            let Some(g) = self.gpu.as_mut() else {
                return Crossover::cpu_only();
            };
            let key = self.device_key.clone().unwrap_or_default();
            let software = g.info().kind == super::device::DeviceKind::Software;
            let sizes: &[usize] = if software {
                &[16, 32, 64, 128]
            } else {
                &[16, 32, 64, 128, 256, 512, 1024]
            };
            g.warm_up();
            let mut samples = Vec::new();
            for &n in sizes {
                let a = Tensor::f32(n, n, vec![0.5; n * n]).expect("n*n elements");
                let t = ComputeTask::new(
                    Kernel::MatMul {
                        trans_a: false,
                        trans_b: false,
                        bias: false,
                        act: super::task::Activation::None,
                    },
                    vec![a.clone(), a],
                );
                let outs = [Shape::f32(n, n)];
                let mut best_cpu = f64::MAX;
                let mut best_gpu = f64::MAX;
                for _ in 0..3 {
                    let t0 = Instant::now();
                    let _ = cpu::run(&t, threads);
                    best_cpu = best_cpu.min(t0.elapsed().as_secs_f64() * 1e6);
                    let t0 = Instant::now();
                    if g.run_batch(&[(&t.kernel, &t.inputs, &outs)]).is_err() {
                        // A failing device never wins (f64::MAX keeps the sample JSON-safe).
                        best_gpu = f64::MAX;
                        break;
                    }
                    best_gpu = best_gpu.min(t0.elapsed().as_secs_f64() * 1e6);
                }
                samples.push((n, best_cpu, best_gpu));
            }
            let c = Crossover::from_samples(key, samples);
            tracing::info!(worker = self.index, device = %c.device, min_gpu_flops = ?c.min_gpu_flops, "accelerator crossover measured");
            super::pipeline::store_crossover(c.clone());
            if let Some(path) = self.opts.crossover_file.as_deref() {
                if let Err(e) = super::pipeline::save_crossovers(path) {
                    tracing::warn!(worker = self.index, error = %e, "crossover file not written");
                }
            }
            self.crossover = Some(c.clone());
            c
        }
        #[cfg(not(feature = "gpu"))]
        {
            Crossover::cpu_only()
        }
    }

    fn run_pipeline(
        &mut self,
        p: &Pipeline,
        inputs: Vec<Tensor>,
    ) -> Result<PipelineOutput, AccelError> {
        let threads = self.opts.cpu_threads;
        let mut cur = inputs;
        let mut ran = Vec::with_capacity(p.stages.len());
        let mut i = 0;
        let mut prev_gpu = false;
        while i < p.stages.len() {
            match &p.stages[i] {
                Stage::Host { name, f } => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(cur)))
                        .map_err(|_| {
                            AccelError::Pipeline(format!("stage {i} ({name}) panicked"))
                        })?;
                    cur =
                        r.map_err(|e| AccelError::Pipeline(format!("stage {i} ({name}): {e}")))?;
                    ran.push(Ran::Cpu);
                    prev_gpu = false;
                    i += 1;
                }
                Stage::Kernel { .. } => {
                    // The run of consecutive kernel stages placed on the GPU, starting at i.
                    let mut shapes: Vec<Shape> = cur.iter().map(Tensor::shape).collect();
                    let mut chain: Vec<(usize, Vec<Shape>)> = Vec::new();
                    let mut j = i;
                    let limit = self.shared.max_binding.load(Ordering::Acquire);
                    while let Some(Stage::Kernel {
                        kernel,
                        extra,
                        place,
                    }) = p.stages.get(j)
                    {
                        let mut all = shapes.clone();
                        all.extend(extra.iter().map(Tensor::shape));
                        let outs = kernel
                            .output_shapes(&all)
                            .map_err(|e| AccelError::Pipeline(format!("stage {j}: {e}")))?;
                        let to_gpu = self.has_gpu()
                            && match place {
                                Place::Device => true,
                                Place::Cpu => false,
                                Place::Auto => {
                                    (prev_gpu || !chain.is_empty())
                                        || self.crossover().offload(kernel.flops(&all))
                                }
                            };
                        if !to_gpu {
                            break;
                        }
                        for s in all.iter().chain(&outs) {
                            if s.bytes() > limit {
                                return Err(AccelError::BufferTooLarge {
                                    kernel: kernel.name(),
                                    bytes: s.bytes(),
                                    limit,
                                });
                            }
                        }
                        chain.push((j, outs.clone()));
                        shapes = outs;
                        j += 1;
                    }
                    if chain.is_empty() {
                        // This stage runs on the CPU.
                        let Some(Stage::Kernel { kernel, extra, .. }) = p.stages.get(i) else {
                            return Err(AccelError::Pipeline(format!("stage {i} is not a kernel")));
                        };
                        let mut ins = std::mem::take(&mut cur);
                        ins.extend(extra.iter().cloned());
                        let t = ComputeTask::new(*kernel, ins);
                        cur = cpu::run(&t, threads)
                            .map_err(|e| AccelError::Pipeline(format!("stage {i}: {e}")))?;
                        ran.push(Ran::Cpu);
                        prev_gpu = false;
                        i += 1;
                        continue;
                    }
                    cur = self.run_chain(p, cur, &chain, &mut ran)?;
                    prev_gpu = ran.last() == Some(&Ran::Gpu);
                    i += chain.len();
                }
            }
        }
        Ok(PipelineOutput {
            tensors: cur,
            stages: ran,
        })
    }

    /// Runs the stages of `chain` on the GPU in one submission, or on the CPU after a device
    /// failure.
    fn run_chain(
        &mut self,
        p: &Pipeline,
        cur: Vec<Tensor>,
        chain: &[(usize, Vec<Shape>)],
        ran: &mut Vec<Ran>,
    ) -> Result<Vec<Tensor>, AccelError> {
        let stages: Vec<(&Kernel, &[Tensor], &[Shape])> = chain
            .iter()
            .filter_map(|(j, outs)| match &p.stages[*j] {
                Stage::Kernel { kernel, extra, .. } => Some((kernel, &extra[..], &outs[..])),
                Stage::Host { .. } => None,
            })
            .collect();
        #[cfg(feature = "gpu")]
        {
            // Labels given on the host are checked before dispatch.
            let mut first_inputs: Vec<&Tensor> = cur.iter().collect();
            if let Some((k, extra, _)) = stages.first() {
                first_inputs.extend(extra.iter());
                if matches!(k, Kernel::CrossEntropy | Kernel::CrossEntropyGrad) {
                    super::task::check_labels(first_inputs[1], first_inputs[0].cols())?;
                }
            }
            for (idx, (k, extra, _)) in stages.iter().enumerate().skip(1) {
                // Later stages get labels as their one extra input (the previous stage yields
                // the logits); check them against the logits' columns from the shape walk.
                if matches!(k, Kernel::CrossEntropy | Kernel::CrossEntropyGrad) {
                    if let (Some(l), Some(prev)) = (extra.first(), chain[idx - 1].1.first()) {
                        super::task::check_labels(l, prev.cols)?;
                    }
                }
            }
            if let Some(g) = self.gpu.as_mut() {
                match g.run_chain(&cur, &stages) {
                    Ok(out) => {
                        self.stats.gpu_tasks += stages.len() as u64;
                        ran.extend(std::iter::repeat_n(Ran::Gpu, stages.len()));
                        return Ok(out);
                    }
                    Err(f) => self.on_failure(&f),
                }
                let threads = self.opts.cpu_threads;
                let mut c = cur;
                for (k, extra, _) in &stages {
                    c.extend(extra.iter().cloned());
                    c = cpu::run(&ComputeTask::new(**k, c), threads)?;
                    self.stats.fallback_tasks += 1;
                    ran.push(Ran::CpuFallback);
                }
                return Ok(c);
            }
        }
        let threads = self.opts.cpu_threads;
        let mut c = cur;
        for (k, extra, _) in &stages {
            c.extend(extra.iter().cloned());
            c = cpu::run(&ComputeTask::new(**k, c), threads)?;
            ran.push(Ran::Cpu);
        }
        Ok(c)
    }
}

/// Runs tasks on the CPU (a worker without a GPU never routes here; kept total for safety).
fn unreachable_cpu(tasks: Vec<(ComputeTask, Completer<Output>)>, threads: usize) {
    for (t, slot) in tasks {
        slot.complete(cpu::run(&t, threads).map(|tensors| Output {
            tensors,
            ran: Ran::Cpu,
        }));
    }
}

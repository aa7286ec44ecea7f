//! One accelerator worker thread: joins the mesh as an external node (when started on a
//! runtime), opens its device by policy (or the CPU backend), and runs batches from its queue;
//! device loss, out of memory and wgpu errors reroute work to the CPU with one warning per
//! cause. Owns the thread's state (device, crossover, stats); calibration is `calibrate.rs`',
//! pipeline execution `pipeline_run.rs`'.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use super::cpu;
#[cfg(feature = "gpu")]
use super::cpu::CPU_MAX_BUFFER;
use super::device::AdapterInfo;
use super::error::AccelError;
#[cfg(feature = "gpu")]
use super::gpu::{DeviceFailure, GpuDevice};
use super::pipeline::{Crossover, Place, Ran, stored_crossover};
use super::policy::{AccelOptions, Selection};
use super::task::ComputeTask;
#[cfg(feature = "gpu")]
use super::task::{Kernel, Shape, Tensor};
use super::ticket::Completer;
use crate::runtime::Handle;

use super::accel::{AccelWorkerStats, Output};
use super::queue::{Job, Pending, Shared, Work, next_batch};

/// The state a worker thread owns.
pub(crate) struct WorkerState {
    // `index` and `warned` serve the GPU paths (logs, one warning per cause).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) index: usize,
    pub(crate) opts: AccelOptions,
    #[cfg(feature = "gpu")]
    pub(crate) gpu: Option<GpuDevice>,
    pub(crate) device_key: Option<String>,
    pub(crate) crossover: Option<Crossover>,
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) warned: Vec<&'static str>,
    pub(crate) stats: AccelWorkerStats,
    pub(crate) shared: Arc<Shared>,
    pub(crate) selection: Selection,
}

pub(crate) fn worker_main(
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

impl WorkerState {
    pub(crate) fn open(index: usize, opts: AccelOptions, shared: Arc<Shared>) -> WorkerState {
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

    pub(crate) fn has_gpu(&self) -> bool {
        #[cfg(feature = "gpu")]
        {
            self.gpu.is_some()
        }
        #[cfg(not(feature = "gpu"))]
        {
            false
        }
    }

    pub(crate) fn adapter_info(&self) -> Option<AdapterInfo> {
        #[cfg(feature = "gpu")]
        {
            self.gpu.as_ref().map(|g| g.info().clone())
        }
        #[cfg(not(feature = "gpu"))]
        {
            None
        }
    }

    pub(crate) fn batchable(&self, j: &Job) -> bool {
        match &j.work {
            Work::Task(t, _) => {
                self.has_gpu()
                    && t.place == Place::Device
                    && t.bytes() <= self.opts.small_task_bytes
            }
            _ => false,
        }
    }

    pub(crate) fn snapshot(&self) -> AccelWorkerStats {
        let mut s = self.stats.clone();
        s.inline_tasks = self.shared.inline_tasks.load(Ordering::Relaxed);
        s.backend = if self.has_gpu() { "gpu" } else { "cpu" }.into();
        #[cfg(feature = "gpu")]
        {
            s.gpu = self.gpu.as_ref().map(|g| g.stats());
        }
        s
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn inject_oom(&mut self, n: u32) -> bool {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu.as_mut() {
            g.fail_next_as_oom(n);
            return true;
        }
        let _ = n;
        false
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn destroy_device(&mut self) -> bool {
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu.as_mut() {
            g.destroy();
            return true;
        }
        false
    }

    /// One warning per worker and cause.
    #[cfg(feature = "gpu")]
    pub(crate) fn warn_once(&mut self, cause: &'static str, detail: &str) {
        if !self.warned.contains(&cause) {
            self.warned.push(cause);
            tracing::warn!(worker = self.index, cause, %detail, "accelerator: work rerouted to the CPU backend");
        }
    }

    pub(crate) fn run(&mut self, batch: Vec<Job>) {
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
    pub(crate) fn on_failure(&mut self, f: &DeviceFailure) {
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
}

/// Runs tasks on the CPU (a worker without a GPU never routes here; kept total for safety).
pub(crate) fn unreachable_cpu(tasks: Vec<(ComputeTask, Completer<Output>)>, threads: usize) {
    for (t, slot) in tasks {
        slot.complete(cpu::run(&t, threads).map(|tensors| Output {
            tensors,
            ran: Ran::Cpu,
        }));
    }
}

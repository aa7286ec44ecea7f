//! One wgpu device and its queue, driven synchronously by the thread that owns it (an
//! accelerator worker): the pipeline cache (each WGSL module compiled once), the pool of
//! storage, uniform and staging buffers (reused across tasks), batch encoding (many small tasks,
//! one submission) and chains (consecutive GPU stages whose intermediate results never leave the
//! device). Reports device loss and out-of-memory as [`DeviceFailure`] so the caller can rerun
//! on the CPU. Owns wgpu objects only: it must not touch worker queues, the runtime or the CPU
//! backend. Built only with the `gpu` feature.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use super::device::GpuStats;
use super::device::{self, AdapterInfo};
use super::error::AccelError;
use super::policy::{AccelOptions, Selection, choose};
use super::task::{BinaryOp, DType, Kernel, Reduce, Shape, Tensor, UnaryOp};
use super::wgsl::{ELEMENTWISE_WG, Module, PARAM_WORDS, TILE};

/// A failure of the device itself: the task was not (fully) run and may be rerun elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceFailure {
    /// The device was lost (driver reset, destroyed, removed).
    Lost(String),
    /// An allocation failed.
    OutOfMemory(String),
    /// wgpu rejected a command (a bug in this layer; reported, and the task reruns on the CPU).
    Other(String),
}

impl std::fmt::Display for DeviceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceFailure::Lost(s) => write!(f, "device lost: {s}"),
            DeviceFailure::OutOfMemory(s) => write!(f, "out of device memory: {s}"),
            DeviceFailure::Other(s) => write!(f, "device error: {s}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Storage,
    Uniform,
    Staging,
}

/// A buffer on loan from the pool.
struct Buf {
    buf: wgpu::Buffer,
    class: u64,
    kind: Kind,
}

/// A tensor living in a device buffer.
struct DevTensor {
    buf: Buf,
    shape: Shape,
}

/// Most bytes the pool keeps idle.
const POOL_MAX_IDLE_BYTES: u64 = 512 << 20;

/// One device and queue with its caches.
pub struct GpuDevice {
    info: AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: HashMap<Module, wgpu::ComputePipeline>,
    pool: HashMap<(Kind, u64), Vec<wgpu::Buffer>>,
    idle_bytes: u64,
    lost: Arc<AtomicBool>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    stats: GpuStats,
    /// Batches still to fail as out-of-memory (`GpuDevice::fail_next_as_oom`, a test hook).
    injected_oom: u32,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("adapter", &self.info.name)
            .field("stats", &self.stats)
            .finish()
    }
}

impl GpuDevice {
    /// Enumerates adapters on `opts.apis`, applies `opts.backend` and opens the chosen adapter.
    /// Returns the selection and the device (`None`: CPU backend). Never panics; a device that
    /// fails to open gives `None` with the reason appended.
    pub fn open(opts: &AccelOptions) -> (Selection, Option<GpuDevice>) {
        let found = device::enumerate(opts.apis, opts.memory_budget_percent);
        let infos: Vec<AdapterInfo> = found.iter().map(|(i, _)| i.clone()).collect();
        let mut sel = choose(opts.backend, &infos);
        let Some(idx) = sel.adapter else {
            return (sel, None);
        };
        let Some((info, adapter)) = found.into_iter().nth(idx) else {
            sel.adapter = None;
            return (sel, None);
        };
        match Self::from_adapter(info, &adapter) {
            Ok(dev) => (sel, Some(dev)),
            Err(e) => {
                sel.adapter = None;
                sel.degraded = true;
                sel.reason = format!("{}; but opening it failed ({e}): CPU backend", sel.reason);
                (sel, None)
            }
        }
    }

    fn from_adapter(info: AdapterInfo, adapter: &wgpu::Adapter) -> Result<GpuDevice, String> {
        let desc = wgpu::DeviceDescriptor {
            label: Some("percore.accelerator"),
            required_features: wgpu::Features::empty(),
            // The adapter's own limits: the largest storage binding it offers becomes ours.
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&desc)).map_err(|e| e.to_string())?;
        let lost = Arc::new(AtomicBool::new(false));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::debug!(?reason, %msg, "wgpu device lost");
            l2.store(true, Ordering::Release);
        });
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let u2 = uncaptured.clone();
        // The default handler panics; record instead (checked after every submission).
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            u2.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        Ok(GpuDevice {
            info,
            device,
            queue,
            pipelines: HashMap::new(),
            pool: HashMap::new(),
            idle_bytes: 0,
            lost,
            uncaptured,
            stats: GpuStats::default(),
            injected_oom: 0,
        })
    }

    /// Makes the next `n` batches fail as out-of-memory, as a full device would (before
    /// anything is uploaded), to exercise the CPU fallback where memory cannot be exhausted on
    /// purpose (software adapters ignore memory budgets).
    #[cfg(any(test, feature = "testing"))]
    pub fn fail_next_as_oom(&mut self, n: u32) {
        self.injected_oom = n;
    }

    /// The adapter this device was opened on.
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// Largest storage binding, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.info.limits.max_storage_buffer_binding_size
    }

    /// Counters.
    pub fn stats(&self) -> GpuStats {
        self.stats
    }

    /// True once the device has been lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Destroys the device, exactly as a driver reset would lose it: every later call fails
    /// with [`DeviceFailure::Lost`]. (Used to test the CPU fallback with a real lost device.)
    pub fn destroy(&mut self) {
        self.pool.clear();
        self.idle_bytes = 0;
        self.device.destroy();
        // The lost callback may run later (on the next poll); the flag is the contract.
        self.lost.store(true, Ordering::Release);
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    fn pipeline(&mut self, m: Module) -> &wgpu::ComputePipeline {
        if !self.pipelines.contains_key(&m) {
            let src = m.source();
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(m.name()),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                });
            let p = self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(m.name()),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
            self.stats.modules_compiled += 1;
            self.pipelines.insert(m, p);
        }
        &self.pipelines[&m]
    }

    /// Compiles every module now (otherwise each is compiled at first use).
    pub fn warm_up(&mut self) {
        for m in Module::ALL {
            self.pipeline(m);
        }
    }

    fn take(&mut self, kind: Kind, bytes: u64) -> Buf {
        let class = bytes.max(16).next_power_of_two();
        if let Some(buf) = self.pool.get_mut(&(kind, class)).and_then(Vec::pop) {
            self.idle_bytes -= class;
            self.stats.buffers_reused += 1;
            return Buf { buf, class, kind };
        }
        let usage = match kind {
            Kind::Storage => {
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC
            }
            Kind::Uniform => wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            Kind::Staging => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        };
        self.stats.buffers_created += 1;
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("percore.pool"),
            size: class,
            usage,
            mapped_at_creation: false,
        });
        Buf { buf, class, kind }
    }

    fn give(&mut self, b: Buf) {
        if self.idle_bytes + b.class > POOL_MAX_IDLE_BYTES || self.is_lost() {
            return;
        }
        self.idle_bytes += b.class;
        self.pool.entry((b.kind, b.class)).or_default().push(b.buf);
    }

    fn upload(&mut self, t: &Tensor) -> DevTensor {
        let bytes = t.bytes();
        let buf = self.take(Kind::Storage, bytes.len() as u64);
        if !bytes.is_empty() {
            self.queue.write_buffer(&buf.buf, 0, bytes);
        }
        DevTensor {
            buf,
            shape: t.shape(),
        }
    }

    fn params(&mut self, words: [u32; PARAM_WORDS]) -> Buf {
        let b = self.take(Kind::Uniform, (PARAM_WORDS * 4) as u64);
        self.queue
            .write_buffer(&b.buf, 0, bytemuck::cast_slice(&words));
        b
    }

    /// Splits `groups` workgroups into an `(x, y)` grid within the per-dimension limit.
    fn grid(&self, groups: usize) -> (u32, u32) {
        let lim = self.info.limits.max_compute_workgroups_per_dimension.max(1) as usize;
        let x = groups.clamp(1, lim);
        let y = groups.div_ceil(x).max(1);
        (x as u32, y.min(u32::MAX as usize) as u32)
    }

    /// Encodes `kernel` on device-resident `inputs` into `enc`; returns the outputs. Buffers
    /// no longer needed go to `retire` (returned to the pool after the submission completes).
    fn encode(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        inputs: Vec<DevTensor>,
        out_shapes: &[Shape],
        retire: &mut Vec<Buf>,
    ) -> Vec<DevTensor> {
        let f = f32::to_bits;
        let mut w = [0u32; PARAM_WORDS];
        let (module, groups): (Module, (u32, u32));
        let mut outs: Vec<DevTensor> = Vec::new();
        // Binding order per module (binding 0 is the parameter block).
        let mut binds: Vec<&wgpu::Buffer> = Vec::new();
        let dummy_needed = matches!(
            kernel,
            Kernel::MatMul { bias: false, .. }
                | Kernel::Reduce(_)
                | Kernel::Softmax
                | Kernel::LogSoftmax
                | Kernel::CrossEntropy
                | Kernel::CrossEntropyGrad
        );
        let dummy_u = if dummy_needed {
            Some(self.take(Kind::Storage, 16))
        } else {
            None
        };
        let dummy_o = if matches!(kernel, Kernel::Reduce(_))
            || matches!(kernel, Kernel::Softmax | Kernel::LogSoftmax)
            || matches!(kernel, Kernel::CrossEntropy | Kernel::CrossEntropyGrad)
        {
            Some(self.take(Kind::Storage, 16))
        } else {
            None
        };
        let new_out = |me: &mut Self, s: Shape| DevTensor {
            buf: me.take(Kind::Storage, s.bytes()),
            shape: s,
        };
        match *kernel {
            Kernel::MatMul {
                trans_a,
                trans_b,
                bias,
                act,
            } => {
                let o = out_shapes[0];
                let k = if trans_a {
                    inputs[0].shape.rows
                } else {
                    inputs[0].shape.cols
                };
                w[..7].copy_from_slice(&[
                    o.rows as u32,
                    o.cols as u32,
                    k as u32,
                    trans_a as u32,
                    trans_b as u32,
                    bias as u32,
                    act as u32,
                ]);
                module = Module::MatMul;
                groups = (o.cols.div_ceil(TILE) as u32, o.rows.div_ceil(TILE) as u32);
                outs.push(new_out(self, o));
            }
            Kernel::Binary(_) | Kernel::Unary(_) => {
                let o = out_shapes[0];
                let g = self.grid(o.len().div_ceil(ELEMENTWISE_WG));
                let (op, scale) = match *kernel {
                    Kernel::Binary(BinaryOp::Add) => (0, 0.0),
                    Kernel::Binary(BinaryOp::Sub) => (1, 0.0),
                    Kernel::Binary(BinaryOp::Mul) => (2, 0.0),
                    Kernel::Unary(UnaryOp::Scale(s)) => (3, s),
                    Kernel::Unary(UnaryOp::Relu) => (4, 0.0),
                    Kernel::Unary(UnaryOp::Gelu) => (5, 0.0),
                    Kernel::Unary(UnaryOp::Tanh) => (6, 0.0),
                    _ => (7, 0.0),
                };
                w[..5].copy_from_slice(&[
                    o.len() as u32,
                    op,
                    g.0 * ELEMENTWISE_WG as u32,
                    0,
                    f(scale),
                ]);
                module = Module::Elementwise;
                groups = g;
                outs.push(new_out(self, o));
            }
            Kernel::Reduce(_)
            | Kernel::Softmax
            | Kernel::LogSoftmax
            | Kernel::CrossEntropy
            | Kernel::CrossEntropyGrad => {
                let s = inputs[0].shape;
                let g = self.grid(s.rows);
                let mode = match *kernel {
                    Kernel::Reduce(Reduce::Sum) => 0,
                    Kernel::Reduce(Reduce::Max) => 1,
                    Kernel::Reduce(Reduce::ArgMax) => 2,
                    Kernel::Softmax => 3,
                    Kernel::LogSoftmax => 4,
                    Kernel::CrossEntropy => 5,
                    _ => 6,
                };
                w[..5].copy_from_slice(&[
                    s.rows as u32,
                    s.cols as u32,
                    mode,
                    g.0,
                    f(1.0 / s.rows as f32),
                ]);
                module = Module::Rows;
                groups = g;
                outs.push(new_out(self, out_shapes[0]));
            }
            Kernel::Adam(p) => {
                let n = inputs[0].shape.len();
                let g = self.grid(n.div_ceil(ELEMENTWISE_WG));
                let (bc1, bc2) = p.bias_corrections();
                w[..11].copy_from_slice(&[
                    n as u32,
                    g.0 * ELEMENTWISE_WG as u32,
                    p.decoupled as u32,
                    0,
                    f(p.lr),
                    f(p.beta1),
                    f(p.beta2),
                    f(p.eps),
                    f(p.weight_decay),
                    f(bc1),
                    f(bc2),
                ]);
                module = Module::Adam;
                groups = g;
            }
        }
        let params = self.params(w);
        match kernel {
            Kernel::MatMul { bias, .. } => {
                binds.push(&inputs[0].buf.buf);
                binds.push(&inputs[1].buf.buf);
                binds.push(if *bias {
                    &inputs[2].buf.buf
                } else {
                    &dummy_u
                        .as_ref()
                        .expect("allocated for a bias-less matmul")
                        .buf
                });
                binds.push(&outs[0].buf.buf);
            }
            Kernel::Binary(_) => {
                binds.extend([&inputs[0].buf.buf, &inputs[1].buf.buf, &outs[0].buf.buf]);
            }
            Kernel::Unary(_) => {
                binds.extend([&inputs[0].buf.buf, &inputs[0].buf.buf, &outs[0].buf.buf]);
            }
            Kernel::Adam(_) => {
                binds.extend(inputs.iter().map(|t| &t.buf.buf));
            }
            _ => {
                let du = &dummy_u.as_ref().expect("allocated for row kernels").buf;
                let d_o = &dummy_o.as_ref().expect("allocated for row kernels").buf;
                binds.push(&inputs[0].buf.buf);
                binds.push(if inputs.len() > 1 {
                    &inputs[1].buf.buf
                } else {
                    du
                });
                if matches!(kernel, Kernel::Reduce(Reduce::ArgMax)) {
                    binds.push(d_o);
                    binds.push(&outs[0].buf.buf);
                } else {
                    binds.push(&outs[0].buf.buf);
                    binds.push(d_o);
                }
            }
        }
        let pipeline = self.pipeline(module).clone();
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: params.buf.as_entire_binding(),
        }];
        for (i, b) in binds.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b,
                    offset: 0,
                    size: NonZeroU64::new(b.size()),
                }),
            });
        }
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(module.name()),
            layout: &layout,
            entries: &entries,
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(module.name()),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        self.stats.dispatches += 1;
        retire.push(params);
        retire.extend(dummy_u);
        retire.extend(dummy_o);
        if let Kernel::Adam(_) = kernel {
            // In place: params, m and v are the outputs; the gradient buffer is retired.
            let mut it = inputs.into_iter();
            let (p, g, m, v) = (it.next(), it.next(), it.next(), it.next());
            if let Some(g) = g {
                retire.push(g.buf);
            }
            return [p, m, v].into_iter().flatten().collect();
        }
        retire.extend(inputs.into_iter().map(|t| t.buf));
        outs
    }

    /// Runs independent tasks (already validated against this device) in one submission.
    /// Returns each task's outputs in order.
    pub(crate) fn run_batch(
        &mut self,
        tasks: &[(&Kernel, &[Tensor], &[Shape])],
    ) -> Result<Vec<Vec<Tensor>>, DeviceFailure> {
        let jobs: Vec<Job<'_>> = tasks
            .iter()
            .map(|(k, inputs, outs)| Job {
                first: inputs,
                stages: vec![(*k, &[][..], *outs)],
            })
            .collect();
        self.run_jobs(jobs)
    }

    /// Runs a chain of kernels in one submission: stage `i + 1`'s inputs are stage `i`'s
    /// outputs followed by its own extra inputs; only the last stage's outputs are read back.
    pub(crate) fn run_chain(
        &mut self,
        first: &[Tensor],
        stages: &[(&Kernel, &[Tensor], &[Shape])],
    ) -> Result<Vec<Tensor>, DeviceFailure> {
        let job = Job {
            first,
            stages: stages.to_vec(),
        };
        let mut v = self.run_jobs(vec![job])?;
        Ok(v.pop().unwrap_or_default())
    }

    fn check_failure(&self) -> Result<(), DeviceFailure> {
        if self.is_lost() {
            return Err(DeviceFailure::Lost("the device was lost".into()));
        }
        let errs = std::mem::take(&mut *self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(e) = errs.into_iter().next() {
            return Err(classify(e));
        }
        Ok(())
    }

    fn run_jobs(&mut self, jobs: Vec<Job<'_>>) -> Result<Vec<Vec<Tensor>>, DeviceFailure> {
        self.check_failure()?;
        if self.injected_oom > 0 {
            self.injected_oom -= 1;
            return Err(DeviceFailure::OutOfMemory(
                "injected by Accel::fail_next_batches_as_oom".into(),
            ));
        }
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("percore.batch"),
            });
        let mut retire = Vec::new();
        let mut reads: Vec<Vec<(Buf, Buf, Shape)>> = Vec::new();
        for job in &jobs {
            let mut cur: Vec<DevTensor> = job.first.iter().map(|t| self.upload(t)).collect();
            for (kernel, extra, outs) in &job.stages {
                cur.extend(extra.iter().map(|t| self.upload(t)));
                cur = self.encode(&mut enc, kernel, cur, outs, &mut retire);
            }
            let mut rb = Vec::new();
            for t in cur {
                let bytes = t.shape.bytes();
                let st = self.take(Kind::Staging, bytes);
                if bytes > 0 {
                    enc.copy_buffer_to_buffer(&t.buf.buf, 0, &st.buf, 0, bytes);
                }
                rb.push((t.buf, st, t.shape));
            }
            reads.push(rb);
        }
        let idx = self.queue.submit([enc.finish()]);
        self.stats.submissions += 1;
        let mapped = Arc::new(Mutex::new(Vec::new()));
        for rb in &reads {
            for (_, st, shape) in rb {
                let bytes = shape.bytes();
                if bytes == 0 {
                    continue;
                }
                let m = mapped.clone();
                st.buf.slice(..bytes).map_async(
                    wgpu::MapMode::Read,
                    move |r: Result<(), wgpu::BufferAsyncError>| {
                        m.lock().unwrap_or_else(|p| p.into_inner()).push(r.is_ok());
                    },
                );
            }
        }
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        });
        let val_err = pollster::block_on(val.pop());
        let oom_err = pollster::block_on(oom.pop());
        let mut failure = None;
        if let Some(e) = oom_err {
            failure = Some(DeviceFailure::OutOfMemory(e.to_string()));
        } else if let Some(e) = val_err {
            failure = Some(classify(e.to_string()));
        } else if let Err(e) = polled {
            failure = Some(DeviceFailure::Lost(e.to_string()));
        } else if mapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|ok| !ok)
        {
            failure = Some(DeviceFailure::Lost("a readback mapping failed".into()));
        }
        if failure.is_none() {
            if let Err(e) = self.check_failure() {
                failure = Some(e);
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        let mut results = Vec::with_capacity(reads.len());
        for rb in reads {
            let mut outs = Vec::with_capacity(rb.len());
            for (buf, st, shape) in rb {
                let bytes = shape.bytes();
                let t = if bytes == 0 {
                    empty(shape)
                } else {
                    let view = st
                        .buf
                        .slice(..bytes)
                        .get_mapped_range()
                        .map_err(|e| DeviceFailure::Lost(e.to_string()))?;
                    let t = match shape.dtype {
                        DType::F32 => Tensor::f32(
                            shape.rows,
                            shape.cols,
                            bytemuck::pod_collect_to_vec(&view[..]),
                        ),
                        DType::U32 => Tensor::u32(
                            shape.rows,
                            shape.cols,
                            bytemuck::pod_collect_to_vec(&view[..]),
                        ),
                    }
                    .map_err(|e| DeviceFailure::Other(e.to_string()))?;
                    drop(view);
                    st.buf.unmap();
                    t
                };
                self.give(buf);
                self.give(st);
                outs.push(t);
            }
            results.push(outs);
        }
        for b in retire {
            self.give(b);
        }
        Ok(results)
    }
}

struct Job<'a> {
    first: &'a [Tensor],
    stages: Vec<(&'a Kernel, &'a [Tensor], &'a [Shape])>,
}

fn empty(shape: Shape) -> Tensor {
    match shape.dtype {
        DType::F32 => Tensor::f32(shape.rows, shape.cols, Vec::new()),
        DType::U32 => Tensor::u32(shape.rows, shape.cols, Vec::new()),
    }
    .unwrap_or_else(|_| Tensor::zeros(0, 0))
}

fn classify(msg: String) -> DeviceFailure {
    let low = msg.to_ascii_lowercase();
    if low.contains("lost") || low.contains("destroyed") {
        DeviceFailure::Lost(msg)
    } else if low.contains("out of memory") || low.contains("outofmemory") {
        DeviceFailure::OutOfMemory(msg)
    } else {
        DeviceFailure::Other(msg)
    }
}

/// Validates `task` against `dev` and runs it synchronously in its own submission (the
/// low-level path for tests and tools; workers batch instead). A device failure is returned as
/// [`AccelError::Device`]: there is no CPU fallback at this level.
pub fn run_once(
    dev: &mut GpuDevice,
    task: &super::task::ComputeTask,
) -> Result<Vec<Tensor>, AccelError> {
    let outs = task.validate(dev.max_binding())?;
    dev.run_batch(&[(&task.kernel, &task.inputs, &outs)])
        .map(|mut v| v.pop().unwrap_or_default())
        .map_err(|e| AccelError::Device(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{DeviceFailure, classify};

    #[test]
    fn wgpu_errors_are_classified_for_the_fallback() {
        assert!(matches!(
            classify("Parent device is lost".into()),
            DeviceFailure::Lost(_)
        ));
        assert!(matches!(
            classify("Buffer with '' label has been destroyed".into()),
            DeviceFailure::Lost(_)
        ));
        assert!(matches!(
            classify("Not enough memory left. Out of Memory".into()),
            DeviceFailure::OutOfMemory(_)
        ));
        assert!(matches!(
            classify("Validation Error: binding size too small".into()),
            DeviceFailure::Other(_)
        ));
    }
}

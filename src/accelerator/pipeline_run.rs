//! Pipeline execution on a worker: consecutive GPU stages encoded into one submission with the
//! intermediates kept in device buffers, host stages and CPU stages in between, placement by
//! the device's crossover. Owns the run of one pipeline job.

use std::sync::atomic::Ordering;

use super::cpu;
use super::error::AccelError;
use super::pipeline::{Pipeline, Place, Ran, Stage};
use super::task::{ComputeTask, Kernel, Shape, Tensor};

use super::accel::PipelineOutput;
use super::worker::WorkerState;

impl WorkerState {
    pub(crate) fn run_pipeline(
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
    pub(crate) fn run_chain(
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

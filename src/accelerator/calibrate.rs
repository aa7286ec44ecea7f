//! Calibration: the crossover of one device, measured at first use (or by
//! `Accel::calibrate`) as best-of-3 `n³` matmuls on both backends, upload and readback
//! included, and kept per device for the process (and in the crossover file across
//! processes). Owns the measurement only.

#[cfg(feature = "gpu")]
use std::time::Instant;

#[cfg(feature = "gpu")]
use super::cpu;
use super::pipeline::{Crossover, stored_crossover};
#[cfg(feature = "gpu")]
use super::task::{ComputeTask, Kernel, Shape, Tensor};

use super::worker::WorkerState;

impl WorkerState {
    pub(crate) fn crossover(&mut self) -> Crossover {
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
    pub(crate) fn calibrate(&mut self) -> Crossover {
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
}

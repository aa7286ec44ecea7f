//! Accelerator benchmarks (both backends in one run):
//! - `matmul/*/{n}`: square f32 matmul, throughput in elements = flops, so criterion's
//!   `Gelem/s` reads as GFLOP/s. `cpu_via_accel` is the CPU backend through an accelerator
//!   worker (submit → ticket → wait, all cores), `cpu1_via_accel` the same on one thread,
//!   `matrixmultiply_direct` one `sgemm` call on the calling thread (the 70% target compares
//!   `cpu1_via_accel` with it), `gpu` the WGSL kernel with upload and readback on the adapter
//!   `PERCORE_ACCEL=gpu` picks (sizes capped at 256 on software adapters such as lavapipe).
//!   On a real GPU the `gpu` row also runs at 4096 (GPU only: the issue's "≥ 25 % of FP32
//!   peak at 4096²" target; divide the GFLOP/s by the card's FP32 peak, e.g. ~67 TFLOP/s
//!   for an H100 SXM, ~51 for an H100 PCIe).
//! - `offload/*`: submit to result for a tiny kernel (ReLU of 4 floats): `cpu_inline` (the
//!   default: tiny CPU work runs on the caller), `cpu_worker` (forced through the worker
//!   thread), `gpu`.
//!
//! Since tiny CPU tasks run inline (`AccelOptions::inline_cpu_flops`, 2^20 flops), the 64³
//! rows of `cpu*_via_accel` measure the inline path; 128³ and up go through the worker.
//!
//! Run: `cargo bench --bench accel -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use percore::accelerator::{
    Accel, AccelBackend, AccelOptions, Activation, ComputeTask, DeviceKind, Kernel, Tensor, UnaryOp,
};

const SIZES: [usize; 6] = [64, 128, 256, 512, 1024, 2048];
/// Sizes run on a real GPU only (a CPU needs seconds per 4096³ product).
const GPU_ONLY_SIZES: [usize; 1] = [4096];

fn square(n: usize, v: f32) -> Tensor {
    Tensor::f32(
        n,
        n,
        (0..n * n).map(|i| v + (i % 7) as f32 * 0.01).collect(),
    )
    .expect("n*n")
}

fn matmul(n: usize) -> ComputeTask {
    ComputeTask::new(
        Kernel::MatMul {
            trans_a: false,
            trans_b: false,
            bias: false,
            act: Activation::None,
        },
        vec![square(n, 0.5), square(n, 0.25)],
    )
}

fn bench(c: &mut Criterion) {
    let cpu_all = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).expect("cpu");
    let cpu_one = Accel::start(
        AccelOptions::default()
            .backend(AccelBackend::Cpu)
            .cpu_threads(1),
    )
    .expect("cpu");
    let gpu = Accel::start(AccelOptions::default().backend(AccelBackend::Gpu))
        .ok()
        .filter(|a| a.adapter().is_some());
    if let Some(a) = gpu.as_ref().and_then(|g| g.adapter()) {
        eprintln!("GPU adapter: {} ({}, {})", a.name, a.backend, a.kind);
    } else {
        eprintln!("no GPU adapter: GPU rows skipped");
    }
    let gpu_max = match gpu.as_ref().and_then(|g| g.adapter()) {
        Some(a) if a.kind == DeviceKind::Software => 256,
        Some(_) => 4096,
        None => 0,
    };

    let mut g = c.benchmark_group("matmul");
    for n in SIZES {
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        if n >= 512 {
            g.sample_size(10);
        }
        let task = matmul(n);
        for (name, accel) in [("cpu_via_accel", &cpu_all), ("cpu1_via_accel", &cpu_one)] {
            g.bench_with_input(BenchmarkId::new(name, n), &task, |b, t| {
                b.iter_batched(
                    || t.clone(),
                    |t| black_box(accel.submit(t).wait().expect("runs")),
                    BatchSize::LargeInput,
                )
            });
        }
        let (a, bm) = (square(n, 0.5), square(n, 0.25));
        let mut out = vec![0.0f32; n * n];
        g.bench_function(BenchmarkId::new("matrixmultiply_direct", n), |b| {
            b.iter(|| {
                let (av, bv) = (a.as_f32().expect("f32"), bm.as_f32().expect("f32"));
                // SAFETY: a, b and out are n x n row-major buffers of exactly n*n elements;
                // the strides (n, 1) stay inside them and out is exclusively borrowed.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        av.as_ptr(),
                        n as isize,
                        1,
                        bv.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
                black_box(&out);
            })
        });
        if let Some(gpu) = gpu.as_ref().filter(|_| n <= gpu_max) {
            g.bench_with_input(BenchmarkId::new("gpu", n), &task, |b, t| {
                b.iter_batched(
                    || t.clone(),
                    |t| black_box(gpu.submit(t).wait().expect("runs")),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    for n in GPU_ONLY_SIZES {
        let Some(gpu) = gpu.as_ref().filter(|_| n <= gpu_max) else {
            continue;
        };
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        g.sample_size(10);
        g.bench_with_input(BenchmarkId::new("gpu", n), &matmul(n), |b, t| {
            b.iter_batched(
                || t.clone(),
                |t| black_box(gpu.submit(t).wait().expect("runs")),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("offload");
    let tiny = ComputeTask::new(
        Kernel::Unary(UnaryOp::Relu),
        vec![Tensor::f32(1, 4, vec![-1.0, 2.0, -3.0, 4.0]).expect("4")],
    );
    let cpu_worker = Accel::start(
        AccelOptions::default()
            .backend(AccelBackend::Cpu)
            .cpu_threads(1)
            .inline_cpu_flops(0.0),
    )
    .expect("cpu");
    let mut backends = vec![("cpu_inline", &cpu_one), ("cpu_worker", &cpu_worker)];
    if let Some(g) = gpu.as_ref() {
        backends.push(("gpu", g));
    }
    for (name, accel) in backends {
        g.bench_with_input(BenchmarkId::new("tiny_relu", name), &tiny, |b, t| {
            b.iter_batched(
                || t.clone(),
                |t| black_box(accel.submit(t).wait().expect("runs")),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

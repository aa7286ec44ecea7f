//! Accelerator workers end to end: async submission from actors, delivery as messages,
//! priorities, batching, the pipeline cache and buffer pool, hybrid pipelines, calibration, and
//! the CPU fallback with every adapter hidden or the device destroyed. GPU parts run on the
//! adapter `PERCORE_ACCEL=gpu` would pick (lavapipe in CI) and print a note when there is none.

mod common;
use common::accel::mat;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use percore::accelerator::{
    Accel, AccelBackend, AccelError, AccelOptions, Activation, ApiSet, BinaryOp, ComputeTask,
    Kernel, Output, Pipeline, Place, Priority, Ran, Reduce, Tensor, UnaryOp, cpu,
};
use percore::runtime::{Actor, Context, Reply, Runtime};

fn close(a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.shape(), b.shape());
    match (a.as_f32(), b.as_f32()) {
        (Some(x), Some(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert!(
                    (p - q).abs() <= tol * (1.0 + q.abs()),
                    "index {i}: {p} vs {q}"
                );
            }
        }
        _ => assert_eq!(a.as_u32(), b.as_u32()),
    }
}

/// A worker on a GPU adapter, or `None` (with a printed note) when the machine has none.
fn gpu_accel() -> Option<Accel> {
    let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Gpu)).unwrap();
    if accel.adapter().is_none() {
        eprintln!("NOTE: no wgpu adapter on this machine; GPU part of this test skipped");
        return None;
    }
    Some(accel)
}

fn matmul_task(m: usize, n: usize, k: usize) -> ComputeTask {
    ComputeTask::new(
        Kernel::MatMul {
            trans_a: false,
            trans_b: false,
            bias: true,
            act: Activation::Relu,
        },
        vec![mat(m, k, 1), mat(k, n, 2), mat(1, n, 3)],
    )
}

#[test]
fn hidden_adapters_fall_back_to_cpu_end_to_end() {
    // Metal has no driver on this machine: with only Metal allowed, no adapter exists at all.
    // Through the worker thread (no inline shortcut for tiny CPU tasks).
    let opts = AccelOptions::default()
        .backend(AccelBackend::Gpu)
        .apis(ApiSet::METAL)
        .inline_cpu_flops(0.0);
    assert!(percore::accelerator::adapters_on(ApiSet::METAL).is_empty());
    let accel = Accel::start(opts).unwrap();
    assert!(accel.adapter().is_none());
    let sel = accel.selection().unwrap();
    assert!(sel.degraded, "{sel:?}");
    assert!(!accel.on_gpu());
    let t = matmul_task(33, 17, 20);
    let want = cpu::run(&t, 1).unwrap();
    let out = accel.submit(t).wait().unwrap();
    assert_eq!(out.ran, Ran::CpuFallback);
    close(&out.tensors[0], &want[0], 1e-5);
    // A pipeline with GPU stages runs too.
    let p = Pipeline::new()
        .kernel(Kernel::Unary(UnaryOp::Exp), vec![], Place::Device)
        .kernel(Kernel::Reduce(Reduce::Sum), vec![], Place::Device);
    let out = accel.run_pipeline(p, vec![mat(4, 9, 5)]).wait().unwrap();
    assert_eq!(out.stages, vec![Ran::Cpu, Ran::Cpu]);
    let e = cpu::run(
        &ComputeTask::new(Kernel::Unary(UnaryOp::Exp), vec![mat(4, 9, 5)]),
        1,
    )
    .unwrap();
    let s = cpu::run(&ComputeTask::new(Kernel::Reduce(Reduce::Sum), e), 1).unwrap();
    close(&out.tensors[0], &s[0], 1e-6);
    let st = accel.stats();
    assert_eq!(st[0].backend, "cpu");
    assert_eq!(st[0].fallback_tasks, 1);
}

#[test]
fn policy_cpu_never_opens_a_device() {
    let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
    assert!(accel.adapter().is_none());
    assert!(!accel.selection().unwrap().degraded);
    let out = accel.submit(matmul_task(5, 6, 7)).wait().unwrap();
    assert_eq!(out.ran, Ran::Cpu);
}

#[test]
fn typed_errors_before_dispatch() {
    let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
    let bad = ComputeTask::new(
        Kernel::Binary(BinaryOp::Add),
        vec![mat(2, 3, 1), mat(3, 2, 2)],
    );
    assert!(matches!(
        accel.submit(bad).wait(),
        Err(AccelError::ShapeMismatch {
            kernel: "binary",
            ..
        })
    ));
    let bad = ComputeTask::new(
        Kernel::MatMul {
            trans_a: false,
            trans_b: false,
            bias: false,
            act: Activation::None,
        },
        vec![mat(2, 3, 1), mat(4, 2, 2)],
    );
    assert!(matches!(
        accel.submit(bad).wait(),
        Err(AccelError::ShapeMismatch {
            kernel: "matmul",
            ..
        })
    ));
    let labels = Tensor::u32(2, 1, vec![0, 9]).unwrap();
    let bad = ComputeTask::new(Kernel::CrossEntropy, vec![mat(2, 3, 1), labels]);
    assert_eq!(
        accel.submit(bad).wait(),
        Err(AccelError::LabelOutOfRange {
            row: 1,
            label: 9,
            classes: 3
        })
    );
    let bad = ComputeTask::new(Kernel::Softmax, vec![]);
    assert!(matches!(
        accel.submit(bad).wait(),
        Err(AccelError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Tensor::f32(2, 2, vec![1.0; 3]),
        Err(AccelError::BadTensor {
            rows: 2,
            cols: 2,
            len: 3
        })
    ));
    // Oversize against a given limit (what a GPU worker checks against its binding limit).
    let t = ComputeTask::new(Kernel::Unary(UnaryOp::Relu), vec![mat(8, 8, 1)]);
    assert_eq!(
        t.validate(255),
        Err(AccelError::BufferTooLarge {
            kernel: "unary",
            bytes: 256,
            limit: 255
        })
    );
    assert!(t.validate(256).is_ok());
    assert!(accel.run_pipeline(Pipeline::new(), vec![]).wait().is_err());
}

#[test]
fn oversize_output_is_rejected_by_a_gpu_worker() {
    let Some(accel) = gpu_accel() else { return };
    let limit = accel
        .adapter()
        .unwrap()
        .limits
        .max_storage_buffer_binding_size;
    // A rank-1 product whose output alone exceeds the binding limit; inputs are small.
    let n = ((limit / 4) as f64).sqrt() as usize + 2;
    let t = ComputeTask::new(
        Kernel::MatMul {
            trans_a: false,
            trans_b: false,
            bias: false,
            act: Activation::None,
        },
        vec![mat(n, 1, 1), mat(1, n, 2)],
    );
    match accel.submit(t).wait() {
        Err(AccelError::BufferTooLarge {
            kernel: "matmul",
            bytes,
            limit: l,
        }) => {
            assert_eq!(l, limit);
            assert!(bytes > limit);
        }
        other => panic!("expected BufferTooLarge, got {other:?}"),
    }
}

#[test]
fn device_lost_reroutes_to_cpu_with_same_answers() {
    let Some(accel) = gpu_accel() else { return };
    let t = matmul_task(20, 19, 18);
    let want = cpu::run(&t, 1).unwrap();
    let out = accel.submit(t.clone()).wait().unwrap();
    assert_eq!(out.ran, Ran::Gpu);
    close(&out.tensors[0], &want[0], 1e-4);
    assert_eq!(accel.destroy_devices(), 1);
    for _ in 0..3 {
        let out = accel.submit(t.clone()).wait().unwrap();
        assert_eq!(out.ran, Ran::CpuFallback);
        close(&out.tensors[0], &want[0], 1e-4);
    }
    assert!(!accel.on_gpu());
    let st = &accel.stats()[0];
    assert_eq!(st.backend, "cpu");
    // The failed batch reran on the worker; later tiny tasks ran inline on this thread.
    assert_eq!(st.fallback_tasks + st.inline_tasks, 3, "{st:?}");
    assert!(st.fallback_tasks >= 1);
}

/// Out of device memory: the failed batch reruns on the CPU backend with the same answers,
/// and the device stays in use afterwards (unlike a lost device).
#[test]
fn out_of_memory_reroutes_one_batch_and_keeps_the_device() {
    let Some(accel) = gpu_accel() else { return };
    // Big enough to go to the worker (not run inline), small enough for lavapipe.
    let t = matmul_task(96, 80, 72);
    let want = cpu::run(&t, 1).unwrap();
    assert_eq!(accel.submit(t.clone()).wait().unwrap().ran, Ran::Gpu);
    assert_eq!(accel.fail_next_batches_as_oom(2), 1);
    for _ in 0..2 {
        let out = accel.submit(t.clone()).wait().unwrap();
        assert_eq!(out.ran, Ran::CpuFallback);
        close(&out.tensors[0], &want[0], 1e-4);
    }
    let out = accel.submit(t.clone()).wait().unwrap();
    assert_eq!(
        out.ran,
        Ran::Gpu,
        "the device is used again after an out-of-memory"
    );
    close(&out.tensors[0], &want[0], 1e-4);
    assert!(accel.on_gpu());
    let st = &accel.stats()[0];
    assert_eq!(st.fallback_tasks, 2, "{st:?}");
}

/// Blocks the worker on a host pipeline stage until the barrier is released.
fn block_worker(
    accel: &Accel,
) -> (
    Arc<Barrier>,
    percore::accelerator::Ticket<percore::accelerator::PipelineOutput>,
) {
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (e2, r2) = (entered.clone(), release.clone());
    let p = Pipeline::new().host("block", move |x| {
        e2.wait();
        r2.wait();
        Ok(x)
    });
    let t = accel.run_pipeline(p, vec![]);
    entered.wait();
    (release, t)
}

#[test]
fn priorities_order_completions() {
    // Completion order as seen by callbacks on the worker thread.
    let rt = Runtime::testing(2).unwrap();
    let accel = Accel::start_on(
        &rt.handle(),
        AccelOptions::default().backend(AccelBackend::Cpu),
    )
    .unwrap();
    let log = rt.spawn_actor_on(0, || Log(Vec::new())).unwrap();
    let (release, blocker) = block_worker(&accel);
    let prios = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Low,
        Priority::High,
    ];
    for (i, p) in prios.into_iter().enumerate() {
        let t = ComputeTask::new(Kernel::Unary(UnaryOp::Relu), vec![mat(1, 1, 1)]).with_priority(p);
        accel.submit_to(t, log.clone(), move |r| LogMsg::Done(i, r.map(|o| o.ran)));
    }
    release.wait();
    blocker.wait().unwrap();
    let seen = rt.block_on(async {
        // Bounded: a lost message fails the test instead of hanging it.
        for _ in 0..5000 {
            let v = log.ask(LogMsg::Get, Duration::from_secs(5)).await.unwrap();
            if v.len() == prios.len() {
                return v;
            }
            percore::runtime::sleep(Duration::from_millis(1)).await;
        }
        log.ask(LogMsg::Get, Duration::from_secs(5)).await.unwrap()
    });
    // High first (FIFO among equals), then Normal, then Low.
    assert_eq!(seen, vec![2, 4, 1, 0, 3]);
    drop(accel);
    rt.shutdown();
}

struct Log(Vec<usize>);
enum LogMsg {
    Done(usize, Result<Ran, AccelError>),
    Get(Reply<Vec<usize>>),
    /// Keeps the actor busy until the ticket completes (its mailbox fills meanwhile).
    Hold(percore::accelerator::Ticket<percore::accelerator::PipelineOutput>),
}
impl Actor for Log {
    type Msg = LogMsg;
    async fn handle(&mut self, msg: LogMsg, _ctx: &mut Context<Self>) {
        match msg {
            LogMsg::Done(i, r) => {
                r.expect("task ran");
                self.0.push(i);
            }
            LogMsg::Get(reply) => {
                let _ = reply.send(self.0.clone());
            }
            LogMsg::Hold(t) => {
                t.await.expect("blocker pipeline completes");
            }
        }
    }
}

#[test]
fn small_tasks_share_one_submission_and_caches_are_reused() {
    let Some(accel) = gpu_accel() else { return };
    let (release, blocker) = block_worker(&accel);
    let tasks: Vec<ComputeTask> = (0..10).map(|i| matmul_task(8 + i, 9, 10)).collect();
    let tickets: Vec<_> = tasks.iter().map(|t| accel.submit(t.clone())).collect();
    release.wait();
    blocker.wait().unwrap();
    for (t, k) in tasks.iter().zip(tickets) {
        let out = k.wait().unwrap();
        assert_eq!(out.ran, Ran::Gpu);
        close(&out.tensors[0], &cpu::run(t, 1).unwrap()[0], 1e-4);
    }
    let st = &accel.stats()[0];
    assert_eq!(st.largest_batch, 10, "{st:?}");
    assert_eq!(st.batched_submissions, 1);
    let g = st.gpu.unwrap();
    assert_eq!(g.submissions, 1);
    assert_eq!(g.modules_compiled, 1, "matmul compiled once");
    // Same shapes again: every buffer comes from the pool.
    let created = g.buffers_created;
    for t in &tasks {
        accel.submit(t.clone()).wait().unwrap();
    }
    let g = accel.stats()[0].gpu.unwrap();
    assert_eq!(g.buffers_created, created, "{g:?}");
    assert!(g.buffers_reused > 0);
    assert_eq!(g.modules_compiled, 1);
}

struct Trainer {
    accel: Arc<Accel>,
}
enum TMsg {
    Step(Tensor, Reply<Result<Output, AccelError>>),
}
impl Actor for Trainer {
    type Msg = TMsg;
    async fn handle(&mut self, msg: TMsg, _ctx: &mut Context<Self>) {
        match msg {
            TMsg::Step(x, reply) => {
                // Awaited on the app worker; the accelerator worker wakes this task.
                let h = self
                    .accel
                    .submit(ComputeTask::new(Kernel::Softmax, vec![x]))
                    .await;
                let r = match h {
                    Ok(o) => {
                        self.accel
                            .submit(ComputeTask::new(Kernel::Reduce(Reduce::Sum), o.tensors))
                            .await
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
        }
    }
}

fn actors_await_results(opts: AccelOptions) {
    let rt = Runtime::testing(2).unwrap();
    let accel = Arc::new(Accel::start_on(&rt.handle(), opts).unwrap());
    let a = accel.clone();
    let trainer = rt.spawn_actor_on(1, move || Trainer { accel: a }).unwrap();
    let sums = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..5 {
            let r = trainer
                .ask(
                    |r| TMsg::Step(mat(3 + i, 7, i as u64), r),
                    Duration::from_secs(20),
                )
                .await
                .unwrap()
                .unwrap();
            v.push(r.tensors[0].clone());
        }
        v
    });
    for (i, s) in sums.iter().enumerate() {
        assert_eq!(s.rows(), 3 + i);
        for x in s.as_f32().unwrap() {
            assert!((x - 1.0).abs() < 1e-5, "softmax rows sum to 1, got {x}");
        }
    }
    drop(trainer);
    rt.shutdown();
}

#[test]
fn actors_await_results_cpu() {
    actors_await_results(AccelOptions::default().backend(AccelBackend::Cpu));
}

#[test]
fn actors_await_results_gpu() {
    if gpu_accel().is_none() {
        return;
    }
    actors_await_results(AccelOptions::default().backend(AccelBackend::Gpu));
}

#[test]
fn hybrid_pipeline_keeps_data_on_the_device() {
    let Some(accel) = gpu_accel() else { return };
    let w = mat(12, 5, 7);
    let decode = |x: Vec<Tensor>| -> Result<Vec<Tensor>, AccelError> {
        // "Decode": bytes as u32 codes -> floats in [0, 1).
        let codes = x[0]
            .as_u32()
            .ok_or(AccelError::Pipeline("want codes".into()))?;
        Ok(vec![Tensor::f32(
            x[0].rows(),
            x[0].cols(),
            codes.iter().map(|c| *c as f32 / 256.0).collect(),
        )?])
    };
    let p = Pipeline::new()
        .host("decode", decode)
        .kernel(
            Kernel::MatMul {
                trans_a: false,
                trans_b: false,
                bias: false,
                act: Activation::None,
            },
            vec![w.clone()],
            Place::Device,
        )
        .kernel(Kernel::Unary(UnaryOp::Relu), vec![], Place::Auto)
        .kernel(Kernel::Reduce(Reduce::ArgMax), vec![], Place::Device)
        .host("histogram", |x: Vec<Tensor>| {
            let mut h = vec![0u32; 5];
            for &c in x[0].as_u32().unwrap_or(&[]) {
                h[c as usize] += 1;
            }
            Ok(vec![Tensor::u32(1, 5, h)?])
        });
    let codes = Tensor::u32(40, 12, (0..480u32).map(|i| (i * 37) % 256).collect()).unwrap();
    let before = accel.stats()[0].gpu.unwrap().submissions;
    let out = accel
        .run_pipeline(p.clone(), vec![codes.clone()])
        .wait()
        .unwrap();
    assert_eq!(
        out.stages,
        vec![Ran::Cpu, Ran::Gpu, Ran::Gpu, Ran::Gpu, Ran::Cpu]
    );
    assert_eq!(
        accel.stats()[0].gpu.unwrap().submissions,
        before + 1,
        "three GPU stages, one submission"
    );
    // The same pipeline on a CPU-only worker gives the same histogram.
    let cpu_accel = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
    let want = cpu_accel.run_pipeline(p, vec![codes]).wait().unwrap();
    assert_eq!(want.stages, vec![Ran::Cpu; 5]);
    assert_eq!(out.tensors, want.tensors);
    assert_eq!(out.tensors[0].as_u32().unwrap().iter().sum::<u32>(), 40);
}

/// Calibrations of one device replace each other in the process-wide store: the tests that
/// measure take turns.
static CALIBRATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn calibration_is_stored_per_device_and_used() {
    let _turn = CALIBRATING.lock().unwrap_or_else(|p| p.into_inner());
    let Some(accel) = gpu_accel() else { return };
    let c = accel.calibrate().unwrap();
    assert_eq!(
        c.samples.len(),
        if accel.adapter().unwrap().kind == percore::accelerator::DeviceKind::Software {
            4
        } else {
            7
        }
    );
    assert!(
        c.samples
            .iter()
            .all(|(_, cpu, gpu)| *cpu > 0.0 && *gpu > 0.0)
    );
    let stored =
        percore::accelerator::pipeline::stored_crossover(&c.device).expect("stored for the device");
    assert_eq!(stored, c);
    // Auto placement follows the stored crossover, for a small and a large task.
    for n in [4usize, 96] {
        let t = ComputeTask::new(
            Kernel::MatMul {
                trans_a: false,
                trans_b: false,
                bias: false,
                act: Activation::None,
            },
            vec![mat(n, n, 1), mat(n, n, 2)],
        )
        .with_place(Place::Auto);
        let flops = 2.0 * (n as f64).powi(3);
        let out = accel.submit(t).wait().unwrap();
        let want = if c.offload(flops) { Ran::Gpu } else { Ran::Cpu };
        assert_eq!(out.ran, want, "n={n}, crossover {c:?}");
    }
    // A second worker on the same device finds the stored value without measuring.
    let other = gpu_accel().unwrap();
    let t =
        ComputeTask::new(Kernel::Unary(UnaryOp::Relu), vec![mat(2, 2, 1)]).with_place(Place::Auto);
    other.submit(t).wait().unwrap();
    assert_eq!(
        other.stats()[0].gpu.unwrap().modules_compiled,
        u64::from(c.offload(16.0))
    );
}

#[test]
fn a_panicking_host_stage_is_an_error_and_the_worker_goes_on() {
    let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
    let p = Pipeline::new().host(
        "boom",
        |_x: Vec<Tensor>| -> Result<Vec<Tensor>, AccelError> { panic!("host code failed") },
    );
    match accel.run_pipeline(p, vec![]).wait() {
        Err(AccelError::Pipeline(msg)) => {
            assert!(msg.contains("boom") && msg.contains("panicked"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    let t = matmul_task(3, 4, 5);
    let out = accel.submit(t.clone()).wait().unwrap();
    close(&out.tensors[0], &cpu::run(&t, 1).unwrap()[0], 1e-6);
}

#[test]
fn shutdown_runs_queued_work_and_later_submissions_stop() {
    let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
    let (release, blocker) = block_worker(&accel);
    let tickets: Vec<_> = (0..4)
        .map(|i| accel.submit(matmul_task(2 + i, 3, 4)))
        .collect();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        release.wait();
    });
    accel.shutdown();
    releaser.join().unwrap();
    blocker.wait().unwrap();
    for (i, t) in tickets.into_iter().enumerate() {
        assert_eq!(t.wait().unwrap().tensors[0].rows(), 2 + i);
    }
}

#[test]
fn tiny_cpu_tasks_run_inline_and_large_ones_on_the_worker() {
    let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
    let tiny = matmul_task(8, 8, 8);
    let mut t = accel.submit(tiny.clone());
    assert!(
        t.is_ready(),
        "below inline_cpu_flops: done before submit returns"
    );
    let out = t.try_take().unwrap().unwrap();
    close(&out.tensors[0], &cpu::run(&tiny, 1).unwrap()[0], 0.0);
    let big = matmul_task(90, 90, 90);
    assert!(big.kernel.flops(&big.shapes()) >= AccelOptions::default().inline_cpu_flops);
    let out = accel.submit(big.clone()).wait().unwrap();
    close(&out.tensors[0], &cpu::run(&big, 1).unwrap()[0], 1e-5);
    let st = &accel.stats()[0];
    assert_eq!((st.inline_tasks, st.cpu_tasks), (1, 1), "{st:?}");
    // A zero threshold sends everything to the worker thread.
    let never = Accel::start(
        AccelOptions::default()
            .backend(AccelBackend::Cpu)
            .inline_cpu_flops(0.0),
    )
    .unwrap();
    assert_eq!(never.submit(tiny).wait().unwrap().ran, Ran::Cpu);
    assert_eq!(never.stats()[0].inline_tasks, 0);
}

#[test]
fn crossover_rule_and_file_round_trip() {
    use percore::accelerator::Crossover;
    use percore::accelerator::pipeline::{load_crossovers, save_crossovers, stored_crossover};
    // The GPU must win at every size from the crossover up.
    let c = Crossover::from_samples(
        "dev".into(),
        vec![
            (16, 1.0, 5.0),
            (64, 9.0, 8.0),
            (128, 50.0, 60.0),
            (256, 400.0, 100.0),
            (512, 3000.0, 500.0),
        ],
    );
    assert_eq!(c.min_gpu_flops, Some(2.0 * 256f64.powi(3)));
    assert!(c.offload(2.0 * 300f64.powi(3)) && !c.offload(2.0 * 128f64.powi(3)));
    let never = Crossover::from_samples("dev".into(), vec![(16, 1.0, 5.0), (32, 2.0, 9.0)]);
    assert_eq!(never.min_gpu_flops, None);
    assert!(!never.offload(f64::MAX));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crossover.json");
    let fake = Crossover {
        device: "test-device | none | 0".into(),
        min_gpu_flops: Some(1e6),
        samples: vec![(16, 1.0, 2.0)],
    };
    std::fs::write(&path, serde_json::to_string(&vec![fake.clone()]).unwrap()).unwrap();
    assert_eq!(load_crossovers(&path).unwrap(), 1);
    assert_eq!(stored_crossover(&fake.device), Some(fake.clone())); // short decimals parse exactly
    let out = dir.path().join("out.json");
    assert!(save_crossovers(&out).unwrap() >= 1);
    let back: Vec<Crossover> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(back.contains(&fake));
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(load_crossovers(&path), Err(AccelError::Io(_))));
}

#[test]
fn calibration_is_written_to_the_crossover_file() {
    let _turn = CALIBRATING.lock().unwrap_or_else(|p| p.into_inner());
    if gpu_accel().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.json");
    let mut opts = AccelOptions::default().backend(AccelBackend::Gpu);
    opts.crossover_file = Some(path.clone());
    let accel = Accel::start(opts).unwrap();
    let c = accel.calibrate().unwrap();
    let saved: Vec<percore::accelerator::Crossover> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // serde_json parses floats to within an ulp, not always bit-exactly: compare with care.
    let got = saved
        .iter()
        .find(|x| x.device == c.device)
        .expect("this device saved");
    assert_eq!(got.min_gpu_flops, c.min_gpu_flops);
    assert_eq!(got.samples.len(), c.samples.len());
    for (a, b) in got.samples.iter().zip(&c.samples) {
        assert_eq!(a.0, b.0);
        assert!(
            (a.1 - b.1).abs() <= 1e-9 * b.1 && (a.2 - b.2).abs() <= 1e-9 * b.2,
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn results_as_messages_survive_a_full_mailbox() {
    let rt = Runtime::testing(2).unwrap();
    let accel = Accel::start_on(
        &rt.handle(),
        AccelOptions::default().backend(AccelBackend::Cpu),
    )
    .unwrap();
    let side = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
    let log = rt
        .handle()
        .spawn_actor_on_with_capacity(1, 1, || Log(Vec::new()))
        .unwrap();
    let (release, blocker) = block_worker(&side);
    rt.block_on(async { log.tell(LogMsg::Hold(blocker)).await.unwrap() });
    for i in 0..6 {
        let t = ComputeTask::new(Kernel::Unary(UnaryOp::Relu), vec![mat(1, 2, i as u64)]);
        accel.submit_to(t, log.clone(), move |r| LogMsg::Done(i, r.map(|o| o.ran)));
    }
    release.wait();
    // Bounded: a lost message fails the test instead of hanging it.
    let ask = |log: percore::runtime::Addr<Log>| async move {
        percore::runtime::timeout(
            Duration::from_secs(10),
            log.ask(LogMsg::Get, Duration::from_secs(10)),
        )
        .await
        .expect("the mailbox frees up")
        .unwrap()
    };
    let mut seen = rt.block_on(async {
        for _ in 0..5000 {
            let v = ask(log.clone()).await;
            if v.len() >= 6 {
                return v;
            }
            percore::runtime::sleep(Duration::from_millis(1)).await;
        }
        ask(log.clone()).await
    });
    seen.sort_unstable();
    assert_eq!(seen, (0..6).collect::<Vec<_>>());
    drop(accel);
    rt.shutdown();
}

/// Many actors on both app workers await GPU (or CPU) results at once; every ticket gets its
/// own task's answer even when tasks share submissions.
#[test]
fn concurrent_submissions_get_their_own_results() {
    let opts = if gpu_accel().is_some() {
        AccelOptions::default().backend(AccelBackend::Gpu)
    } else {
        AccelOptions::default().backend(AccelBackend::Cpu)
    };
    let rt = Runtime::testing(2).unwrap();
    let accel = Arc::new(Accel::start_on(&rt.handle(), opts).unwrap());
    let mut joins = Vec::new();
    for w in 0..2usize {
        for j in 0..4usize {
            let a = accel.clone();
            joins.push(
                rt.spawn_on(w, move || async move {
                    let mut bad = 0;
                    for i in 0..12usize {
                        let seed = (w * 1000 + j * 100 + i) as u64;
                        let t = ComputeTask::new(
                            Kernel::MatMul {
                                trans_a: false,
                                trans_b: false,
                                bias: true,
                                act: Activation::Gelu,
                            },
                            vec![
                                mat(3 + i, 5 + j, seed),
                                mat(5 + j, 4 + w, seed ^ 1),
                                mat(1, 4 + w, seed ^ 2),
                            ],
                        );
                        let want = cpu::run(&t, 1).unwrap();
                        let got = a.submit(t).await.unwrap();
                        let (g, c) = (got.tensors[0].as_f32().unwrap(), want[0].as_f32().unwrap());
                        if got.tensors[0].shape() != want[0].shape()
                            || g.iter()
                                .zip(c)
                                .any(|(x, y)| (x - y).abs() > 1e-4 * (1.0 + y.abs()))
                        {
                            bad += 1;
                        }
                    }
                    bad
                })
                .unwrap(),
            );
        }
    }
    let bad: usize = rt.block_on(async {
        let mut n = 0;
        for j in joins {
            n += j.await.unwrap();
        }
        n
    });
    assert_eq!(bad, 0);
    let st = &accel.stats()[0];
    assert_eq!(st.gpu_tasks + st.cpu_tasks + st.inline_tasks, 96, "{st:?}");
    drop(accel);
    rt.shutdown();
}

/// An accelerator started for a runtime shows its queues in the runtime's `/metrics` page,
/// and leaves it when dropped.
#[test]
fn accel_figures_appear_in_the_runtime_metrics_while_it_lives() {
    let rt = Runtime::testing(1).unwrap();
    let accel = Accel::start_on(
        &rt.handle(),
        AccelOptions::default().backend(AccelBackend::Cpu),
    )
    .unwrap();
    let text = rt.prometheus();
    assert!(
        text.contains("percore_accel_queue_depth{worker=\"0\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("percore_accel_on_gpu{worker=\"0\"} 0"),
        "{text}"
    );
    drop(accel);
    assert!(!rt.prometheus().contains("percore_accel_queue_depth"));
}

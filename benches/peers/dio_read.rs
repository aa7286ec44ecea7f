//! 4 KiB random reads (or, with `--write`, writes) with O_DIRECT through percore's file API (io_uring SQEs on a co-located
//! event loop), `--qd` reads in flight, for `--secs` seconds, on a file fio laid out. Prints one
//! JSON line: IOPS, p50 and p99 latency. Driven by `benches/storage.sh` next to fio's io_uring
//! engine on the same file.
//!
//! Usage: dio_bench --file F [--qd 32] [--secs 10] [--bs 4096] [--write]

#[path = "../../examples/common/args.rs"]
mod args;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use percore::runtime::Runtime;
use percore::runtime::config::Profile;
use percore::storage::file::{File, FileBuf, FileIo};

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::Args::parse(
        &["--file", "--qd", "--secs", "--bs"],
        &["--write"],
        "dio_bench --file F [--qd N] [--secs S] [--bs BYTES] [--write]",
    );
    let Some(path) = a.get::<String>("--file") else {
        a.fail("--file is required");
    };
    let qd: usize = a.get_or("--qd", 32);
    let secs: f64 = a.get_or("--secs", 10.0);
    let bs: u64 = a.get_or("--bs", 4096);
    let write = a.has("--write");
    let rt = Runtime::builder()
        .profile(Profile::Production)
        .app_workers(std::num::NonZeroUsize::MIN)
        .io_colocated(true)
        // benches/storage.sh places both programs on one CPU with taskset (the CPU that takes
        // the disk's interrupts matters: fio measured 25 vs 33 µs p50 at depth 1 between the
        // two CPUs here), so the worker stays where taskset put it.
        .pin(false)
        .build()?;
    let io = FileIo::for_worker(&rt.handle(), 0);
    let h = rt.spawn_on(0, move || async move {
        let f = File::open_direct(&io, std::path::Path::new(&path))
            .await
            .map_err(|e| e.to_string())?;
        if f.direct().is_none() {
            return Err("O_DIRECT was refused here; the comparison needs it".to_string());
        }
        let blocks = f.len().map_err(|e| e.to_string())? / bs;
        if blocks == 0 {
            return Err("the file is empty: let fio lay it out first".to_string());
        }
        let lat = Rc::new(RefCell::new(Vec::<Duration>::with_capacity(1 << 20)));
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for w in 0..qd {
            let (f, lat) = (f.clone(), lat.clone());
            tasks.push(percore::runtime::spawn_local(async move {
                let mut x =
                    0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let mut buf =
                    FileBuf::Aligned(f.aligned_buf(bs as usize).map_err(|e| e.to_string())?);
                while Instant::now() < end {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = (x % blocks) * bs;
                    let t = Instant::now();
                    buf = if write {
                        f.write_buf_at(buf, off).await
                    } else {
                        f.read_buf_at(buf, off).await
                    }
                    .map_err(|e| e.to_string())?;
                    lat.borrow_mut().push(t.elapsed());
                }
                Ok::<_, String>(())
            }));
        }
        let t0 = Instant::now();
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        let took = t0.elapsed().as_secs_f64();
        let mut l = lat.borrow_mut();
        l.sort_unstable();
        let p = |q: f64| l[((l.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        Ok(format!(
            "{{\"iops\": {:.0}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"reads\": {}}}",
            l.len() as f64 / took,
            p(0.5),
            p(0.99),
            l.len()
        ))
    })?;
    let line = rt.block_on(h)??;
    println!("{line}");
    rt.shutdown();
    Ok(())
}

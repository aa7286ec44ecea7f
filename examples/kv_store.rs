//! An embedded, sharded key-value store: one shard per app worker, each key owned by one core.
//! Writes from every worker in parallel, reads them back, scans a prefix, deletes, then
//! reopens the store to show that everything acknowledged is still there.
//!
//! Run: `cargo run --release --example kv_store -- [--dir DIR] [--keys N] [--durability sync|group|none]`

#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use percore::runtime::Runtime;
use percore::storage::kv::{KvOptions, KvStore, parse_durability};

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::Args::parse(
        &["--dir", "--keys", "--durability"],
        &[],
        "kv_store [--dir DIR] [--keys N] [--durability sync|group|none|group:MS:BYTES]",
    );
    let keys: usize = a.get_or("--keys", 20_000);
    let opts = KvOptions {
        durability: parse_durability(&a.get_or("--durability", "group".to_string()))?,
        ..KvOptions::default()
    };
    let tmp = tempfile::tempdir()?;
    let dir = a
        .get::<String>("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("kv"));
    let rt = Runtime::auto()?;
    let h = rt.handle();
    println!(
        "store in {} ({} shards, {:?})",
        dir.display(),
        rt.workers(),
        opts.durability
    );

    // Writers on every worker, each writing its own keys (they land on whichever shard owns
    // them).
    let kv = rt.block_on(KvStore::open(&h, &dir, opts.clone()))?;
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for w in 0..rt.workers() {
        let kv = kv.clone();
        let n = rt.workers();
        writers.push(rt.spawn_on(w, move || async move {
            // Many puts in flight at once: group commit makes one fdatasync cover them all.
            let mut pending = Vec::new();
            for i in (w..keys).step_by(n) {
                let kv = kv.clone();
                pending.push(percore::runtime::spawn_local(async move {
                    kv.put(
                        format!("user:{i:08}").as_bytes(),
                        format!("profile of {i}").as_bytes(),
                    )
                    .await
                }));
                if pending.len() == 256 {
                    for p in pending.drain(..) {
                        p.await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            for p in pending {
                p.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        })?);
    }
    for wr in writers {
        rt.block_on(wr).map_err(|e| e.to_string())??;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{keys} puts acknowledged in {:.3} s ({:.0}/s)",
        secs,
        keys as f64 / secs
    );

    rt.block_on(async {
        let v = kv.get(b"user:00000042").await?;
        println!(
            "user:00000042 = {:?}",
            v.map(|v| String::from_utf8_lossy(&v).into_owned())
        );
        let page = kv.scan_prefix(b"user:0000001", 5).await?;
        println!(
            "first keys with prefix user:0000001: {:?}",
            page.iter()
                .map(|(k, _)| String::from_utf8_lossy(k))
                .collect::<Vec<_>>()
        );
        println!(
            "deleted user:00000042: {}",
            kv.delete(b"user:00000042").await?
        );
        for (i, s) in kv.stats().await?.iter().enumerate() {
            println!(
                "shard {i}: {} keys, {} segments, {} syncs",
                s.keys, s.segments, s.syncs
            );
        }
        kv.close().await
    })?;

    // Reopen: every acknowledged write is there.
    let kv = rt.block_on(KvStore::open(&h, &dir, opts))?;
    let total: usize = rt.block_on(kv.stats())?.iter().map(|s| s.keys).sum();
    println!("after reopening: {total} keys");
    if total != keys - 1 {
        return Err(format!("expected {} keys after reopening, found {total}", keys - 1).into());
    }
    rt.block_on(kv.close())?;
    rt.shutdown();
    Ok(())
}

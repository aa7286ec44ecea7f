//! percore's key-value shard next to fjall 2 and redb 2: the same 16-byte random keys (seeded
//! ChaCha), 100-byte values and batches of 1000 in the same run, each engine in its own
//! directory on the same filesystem. Prints ops/s per engine and ours/peer ratios, latency
//! p50/p99 of single synced puts and single cached gets, percore's reopen time and index bytes
//! per key, and the cost of compaction running beside puts.
//!
//! Usage: percore-kv-bench [--dir DIR] [--keys N] [--rounds R] [--engines percore,fjall,redb]
//! [--reopen-only]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use percore::runtime::Runtime;
use percore::runtime::config::Profile;
use percore::storage::file::FileIo;
use percore::storage::kv::{Durability, KvOptions, KvShard, Op, WriteBatch};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Counts live heap bytes (for the index size per key).
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

const BATCH: usize = 1000;
const VALUE: usize = 100;

fn keys(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut k = [0u8; 16];
            r.fill_bytes(&mut k);
            k
        })
        .collect()
}

fn value(i: usize) -> [u8; VALUE] {
    let mut v = [0u8; VALUE];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Default, Clone, Copy)]
struct Figures {
    put_sync: f64,
    put_none: f64,
    /// percore only: `GroupCommit` (2 ms / 1 MiB, the default), same batches.
    put_group: f64,
    get: f64,
    put_p50: Duration,
    put_p99: Duration,
    get_p50: Duration,
    get_p99: Duration,
}

/// One engine's run over `ks` in `dir`.
trait Engine {
    fn name(&self) -> &'static str;
    fn run(&mut self, dir: &Path, ks: &[[u8; 16]], order: &[usize]) -> Figures;
}

// ---------------------------------------------------------------- percore

struct Percore {
    rt: Runtime,
}

/// The read cache gets redb's default cache budget (1 GiB), so both hold the same memory
/// for reads.
fn opts(d: Durability) -> KvOptions {
    KvOptions {
        durability: d,
        read_cache_bytes: 1 << 30,
        ..KvOptions::default()
    }
}

impl Percore {
    /// Runs `f` on app worker 0, where the shard lives beside its co-located io_uring loop.
    fn on_worker<R: Send + 'static, F: Future<Output = R> + 'static>(
        &self,
        f: impl FnOnce(FileIo) -> F + Send + 'static,
    ) -> R {
        let io = FileIo::for_worker(&self.rt.handle(), 0);
        let h = self.rt.spawn_on(0, move || f(io)).expect("spawn");
        self.rt.block_on(h).expect("bench task")
    }
}

/// Puts every key in batches of `BATCH`; puts per second.
async fn load(kv: &KvShard, ks: &[[u8; 16]]) -> f64 {
    let t = Instant::now();
    for (c, chunk) in ks.chunks(BATCH).enumerate() {
        let vals: Vec<[u8; VALUE]> = (0..chunk.len()).map(|i| value(c * BATCH + i)).collect();
        let ops: Vec<Op<'_>> = chunk
            .iter()
            .zip(&vals)
            .map(|(k, v)| Op::Put(&k[..], &v[..]))
            .collect();
        kv.write_ops(&ops).await.unwrap();
    }
    ks.len() as f64 / t.elapsed().as_secs_f64()
}

impl Engine for Percore {
    fn name(&self) -> &'static str {
        "percore"
    }

    fn run(&mut self, dir: &Path, ks: &[[u8; 16]], order: &[usize]) -> Figures {
        let (d1, d2, d3) = (dir.join("sync"), dir.join("none"), dir.join("lat"));
        let ks1 = ks.to_vec();
        let order = order.to_vec();
        self.on_worker(move |io| async move {
            let mut f = Figures::default();
            let kv = KvShard::open(io.clone(), &d1, opts(Durability::Sync))
                .await
                .unwrap();
            f.put_sync = load(&kv, &ks1).await;
            let t = Instant::now();
            let mut found = 0;
            for &i in &order {
                found += kv.get(&ks1[i]).await.unwrap().is_some() as usize;
            }
            f.get = order.len() as f64 / t.elapsed().as_secs_f64();
            assert_eq!(found, order.len());
            let mut lat = Vec::with_capacity(100_000);
            for &i in order.iter().take(100_000) {
                let t = Instant::now();
                std::hint::black_box(kv.get(&ks1[i]).await.unwrap());
                lat.push(t.elapsed());
            }
            f.get_p50 = pct(&mut lat, 0.5);
            f.get_p99 = pct(&mut lat, 0.99);
            kv.close().await.unwrap();
            drop(kv);

            let kv = KvShard::open(io.clone(), &d2, opts(Durability::None))
                .await
                .unwrap();
            f.put_none = load(&kv, &ks1).await;
            kv.close().await.unwrap();
            drop(kv);

            let kv = KvShard::open(
                io.clone(),
                &d2.with_extension("group"),
                opts(KvOptions::default().durability),
            )
            .await
            .unwrap();
            f.put_group = load(&kv, &ks1).await;
            kv.close().await.unwrap();
            drop(kv);

            let kv = KvShard::open(io.clone(), &d3, opts(Durability::Sync))
                .await
                .unwrap();
            let mut lat = Vec::new();
            for (i, k) in ks1.iter().take(2000).enumerate() {
                let t = Instant::now();
                kv.put(k, &value(i)).await.unwrap();
                lat.push(t.elapsed());
            }
            f.put_p50 = pct(&mut lat, 0.5);
            f.put_p99 = pct(&mut lat, 0.99);
            kv.close().await.unwrap();
            f
        })
    }
}

// ---------------------------------------------------------------- fjall

struct Fjall;

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn run(&mut self, dir: &Path, ks: &[[u8; 16]], order: &[usize]) -> Figures {
        use fjall::{Config, PartitionCreateOptions, PersistMode};
        // Every key in batches of `BATCH`, each batch persisted (`SyncAll`) when `durable`.
        let load = |space: &fjall::Keyspace, p: &fjall::PartitionHandle, durable: bool| {
            let t = Instant::now();
            for (c, chunk) in ks.chunks(BATCH).enumerate() {
                let mut b = space.batch();
                for (i, k) in chunk.iter().enumerate() {
                    b.insert(p, k, value(c * BATCH + i));
                }
                b.commit().unwrap();
                if durable {
                    space.persist(PersistMode::SyncAll).unwrap();
                }
            }
            ks.len() as f64 / t.elapsed().as_secs_f64()
        };
        let mut f = Figures::default();
        {
            let space = Config::new(dir.join("sync")).open().unwrap();
            let p = space
                .open_partition("kv", PartitionCreateOptions::default())
                .unwrap();
            f.put_sync = load(&space, &p, true);
            let t = Instant::now();
            let mut found = 0;
            for &i in order {
                found += p.get(ks[i]).unwrap().is_some() as usize;
            }
            f.get = order.len() as f64 / t.elapsed().as_secs_f64();
            assert_eq!(found, order.len());
            let mut lat = Vec::with_capacity(100_000);
            for &i in order.iter().take(100_000) {
                let t = Instant::now();
                std::hint::black_box(p.get(ks[i]).unwrap());
                lat.push(t.elapsed());
            }
            f.get_p50 = pct(&mut lat, 0.5);
            f.get_p99 = pct(&mut lat, 0.99);
        }
        {
            let space = Config::new(dir.join("none")).open().unwrap();
            let p = space
                .open_partition("kv", PartitionCreateOptions::default())
                .unwrap();
            f.put_none = load(&space, &p, false);
        }
        {
            let space = Config::new(dir.join("lat")).open().unwrap();
            let p = space
                .open_partition("kv", PartitionCreateOptions::default())
                .unwrap();
            let mut lat = Vec::new();
            for (i, k) in ks.iter().take(2000).enumerate() {
                let t = Instant::now();
                p.insert(k, value(i)).unwrap();
                space.persist(PersistMode::SyncAll).unwrap();
                lat.push(t.elapsed());
            }
            f.put_p50 = pct(&mut lat, 0.5);
            f.put_p99 = pct(&mut lat, 0.99);
        }
        f
    }
}

// ---------------------------------------------------------------- redb

struct Redb;
const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn run(&mut self, dir: &Path, ks: &[[u8; 16]], order: &[usize]) -> Figures {
        let mut f = Figures::default();
        let load = |db: &redb::Database, durable: bool| {
            let t = Instant::now();
            for (c, chunk) in ks.chunks(BATCH).enumerate() {
                let mut w = db.begin_write().unwrap();
                if !durable {
                    w.set_durability(redb::Durability::None);
                }
                {
                    let mut tb = w.open_table(TABLE).unwrap();
                    for (i, k) in chunk.iter().enumerate() {
                        tb.insert(&k[..], &value(c * BATCH + i)[..]).unwrap();
                    }
                }
                w.commit().unwrap();
            }
            ks.len() as f64 / t.elapsed().as_secs_f64()
        };
        {
            let db = redb::Database::create(dir.join("sync.redb")).unwrap();
            f.put_sync = load(&db, true);
            let r = db.begin_read().unwrap();
            let tb = r.open_table(TABLE).unwrap();
            let t = Instant::now();
            let mut found = 0;
            for &i in order {
                found += tb.get(&ks[i][..]).unwrap().is_some() as usize;
            }
            f.get = order.len() as f64 / t.elapsed().as_secs_f64();
            assert_eq!(found, order.len());
            let mut lat = Vec::with_capacity(100_000);
            for &i in order.iter().take(100_000) {
                let t = Instant::now();
                // A single get as a caller makes it: its own read transaction.
                let r = db.begin_read().unwrap();
                let tb = r.open_table(TABLE).unwrap();
                std::hint::black_box(tb.get(&ks[i][..]).unwrap().map(|g| g.value().to_vec()));
                lat.push(t.elapsed());
            }
            f.get_p50 = pct(&mut lat, 0.5);
            f.get_p99 = pct(&mut lat, 0.99);
        }
        {
            let db = redb::Database::create(dir.join("none.redb")).unwrap();
            f.put_none = load(&db, false);
        }
        {
            let db = redb::Database::create(dir.join("lat.redb")).unwrap();
            let mut lat = Vec::new();
            for (i, k) in ks.iter().take(2000).enumerate() {
                let t = Instant::now();
                let w = db.begin_write().unwrap();
                w.open_table(TABLE)
                    .unwrap()
                    .insert(&k[..], &value(i)[..])
                    .unwrap();
                w.commit().unwrap();
                lat.push(t.elapsed());
            }
            f.put_p50 = pct(&mut lat, 0.5);
            f.put_p99 = pct(&mut lat, 0.99);
        }
        f
    }
}

// ---------------------------------------------------------------- percore only

/// Reopen time and index bytes per key (beyond the 16-byte key) for a store of `ks`.
fn reopen(p: &Percore, dir: &Path, ks: &[[u8; 16]]) -> (Duration, f64) {
    let d = dir.join("sync");
    let n = ks.len();
    p.on_worker(move |io| async move {
        let before = LIVE.load(Ordering::Relaxed);
        let t = Instant::now();
        let kv = KvShard::open(io, &d, opts(Durability::Sync)).await.unwrap();
        let took = t.elapsed();
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        assert_eq!(kv.len(), n);
        assert_eq!(kv.report().scanned, 0, "every sealed segment has a hint");
        kv.close().await.unwrap();
        (took, bytes as f64 / n as f64 - 16.0)
    })
}

/// Puts/s of an overwrite workload (None mode, 100k keys) for `secs`, compaction on or off.
fn overwrite(p: &Percore, dir: &Path, compaction: bool, secs: f64) -> (f64, u64) {
    let d = dir.join(format!("overwrite-{compaction}"));
    // A fresh store each time: one left by an earlier run carries its garbage into this
    // run's window (compaction then works for the earlier run; measured 37-41 % "cost").
    let _ = std::fs::remove_dir_all(&d);
    p.on_worker(move |io| async move {
        let o = KvOptions {
            durability: Durability::None,
            compaction,
            max_segment_bytes: 8 << 20,
            compaction_min_garbage_bytes: 8 << 20,
            ..KvOptions::default()
        };
        let kv = KvShard::open(io, &d, o).await.unwrap();
        let ks = keys(100_000, 7);
        let t = Instant::now();
        let mut n = 0usize;
        while t.elapsed().as_secs_f64() < secs {
            let mut b = WriteBatch::new();
            for j in 0..BATCH {
                b.put(ks[(n + j) % ks.len()].to_vec(), value(n + j).to_vec());
            }
            kv.write(&b).await.unwrap();
            n += BATCH;
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let c = kv.stats().compactions;
        kv.close().await.unwrap();
        (rate, c)
    })
}

fn main() {
    let mut dir = PathBuf::from("target/kv-bench-data");
    let mut n = 1_000_000usize;
    let mut rounds = 1usize;
    let mut reopen_only = false;
    let mut engines = vec![0usize, 1, 2];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            "--keys" => n = args.next().and_then(|v| v.parse().ok()).expect("--keys N"),
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds R")
            }
            // Only the reopen measurement, on the store a previous full run left behind.
            "--reopen-only" => reopen_only = true,
            // A subset of the engines (comma-separated names), e.g. for a profile of one.
            "--engines" => {
                let v = args.next().expect("--engines percore,fjall,redb");
                engines = ["percore", "fjall", "redb"]
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| v.split(',').any(|x| x == **n))
                    .map(|(i, _)| i)
                    .collect();
            }
            _ => {
                eprintln!(
                    "usage: percore-kv-bench [--dir DIR] [--keys N] [--rounds R] [--engines A,B] [--reopen-only]"
                );
                std::process::exit(2);
            }
        }
    }
    let ks = keys(n, 42);
    let mut order: Vec<usize> = (0..n).collect();
    let mut r = ChaCha8Rng::seed_from_u64(9);
    for i in (1..n).rev() {
        order.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
    }
    let rt = Runtime::builder()
        .profile(Profile::Production)
        .app_workers(std::num::NonZeroUsize::MIN)
        .io_colocated(true)
        .build()
        .expect("runtime");
    let (mut p, mut fj, mut rd) = (Percore { rt }, Fjall, Redb);
    if reopen_only {
        for _ in 0..3 {
            let (t, per_key) = reopen(&p, &dir.join("percore-0"), &ks);
            println!(
                "percore reopen with {n} keys: {:.3} s; index {per_key:.1} bytes per key beyond the key",
                t.as_secs_f64()
            );
        }
        return;
    }
    let names = ["percore", "fjall", "redb"];
    println!(
        "{n} keys of 16 random bytes, {VALUE}-byte values, batches of {BATCH}; dir {}",
        dir.display()
    );
    let mut all: Vec<Vec<Figures>> = vec![Vec::new(); names.len()];
    for round in 0..rounds {
        // Alternate the order each round: no engine always runs first (or last).
        let mut idx = engines.clone();
        if round % 2 == 1 {
            idx.reverse();
        }
        for i in idx {
            let e: &mut dyn Engine = match i {
                0 => &mut p,
                1 => &mut fj,
                _ => &mut rd,
            };
            let d = dir.join(format!("{}-{round}", e.name()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            let f = e.run(&d, &ks, &order);
            all[i].push(f);
        }
    }
    let med = |v: &[Figures], g: fn(&Figures) -> f64| {
        let mut x: Vec<f64> = v.iter().map(g).collect();
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // The median; with an even count, the mean of the middle two.
        let m = x.len() / 2;
        if x.len().is_multiple_of(2) {
            (x[m - 1] + x[m]) / 2.0
        } else {
            x[m]
        }
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{:<8} {:>14} {:>14} {:>14} {:>12} {:>17} {:>17}",
        "engine",
        "put sync/s",
        "put group/s",
        "put none/s",
        "get/s",
        "put p50/p99 µs",
        "get p50/p99 µs"
    );
    for (i, name) in names.iter().enumerate() {
        let v = &all[i];
        if v.is_empty() {
            continue;
        }
        let last = v.last().unwrap();
        println!(
            "{:<8} {:>14.0} {:>14.0} {:>14.0} {:>12.0} {:>8.1}/{:<8.1} {:>8.2}/{:<8.2}",
            name,
            med(v, |f| f.put_sync),
            med(v, |f| f.put_group),
            med(v, |f| f.put_none),
            med(v, |f| f.get),
            us(last.put_p50),
            us(last.put_p99),
            us(last.get_p50),
            us(last.get_p99),
        );
    }
    for (i, name) in names.iter().enumerate().skip(1) {
        if all[0].is_empty() || all[i].is_empty() {
            continue;
        }
        println!(
            "ratio percore/{}: put sync {:.2}, put none {:.2}, get {:.2}",
            name,
            med(&all[0], |f| f.put_sync) / med(&all[i], |f| f.put_sync),
            med(&all[0], |f| f.put_none) / med(&all[i], |f| f.put_none),
            med(&all[0], |f| f.get) / med(&all[i], |f| f.get),
        );
    }
    if all[0].is_empty() {
        return;
    }
    let p = &p;
    let (t, per_key) = reopen(p, &dir.join("percore-0"), &ks);
    println!(
        "percore reopen with {n} keys: {:.3} s; index {:.1} bytes per key beyond the key",
        t.as_secs_f64(),
        per_key
    );
    // Off, on, on, off: drift over the four windows cancels out of the sums.
    let (off1, _) = overwrite(p, &dir, false, 4.0);
    let (on1, c1) = overwrite(p, &dir, true, 4.0);
    let (on2, c2) = overwrite(p, &dir, true, 4.0);
    let (off2, _) = overwrite(p, &dir, false, 4.0);
    let (off, on) = ((off1 + off2) / 2.0, (on1 + on2) / 2.0);
    println!(
        "overwrites (100k keys, None mode, off/on/on/off): {off:.0}/s without compaction, {on:.0}/s with ({} compactions): cost {:.1} %",
        c1 + c2,
        (1.0 - on / off) * 100.0
    );
    // Everything but the store `--reopen-only` reopens: each round leaves a few GB behind.
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name() != "percore-0" {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

//! Crash test: a child process writes to a key-value shard with `Sync` and with `GroupCommit`
//! durability, printing each acknowledged write; it is SIGKILLed at a random moment, the
//! store is reopened, and every acknowledged write must be there, every batch all or nothing,
//! nothing corrupt. `PERCORE_KV_CRASH_ROUNDS` sets the rounds (default 50; the documented long
//! run is 1,000).

use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use percore::runtime::Runtime;
use percore::storage::file::FileIo;
use percore::storage::kv::{Durability, KvOptions, KvShard, WriteBatch};

const CHILD_DIR: &str = "PERCORE_KV_CRASH_DIR";
const CHILD_MODE: &str = "PERCORE_KV_CRASH_MODE";

fn opts(mode: &str) -> KvOptions {
    KvOptions {
        durability: match mode {
            "sync" => Durability::Sync,
            _ => Durability::GroupCommit {
                interval: Duration::from_millis(2),
                max_bytes: 64 << 10,
            },
        },
        // Small segments: rotations, hint files and compaction all happen within a round.
        max_segment_bytes: 64 << 10,
        compaction_min_garbage_bytes: 1,
        ..KvOptions::default()
    }
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}-")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

/// The writer, in the child process. Ignored on its own.
#[test]
#[ignore = "helper: runs in the child process of kill_9_loses_no_acknowledged_write"]
fn kv_crash_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    let rt = Runtime::testing(1).unwrap();
    let io = FileIo::for_worker(&rt.handle(), 0);
    let start: u64 = std::env::var("PERCORE_KV_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    rt.block_on(async move {
        let kv = KvShard::open(io, std::path::Path::new(&dir), opts(&mode))
            .await
            .unwrap();
        println!("OPEN");
        let mut i = start;
        loop {
            if i.is_multiple_of(3) {
                // A batch of three puts and a delete of an earlier single key.
                let mut b = WriteBatch::new();
                for j in 0..3 {
                    b.put(format!("b{i}-{j}"), value(i));
                }
                b.delete(format!("gone{i}"));
                kv.write(&b).await.unwrap();
                println!("BATCH {i}");
            } else {
                kv.put(format!("k{i}").as_bytes(), &value(i)).await.unwrap();
                println!("PUT {i}");
            }
            i += 1;
        }
    });
}

/// A small deterministic generator for the kill delays (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let rounds: usize = std::env::var("PERCORE_KV_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut puts = BTreeSet::new();
    let mut batches = BTreeSet::new();
    let mut next = 1u64;
    let rt = Runtime::testing(1).unwrap();
    let mut total_truncated = 0;
    for round in 0..rounds {
        let mode = if round % 2 == 0 { "sync" } else { "group" };
        let mut child = Command::new(&exe)
            .args(["--exact", "kv_crash_child", "--ignored", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_MODE, mode)
            .env("PERCORE_KV_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // The kill lands at a random moment after the store is open (opening takes longer as
        // the store grows).
        let mut lines = Vec::new();
        while !lines.iter().any(|l| l == "OPEN") {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => lines.push(l),
                Err(e) => {
                    panic!("round {round}: the child never opened the store ({e}): {lines:?}")
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 100));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        lines.extend(rx.iter());
        for l in &lines {
            let mut w = l.split(' ');
            match (w.next(), w.next().and_then(|n| n.parse::<u64>().ok())) {
                (Some("PUT"), Some(i)) => {
                    puts.insert(i);
                    next = next.max(i + 1);
                }
                (Some("BATCH"), Some(i)) => {
                    batches.insert(i);
                    next = next.max(i + 1);
                }
                _ => {}
            }
        }
        // Ids the child may have written without acknowledging: skip them next round.
        next += 10;
        let io = FileIo::for_worker(&rt.handle(), 0);
        let (truncated, acked) = rt.block_on(async {
            let kv = KvShard::open(io, dir.path(), opts(mode)).await.unwrap();
            let report = kv.report().clone();
            assert!(report.is_clean(), "round {round}: {report}");
            for &i in &puts {
                let v = kv.get(format!("k{i}").as_bytes()).await.unwrap();
                assert_eq!(
                    v.as_deref(),
                    Some(value(i).as_slice()),
                    "round {round}: acknowledged put {i} lost"
                );
            }
            // Every batch, acknowledged or not, is all or nothing.
            for i in (3..next).step_by(3) {
                let mut present = 0;
                for j in 0..3 {
                    if let Some(v) = kv.get(format!("b{i}-{j}").as_bytes()).await.unwrap() {
                        assert_eq!(v, value(i), "round {round}: batch {i} value");
                        present += 1;
                    }
                }
                assert!(
                    present == 0 || present == 3,
                    "round {round}: batch {i} half applied ({present} of 3)"
                );
                if batches.contains(&i) {
                    assert_eq!(present, 3, "round {round}: acknowledged batch {i} lost");
                }
            }
            kv.close().await.unwrap();
            (report.truncated.len(), puts.len() + batches.len())
        });
        total_truncated += truncated;
        assert!(
            acked > 0 || round < 2,
            "no writes acknowledged by round {round}"
        );
    }
    eprintln!(
        "{rounds} rounds: {} puts and {} batches acknowledged, all present; {total_truncated} torn tails cut",
        puts.len(),
        batches.len()
    );
    rt.shutdown();
}

//! The block store, the object store and durable actor state (journal) on real files, on the
//! io_uring and the blocking-pool paths.

mod common;

use std::collections::BTreeMap;

use common::{Backend, runtime};
use percore::runtime::{Actor, Context, Reply, Runtime};
use percore::storage::file::FileIo;
use percore::storage::{
    BlockStore, Durable, Journal, JournalOptions, ObjectService, ObjectStore, StorageError,
};
use serde::{Deserialize, Serialize};

fn backends() -> Vec<Backend> {
    [Backend::Uring, Backend::Mio]
        .into_iter()
        .filter(|b| common::usable(*b))
        .collect()
}

fn io(rt: &Runtime) -> FileIo {
    FileIo::for_worker(&rt.handle(), 0)
}

#[test]
fn block_ranges_round_trip_persist_and_are_bounds_checked() {
    for b in backends() {
        let rt = runtime(b, false);
        // A block-backed filesystem, so that O_DIRECT is real here.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let path = dir.path().join("blocks");
        rt.block_on(async {
            let bs = BlockStore::open(&io(&rt), &path, 4096, Some(64))
                .await
                .unwrap();
            assert_eq!((bs.block_size(), bs.blocks()), (4096, 64));
            let mut w = bs.buffer(3).unwrap();
            for (i, x) in w.iter_mut().enumerate() {
                *x = (i / 4096) as u8 + 1;
            }
            bs.write(10, w).await.unwrap();
            bs.sync().await.unwrap();
            let r = bs.read(10, 3).await.unwrap();
            assert!(r[..4096].iter().all(|&x| x == 1) && r[8192..].iter().all(|&x| x == 3));
            assert!(matches!(
                bs.read(63, 2).await,
                Err(StorageError::OutOfRange { limit: 64, .. })
            ));
            assert!(matches!(
                bs.write(64, bs.buffer(1).unwrap()).await,
                Err(StorageError::OutOfRange { .. })
            ));
            assert!(matches!(
                bs.read(u64::MAX, 1).await,
                Err(StorageError::OutOfRange { .. })
            ));
            let mut odd = bs.buffer(1).unwrap();
            odd.set_len(100);
            assert!(matches!(
                bs.write(0, odd).await,
                Err(StorageError::Config { .. })
            ));
            assert!(matches!(
                BlockStore::open(&io(&rt), &path, 1000, None).await,
                Err(StorageError::Config { .. })
            ));
        });
        rt.block_on(async {
            let bs = BlockStore::open(&io(&rt), &path, 4096, None).await.unwrap();
            assert_eq!(bs.blocks(), 64, "the size is kept");
            let r = bs.read(11, 1).await.unwrap();
            assert!(r.iter().all(|&x| x == 2), "{b:?}: block 11 after reopening");
        });
        rt.shutdown();
    }
}

/// A real block device: a loop device over a file (root only; `PERCORE_TEST_REQUIRE_MOUNT`
/// makes a refusal a failure, as CI does).
#[test]
fn a_block_store_on_a_real_block_device() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let backing = dir.path().join("disk.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let out = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output();
    let dev = match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap().trim().to_string(),
        other => {
            assert!(
                std::env::var_os("PERCORE_TEST_REQUIRE_MOUNT").is_none(),
                "a loop device is required here (PERCORE_TEST_REQUIRE_MOUNT): {other:?}"
            );
            eprintln!("cannot attach a loop device here (not root?): test skipped");
            return;
        }
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &self.0])
                .status();
        }
    }
    let _d = Detach(dev.clone());
    let rt = runtime(Backend::Uring, false);
    rt.block_on(async {
        let path = std::path::Path::new(&dev);
        let bs = BlockStore::open(&io(&rt), path, 4096, None).await.unwrap();
        assert_eq!(bs.blocks(), 1024, "4 MiB device = 1024 blocks of 4 KiB");
        let mut w = bs.buffer(2).unwrap();
        w.iter_mut().for_each(|x| *x = 0xab);
        bs.write(1022, w).await.unwrap();
        bs.sync().await.unwrap();
        assert!(bs.read(1022, 2).await.unwrap().iter().all(|&x| x == 0xab));
        assert!(matches!(
            bs.read(1023, 2).await,
            Err(StorageError::OutOfRange { limit: 1024, .. })
        ));
        assert!(
            matches!(
                BlockStore::open(&io(&rt), path, 4096, Some(2048)).await,
                Err(StorageError::OutOfRange { .. })
            ),
            "a device is not grown"
        );
    });
    rt.shutdown();
    // The bytes reached the device: read the backing file directly.
    let raw = std::fs::read(&backing).unwrap();
    assert!(raw[1022 * 4096..].iter().all(|&x| x == 0xab));
}

#[test]
fn objects_stream_in_chunks_list_by_prefix_in_pages_and_replace_atomically() {
    for b in backends() {
        let rt = runtime(b, false);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        rt.block_on(async {
            let os = ObjectStore::open(io(&rt), &d).await.unwrap();
            let mut user = BTreeMap::new();
            user.insert("owner".to_string(), "ana".to_string());
            let mut w = os
                .put_stream("photos/cat.jpg", "image/jpeg", user.clone())
                .await
                .unwrap();
            let mut whole = Vec::new();
            for i in 0..20u8 {
                let chunk = vec![i; 10_000];
                whole.extend_from_slice(&chunk);
                w.write(chunk).await.unwrap();
            }
            assert!(
                os.head("photos/cat.jpg").is_none(),
                "invisible until finished"
            );
            let meta = w.finish().await.unwrap();
            assert_eq!(meta.size, 200_000);
            assert_eq!(meta.user, user);
            // An independent SHA-256: the sha256sum tool.
            let tmp = dir.path().join("whole");
            std::fs::write(&tmp, &whole).unwrap();
            let out = std::process::Command::new("sha256sum")
                .arg(&tmp)
                .output()
                .unwrap();
            let want = String::from_utf8(out.stdout).unwrap();
            assert_eq!(meta.sha256, want.split(' ').next().unwrap());
            std::fs::remove_file(&tmp).unwrap();
            assert_eq!(os.get("photos/cat.jpg").await.unwrap().unwrap(), whole);
            assert_eq!(
                os.get_range("photos/cat.jpg", 19_995, 10)
                    .await
                    .unwrap()
                    .unwrap(),
                [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
            );
            assert_eq!(
                os.get_range("photos/cat.jpg", 199_998, 100)
                    .await
                    .unwrap()
                    .unwrap()
                    .len(),
                2
            );
            assert!(matches!(
                os.get_range("photos/cat.jpg", 200_001, 1).await,
                Err(StorageError::OutOfRange { .. })
            ));
            for i in 0..25 {
                os.put(&format!("docs/{i:02}.txt"), "text/plain", vec![b'x'; i])
                    .await
                    .unwrap();
            }
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = os.list("docs/", after.as_deref(), 10);
                seen.extend(page.objects.iter().map(|m| m.key.clone()));
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let want: Vec<String> = (0..25).map(|i| format!("docs/{i:02}.txt")).collect();
            assert_eq!(seen, want);
            assert_eq!(os.list("photos/", None, 10).objects.len(), 1);
            // Replace: the new content and metadata, the old data file gone.
            let m2 = os
                .put("docs/03.txt", "text/markdown", b"new".to_vec())
                .await
                .unwrap();
            assert_eq!(os.get("docs/03.txt").await.unwrap().unwrap(), b"new");
            assert_eq!(
                os.head("docs/03.txt").unwrap().content_type,
                "text/markdown"
            );
            assert!(m2.version > 0);
            assert!(os.delete("docs/04.txt").await.unwrap());
            assert!(!os.delete("docs/04.txt").await.unwrap());
            // A put cut off before `finish` (dropped): nothing visible, cleaned at open.
            let mut w = os.put_stream("half", "x/y", BTreeMap::new()).await.unwrap();
            w.write(vec![1; 100]).await.unwrap();
            drop(w);
        });
        rt.block_on(async {
            let os = ObjectStore::open(io(&rt), &d).await.unwrap();
            assert_eq!(os.len(), 1 + 25 - 1);
            assert!(os.head("half").is_none());
            assert_eq!(os.get("docs/03.txt").await.unwrap().unwrap(), b"new");
            let data_files = std::fs::read_dir(d.join("data")).unwrap().count();
            assert_eq!(data_files, os.len(), "no orphan data files");
            assert_eq!(std::fs::read_dir(d.join("tmp")).unwrap().count(), 0);
        });
        rt.shutdown();
    }
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Account {
    balance: i64,
    history: Vec<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Tx {
    Deposit(i64),
    Withdraw(i64),
}

impl Durable for Account {
    type Event = Tx;
    fn apply(&mut self, e: &Tx) {
        let d = match e {
            Tx::Deposit(n) => *n,
            Tx::Withdraw(n) => -n,
        };
        self.balance += d;
        self.history.push(d);
    }
}

#[test]
fn the_sharded_object_service_routes_by_key_streams_lists_across_shards_and_persists() {
    for b in backends() {
        for colocated in [true, false] {
            let rt = runtime(b, colocated);
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_path_buf();
            let h = rt.handle();
            let d2 = d.clone();
            rt.block_on(async move {
                let s = ObjectService::open(&h, &d2).await.unwrap();
                assert_eq!(s.shards(), 2);
                let keys: Vec<String> = (0..40).map(|i| format!("k/{i:02}")).collect();
                for k in &keys {
                    s.put(k, "text/plain", k.as_bytes().to_vec()).await.unwrap();
                }
                s.put("other/x", "text/plain", b"x".to_vec()).await.unwrap();
                let on0 = keys.iter().filter(|k| s.shard_of(k) == 0).count();
                assert!(
                    on0 > 5 && on0 < 35,
                    "keys spread over both shards: {on0} of 40 on 0"
                );

                // A streamed upload, its metadata and ranges.
                let mut up = s
                    .put_stream("big", "application/octet-stream", BTreeMap::new())
                    .await
                    .unwrap();
                let mut whole = Vec::new();
                for i in 0..3u8 {
                    let chunk = vec![i; 100_000];
                    whole.extend_from_slice(&chunk);
                    up.write(chunk).await.unwrap();
                }
                assert_eq!(up.written(), 300_000);
                assert!(
                    s.head("big").await.unwrap().is_none(),
                    "invisible before finish"
                );
                let meta = up.finish().await.unwrap();
                assert_eq!(meta.size, 300_000);
                assert_eq!(s.get("big").await.unwrap().unwrap(), whole);
                assert_eq!(
                    s.get_range("big", 99_998, 4).await.unwrap().unwrap(),
                    [0, 0, 1, 1]
                );
                // An upload dropped before finish leaves nothing.
                let mut gone = s
                    .put_stream("abandoned", "text/plain", BTreeMap::new())
                    .await
                    .unwrap();
                gone.write(b"partial".to_vec()).await.unwrap();
                drop(gone);
                assert!(s.head("abandoned").await.unwrap().is_none());

                // Pages of 7 across both shards: every key once, in order.
                let mut seen = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = s.list("k/", after.as_deref(), 7).await.unwrap();
                    assert!(page.objects.len() <= 7);
                    seen.extend(page.objects.iter().map(|m| m.key.clone()));
                    match page.next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                assert_eq!(seen, keys);
                assert!(s.delete("k/03").await.unwrap());
                assert!(!s.delete("k/03").await.unwrap());
                assert!(s.get("k/03").await.unwrap().is_none());
                s.close().await.unwrap();
                assert!(matches!(s.get("k/04").await, Err(StorageError::Closed)));
            });
            // Reopened: everything committed is there.
            let h = rt.handle();
            let d3 = d.clone();
            rt.block_on(async move {
                let s = ObjectService::open(&h, &d3).await.unwrap();
                let all = s.list("", None, 100).await.unwrap();
                assert_eq!(all.objects.len(), 39 + 1 + 1);
                assert_eq!(s.get("k/39").await.unwrap().unwrap(), b"k/39");
                assert_eq!(s.head("big").await.unwrap().unwrap().size, 300_000);
                s.close().await.unwrap();
            });
            rt.shutdown();
            // Another number of workers would look for keys on the wrong shard: refused.
            let one = Runtime::testing(1).unwrap();
            let h = one.handle();
            let e = one
                .block_on(async move { ObjectService::open(&h, &d).await.err() })
                .expect("refused");
            assert!(matches!(e, StorageError::Config { .. }), "{e}");
            one.shutdown();
        }
    }
}

#[test]
fn a_journal_replays_events_after_its_snapshot_and_cuts_a_torn_tail() {
    for b in backends() {
        let rt = runtime(b, false);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let opts = JournalOptions {
            snapshot_every: Some(7),
            ..JournalOptions::default()
        };
        rt.block_on(async {
            let mut j = Journal::open(io(&rt), &d, opts.clone(), Account::default)
                .await
                .unwrap();
            for i in 1..=20 {
                j.persist(Tx::Deposit(i)).await.unwrap();
            }
            j.persist_all(vec![Tx::Withdraw(5), Tx::Withdraw(5)])
                .await
                .unwrap();
            assert_eq!(j.state().balance, 210 - 10);
            assert_eq!(
                j.seq(),
                22,
                "a snapshot at 7, 14 and 22 (the batch passed 21)"
            );
            j.persist(Tx::Deposit(10)).await.unwrap();
        });
        // Exactly one log remains, behind the last snapshot.
        let logs: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("wal-"))
            .collect();
        assert_eq!(logs.len(), 1, "{logs:?}");
        // A torn frame at the end of the log is cut off at open.
        let log = d.join(&logs[0]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, &[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        rt.block_on(async {
            let j = Journal::open(io(&rt), &d, opts.clone(), Account::default)
                .await
                .unwrap();
            assert_eq!(j.state().balance, 210, "{b:?}");
            assert_eq!(j.state().history.len(), 23);
            assert_eq!(j.report().snapshot_seq, 22);
            assert_eq!(j.report().replayed, 1);
            assert_eq!(j.report().truncated, 6);
        });
        rt.shutdown();
    }
}

/// An actor that opens its journal in `started` and persists before it answers.
struct Bank {
    dir: std::path::PathBuf,
    io: FileIo,
    journal: Option<Journal<Account>>,
}

enum BankMsg {
    Deposit(i64, Reply<i64>),
    Balance(Reply<i64>),
}

impl Actor for Bank {
    type Msg = BankMsg;
    async fn started(&mut self, _ctx: &mut Context<Self>) {
        self.journal = Some(
            Journal::open(
                self.io.clone(),
                &self.dir,
                JournalOptions::default(),
                Account::default,
            )
            .await
            .expect("journal opens"),
        );
    }
    async fn handle(&mut self, msg: BankMsg, _ctx: &mut Context<Self>) {
        let j = self.journal.as_mut().expect("opened in started");
        match msg {
            BankMsg::Deposit(n, r) => {
                j.persist(Tx::Deposit(n)).await.expect("persisted");
                let _ = r.send(j.state().balance);
            }
            BankMsg::Balance(r) => {
                let _ = r.send(j.state().balance);
            }
        }
    }
}

#[test]
fn an_actor_restarted_on_its_journal_keeps_its_state() {
    let rt = runtime(Backend::Uring, false);
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        let (d, io) = (dir.path().to_path_buf(), io(&rt));
        rt.spawn_actor_on(1, move || Bank {
            dir: d,
            io,
            journal: None,
        })
        .unwrap()
    };
    let t = std::time::Duration::from_secs(10);
    let a = spawn();
    let last = rt.block_on(async {
        let mut last = 0;
        for i in 1..=50 {
            last = a.ask(|r| BankMsg::Deposit(i, r), t).await.unwrap();
        }
        a.stop();
        a.stopped().await;
        last
    });
    assert_eq!(last, 1275);
    let b = spawn();
    let got = rt.block_on(b.ask(BankMsg::Balance, t)).unwrap();
    assert_eq!(got, 1275);
    rt.shutdown();
}

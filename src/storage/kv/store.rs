//! [`KvStore`]: the key-value store sharded across the app workers. One [`KvShard`] per worker
//! (in `DIR/shard-N/`), each behind a shard actor; a key's shard is chosen by the runtime's
//! [`HashPartitioner`], so `kv.put(key, value).await` from any worker (or a `block_on` thread)
//! runs on the key's owner core. A shard actor never waits for the disk inside a handler: a
//! write's reply is sent when its durability promise holds, and a read that misses the page
//! cache finishes in its own task, so one slow read does not hold up the writes behind it.
//!
//! Multi-key batches are split by owner; each shard applies its part atomically, and the
//! result is reported per key (a batch spanning shards is not atomic across them). Scans ask
//! every shard and merge in key order.
//!
//! The number of shards is recorded in `DIR/META`; opening with another number of app workers
//! is an error (keys would be looked for on the wrong shard).
//!
//! Must not touch: segment files (the shard owns them), sockets.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::options::KvOptions;
use super::recovery::OpenReport;
use super::shard::{KvShard, KvStats, WriteBatch};
use crate::runtime::partition::HashPartitioner;
use crate::runtime::{Actor, AskError, Context, Handle, Reply, ShardedAddr};
use crate::storage::error::{Result, StorageError};
use crate::storage::file::{FileIo, run_blocking};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Requests to one shard.
pub enum ShardMsg {
    /// Opening finished?
    Opened(Reply<Result<OpenReport>>),
    /// Set a key.
    Put(Vec<u8>, Vec<u8>, Reply<Result<()>>),
    /// Read a key.
    Get(Vec<u8>, Reply<Result<Option<Vec<u8>>>>),
    /// Remove a key.
    Delete(Vec<u8>, Reply<Result<bool>>),
    /// Apply a batch atomically.
    Write(WriteBatch, Reply<Result<()>>),
    /// Range scan.
    Scan(Bound<Vec<u8>>, Bound<Vec<u8>>, usize, Reply<Result<Pairs>>),
    /// Write and sync everything.
    Flush(Reply<Result<()>>),
    /// Compact now.
    Compact(Reply<Result<bool>>),
    /// Counters.
    Stats(Reply<KvStats>),
    /// Flush, stop and release the directory.
    Close(Reply<Result<()>>),
}

/// The actor owning one shard.
pub struct ShardActor {
    dir: PathBuf,
    opts: KvOptions,
    io: FileIo,
    shard: std::result::Result<KvShard, String>,
}

impl ShardActor {
    fn shard(&self) -> Result<&KvShard> {
        self.shard.as_ref().map_err(|why| StorageError::Io {
            op: "open",
            path: self.dir.clone(),
            source: std::io::Error::other(why.clone()),
        })
    }
}

impl Actor for ShardActor {
    type Msg = ShardMsg;

    async fn started(&mut self, _ctx: &mut Context<Self>) {
        self.shard = KvShard::open(self.io.clone(), &self.dir, self.opts.clone())
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &self.shard {
            tracing::error!(dir = %self.dir.display(), %e, "key-value shard failed to open");
        }
    }

    async fn handle(&mut self, msg: ShardMsg, ctx: &mut Context<Self>) {
        match msg {
            ShardMsg::Opened(r) => {
                let _ = r.send(self.shard().map(|s| s.report().clone()));
            }
            ShardMsg::Put(k, v, r) => {
                let mut b = WriteBatch::new();
                b.put(k, v);
                self.write(b, r).await;
            }
            ShardMsg::Write(b, r) => self.write(b, r).await,
            ShardMsg::Delete(k, r) => match self.shard() {
                Err(e) => drop(r.send(Err(e))),
                Ok(s) => {
                    let existed = s
                        .get_now(&k)
                        .map(|r| matches!(r, Ok(Some(_))))
                        .unwrap_or(true);
                    let mut b = WriteBatch::new();
                    b.delete(k);
                    match s.write_begin(&b).await {
                        Err(e) => drop(r.send(Err(e))),
                        Ok(lsn) => s.on_durable(
                            lsn,
                            Box::new(move |res| drop(r.send(res.map(|()| existed)))),
                        ),
                    }
                }
            },
            ShardMsg::Get(k, r) => match self.shard() {
                Err(e) => drop(r.send(Err(e))),
                Ok(s) => match s.get_now(&k) {
                    Ok(v) => drop(r.send(v)),
                    Err(pending) => crate::runtime::spawn_local(async move {
                        let _ = r.send(pending.read().await);
                    })
                    .detach(),
                },
            },
            ShardMsg::Scan(a, b, limit, r) => match self.shard() {
                Err(e) => drop(r.send(Err(e))),
                Ok(s) => {
                    let s = s.clone();
                    crate::runtime::spawn_local(async move {
                        let res = s
                            .scan(
                                a.as_ref().map(|x| x.as_slice()),
                                b.as_ref().map(|x| x.as_slice()),
                                limit,
                            )
                            .await;
                        let _ = r.send(res);
                    })
                    .detach();
                }
            },
            ShardMsg::Flush(r) => match self.shard() {
                Err(e) => drop(r.send(Err(e))),
                Ok(s) => {
                    let s = s.clone();
                    crate::runtime::spawn_local(async move {
                        let _ = r.send(s.flush().await);
                    })
                    .detach();
                }
            },
            ShardMsg::Compact(r) => match self.shard() {
                Err(e) => drop(r.send(Err(e))),
                Ok(s) => {
                    let s = s.clone();
                    crate::runtime::spawn_local(async move {
                        let _ = r.send(s.compact().await);
                    })
                    .detach();
                }
            },
            ShardMsg::Stats(r) => {
                let _ = r.send(self.shard().map(|s| s.stats()).unwrap_or_default());
            }
            ShardMsg::Close(r) => {
                let res = match self.shard() {
                    Err(_) => Ok(()),
                    Ok(s) => s.close().await,
                };
                self.shard = Err("closed".into());
                let _ = r.send(res);
                ctx.stop();
            }
        }
    }
}

impl ShardActor {
    async fn write(&mut self, b: WriteBatch, r: Reply<Result<()>>) {
        let s = match self.shard() {
            Ok(s) => s,
            Err(e) => return drop(r.send(Err(e))),
        };
        match s.write_begin(&b).await {
            Err(e) => drop(r.send(Err(e))),
            Ok(lsn) => s.on_durable(lsn, Box::new(move |res| drop(r.send(res)))),
        }
    }
}

/// The sharded key-value store. Cheap to clone; usable from any thread of the runtime.
///
/// ```
/// use percore::runtime::Runtime;
/// use percore::storage::kv::{KvOptions, KvStore};
///
/// let rt = Runtime::testing(2).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let h = rt.handle();
/// let got = rt.block_on(async move {
///     // The profile's defaults (Testing: `Sync`), then `PERCORE_KV_*` from the environment.
///     let opts = KvOptions::for_runtime(h.config())?;
///     let kv = KvStore::open(&h, dir.path(), opts).await?;
///     kv.put(b"apple", b"red").await?;
///     let v = kv.get(b"apple").await?;
///     kv.close().await?;
///     Ok::<_, percore::storage::StorageError>(v)
/// });
/// assert_eq!(got.unwrap().as_deref(), Some(&b"red"[..]));
/// rt.shutdown();
/// ```
#[derive(Clone)]
pub struct KvStore {
    addr: ShardedAddr<ShardActor, [u8]>,
    timeout: Duration,
    dir: PathBuf,
}

fn ask_err(e: AskError, timeout: Duration) -> StorageError {
    match e {
        AskError::Timeout(_) => StorageError::Timeout(timeout),
        _ => StorageError::Closed,
    }
}

impl KvStore {
    /// Opens (or creates) the store in `dir` with one shard per app worker of the runtime
    /// behind `handle`, and waits until every shard has rebuilt its index.
    pub async fn open(handle: &Handle, dir: &Path, opts: KvOptions) -> Result<KvStore> {
        opts.validate()?;
        let shards = handle.workers();
        let d = dir.to_path_buf();
        run_blocking(move || check_meta(&d, shards)).await??;
        let h = handle.clone();
        let base = dir.to_path_buf();
        let o = opts.clone();
        let addr = handle
            .spawn_sharded(
                move |w| ShardActor {
                    dir: base.join(format!("shard-{w}")),
                    opts: o.clone(),
                    io: FileIo::for_worker(&h, w),
                    shard: Err("opening".into()),
                },
                HashPartitioner,
            )
            .map_err(|e| StorageError::Io {
                op: "spawn shards",
                path: dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let kv = KvStore {
            addr,
            timeout: opts.request_timeout,
            dir: dir.to_path_buf(),
        };
        let mut first_err = None;
        for a in kv.addr.all() {
            match a.ask(ShardMsg::Opened, kv.timeout).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(ask_err(e, kv.timeout));
                }
            }
        }
        if let Some(e) = first_err {
            let _ = kv.close().await;
            return Err(e);
        }
        Ok(kv)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.addr.shards()
    }

    /// The shard owning `key`.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.addr.shard_of(key)
    }

    async fn ask_key<R: Send + 'static>(
        &self,
        key: &[u8],
        make: impl FnOnce(Reply<Result<R>>) -> ShardMsg,
    ) -> Result<R> {
        self.addr
            .ask(key, make, self.timeout)
            .await
            .map_err(|e| ask_err(e, self.timeout))?
    }

    /// Sets `key` to `value` (when the durability mode's promise holds).
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let (k, v) = (key.to_vec(), value.to_vec());
        self.ask_key(key, |r| ShardMsg::Put(k, v, r)).await
    }

    /// The value of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = key.to_vec();
        self.ask_key(key, |r| ShardMsg::Get(k, r)).await
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&self, key: &[u8]) -> Result<bool> {
        let k = key.to_vec();
        self.ask_key(key, |r| ShardMsg::Delete(k, r)).await
    }

    /// Applies `batch`: split by owner shard, each part atomic. Returns one result per
    /// operation, in the batch's order.
    pub async fn write_batch(&self, batch: WriteBatch) -> Vec<Result<()>> {
        let n = self.shards();
        let mut parts: Vec<(WriteBatch, Vec<usize>)> = vec![(WriteBatch::new(), Vec::new()); n];
        for (i, op) in batch.ops.into_iter().enumerate() {
            let s = self.addr.shard_of(&op.1);
            parts[s].0.ops.push(op);
            parts[s].1.push(i);
        }
        let total: usize = parts.iter().map(|p| p.1.len()).sum();
        let mut out: Vec<Option<Result<()>>> = (0..total).map(|_| None).collect();
        let mut asks = Vec::new();
        for (s, (b, idx)) in parts.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let a = self
                .addr
                .shard(s)
                .expect("shard index from shard_of")
                .clone();
            let t = self.timeout;
            asks.push((
                idx,
                async move { a.ask(|r| ShardMsg::Write(b, r), t).await },
            ));
        }
        for (idx, ask) in asks {
            let r = ask
                .await
                .map_err(|e| ask_err(e, self.timeout))
                .and_then(|r| r);
            for i in idx {
                out[i] = Some(match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.duplicate()),
                });
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(StorageError::Closed)))
            .collect()
    }

    /// Up to `limit` pairs with keys in `(start, end)`, in key order, from every shard.
    pub async fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Pairs> {
        let own = |b: Bound<&[u8]>| b.map(|x| x.to_vec());
        let mut all = Vec::new();
        for a in self.addr.all() {
            let (s, e) = (own(start), own(end));
            let part = a
                .ask(|r| ShardMsg::Scan(s, e, limit, r), self.timeout)
                .await
                .map_err(|e| ask_err(e, self.timeout))??;
            all.extend(part);
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        Ok(all)
    }

    /// Up to `limit` pairs whose keys start with `prefix`, in key order.
    pub async fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Pairs> {
        let end = super::shard::prefix_end(prefix);
        let end_b = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.scan(Bound::Included(prefix), end_b, limit).await
    }

    async fn each<R: Send + 'static>(&self, make: impl Fn(Reply<R>) -> ShardMsg) -> Result<Vec<R>> {
        let mut out = Vec::new();
        for a in self.addr.all() {
            out.push(
                a.ask(&make, self.timeout)
                    .await
                    .map_err(|e| ask_err(e, self.timeout))?,
            );
        }
        Ok(out)
    }

    /// Writes and syncs everything on every shard, whatever the durability mode.
    pub async fn flush(&self) -> Result<()> {
        self.each(ShardMsg::Flush).await?.into_iter().collect()
    }

    /// Compacts every shard now; how many ran.
    pub async fn compact(&self) -> Result<usize> {
        let r: Result<Vec<bool>> = self.each(ShardMsg::Compact).await?.into_iter().collect();
        Ok(r?.into_iter().filter(|b| *b).count())
    }

    /// Counters per shard.
    pub async fn stats(&self) -> Result<Vec<KvStats>> {
        self.each(ShardMsg::Stats).await
    }

    /// Flushes, stops every shard and releases the directory.
    pub async fn close(&self) -> Result<()> {
        let rs = self.each(ShardMsg::Close).await?;
        for a in self.addr.all() {
            a.stopped().await;
        }
        rs.into_iter().collect()
    }
}

/// Creates `DIR/META` recording the shard count, or checks it.
pub(crate) fn check_meta(dir: &Path, shards: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("mkdir", dir, e))?;
    let meta = dir.join("META");
    match std::fs::read_to_string(&meta) {
        Ok(s) => {
            let n: usize = s
                .lines()
                .find_map(|l| l.strip_prefix("shards="))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| StorageError::Corrupt {
                    path: meta.clone(),
                    offset: 0,
                    what: "no shards=N line".into(),
                })?;
            if n != shards {
                return Err(StorageError::Config {
                    name: "app_workers",
                    value: shards.to_string(),
                    why: "the store was created with another number of shards (see DIR/META); \
                          open it with that many app workers",
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("META.tmp");
            std::fs::write(&tmp, format!("format=1\nshards={shards}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &meta))
                .and_then(|()| std::fs::File::open(dir)?.sync_all())
                .map_err(|e| StorageError::io("write", &meta, e))
        }
        Err(e) => Err(StorageError::io("read", &meta, e)),
    }
}

//! [`ObjectService`]: the object store sharded across the app workers, like
//! [`KvStore`](super::kv::KvStore): one [`ObjectStore`] per worker (in `DIR/shard-N/`) behind a
//! shard actor, a key's shard chosen by the runtime's [`HashPartitioner`], so a put, get,
//! range read, delete or streamed upload from any worker runs on the key's owner core. Every
//! request runs in its own local task on the owner, so a slow disk operation never holds up the
//! shard's mailbox; a streamed upload sends its chunks one at a time (each acknowledged before
//! the next: backpressure) to the writer its shard keeps for it. Listings ask every shard and
//! merge pages in key order.
//!
//! The number of shards is recorded in `DIR/META`, as for the key-value store.
//!
//! Must not touch: object files (each shard's `ObjectStore` owns them), sockets.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::{Result, StorageError};
use super::file::{FileIo, run_blocking};
use super::object::{ListPage, ObjectMeta, ObjectStore, ObjectWriter};
use crate::runtime::partition::HashPartitioner;
use crate::runtime::{Actor, AskError, Context, Handle, Reply, ShardedAddr};

/// Requests to one object shard.
pub enum ObjectMsg {
    /// Opening finished?
    Opened(Reply<Result<()>>),
    /// A whole object.
    Put(String, String, Vec<u8>, Reply<Result<ObjectMeta>>),
    /// Start upload `id`.
    Begin(
        u64,
        String,
        String,
        BTreeMap<String, String>,
        Reply<Result<()>>,
    ),
    /// The next chunk of upload `id`.
    Chunk(u64, Vec<u8>, Reply<Result<()>>),
    /// Commit upload `id`.
    Finish(u64, Reply<Result<ObjectMeta>>),
    /// Drop upload `id` (nothing becomes visible).
    Abort(u64),
    /// Metadata.
    Head(String, Reply<Result<Option<ObjectMeta>>>),
    /// A byte range (`None`: whole object).
    Get(String, Option<(u64, u64)>, Reply<Result<Option<Vec<u8>>>>),
    /// Remove.
    Delete(String, Reply<Result<bool>>),
    /// One shard's page.
    List(String, Option<String>, usize, Reply<Result<ListPage>>),
    /// Stop and release the directory.
    Close(Reply<Result<()>>),
}

/// The actor owning one object shard.
pub struct ObjectShard {
    dir: PathBuf,
    io: FileIo,
    store: std::result::Result<ObjectStore, String>,
    uploads: Rc<RefCell<HashMap<u64, ObjectWriter>>>,
}

impl ObjectShard {
    fn store(&self) -> Result<ObjectStore> {
        self.store.clone().map_err(|why| StorageError::Io {
            op: "open",
            path: self.dir.clone(),
            source: std::io::Error::other(why),
        })
    }
}

/// Runs `f` on the shard's store in a local task and sends its result to `r`.
fn task<R: Send + 'static, F: std::future::Future<Output = Result<R>> + 'static>(
    store: Result<ObjectStore>,
    r: Reply<Result<R>>,
    f: impl FnOnce(ObjectStore) -> F + 'static,
) {
    match store {
        Err(e) => drop(r.send(Err(e))),
        Ok(s) => crate::runtime::spawn_local(async move {
            let _ = r.send(f(s).await);
        })
        .detach(),
    }
}

fn no_upload(id: u64) -> StorageError {
    StorageError::Io {
        op: "upload",
        path: PathBuf::new(),
        source: std::io::Error::other(format!("no upload {id} in progress on this shard")),
    }
}

impl Actor for ObjectShard {
    type Msg = ObjectMsg;

    async fn started(&mut self, _ctx: &mut Context<Self>) {
        self.store = ObjectStore::open(self.io.clone(), &self.dir)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &self.store {
            tracing::error!(dir = %self.dir.display(), %e, "object shard failed to open");
        }
    }

    async fn handle(&mut self, msg: ObjectMsg, ctx: &mut Context<Self>) {
        let ups = self.uploads.clone();
        match msg {
            ObjectMsg::Opened(r) => drop(r.send(self.store().map(drop))),
            ObjectMsg::Put(k, ct, bytes, r) => task(self.store(), r, move |s| async move {
                s.put(&k, &ct, bytes).await
            }),
            ObjectMsg::Begin(id, k, ct, user, r) => task(self.store(), r, move |s| async move {
                let w = s.put_stream(&k, &ct, user).await?;
                ups.borrow_mut().insert(id, w);
                Ok(())
            }),
            // The writer is taken out while its chunk is written; the client sends the next
            // chunk only after this one's reply, so it is back in the map by then.
            ObjectMsg::Chunk(id, chunk, r) => task(self.store(), r, move |_| async move {
                let mut w = ups.borrow_mut().remove(&id).ok_or_else(|| no_upload(id))?;
                let res = w.write(chunk).await;
                if res.is_ok() {
                    ups.borrow_mut().insert(id, w);
                }
                res
            }),
            ObjectMsg::Finish(id, r) => task(self.store(), r, move |_| async move {
                let w = ups.borrow_mut().remove(&id).ok_or_else(|| no_upload(id))?;
                w.finish().await
            }),
            ObjectMsg::Abort(id) => drop(ups.borrow_mut().remove(&id)),
            ObjectMsg::Head(k, r) => task(self.store(), r, move |s| async move { Ok(s.head(&k)) }),
            ObjectMsg::Get(k, range, r) => task(self.store(), r, move |s| async move {
                match range {
                    None => s.get(&k).await,
                    Some((off, len)) => s.get_range(&k, off, len).await,
                }
            }),
            ObjectMsg::Delete(k, r) => {
                task(self.store(), r, move |s| async move { s.delete(&k).await })
            }
            ObjectMsg::List(prefix, after, limit, r) => {
                task(self.store(), r, move |s| async move {
                    Ok(s.list(&prefix, after.as_deref(), limit))
                })
            }
            ObjectMsg::Close(r) => {
                self.uploads.borrow_mut().clear();
                self.store = Err("closed".into());
                let _ = r.send(Ok(()));
                ctx.stop();
            }
        }
    }
}

/// The sharded object store. Cheap to clone; usable from any thread of the runtime.
///
/// ```
/// use percore::runtime::Runtime;
/// use percore::storage::ObjectService;
///
/// let rt = Runtime::testing(2).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let h = rt.handle();
/// let got = rt.block_on(async move {
///     let objects = ObjectService::open(&h, dir.path()).await?;
///     let mut up = objects.put_stream("logs/a.txt", "text/plain", Default::default()).await?;
///     up.write(b"hello, ".to_vec()).await?;
///     up.write(b"world".to_vec()).await?;
///     let meta = up.finish().await?;
///     assert_eq!(meta.size, 12);
///     let part = objects.get_range("logs/a.txt", 7, 5).await?;
///     objects.close().await?;
///     Ok::<_, percore::storage::StorageError>(part)
/// });
/// assert_eq!(got.unwrap().as_deref(), Some(&b"world"[..]));
/// rt.shutdown();
/// ```
#[derive(Clone)]
pub struct ObjectService {
    addr: ShardedAddr<ObjectShard, [u8]>,
    timeout: Duration,
}

static NEXT_UPLOAD: AtomicU64 = AtomicU64::new(1);

fn ask_err(e: AskError, timeout: Duration) -> StorageError {
    match e {
        AskError::Timeout(_) => StorageError::Timeout(timeout),
        _ => StorageError::Closed,
    }
}

impl ObjectService {
    /// Opens (or creates) the store in `dir` with one shard per app worker, waiting until
    /// every shard has loaded its metadata. Requests time out after 30 s.
    pub async fn open(handle: &Handle, dir: &Path) -> Result<ObjectService> {
        let shards = handle.workers();
        let d = dir.to_path_buf();
        run_blocking(move || super::kv::check_meta(&d, shards)).await??;
        let (h, base) = (handle.clone(), dir.to_path_buf());
        let addr = handle
            .spawn_sharded(
                move |w| ObjectShard {
                    dir: base.join(format!("shard-{w}")),
                    io: FileIo::for_worker(&h, w),
                    store: Err("opening".into()),
                    uploads: Rc::default(),
                },
                HashPartitioner,
            )
            .map_err(|e| StorageError::Io {
                op: "spawn shards",
                path: dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let s = ObjectService {
            addr,
            timeout: Duration::from_secs(30),
        };
        if let Err(e) = s.ask_every(ObjectMsg::Opened).await {
            let _ = s.close().await;
            return Err(e);
        }
        Ok(s)
    }

    /// Asks every shard; the first error, after all have answered.
    async fn ask_every(&self, make: fn(Reply<Result<()>>) -> ObjectMsg) -> Result<()> {
        let mut first = None;
        for a in self.addr.all() {
            let r = a
                .ask(make, self.timeout)
                .await
                .map_err(|e| ask_err(e, self.timeout))
                .and_then(|r| r);
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.addr.shards()
    }

    /// The shard owning `key`.
    pub fn shard_of(&self, key: &str) -> usize {
        self.addr.shard_of(key.as_bytes())
    }

    async fn ask<R: Send + 'static>(
        &self,
        key: &str,
        make: impl FnOnce(Reply<Result<R>>) -> ObjectMsg,
    ) -> Result<R> {
        self.addr
            .ask(key.as_bytes(), make, self.timeout)
            .await
            .map_err(|e| ask_err(e, self.timeout))?
    }

    /// Puts a whole object.
    pub async fn put(&self, key: &str, content_type: &str, bytes: Vec<u8>) -> Result<ObjectMeta> {
        let (k, ct) = (key.to_string(), content_type.to_string());
        self.ask(key, |r| ObjectMsg::Put(k, ct, bytes, r)).await
    }

    /// Starts a streamed upload on the key's shard; nothing is visible until
    /// [`ObjectUpload::finish`]. Dropping the upload unfinished abandons it.
    pub async fn put_stream(
        &self,
        key: &str,
        content_type: &str,
        user: BTreeMap<String, String>,
    ) -> Result<ObjectUpload> {
        let id = NEXT_UPLOAD.fetch_add(1, Ordering::Relaxed);
        let (k, ct) = (key.to_string(), content_type.to_string());
        self.ask(key, |r| ObjectMsg::Begin(id, k, ct, user, r))
            .await?;
        Ok(ObjectUpload {
            service: self.clone(),
            key: key.to_string(),
            id,
            written: 0,
            done: false,
        })
    }

    /// Metadata of `key`.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let k = key.to_string();
        self.ask(key, |r| ObjectMsg::Head(k, r)).await
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let k = key.to_string();
        self.ask(key, |r| ObjectMsg::Get(k, None, r)).await
    }

    /// `len` bytes from `offset` (fewer at the end).
    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let k = key.to_string();
        self.ask(key, |r| ObjectMsg::Get(k, Some((offset, len)), r))
            .await
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let k = key.to_string();
        self.ask(key, |r| ObjectMsg::Delete(k, r)).await
    }

    /// Up to `limit` objects whose keys start with `prefix`, after `start_after`, in key order
    /// across every shard; `next` continues the listing.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let mut all = Vec::new();
        let mut more = false;
        for a in self.addr.all() {
            let (p, s) = (prefix.to_string(), start_after.map(str::to_string));
            let page = a
                .ask(|r| ObjectMsg::List(p, s, limit, r), self.timeout)
                .await
                .map_err(|e| ask_err(e, self.timeout))??;
            more |= page.next.is_some();
            all.extend(page.objects);
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        if all.len() > limit {
            all.truncate(limit);
            more = true;
        }
        let next = if more {
            all.last().map(|m| m.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects: all, next })
    }

    /// Stops every shard and releases the directory (uploads in progress are abandoned).
    pub async fn close(&self) -> Result<()> {
        self.ask_every(ObjectMsg::Close).await
    }
}

/// A streamed upload in progress on its key's shard.
pub struct ObjectUpload {
    service: ObjectService,
    key: String,
    id: u64,
    written: u64,
    done: bool,
}

impl ObjectUpload {
    /// Sends one chunk and waits until the shard has written it.
    pub async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        let (id, n) = (self.id, chunk.len() as u64);
        self.service
            .ask(&self.key, |r| ObjectMsg::Chunk(id, chunk, r))
            .await?;
        self.written += n;
        Ok(())
    }

    /// Bytes sent so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the object durable and visible (see [`ObjectWriter::finish`]).
    pub async fn finish(mut self) -> Result<ObjectMeta> {
        self.done = true;
        let id = self.id;
        self.service
            .ask(&self.key, |r| ObjectMsg::Finish(id, r))
            .await
    }
}

impl Drop for ObjectUpload {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .service
                .addr
                .try_tell(self.key.as_bytes(), ObjectMsg::Abort(self.id));
        }
    }
}

//! [`ObjectStore`]: named objects (keys such as `photos/2026/cat.jpg`) in a directory. Puts are
//! streamed in chunks ([`ObjectWriter`]), never buffered whole; gets return the whole object or
//! a byte range; listing is by prefix, in key order, paged; every object carries metadata
//! (size, content type, SHA-256, user fields).
//!
//! Layout and crash semantics: an object's bytes live in `data/<h>.<v>` and its metadata in
//! `meta/<h>.json` (`h` = SHA-256 of the key, `v` = a version), so a key of any length or
//! alphabet maps to a safe file name. A put writes the data to a temporary file, syncs it,
//! renames it to its versioned name, then writes the metadata the same way — the rename of the
//! metadata is the commit point — and syncs the directories. A crash before that rename leaves
//! the old object (or none); after it, the new one. Data files that no metadata names (a put
//! cut off by a crash, or the old version of a replaced object) are removed at open. Delete
//! removes the metadata (the commit) and then the data.
//!
//! Single-owner: an `ObjectStore` lives on the thread that opened it (like a key-value shard);
//! shard by key across workers with the runtime's partitioners when one core is not enough.
//! Must not touch: the key-value store's files, sockets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{Result, StorageError};
use super::file::{File, FileIo, run_blocking, sync_dir};
use super::lock::DirLock;

/// Metadata of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// MIME type given at put.
    pub content_type: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Caller's fields.
    pub user: BTreeMap<String, String>,
    /// Version of the data file (grows with each put of the key).
    pub version: u64,
    /// Seconds since the Unix epoch when it was written.
    pub created: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Objects in key order.
    pub objects: Vec<ObjectMeta>,
    /// Pass as `start_after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

struct Inner {
    dir: PathBuf,
    io: FileIo,
    index: BTreeMap<String, ObjectMeta>,
    next_version: u64,
    max_key_bytes: usize,
    _lock: DirLock,
}

/// A directory of objects (see the module docs). Cheap to clone; not `Send`.
#[derive(Clone)]
pub struct ObjectStore {
    inner: Rc<RefCell<Inner>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ObjectStore {
    /// Opens (or creates) the store in `dir`: takes the directory lock, loads every object's
    /// metadata, and removes data files no metadata names (see the module docs).
    pub async fn open(io: FileIo, dir: &Path) -> Result<ObjectStore> {
        let d = dir.to_path_buf();
        let (lock, index, removed) = run_blocking(move || load(&d)).await??;
        if removed > 0 {
            tracing::info!(dir = %dir.display(), removed, "removed unreferenced object data");
        }
        let next_version = index.values().map(|m| m.version).max().unwrap_or(0) + 1;
        Ok(ObjectStore {
            inner: Rc::new(RefCell::new(Inner {
                dir: dir.to_path_buf(),
                io,
                index,
                next_version,
                max_key_bytes: 1024,
                _lock: lock,
            })),
        })
    }

    fn paths(&self, key: &str, version: u64) -> (PathBuf, PathBuf) {
        let dir = self.inner.borrow().dir.clone();
        let h = key_hash(key);
        (
            dir.join("data").join(format!("{h}.{version}")),
            dir.join("meta").join(format!("{h}.json")),
        )
    }

    /// Starts a streamed put of `key`. Nothing is visible until [`ObjectWriter::finish`].
    pub async fn put_stream(
        &self,
        key: &str,
        content_type: &str,
        user: BTreeMap<String, String>,
    ) -> Result<ObjectWriter> {
        let (version, dir, io, max) = {
            let mut st = self.inner.borrow_mut();
            let v = st.next_version;
            st.next_version += 1;
            (v, st.dir.clone(), st.io.clone(), st.max_key_bytes)
        };
        if key.is_empty() || key.len() > max {
            return Err(StorageError::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        let tmp = dir.join("tmp").join(format!("{}.{version}", key_hash(key)));
        let file = File::create(&io, &tmp).await?;
        file.std()
            .set_len(0)
            .map_err(|e| StorageError::io("ftruncate", &tmp, e))?;
        Ok(ObjectWriter {
            store: self.clone(),
            key: key.to_string(),
            content_type: content_type.to_string(),
            user,
            version,
            file,
            tmp,
            written: 0,
            hash: Sha256::new(),
        })
    }

    /// Puts a whole object from memory (a one-chunk [`put_stream`](Self::put_stream)).
    pub async fn put(&self, key: &str, content_type: &str, bytes: Vec<u8>) -> Result<ObjectMeta> {
        let mut w = self.put_stream(key, content_type, BTreeMap::new()).await?;
        w.write(bytes).await?;
        w.finish().await
    }

    /// Metadata of `key`.
    pub fn head(&self, key: &str) -> Option<ObjectMeta> {
        self.inner.borrow().index.get(key).cloned()
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(m) = self.head(key) else {
            return Ok(None);
        };
        self.get_range(key, 0, m.size).await
    }

    /// `len` bytes from `offset` (fewer at the end of the object); `None` if no such key.
    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let Some(m) = self.head(key) else {
            return Ok(None);
        };
        if offset > m.size {
            return Err(StorageError::OutOfRange {
                what: format!("offset {offset} of {key}"),
                limit: m.size,
            });
        }
        let len = len.min(m.size - offset);
        let (data, _) = self.paths(key, m.version);
        let io = self.inner.borrow().io.clone();
        let f = File::open_read(&io, &data).await?;
        Ok(Some(f.read_at(vec![0; len as usize], offset).await?))
    }

    /// Up to `limit` objects whose keys start with `prefix`, after `start_after` (the previous
    /// page's `next`), in key order.
    pub fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> ListPage {
        let st = self.inner.borrow();
        // Keys with `prefix` are contiguous in key order, starting at `prefix` itself.
        let start = match start_after {
            Some(s) if s >= prefix => std::ops::Bound::Excluded(s),
            _ => std::ops::Bound::Included(prefix),
        };
        let mut objects: Vec<ObjectMeta> = st
            .index
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit + 1)
            .map(|(_, m)| m.clone())
            .collect();
        let next = if objects.len() > limit {
            objects.truncate(limit);
            objects.last().map(|m| m.key.clone())
        } else {
            None
        };
        ListPage { objects, next }
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let Some(m) = self.head(key) else {
            return Ok(false);
        };
        let (data, meta) = self.paths(key, m.version);
        let dir = self.inner.borrow().dir.clone();
        run_blocking(move || {
            std::fs::remove_file(&meta).map_err(|e| StorageError::io("remove", &meta, e))
        })
        .await??;
        sync_dir(&dir.join("meta")).await?;
        self.inner.borrow_mut().index.remove(key);
        let _ = run_blocking(move || std::fs::remove_file(data)).await;
        Ok(true)
    }

    /// Objects in the store.
    pub fn len(&self) -> usize {
        self.inner.borrow().index.len()
    }

    /// True when the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A put in progress: chunks are written as they come, hashed on the way.
pub struct ObjectWriter {
    store: ObjectStore,
    key: String,
    content_type: String,
    user: BTreeMap<String, String>,
    version: u64,
    file: File,
    tmp: PathBuf,
    written: u64,
    hash: Sha256,
}

impl ObjectWriter {
    /// Appends one chunk.
    pub async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        self.hash.update(&chunk);
        let n = chunk.len() as u64;
        self.file.write_all_at(chunk, self.written).await?;
        self.written += n;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the object durable and visible, replacing any previous one atomically.
    pub async fn finish(self) -> Result<ObjectMeta> {
        let (data, meta_path) = self.store.paths(&self.key, self.version);
        let dir = self.store.inner.borrow().dir.clone();
        self.file.sync_data().await?;
        let tmp = self.tmp.clone();
        let d2 = data.clone();
        run_blocking(move || {
            std::fs::rename(&tmp, &d2).map_err(|e| StorageError::io("rename", &d2, e))
        })
        .await??;
        sync_dir(&dir.join("data")).await?;
        let meta = ObjectMeta {
            key: self.key.clone(),
            size: self.written,
            content_type: self.content_type,
            sha256: hex(&self.hash.finalize()),
            user: self.user,
            version: self.version,
            created: now_secs(),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| StorageError::Io {
            op: "encode metadata",
            path: meta_path.clone(),
            source: std::io::Error::other(e),
        })?;
        let io = self.store.inner.borrow().io.clone();
        let mtmp = dir
            .join("tmp")
            .join(format!("{}.json.{}", key_hash(&self.key), self.version));
        let mf = File::create(&io, &mtmp).await?;
        mf.std()
            .set_len(0)
            .map_err(|e| StorageError::io("ftruncate", &mtmp, e))?;
        mf.write_all_at(json, 0).await?;
        mf.sync_data().await?;
        let mp = meta_path.clone();
        run_blocking(move || {
            std::fs::rename(&mtmp, &mp).map_err(|e| StorageError::io("rename", &mp, e))
        })
        .await??;
        sync_dir(&dir.join("meta")).await?;
        // Committed. The previous version's data is now unreferenced.
        let old = self
            .store
            .inner
            .borrow_mut()
            .index
            .insert(meta.key.clone(), meta.clone());
        if let Some(old) = old {
            let (old_data, _) = self.store.paths(&old.key, old.version);
            let _ = run_blocking(move || std::fs::remove_file(old_data)).await;
        }
        Ok(meta)
    }
}

type Loaded = (DirLock, BTreeMap<String, ObjectMeta>, usize);

/// Creates the layout, takes the lock, reads every metadata file, and removes data and
/// temporary files that no metadata names.
fn load(dir: &Path) -> Result<Loaded> {
    for sub in ["data", "meta", "tmp"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| StorageError::io("mkdir", &p, e))?;
    }
    let lock = DirLock::acquire(dir)?;
    let mut index = BTreeMap::new();
    let mut referenced = std::collections::HashSet::new();
    let meta_dir = dir.join("meta");
    for e in std::fs::read_dir(&meta_dir).map_err(|e| StorageError::io("read_dir", &meta_dir, e))? {
        let p = e
            .map_err(|e| StorageError::io("read_dir", &meta_dir, e))?
            .path();
        let bytes = std::fs::read(&p).map_err(|e| StorageError::io("read", &p, e))?;
        let m: ObjectMeta = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            path: p.clone(),
            offset: e.column() as u64,
            what: format!("metadata does not parse: {e}"),
        })?;
        referenced.insert(format!("{}.{}", key_hash(&m.key), m.version));
        index.insert(m.key.clone(), m);
    }
    let mut removed = 0;
    for sub in ["data", "tmp"] {
        let d = dir.join(sub);
        for e in std::fs::read_dir(&d).map_err(|e| StorageError::io("read_dir", &d, e))? {
            let e = e.map_err(|e| StorageError::io("read_dir", &d, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if sub == "tmp" || !referenced.contains(&name) {
                let _ = std::fs::remove_file(e.path());
                removed += 1;
            }
        }
    }
    Ok((lock, index, removed))
}

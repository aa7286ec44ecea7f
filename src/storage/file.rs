//! Files on the event loops: [`FileIo`] picks where a file operation runs (the io_uring loop of
//! the calling worker, or the blocking pool on the mio backend and where a runtime has no I/O
//! loop), and [`File`] is an open file whose reads, writes and syncs are futures that never
//! block the calling worker. `open`, `statx` and directory syncs run on the blocking pool.
//!
//! Direct I/O: [`File::open_direct`] opens with `O_DIRECT` and reads the alignment the file
//! needs from `statx` (`STATX_DIOALIGN`, Linux 6.1+), never assuming 4096; a filesystem that
//! refuses `O_DIRECT` (or reports no alignment) gets buffered I/O with one log line. Buffers for
//! direct I/O come from [`File::aligned_buf`] (an [`AlignedBuf`]).
//!
//! Must not touch: record formats or stores (the `kv`, `block`, `object` modules), sockets.
//!
//! ```
//! use percore::runtime::Runtime;
//! use percore::storage::file::{File, FileIo};
//!
//! let rt = Runtime::testing(1).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let io = FileIo::for_worker(&rt.handle(), 0);
//! let path = dir.path().join("data");
//! let read = rt.block_on(async move {
//!     let f = File::create(&io, &path).await?;
//!     f.write_all_at(b"hello".to_vec(), 0).await?;
//!     f.sync_data().await?;
//!     f.read_at(vec![0; 16], 0).await
//! });
//! assert_eq!(read.unwrap(), b"hello");
//! rt.shutdown();
//! ```

use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use super::error::{Result, StorageError};
use crate::runtime::Handle;
use crate::runtime::io::BackendKind;
pub use crate::runtime::io::aligned::AlignedBuf;
pub use crate::runtime::io::file::{FileBuf, FileBufs, FileOpKind, FileReply};
use crate::runtime::io::file::{FileOp, blocking};

/// Page size used to align direct-I/O buffers.
const PAGE: usize = 4096;

/// Where file operations run: an io_uring event loop, or the blocking pool.
#[derive(Clone)]
pub struct FileIo {
    route: Route,
}

#[derive(Clone)]
enum Route {
    Loop { handle: Handle, index: usize },
    Pool,
}

impl std::fmt::Debug for FileIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path_name())
    }
}

impl FileIo {
    /// The route for app worker `worker`: its own loop when loops are co-located, else I/O
    /// worker `worker % io_workers`; the blocking pool when that loop runs mio or the runtime
    /// has no I/O loop.
    pub fn for_worker(handle: &Handle, worker: usize) -> FileIo {
        let n = handle.io_workers();
        if n == 0 {
            return FileIo::blocking();
        }
        let index = worker % n;
        match handle.io_backend(index) {
            Some(BackendKind::Uring) => FileIo {
                route: Route::Loop {
                    handle: handle.clone(),
                    index,
                },
            },
            _ => FileIo::blocking(),
        }
    }

    /// Every operation on the blocking pool (pread/pwrite and friends).
    pub fn blocking() -> FileIo {
        FileIo { route: Route::Pool }
    }

    /// `"io_uring"` or `"blocking pool"`: which path operations take.
    pub fn path_name(&self) -> &'static str {
        match self.route {
            Route::Loop { .. } => "io_uring",
            Route::Pool => "blocking pool",
        }
    }

    /// Runs `op` on this route and waits for its reply.
    async fn run(&self, op: FileOp, rx: oneshot::Receiver<FileReply>) -> Result<FileReply> {
        match &self.route {
            Route::Pool => blocking::submit(op),
            Route::Loop { handle, index } => {
                if handle.run_on_io(*index, move |ctx| ctx.file(op)).is_err() {
                    return Err(StorageError::Closed);
                }
            }
        }
        rx.await.map_err(|_| StorageError::Closed)
    }
}

/// The alignment direct I/O needs on a file, from `statx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DioAlign {
    /// Alignment of buffer addresses (`stx_dio_mem_align`).
    pub mem: u32,
    /// Alignment of file offsets and lengths (`stx_dio_offset_align`).
    pub offset: u32,
}

/// Asks `statx` for the direct-I/O alignment of `fd`; `None` when the kernel or filesystem
/// does not report one (direct I/O unsupported or unknown).
pub fn dio_align(fd: impl AsFd) -> Option<DioAlign> {
    let st = rustix::fs::statx(
        fd,
        c"",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::DIOALIGN,
    )
    .ok()?;
    if st.stx_mask & rustix::fs::StatxFlags::DIOALIGN.bits() == 0
        || st.stx_dio_mem_align == 0
        || st.stx_dio_offset_align == 0
    {
        return None;
    }
    Some(DioAlign {
        mem: st.stx_dio_mem_align,
        offset: st.stx_dio_offset_align,
    })
}

/// An open file whose operations run on a [`FileIo`] route. Cheap to clone (shared fd).
#[derive(Clone, Debug)]
pub struct File {
    file: Arc<std::fs::File>,
    path: Arc<Path>,
    io: FileIo,
    direct: Option<DioAlign>,
}

impl File {
    /// Opens `path` with `opts` (on the blocking pool: `open` may wait for the disk).
    pub async fn open_with(io: &FileIo, path: &Path, opts: std::fs::OpenOptions) -> Result<File> {
        let p = path.to_path_buf();
        let f = blocking::run(move || opts.open(&p))
            .await
            .map_err(|_| StorageError::Closed)?
            .map_err(|e| StorageError::io("open", path, e))?;
        Ok(File {
            file: Arc::new(f),
            path: path.into(),
            io: io.clone(),
            direct: None,
        })
    }

    /// Opens `path` for reading and writing, creating it if missing.
    pub async fn create(io: &FileIo, path: &Path) -> Result<File> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create(true);
        File::open_with(io, path, o).await
    }

    /// Opens `path` for reading only.
    pub async fn open_read(io: &FileIo, path: &Path) -> Result<File> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true);
        File::open_with(io, path, o).await
    }

    /// Opens (creating) `path` with `O_DIRECT`. Where the filesystem refuses `O_DIRECT` or
    /// `statx` reports no alignment, the file is opened buffered instead, with one log line;
    /// [`direct`](Self::direct) tells which.
    pub async fn open_direct(io: &FileIo, path: &Path) -> Result<File> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true)
            .write(true)
            .create(true)
            .custom_flags(libc::O_DIRECT);
        match File::open_with(io, path, o).await {
            Ok(mut f) => {
                let fd = f.file.clone();
                let align = blocking::run(move || dio_align(&*fd))
                    .await
                    .map_err(|_| StorageError::Closed)?;
                match align {
                    Some(a) => {
                        f.direct = Some(a);
                        Ok(f)
                    }
                    None => {
                        tracing::info!(
                            path = %path.display(),
                            "statx reports no direct-I/O alignment here; using buffered I/O"
                        );
                        File::create(io, path).await
                    }
                }
            }
            Err(StorageError::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                tracing::info!(
                    path = %path.display(),
                    "the filesystem refuses O_DIRECT; using buffered I/O"
                );
                File::create(io, path).await
            }
            Err(e) => Err(e),
        }
    }

    /// The direct-I/O alignment when the file is open with `O_DIRECT`, else `None`.
    pub fn direct(&self) -> Option<DioAlign> {
        self.direct
    }

    /// A zeroed buffer of `len` bytes aligned for this file: for direct I/O, a page or the
    /// larger of the memory and offset alignments (a 4 KiB read into a buffer that straddles
    /// two pages is two DMA segments: p99 of 4 KiB random reads went from 164 µs to 1.5 ms
    /// with 512-byte alignment here); 1 for a buffered file.
    pub fn aligned_buf(&self, len: usize) -> Result<AlignedBuf> {
        let align = self.buffer_align();
        AlignedBuf::zeroed(len, align).map_err(|e| StorageError::Config {
            name: "buffer",
            value: e.to_string(),
            why: "alignment",
        })
    }

    /// The alignment [`aligned_buf`](Self::aligned_buf) uses.
    pub fn buffer_align(&self) -> usize {
        self.direct
            .map_or(1, |a| (a.mem.max(a.offset) as usize).max(PAGE))
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The route its operations take.
    pub fn io(&self) -> &FileIo {
        &self.io
    }

    /// The std file (for synchronous calls that cannot block on the disk, such as `fstat`).
    pub fn std(&self) -> &std::fs::File {
        &self.file
    }

    /// Current length (`fstat`).
    pub fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| StorageError::io("fstat", &*self.path, e))
    }

    /// True when the file is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    async fn op(&self, offset: u64, kind: FileOpKind, what: &'static str) -> Result<FileReply> {
        let (op, rx) = FileOp::new(self.file.clone(), offset, kind);
        let FileReply { result, done, bufs } = self.io.run(op, rx).await?;
        let n = result.map_err(|e| StorageError::io(what, &*self.path, e))?;
        Ok(FileReply {
            result: Ok(n),
            done,
            bufs,
        })
    }

    /// Reads up to `buf.len()` bytes at `offset` (fewer only at the end of the file) and
    /// returns the buffer truncated to what was read.
    pub async fn read_at(&self, buf: Vec<u8>, offset: u64) -> Result<Vec<u8>> {
        Ok(self
            .read_buf_at(FileBuf::Vec(buf), offset)
            .await?
            .into_vec())
    }

    /// [`read_at`](Self::read_at) with any [`FileBuf`] (an aligned one for direct I/O).
    pub async fn read_buf_at(&self, buf: FileBuf, offset: u64) -> Result<FileBuf> {
        match self.op(offset, FileOpKind::Read(buf), "read").await?.bufs {
            FileBufs::One(b) => Ok(b),
            _ => unreachable!("a read returns its one buffer"),
        }
    }

    /// Writes all of `buf` at `offset` (short writes continue) and returns the buffer.
    pub async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> Result<Vec<u8>> {
        Ok(self
            .write_buf_at(FileBuf::Vec(buf), offset)
            .await?
            .into_vec())
    }

    /// [`write_all_at`](Self::write_all_at) with any [`FileBuf`].
    pub async fn write_buf_at(&self, buf: FileBuf, offset: u64) -> Result<FileBuf> {
        match self.op(offset, FileOpKind::Write(buf), "write").await?.bufs {
            FileBufs::One(b) => Ok(b),
            _ => unreachable!("a write returns its one buffer"),
        }
    }

    /// Writes `bufs` one after another starting at `offset` (one vectored write, continued
    /// after a short one) and returns them.
    pub async fn writev_at(&self, bufs: Vec<Vec<u8>>, offset: u64) -> Result<Vec<Vec<u8>>> {
        match self
            .op(offset, FileOpKind::Writev(bufs), "writev")
            .await?
            .bufs
        {
            FileBufs::Many(v) => Ok(v),
            _ => unreachable!("a vectored write returns its buffers"),
        }
    }

    /// `fdatasync`: the data written so far (and the size) is on stable storage.
    pub async fn sync_data(&self) -> Result<()> {
        self.op(0, FileOpKind::Sync { data_only: true }, "fdatasync")
            .await
            .map(drop)
    }

    /// `fsync`: data and all metadata are on stable storage.
    pub async fn sync_all(&self) -> Result<()> {
        self.op(0, FileOpKind::Sync { data_only: false }, "fsync")
            .await
            .map(drop)
    }

    /// `fallocate(mode, offset, len)`: reserves space (mode 0 extends the file;
    /// `libc::FALLOC_FL_KEEP_SIZE` does not).
    pub async fn allocate(&self, mode: i32, offset: u64, len: u64) -> Result<()> {
        self.op(offset, FileOpKind::Allocate { mode, len }, "fallocate")
            .await
            .map(drop)
    }

    /// Reads at `offset` only if the bytes are in the page cache (`preadv2` with
    /// `RWF_NOWAIT`): `Some(n)` bytes read without waiting for the disk, `None` when the read
    /// would have to wait (then use [`read_at`](Self::read_at)). Never blocks on the disk.
    pub fn try_read_cached(&self, buf: &mut [u8], offset: u64) -> Option<usize> {
        let mut done = 0;
        while done < buf.len() {
            let mut iov = [std::io::IoSliceMut::new(&mut buf[done..])];
            match rustix::io::preadv2(
                &*self.file,
                &mut iov,
                offset + done as u64,
                rustix::io::ReadWriteFlags::NOWAIT,
            ) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return None,
            }
        }
        Some(done)
    }
}

/// A free list of equal-sized aligned buffers for direct I/O: `take` reuses a returned buffer
/// (or allocates one), `give` returns one (kept up to `max`). Single-owner, like the file.
#[derive(Debug)]
pub struct AlignedPool {
    len: usize,
    align: usize,
    max: usize,
    free: Vec<AlignedBuf>,
}

impl AlignedPool {
    /// A pool of `len`-byte buffers aligned for `file` (see [`File::aligned_buf`]), keeping at
    /// most `max` free ones.
    pub fn for_file(file: &File, len: usize, max: usize) -> AlignedPool {
        AlignedPool {
            len,
            align: file.buffer_align(),
            max,
            free: Vec::new(),
        }
    }

    /// A buffer of the pool's length (contents: whatever the last user left).
    pub fn take(&mut self) -> Result<AlignedBuf> {
        match self.free.pop() {
            Some(mut b) => {
                b.set_len(self.len);
                Ok(b)
            }
            None => AlignedBuf::zeroed(self.len, self.align).map_err(|e| StorageError::Config {
                name: "buffer",
                value: e.to_string(),
                why: "alignment",
            }),
        }
    }

    /// Returns a buffer for reuse (dropped if the pool is full or it does not fit).
    pub fn give(&mut self, b: AlignedBuf) {
        if self.free.len() < self.max && b.capacity() >= self.len && b.align() >= self.align {
            self.free.push(b);
        }
    }

    /// Free buffers held.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

/// `fsync` of a directory (after creating, renaming or removing files in it), on the blocking
/// pool.
pub async fn sync_dir(dir: &Path) -> Result<()> {
    let d = dir.to_path_buf();
    blocking::run(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
        .await
        .map_err(|_| StorageError::Closed)?
        .map_err(|e| StorageError::io("fsync dir", dir, e))
}

/// Runs `f` (a call that may wait for the disk: rename, remove, read a small file) on the
/// blocking pool.
pub async fn run_blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
    blocking::run(f).await.map_err(|_| StorageError::Closed)
}

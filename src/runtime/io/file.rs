//! File operations on the event loops: read and write at an offset (also vectored), fsync,
//! fdatasync and fallocate, each completing into a one-shot reply that wakes the task that
//! asked. On io_uring they are SQEs submitted with the loop's other operations (one
//! `io_uring_enter` per turn covers every file and socket operation queued in it). On the mio
//! backend, and where a runtime has no I/O loop at all, the same operations run on a small
//! pool of blocking threads ([`blocking`]), so an app worker never waits for the disk.
//!
//! Both paths drive the same state machine ([`FileOp::advance`]): a short read continues at
//! the new offset until the buffer is full or the file ends; a short write continues until
//! every byte is written (a write of zero bytes is `WriteZero`); `EINTR` and `EAGAIN` are
//! retried; any other error (`ENOSPC`, `EIO`, …) completes the operation with that error and
//! the count of bytes done so far. The buffers always come back with the reply, on error too.
//!
//! Must not touch: file layout, records or stores (that is `storage`), sockets.

use std::fs::File;
use std::io;
use std::sync::Arc;

use super::aligned::AlignedBuf;

/// An owned buffer for a file operation: a plain `Vec<u8>` or an [`AlignedBuf`] (required for
/// `O_DIRECT`). Its heap memory never moves while the kernel uses it.
#[derive(Debug)]
pub enum FileBuf {
    /// Any buffered I/O.
    Vec(Vec<u8>),
    /// Direct I/O: address and length aligned.
    Aligned(AlignedBuf),
}

impl FileBuf {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            FileBuf::Vec(v) => v,
            FileBuf::Aligned(a) => a,
        }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            FileBuf::Vec(v) => v,
            FileBuf::Aligned(a) => a,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shortens to `len` (a read that met the end of the file).
    pub fn truncate(&mut self, len: usize) {
        match self {
            FileBuf::Vec(v) => v.truncate(len),
            FileBuf::Aligned(a) => {
                if len < a.len() {
                    a.set_len(len)
                }
            }
        }
    }

    /// The `Vec`, or a copy of the aligned bytes.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            FileBuf::Vec(v) => v,
            FileBuf::Aligned(a) => a.to_vec(),
        }
    }

    fn ptr(&mut self) -> *mut u8 {
        match self {
            FileBuf::Vec(v) => v.as_mut_ptr(),
            FileBuf::Aligned(a) => a.as_mut_ptr(),
        }
    }
}

/// What a file operation does.
#[derive(Debug)]
pub enum FileOpKind {
    /// Reads into the whole buffer (its length is the amount wanted); the reply's buffer is
    /// truncated to what was read (shorter only at the end of the file).
    Read(FileBuf),
    /// Writes the whole buffer.
    Write(FileBuf),
    /// Writes the buffers one after another, as one vectored write (`pwritev`).
    Writev(Vec<Vec<u8>>),
    /// `fsync` (`data_only`: `fdatasync`). The offset is ignored.
    Sync {
        /// `fdatasync` instead of `fsync`.
        data_only: bool,
    },
    /// `fallocate(mode, offset, len)`.
    Allocate {
        /// `fallocate` mode bits (0: allocate and extend; `FALLOC_FL_KEEP_SIZE`, …).
        mode: i32,
        /// Bytes from the offset.
        len: u64,
    },
}

/// How a file operation ended: the byte count (or the error, with what was done before it)
/// and the buffers back.
#[derive(Debug)]
pub struct FileReply {
    /// Bytes read or written (0 for sync and allocate), or the error that ended the operation.
    pub result: io::Result<usize>,
    /// Bytes done before an error (equal to the count on success).
    pub done: usize,
    /// The buffers the operation carried (read: truncated to the bytes read).
    pub bufs: FileBufs,
}

/// The buffers coming back with a [`FileReply`].
#[derive(Debug)]
pub enum FileBufs {
    /// Sync and allocate carry none.
    None,
    /// Read and write.
    One(FileBuf),
    /// Vectored write.
    Many(Vec<Vec<u8>>),
}

/// One file operation on its way to an event loop (or the blocking pool).
pub struct FileOp {
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) kind: FileOpKind,
    /// Bytes done so far.
    pub(crate) done: usize,
    pub(crate) reply: oneshot::Sender<FileReply>,
}

/// The next step of an operation after a syscall or CQE result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Issue the (rest of the) operation again.
    Again,
    /// Finished.
    Done,
}

impl FileOp {
    /// A new operation and the receiver of its reply.
    pub fn new(
        file: Arc<File>,
        offset: u64,
        kind: FileOpKind,
    ) -> (FileOp, oneshot::Receiver<FileReply>) {
        let (tx, rx) = oneshot::channel();
        (
            FileOp {
                file,
                offset,
                kind,
                done: 0,
                reply: tx,
            },
            rx,
        )
    }

    /// Total bytes the operation transfers (0 for sync and allocate).
    pub(crate) fn total(&self) -> usize {
        match &self.kind {
            FileOpKind::Read(b) | FileOpKind::Write(b) => b.len(),
            FileOpKind::Writev(v) => v.iter().map(|b| b.len()).sum(),
            FileOpKind::Sync { .. } | FileOpKind::Allocate { .. } => 0,
        }
    }

    /// Feeds one syscall/CQE result (`>= 0`: bytes, `< 0`: `-errno`). `Ok(Step::Again)` asks
    /// for the rest; `Err` or `Ok(Step::Done)` ends the operation (then call [`finish`]).
    pub(crate) fn advance(&mut self, res: i64) -> io::Result<Step> {
        if res < 0 {
            let errno = (-res) as i32;
            return match errno {
                libc::EINTR | libc::EAGAIN => Ok(Step::Again),
                _ => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        let n = res as usize;
        match &self.kind {
            FileOpKind::Sync { .. } | FileOpKind::Allocate { .. } => Ok(Step::Done),
            FileOpKind::Read(_) => {
                if n == 0 {
                    return Ok(Step::Done); // end of file
                }
                self.done += n;
                Ok(if self.done >= self.total() {
                    Step::Done
                } else {
                    Step::Again
                })
            }
            FileOpKind::Write(_) | FileOpKind::Writev(_) => {
                if n == 0 && self.done < self.total() {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file took no bytes of a write",
                    ));
                }
                self.done += n;
                Ok(if self.done >= self.total() {
                    Step::Done
                } else {
                    Step::Again
                })
            }
        }
    }

    /// Ends the operation with `result` and sends the reply (a dropped receiver is fine: the
    /// asker gave up).
    pub(crate) fn finish(self, result: io::Result<Step>) {
        let FileOp {
            kind, done, reply, ..
        } = self;
        let result = result.map(|_| done);
        let bufs = match kind {
            FileOpKind::Read(mut b) => {
                b.truncate(done);
                FileBufs::One(b)
            }
            FileOpKind::Write(b) => FileBufs::One(b),
            FileOpKind::Writev(v) => FileBufs::Many(v),
            FileOpKind::Sync { .. } | FileOpKind::Allocate { .. } => FileBufs::None,
        };
        let _ = reply.send(FileReply { result, done, bufs });
    }

    /// The rest of a vectored write as iovecs, starting `self.done` bytes in. The pointers
    /// are valid while `self` lives and its buffers are not touched.
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        let FileOpKind::Writev(bufs) = &self.kind else {
            return Vec::new();
        };
        let mut skip = self.done;
        let mut out = Vec::with_capacity(bufs.len());
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            out.push(libc::iovec {
                iov_base: b[skip..].as_ptr() as *mut libc::c_void,
                iov_len: b.len() - skip,
            });
            skip = 0;
        }
        out
    }

    /// Pointer and length of the rest of a read or write buffer.
    pub(crate) fn rest(&mut self) -> (*mut u8, usize) {
        let done = self.done;
        match &mut self.kind {
            FileOpKind::Read(b) | FileOpKind::Write(b) => {
                let len = b.len() - done.min(b.len());
                // The address of byte `done` of a live buffer with `len` bytes after it.
                (b.ptr().wrapping_add(done), len)
            }
            _ => (std::ptr::null_mut(), 0),
        }
    }

    /// Runs the operation to the end with blocking syscalls (the std path).
    pub(crate) fn run_blocking(mut self) {
        use std::os::fd::AsFd;
        loop {
            let file = self.file.clone();
            let fd = file.as_fd();
            let off = self.offset + self.done as u64;
            let done = self.done;
            let res: io::Result<usize> = match &mut self.kind {
                FileOpKind::Read(b) => {
                    rustix::io::pread(fd, &mut b.as_mut_slice()[done..], off).map_err(Into::into)
                }
                FileOpKind::Write(b) => {
                    rustix::io::pwrite(fd, &b.as_slice()[done..], off).map_err(Into::into)
                }
                FileOpKind::Writev(bufs) => {
                    let mut skip = done;
                    let mut slices = Vec::with_capacity(bufs.len());
                    for b in bufs.iter() {
                        if skip >= b.len() {
                            skip -= b.len();
                            continue;
                        }
                        slices.push(io::IoSlice::new(&b[skip..]));
                        skip = 0;
                    }
                    rustix::io::pwritev(fd, &slices, off).map_err(Into::into)
                }
                FileOpKind::Sync { data_only: true } => {
                    rustix::fs::fdatasync(fd).map(|_| 0).map_err(Into::into)
                }
                FileOpKind::Sync { data_only: false } => {
                    rustix::fs::fsync(fd).map(|_| 0).map_err(Into::into)
                }
                FileOpKind::Allocate { mode, len } => rustix::fs::fallocate(
                    fd,
                    rustix::fs::FallocateFlags::from_bits_retain(*mode as u32),
                    self.offset,
                    *len,
                )
                .map(|_| 0)
                .map_err(Into::into),
            };
            let raw = match res {
                Ok(n) => n as i64,
                Err(e) => -(e.raw_os_error().unwrap_or(libc::EIO) as i64),
            };
            match self.advance(raw) {
                Ok(Step::Again) => continue,
                r => return self.finish(r),
            }
        }
    }
}

impl std::fmt::Debug for FileOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOp")
            .field("offset", &self.offset)
            .field("kind", &self.kind)
            .field("done", &self.done)
            .finish()
    }
}

/// The blocking pool that runs file operations where no io_uring loop takes them (the mio
/// backend, or a runtime without I/O loops), and other calls that may wait for the disk
/// (`open`, `rename`, `statx`). A few threads shared by the process, started on first use;
/// each job runs to the end on one of them.
pub mod blocking {
    use std::sync::OnceLock;

    use super::FileOp;

    /// Threads in the pool: enough that one slow `fsync` does not hold up reads, few enough
    /// not to crowd the pinned workers.
    pub const THREADS: usize = 4;

    type Job = Box<dyn FnOnce() + Send>;

    static POOL: OnceLock<crossbeam::channel::Sender<Job>> = OnceLock::new();

    fn pool() -> &'static crossbeam::channel::Sender<Job> {
        POOL.get_or_init(|| {
            let (tx, rx) = crossbeam::channel::unbounded::<Job>();
            for i in 0..THREADS {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("percore-file-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(%e, "could not start a file I/O thread");
                }
            }
            tx
        })
    }

    /// Runs `op` on the pool.
    pub fn submit(op: FileOp) {
        spawn(Box::new(move || op.run_blocking()));
    }

    /// Runs `f` on the pool; the receiver gets its result (await it, or `recv` off the
    /// runtime's threads).
    pub fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> oneshot::Receiver<R> {
        let (tx, rx) = oneshot::channel();
        spawn(Box::new(move || {
            let _ = tx.send(f());
        }));
        rx
    }

    /// If no pool thread could be started the job runs here (blocking the caller rather than
    /// losing it).
    fn spawn(job: Job) {
        if let Err(e) = pool().send(job) {
            (e.into_inner())();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: FileOpKind) -> FileOp {
        let f = Arc::new(tempfile::tempfile().unwrap());
        FileOp::new(f, 0, kind).0
    }

    #[test]
    fn short_writes_continue_and_eintr_eagain_retry() {
        let mut w = op(FileOpKind::Write(FileBuf::Vec(vec![1; 100])));
        assert_eq!(w.advance(30).unwrap(), Step::Again);
        assert_eq!(w.rest().1, 70);
        assert_eq!(w.advance(-(libc::EINTR as i64)).unwrap(), Step::Again);
        assert_eq!(w.advance(-(libc::EAGAIN as i64)).unwrap(), Step::Again);
        assert_eq!(w.done, 30);
        assert_eq!(w.advance(70).unwrap(), Step::Done);
        assert_eq!(w.done, 100);
    }

    #[test]
    fn enospc_ends_a_write_with_the_bytes_done_so_far_and_the_buffer_back() {
        let (mut w, rx) = FileOp::new(
            Arc::new(tempfile::tempfile().unwrap()),
            0,
            FileOpKind::Write(FileBuf::Vec(vec![9; 10])),
        );
        assert_eq!(w.advance(4).unwrap(), Step::Again);
        let r = w.advance(-(libc::ENOSPC as i64));
        w.finish(r);
        let reply = rx.recv().unwrap();
        assert_eq!(reply.result.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(reply.done, 4);
        assert!(matches!(reply.bufs, FileBufs::One(ref b) if b.len() == 10));
    }

    #[test]
    fn a_zero_byte_write_is_write_zero_and_a_zero_byte_read_is_the_end() {
        let mut w = op(FileOpKind::Write(FileBuf::Vec(vec![1; 8])));
        assert_eq!(w.advance(0).unwrap_err().kind(), io::ErrorKind::WriteZero);
        let mut r = op(FileOpKind::Read(FileBuf::Vec(vec![0; 8])));
        assert_eq!(r.advance(3).unwrap(), Step::Again);
        assert_eq!(r.advance(0).unwrap(), Step::Done);
        assert_eq!(r.done, 3);
    }

    #[test]
    fn a_vectored_write_resumes_mid_buffer() {
        let mut w = op(FileOpKind::Writev(vec![
            vec![1; 10],
            vec![2; 5],
            vec![3; 7],
        ]));
        assert_eq!(w.iovecs().len(), 3);
        assert_eq!(w.advance(12).unwrap(), Step::Again);
        let iov = w.iovecs();
        assert_eq!(iov.len(), 2);
        assert_eq!(iov[0].iov_len, 3);
        assert_eq!(iov[1].iov_len, 7);
        assert_eq!(w.advance(10).unwrap(), Step::Done);
    }

    #[test]
    fn the_blocking_path_writes_reads_and_syncs_a_real_file() {
        let f = Arc::new(tempfile::tempfile().unwrap());
        let (w, rx) = FileOp::new(
            f.clone(),
            4096,
            FileOpKind::Writev(vec![b"hello ".to_vec(), b"world".to_vec()]),
        );
        blocking::submit(w);
        assert_eq!(rx.recv().unwrap().result.unwrap(), 11);
        let (s, rx) = FileOp::new(f.clone(), 0, FileOpKind::Sync { data_only: true });
        blocking::submit(s);
        assert_eq!(rx.recv().unwrap().result.unwrap(), 0);
        let (r, rx) = FileOp::new(f.clone(), 4096, FileOpKind::Read(FileBuf::Vec(vec![0; 64])));
        blocking::submit(r);
        let reply = rx.recv().unwrap();
        assert_eq!(
            reply.result.unwrap(),
            11,
            "short read at the end of the file"
        );
        let FileBufs::One(b) = reply.bufs else {
            panic!("a read returns its buffer")
        };
        assert_eq!(b.as_slice(), b"hello world");
    }
}

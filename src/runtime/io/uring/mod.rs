//! The io_uring backend: owns the ring, the table of in-flight operations, the per-fd state
//! (armed multishot ops, the send queue) and the provided-buffer ring. Operations become SQEs
//! that are submitted in at most one `io_uring_enter` per loop turn (none on a non-waiting turn
//! with nothing queued, no task work flagged and no CQ overflow; earlier if the SQ fills, or in
//! `close` when SQEs are queued that may name the fd being closed);
//! multishot accept and multishot recv over a provided buffer ring keep the number of SQEs per
//! connection low. Where buffer rings are not supported (or `PERCORE_IO_URING_BUFRING=0`, or
//! [`IoCtx::use_buffer_ring`](super::IoCtx::use_buffer_ring) turned them off), recv falls back to
//! one plain `Recv` with an owned buffer per connection. An accept that ends with an error is
//! re-armed after [`ACCEPT_RETRY`], not at once (`EMFILE` would otherwise fail again at once and
//! spin). An SQE that cannot be queued because the kernel refuses submissions is not dropped: it
//! completes with the submit error, through the same path as a kernel CQE.
//!
//! Must not touch: handlers (the worker calls them), protocols, the receive buffers' contents
//! (the worker lends them to handlers), or any fd it was not asked about; it closes an fd only
//! in [`UringBackend::close`].

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use super::Token;
use super::completion::Completion;
use super::file::{FileOp, FileOpKind};

mod buf_ring;
mod reap;

pub(crate) use buf_ring::BufRing;

/// user_data of the eventfd poll that wakes the loop.
const WAKE_UD: u64 = u64::MAX;
/// user_data of fire-and-forget SQEs (cancel): their CQEs are ignored.
const IGNORE_UD: u64 = u64::MAX - 1;
/// Buffer group id of the provided buffer ring.
const BGID: u16 = 7;
/// Size of one provided buffer and of a plain-recv buffer.
pub(crate) const BUF_SIZE: usize = 4096;
/// Number of provided buffers (a power of two).
pub(super) const BUF_COUNT: u16 = 2048;
/// Delay before a listener whose accept failed (e.g. `EMFILE`) is armed again.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Whether `PERCORE_IO_URING_BUFRING` allows provided buffer rings (default: yes). `0`, `false`,
/// `off` or `no` force plain recv; an unrecognised value is logged and ignored.
pub(crate) fn buf_ring_from_env() -> bool {
    match std::env::var("PERCORE_IO_URING_BUFRING") {
        Err(_) => true,
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "0" | "false" | "off" | "no" => false,
            "1" | "true" | "on" | "yes" | "" => true,
            other => {
                tracing::warn!(
                    value = other,
                    "PERCORE_IO_URING_BUFRING: expected 0/1/true/false; using buffer rings"
                );
                true
            }
        },
    }
}

enum OpKind {
    Accept,
    RecvMulti,
    RecvPlain(Vec<u8>),
    Send {
        buf: Vec<u8>,
        off: usize,
        /// Buffers merged into `buf` after its first (each gets its own `Sent`).
        merged: usize,
    },
    Poll,
    /// The address the kernel reads until the connect completes (kept alive here).
    #[allow(dead_code)]
    Connect(Box<(libc::sockaddr_storage, libc::socklen_t)>),
    /// A file operation, with the iovecs of a vectored write (kept alive here).
    File {
        op: Box<FileOp>,
        iov: Vec<libc::iovec>,
    },
}

/// Queued send buffers are merged into one send up to this many bytes (a copy of small
/// replies is far cheaper than a system call each; large ones go as they are).
const MERGE_SENDS_UPTO: usize = 64 * 1024;

/// Bytes one read or write SQE asks for at most (its length field is 32 bits; a larger
/// buffer continues as a short transfer would).
const MAX_FILE_SQE: usize = 1 << 30;

struct Op {
    token: Token,
    fd: RawFd,
    epoch: u64,
    kind: OpKind,
    /// The fd was closed: complete silently.
    orphan: bool,
}

struct UFd {
    token: Token,
    epoch: u64,
    recv_wanted: bool,
    recv_op: Option<usize>,
    accept_op: Option<usize>,
    send_op: Option<usize>,
    connect_op: Option<usize>,
    poll_op: Option<usize>,
    sends: VecDeque<(Token, Vec<u8>)>,
    queued: usize,
    /// Listed in `send_ready`: its first send starts at the turn's submit.
    send_listed: bool,
}

/// `Unsupported`, naming what is missing, unless `probe` found everything this backend needs.
fn require(probe: &crate::runtime::detect::IoUringSupport) -> io::Result<()> {
    match probe.missing_required() {
        None => Ok(()),
        Some(missing) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring lacks {missing}"),
        )),
    }
}

pub(crate) struct UringBackend {
    ring: IoUring,
    ops: slab::Slab<Op>,
    fds: super::fdmap::FdMap<UFd>,
    next_epoch: u64,
    eventfd: RawFd,
    wake_armed: bool,
    /// New receives use the provided buffer ring.
    buf_ring: bool,
    /// The provided buffer ring is registered (so `buf_ring` may be turned on).
    buf_ring_registered: bool,
    /// fds whose multishot recv ended for lack of buffers: re-armed next turn.
    rearm: Vec<RawFd>,
    /// Fds with queued sends and none in flight: their send SQE is built at the turn's submit,
    /// so the replies queued during the turn leave in one send (pipelined replies).
    send_ready: Vec<RawFd>,
    /// Listeners whose accept failed: (fd, epoch, token, when to arm again).
    accept_retry: Vec<(RawFd, u64, Token, Instant)>,
    /// SQEs the kernel would not take: (user_data, -errno), completed in the next `poll`.
    failed: Vec<(u64, i32)>,
    cqes: Vec<(u64, i32, u32)>,
    /// Completions produced outside `poll`.
    ready: VecDeque<Completion>,
    /// Syscalls made (`io_uring_enter`), for the stats.
    pub(crate) enters: u64,
    /// File operations in flight (their CQEs are awaited by tasks, not handlers).
    pub(crate) file_ops: usize,
}

impl UringBackend {
    /// Creates the ring (and, where supported and `buf_ring` is true, the provided buffer
    /// ring). Fails with `Unsupported` when the kernel lacks a feature this backend needs
    /// (see [`IoUringSupport::missing_required`](crate::runtime::detect::IoUringSupport)).
    pub(crate) fn new(buf_ring: bool) -> io::Result<(Self, Option<BufRing>)> {
        require(&crate::runtime::detect::probe_io_uring())?;
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_cqsize(8192)
            .build(1024)
            .or_else(|_| IoUring::new(1024))?;
        // SAFETY: plain syscall; the result is checked.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if eventfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut b = UringBackend {
            ring,
            ops: slab::Slab::with_capacity(1024),
            fds: super::fdmap::FdMap::default(),
            next_epoch: 0,
            eventfd,
            wake_armed: false,
            buf_ring: false,
            buf_ring_registered: false,
            rearm: Vec::new(),
            send_ready: Vec::new(),
            accept_retry: Vec::new(),
            failed: Vec::new(),
            cqes: Vec::with_capacity(1024),
            ready: VecDeque::new(),
            enters: 0,
            file_ops: 0,
        };
        let bufs = if buf_ring {
            b.setup_buf_ring()
        } else {
            tracing::info!("io_uring: provided buffer rings turned off; using plain recv");
            None
        };
        b.buf_ring = bufs.is_some();
        b.buf_ring_registered = bufs.is_some();
        b.arm_wake();
        Ok((b, bufs))
    }

    fn setup_buf_ring(&mut self) -> Option<BufRing> {
        let mut br = BufRing::alloc()?;
        // SAFETY: the entries block is page-aligned, BUF_COUNT entries long, and lives (in the
        // worker's BufRing) until after the ring is dropped, which unregisters it.
        let r = unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                br.entries_addr(),
                BUF_COUNT,
                BGID,
                0,
            )
        };
        if let Err(e) = r {
            tracing::info!(%e, "io_uring: provided buffer rings unsupported; using plain recv");
            return None;
        }
        for bid in 0..BUF_COUNT {
            br.recycle(bid);
        }
        br.publish();
        Some(br)
    }

    pub(crate) fn uses_buf_ring(&self) -> bool {
        self.buf_ring
    }

    /// Turns the provided buffer ring on or off for receives armed from now on (on only where
    /// it is registered). Returns whether it is in use.
    pub(crate) fn set_buf_ring(&mut self, on: bool) -> bool {
        self.buf_ring = on && self.buf_ring_registered;
        self.buf_ring
    }

    pub(crate) fn waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let fd = self.eventfd;
        Arc::new(move || {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to an eventfd that lives as long as the
            // backend; the worker only closes it after the mesh stops waking it (at exit a
            // stray write fails with EBADF, harmlessly).
            unsafe {
                libc::write(fd, &one as *const u64 as *const libc::c_void, 8);
            }
        })
    }

    fn arm_wake(&mut self) {
        let sqe = opcode::PollAdd::new(types::Fd(self.eventfd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKE_UD);
        self.push(sqe);
        self.wake_armed = true;
    }

    /// Queues `sqe`, submitting first if the SQ is full. If the kernel refuses the submit
    /// with an error other than `EBUSY`/`EINTR`/`EAGAIN` (which are retried), the SQE is not
    /// lost silently: it is logged and completes in the next `poll` with that error, like a
    /// CQE would, so the handler sees `AcceptError`/`RecvError`/`SendError`/`Connected(Err)`.
    fn push(&mut self, sqe: squeue::Entry) {
        let mut tries = 0;
        loop {
            // SAFETY: every pointer an SQE carries (buffers, sockaddrs) is owned by `self.ops`
            // and stays put until its CQE arrives.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            self.enters += 1;
            tries += 1;
            let e = match self.ring.submit() {
                Ok(_) if tries < 4 => continue,
                Ok(_) => io::Error::from_raw_os_error(libc::EBUSY),
                Err(e) => e,
            };
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            // EBUSY/EAGAIN: the CQ must be reaped first (that happens in `poll`); a few tries
            // give in-flight task work a chance, then the operation fails rather than spin.
            let transient = matches!(errno, libc::EBUSY | libc::EINTR | libc::EAGAIN);
            if transient && tries < 4 {
                continue;
            }
            tracing::error!(
                %e,
                user_data = sqe.get_user_data(),
                "io_uring submit failed while the SQ was full; the operation fails"
            );
            self.failed.push((sqe.get_user_data(), -errno));
            return;
        }
    }

    fn fd_entry(&mut self, token: Token, fd: RawFd) -> &mut UFd {
        let epoch = &mut self.next_epoch;
        let e = self.fds.get_or_insert_with(fd, || {
            *epoch += 1;
            UFd {
                token,
                epoch: *epoch,
                recv_wanted: false,
                recv_op: None,
                accept_op: None,
                send_op: None,
                connect_op: None,
                poll_op: None,
                sends: VecDeque::new(),
                queued: 0,
                send_listed: false,
            }
        });
        e.token = token;
        e
    }

    /// Records an operation in flight; its key is the SQE's user_data.
    fn new_op(&mut self, token: Token, fd: RawFd, epoch: u64, kind: OpKind) -> usize {
        self.ops.insert(Op {
            token,
            fd,
            epoch,
            kind,
            orphan: false,
        })
    }

    /// The fds whose operations were last started for `token`.
    pub(crate) fn fds_of(&self, token: Token) -> Vec<RawFd> {
        self.fds.fds_where(|e| e.token == token)
    }

    pub(crate) fn epoch(&self, fd: RawFd) -> Option<u64> {
        self.fds.get(&fd).map(|e| e.epoch)
    }

    pub(crate) fn accept(&mut self, token: Token, fd: RawFd) {
        let e = self.fd_entry(token, fd);
        if e.accept_op.is_some() {
            return;
        }
        let epoch = e.epoch;
        let key = self.new_op(token, fd, epoch, OpKind::Accept);
        self.fds.get_mut(&fd).expect("entry made above").accept_op = Some(key);
        let sqe = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(key as u64);
        self.push(sqe);
    }

    /// Arms receiving. If an op is still in flight (possibly being cancelled by an earlier
    /// `stop_recv`), nothing is armed now: the op's final CQE re-arms it while `recv_wanted`.
    pub(crate) fn recv(&mut self, token: Token, fd: RawFd) {
        let e = self.fd_entry(token, fd);
        e.recv_wanted = true;
        if e.recv_op.is_none() {
            self.arm_recv(fd, None);
        }
    }

    fn arm_recv(&mut self, fd: RawFd, reuse: Option<Vec<u8>>) {
        let Some(e) = self.fds.get(&fd) else {
            return;
        };
        let (token, epoch) = (e.token, e.epoch);
        if self.buf_ring {
            let key = self.new_op(token, fd, epoch, OpKind::RecvMulti);
            let sqe = opcode::RecvMulti::new(types::Fd(fd), BGID)
                .build()
                .user_data(key as u64);
            self.fds.get_mut(&fd).expect("checked above").recv_op = Some(key);
            self.push(sqe);
        } else {
            let mut buf = reuse.unwrap_or_default();
            buf.resize(BUF_SIZE, 0);
            let ptr = buf.as_mut_ptr();
            let key = self.new_op(token, fd, epoch, OpKind::RecvPlain(buf));
            let sqe = opcode::Recv::new(types::Fd(fd), ptr, BUF_SIZE as u32)
                .build()
                .user_data(key as u64);
            self.fds.get_mut(&fd).expect("checked above").recv_op = Some(key);
            self.push(sqe);
        }
    }

    pub(crate) fn poll_readable(&mut self, token: Token, fd: RawFd) {
        let e = self.fd_entry(token, fd);
        if e.poll_op.is_some() {
            return;
        }
        let epoch = e.epoch;
        let key = self.new_op(token, fd, epoch, OpKind::Poll);
        self.fds.get_mut(&fd).expect("entry made above").poll_op = Some(key);
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(key as u64);
        self.push(sqe);
    }

    pub(crate) fn stop_recv(&mut self, fd: RawFd) {
        let Some(e) = self.fds.get_mut(&fd) else {
            return;
        };
        e.recv_wanted = false;
        if let Some(key) = e.recv_op {
            let sqe = opcode::AsyncCancel::new(key as u64)
                .build()
                .user_data(IGNORE_UD);
            self.push(sqe);
        }
    }

    pub(crate) fn is_receiving(&self, fd: RawFd) -> bool {
        self.fds.get(&fd).is_some_and(|e| e.recv_wanted)
    }

    /// Forgets `fd` without closing it, when no operation is armed or queued on it (false
    /// otherwise: try again once they have completed).
    pub(crate) fn release(&mut self, fd: RawFd) -> bool {
        let idle = |e: &UFd| {
            e.recv_op.is_none()
                && e.send_op.is_none()
                && e.accept_op.is_none()
                && e.connect_op.is_none()
                && e.poll_op.is_none()
                && e.sends.is_empty()
        };
        match self.fds.get(&fd) {
            Some(e) if !idle(e) => false,
            Some(_) => {
                self.rearm.retain(|r| *r != fd);
                self.fds.remove(&fd);
                true
            }
            None => true,
        }
    }

    /// The worker is done with a plain-recv buffer: re-arm with it if still wanted.
    pub(crate) fn plain_recv_done(&mut self, fd: RawFd, epoch: u64, buf: Vec<u8>) {
        if self
            .fds
            .get(&fd)
            .is_some_and(|e| e.epoch == epoch && e.recv_wanted && e.recv_op.is_none())
        {
            self.arm_recv(fd, Some(buf));
        }
    }

    pub(crate) fn send(&mut self, token: Token, fd: RawFd, buf: Vec<u8>) {
        let e = self.fd_entry(token, fd);
        e.queued += buf.len();
        e.sends.push_back((token, buf));
        if e.send_op.is_none() && e.connect_op.is_none() && !e.send_listed {
            // Started at the turn's submit (`start_listed_sends`), with whatever else is
            // queued for this fd by then.
            e.send_listed = true;
            self.send_ready.push(fd);
        }
    }

    /// Starts the sends listed during the turn (called before submitting).
    pub(super) fn start_listed_sends(&mut self) {
        for fd in std::mem::take(&mut self.send_ready) {
            let Some(e) = self.fds.get_mut(&fd) else {
                continue;
            };
            e.send_listed = false;
            if e.send_op.is_none() && e.connect_op.is_none() {
                self.start_send(fd);
            }
        }
    }

    pub(crate) fn send_queued(&self, fd: RawFd) -> usize {
        self.fds.get(&fd).map_or(0, |e| e.queued)
    }

    /// Submits the next queued buffers of `fd` as one send (one send in flight per fd keeps
    /// the order): buffers of the same handler queued behind the first are copied into it up
    /// to [`MERGE_SENDS_UPTO`] bytes, so pipelined replies leave in one system call.
    fn start_send(&mut self, fd: RawFd) {
        let Some(e) = self.fds.get_mut(&fd) else {
            return;
        };
        let Some((token, mut buf)) = e.sends.pop_front() else {
            return;
        };
        let mut merged = 0;
        while let Some((t, next)) = e.sends.front()
            && *t == token
            && !next.is_empty()
            && buf.len() + next.len() <= MERGE_SENDS_UPTO
        {
            buf.extend_from_slice(next);
            e.sends.pop_front();
            merged += 1;
        }
        let epoch = e.epoch;
        if buf.is_empty() {
            self.ready.push_back(Completion::Sent {
                token,
                fd,
                epoch,
                buf,
            });
            return self.start_send(fd);
        }
        let (ptr, len) = (buf.as_ptr(), buf.len());
        let key = self.new_op(
            token,
            fd,
            epoch,
            OpKind::Send {
                buf,
                off: 0,
                merged,
            },
        );
        self.fds.get_mut(&fd).expect("looked up above").send_op = Some(key);
        let sqe = opcode::Send::new(types::Fd(fd), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(key as u64);
        self.push(sqe);
    }

    pub(crate) fn file(&mut self, op: FileOp) {
        let key = self.new_op(
            usize::MAX,
            -1,
            0,
            OpKind::File {
                op: Box::new(op),
                iov: Vec::new(),
            },
        );
        self.file_ops += 1;
        self.push_file(key);
        // Submitted at once rather than with the turn's batch: on the virtio disk here, 32
        // reads handed over in one `io_uring_enter` kept fewer requests moving through the
        // device than one enter per read (fio's default, `iodepth_batch_submit=1`): depth-32
        // 4 KiB O_DIRECT reads measured 0.73-0.79x fio's IOPS batched, 0.95-1.03x submitted
        // at once (BENCHMARKS.md). One syscall per file operation buys that; socket SQEs queued
        // before it ride along. An error here is not lost: the SQE stays queued and the
        // turn's submit reports it.
        self.enters += 1;
        let _ = self.ring.submit();
    }

    /// File operations in flight.
    pub(crate) fn files_in_flight(&self) -> usize {
        self.file_ops
    }

    /// Queues the SQE for the rest of file operation `key`.
    pub(super) fn push_file(&mut self, key: usize) {
        use std::os::fd::AsRawFd;
        let Some(Op {
            kind: OpKind::File { op, iov },
            ..
        }) = self.ops.get_mut(key)
        else {
            return;
        };
        let fd = types::Fd(op.file.as_raw_fd());
        let off = op.offset + op.done as u64;
        let sqe = match &op.kind {
            FileOpKind::Read(_) => {
                let (ptr, len) = op.rest();
                opcode::Read::new(fd, ptr, len.min(MAX_FILE_SQE) as u32)
                    .offset(off)
                    .build()
            }
            FileOpKind::Write(_) => {
                let (ptr, len) = op.rest();
                opcode::Write::new(fd, ptr, len.min(MAX_FILE_SQE) as u32)
                    .offset(off)
                    .build()
            }
            FileOpKind::Writev(_) => {
                *iov = op.iovecs();
                iov.truncate(libc::UIO_MAXIOV as usize);
                opcode::Writev::new(fd, iov.as_ptr(), iov.len() as u32)
                    .offset(off)
                    .build()
            }
            FileOpKind::Sync { data_only } => {
                let flags = if *data_only {
                    types::FsyncFlags::DATASYNC
                } else {
                    types::FsyncFlags::empty()
                };
                opcode::Fsync::new(fd).flags(flags).build()
            }
            FileOpKind::Allocate { mode, len } => opcode::Fallocate::new(fd, *len)
                .offset(op.offset)
                .mode(*mode)
                .build(),
        };
        self.push(sqe.user_data(key as u64));
    }

    pub(crate) fn connect(&mut self, token: Token, fd: RawFd, addr: SocketAddr) {
        let epoch = self.fd_entry(token, fd).epoch;
        let sa = Box::new(super::sockaddr(&addr));
        let (ptr, len) = (&sa.0 as *const _ as *const libc::sockaddr, sa.1);
        let key = self.new_op(token, fd, epoch, OpKind::Connect(sa));
        self.fds.get_mut(&fd).expect("entry made above").connect_op = Some(key);
        let sqe = opcode::Connect::new(types::Fd(fd), ptr, len)
            .build()
            .user_data(key as u64);
        self.push(sqe);
    }

    /// Cancels every operation on `fd` and closes it. The cancels are batched with the loop's
    /// next submit when nothing is queued in the SQ yet: every op on `fd` is then already in
    /// the kernel, holding its own reference to the file, and a cancel finds its op by
    /// user_data (not by fd number), so the number may be reused at once. When SQEs are
    /// queued, one of them may name `fd` and would otherwise be resolved by the kernel against
    /// whatever file gets that number next: then everything is submitted before the close.
    pub(crate) fn close(&mut self, fd: RawFd) {
        let must_submit = !self.ring.submission().is_empty();
        self.accept_retry.retain(|r| r.0 != fd);
        self.rearm.retain(|r| *r != fd);
        self.send_ready.retain(|r| *r != fd);
        if let Some(e) = self.fds.remove(&fd) {
            if let Some(key) = e.connect_op
                && let Some(op) = self.ops.get_mut(key)
            {
                op.orphan = true;
            }
            for key in [e.recv_op, e.accept_op, e.poll_op].into_iter().flatten() {
                if let Some(op) = self.ops.get_mut(key) {
                    op.orphan = true;
                }
                let sqe = opcode::AsyncCancel::new(key as u64)
                    .build()
                    .user_data(IGNORE_UD);
                self.push(sqe);
            }
            if let Some(key) = e.send_op
                && let Some(op) = self.ops.get_mut(key)
            {
                // The kernel may still read the buffer: it stays in `ops` until the CQE.
                op.orphan = true;
            }
        }
        if must_submit {
            self.enters += 1;
            if let Err(e) = self.ring.submit() {
                tracing::warn!(fd, %e, "io_uring submit before close failed");
            }
        }
        super::close_fd(fd);
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.rearm.is_empty() || !self.failed.is_empty()
    }

    /// The earliest delayed re-arm (a listener whose accept failed), if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.accept_retry.iter().map(|r| r.3).min()
    }

    /// Closes every fd still known (worker exit), then waits (up to 5 s) for file operations
    /// still in flight: the kernel may write into their buffers until their CQEs arrive.
    pub(crate) fn close_all(&mut self) {
        let fds: Vec<RawFd> = self.fds.fds();
        for fd in fds {
            self.close(fd);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = VecDeque::new();
        while self.files_in_flight() > 0 && Instant::now() < deadline {
            if let Err(e) = self.poll(Some(Duration::from_millis(10)), &mut out, None) {
                tracing::warn!(%e, "io_uring: waiting for file operations at exit failed");
                break;
            }
            out.clear();
        }
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        super::close_fd(self.eventfd);
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::detect::{IoUringSupport, URING_REQUIRED_OPS};

    #[test]
    fn an_explicit_uring_without_multishot_is_an_error_naming_it() {
        let mut p = IoUringSupport {
            available: true,
            reason: "kernel 5.15.0".into(),
            ops: URING_REQUIRED_OPS.iter().map(|s| s.to_string()).collect(),
            multishot: true,
        };
        assert!(super::require(&p).is_ok());
        p.multishot = false;
        let e = super::require(&p).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("multishot"), "{e}");
    }
}

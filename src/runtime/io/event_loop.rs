//! The event loop: one per I/O worker thread or co-located app worker. `IoState` (backend,
//! handler slab, completion queue, receive buffers) lives in a thread local; one [`turn`] =
//! submit/wait (`io_uring_enter` or `epoll_wait`), dispatch completions to handlers, retries
//! (hand-offs waiting for mailbox room), 250 ms ticks (timeouts). Owns handlers and their fds;
//! knows nothing of the protocols they speak.
//!
//! A handler that panics is caught here: the panic is logged (error, with its token and fd
//! where known), the fds the loop knows as the handler's are closed (their in-flight operations
//! are cancelled, and late completions are dropped by the epoch check) and the handler is
//! removed; the loop and every other handler carry on.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::completion::Completion;
use super::select::{make_backend, raise_nofile_limit};
use super::uring::BufRing;
use super::{BackendImpl, BackendKind, Event, Handlers, IoCtx, TICK, Token};

/// Counters of one event loop (on a dedicated I/O worker or co-located on an app worker).
#[derive(Debug, Default)]
pub struct EventLoopStats {
    /// Loop turns.
    pub turns: AtomicU64,
    /// Completions dispatched to handlers.
    pub completions: AtomicU64,
    /// Kernel entries (`io_uring_enter` or `epoll_wait`).
    pub syscalls: AtomicU64,
    /// Handlers alive.
    pub handlers: AtomicU64,
}

/// The former name of [`EventLoopStats`].
#[deprecated(
    since = "0.1.0",
    note = "renamed EventLoopStats (a loop may run on an app worker)"
)]
pub type IoWorkerStats = EventLoopStats;

/// What a handler call needs: kept apart from the receive buffers so that an event can
/// borrow `IoState::bufs` or `readbuf` while this is borrowed mutably.
struct Core {
    backend: BackendImpl,
    handlers: Handlers,
    worker: usize,
    node: usize,
    stopping: bool,
}

impl Core {
    fn ctx(&mut self, now: Instant, current: Option<(Token, u64)>) -> IoCtx<'_> {
        IoCtx {
            backend: &mut self.backend,
            handlers: &mut self.handlers,
            worker: self.worker,
            node: self.node,
            current,
            now,
            stopping: self.stopping,
        }
    }

    /// Calls handler `token` with `event`. A panic in the handler is caught: see
    /// [`Core::handler_panicked`].
    fn call(&mut self, now: Instant, token: Token, event: Event<'_>) {
        let Some(slot) = self.handlers.slab.get_mut(token) else {
            return;
        };
        if slot.removed {
            return;
        }
        let Some(mut h) = slot.handler.take() else {
            return;
        };
        let generation = slot.generation;
        let r = {
            let mut ctx = self.ctx(now, Some((token, generation)));
            // AssertUnwindSafe: after a panic the handler is dropped without being called
            // again, and the loop's own state (backend, slab) is only changed through `IoCtx`
            // methods, which leave it consistent between their steps.
            catch_unwind(AssertUnwindSafe(|| h.on_event(&mut ctx, event)))
        };
        match r {
            Ok(()) => super::put_back(&mut self.handlers, token, generation, h),
            Err(payload) => self.handler_panicked(token, generation, h, payload),
        }
    }

    /// A handler panicked: log it, close the fds registered to its token (cancelling their
    /// operations; completions already queued for them fail the epoch check and are dropped),
    /// and remove it. Its `Drop` runs under `catch_unwind` too.
    fn handler_panicked(
        &mut self,
        token: Token,
        generation: u64,
        h: Box<dyn super::IoHandler>,
        payload: Box<dyn std::any::Any + Send>,
    ) {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        let fds = match &self.backend {
            BackendImpl::Uring(b) => b.fds_of(token),
            BackendImpl::Mio(b) => b.fds_of(token),
        };
        tracing::error!(
            io_worker = self.worker,
            token,
            ?fds,
            panic = %msg,
            "I/O handler panicked; closing its sockets and removing it"
        );
        for fd in fds {
            match &mut self.backend {
                BackendImpl::Uring(b) => b.close(fd),
                BackendImpl::Mio(b) => b.close(fd),
            }
        }
        if self
            .handlers
            .slab
            .get(token)
            .is_some_and(|s| s.generation == generation)
        {
            self.handlers.slab.remove(token);
        }
        self.handlers.retry.retain(|r| r.0 != token);
        if catch_unwind(AssertUnwindSafe(|| drop(h))).is_err() {
            tracing::error!(token, "dropping the panicked I/O handler panicked too");
        }
    }
}

/// Rate-limits the log of accept errors: at most one line (and one `AcceptError` event to
/// the listener's handler) per second per loop, with the count of those held back.
#[derive(Default)]
struct AcceptErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrorLog {
    /// True when this error should be reported now.
    fn report(&mut self, now: Instant, worker: usize, err: &io::Error) -> bool {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return false;
        }
        tracing::warn!(
            io_worker = worker,
            %err,
            repeated = self.suppressed,
            retry_ms = super::uring::ACCEPT_RETRY.as_millis() as u64,
            "accept failed (logged at most once a second; `repeated` counts those since); \
             retrying after a pause"
        );
        self.last = Some(now);
        self.suppressed = 0;
        true
    }
}

pub(crate) struct IoState {
    /// Declared before `bufs`: the ring must go (unregistering the buffers) before the memory.
    core: Core,
    bufs: Option<BufRing>,
    completions: VecDeque<Completion>,
    readbuf: Vec<u8>,
    next_tick: Instant,
    accept_errors: AcceptErrorLog,
}

thread_local! {
    static IO: RefCell<Option<IoState>> = const { RefCell::new(None) };
}

/// Runs `f` with the current I/O worker's context. `None` when this thread is not an I/O
/// worker (or is inside a handler call, where the handler already has its context).
pub(crate) fn with_io<R>(f: impl FnOnce(&mut IoCtx<'_>) -> R) -> Option<R> {
    IO.with(|cell| {
        let mut g = cell.try_borrow_mut().ok()?;
        let st = g.as_mut()?;
        Some(f(&mut st.core.ctx(Instant::now(), None)))
    })
}

impl IoState {
    fn epoch(&self, fd: RawFd) -> Option<u64> {
        match &self.core.backend {
            BackendImpl::Uring(b) => b.epoch(fd),
            BackendImpl::Mio(b) => b.epoch(fd),
        }
    }

    /// Calls `token` with an owned event, unless `fd` has been closed (or closed and reused)
    /// since the operation was started: the epoch of its registration must still match.
    fn deliver(&mut self, now: Instant, token: Token, fd: RawFd, epoch: u64, ev: Event<'static>) {
        if self.epoch(fd) == Some(epoch) {
            self.core.call(now, token, ev);
        }
    }

    fn dispatch(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(c) = self.completions.pop_front() {
            n += 1;
            match c {
                Completion::Accepted { token, fd } => {
                    self.core.call(now, token, Event::Accepted(fd))
                }
                Completion::AcceptError { token, err } => self.accept_error(now, token, err),
                Completion::Acceptable { token, fd, epoch } => {
                    self.accept_ready(now, token, fd, epoch);
                }
                Completion::Readable { token, fd, epoch } => self.read_ready(now, token, fd, epoch),
                Completion::BufData {
                    token,
                    fd,
                    epoch,
                    bid,
                    len,
                } => {
                    if self.epoch(fd) == Some(epoch)
                        && let Some(bufs) = &self.bufs
                    {
                        let data = bufs.slice(bid, len);
                        self.core.call(now, token, Event::Data(data));
                    }
                    if let Some(bufs) = &mut self.bufs {
                        bufs.recycle(bid);
                    }
                }
                Completion::OwnedData {
                    token,
                    fd,
                    epoch,
                    buf,
                    len,
                } => {
                    if self.epoch(fd) == Some(epoch) {
                        let data = &buf[..len];
                        self.core.call(now, token, Event::Data(data));
                        if let BackendImpl::Uring(b) = &mut self.core.backend {
                            b.plain_recv_done(fd, epoch, buf);
                        }
                    }
                }
                Completion::Eof { token, fd, epoch } => {
                    self.deliver(now, token, fd, epoch, Event::Eof)
                }
                Completion::RecvError {
                    token,
                    fd,
                    epoch,
                    err,
                } => self.deliver(now, token, fd, epoch, Event::RecvError(err)),
                Completion::Sent {
                    token,
                    fd,
                    epoch,
                    buf,
                } => self.deliver(now, token, fd, epoch, Event::Sent(buf)),
                Completion::SendError {
                    token,
                    fd,
                    epoch,
                    err,
                } => self.deliver(now, token, fd, epoch, Event::SendError(err)),
                Completion::PollReady { token, fd, epoch } => {
                    self.deliver(now, token, fd, epoch, Event::Readable)
                }
                Completion::Connected {
                    token,
                    fd,
                    epoch,
                    res,
                } => self.deliver(now, token, fd, epoch, Event::Connected(res)),
            }
        }
        if let Some(b) = &mut self.bufs {
            b.publish();
        }
        n
    }

    /// Reports an accept error to the listener's handler, rate-limited (see
    /// [`AcceptErrorLog`]). The backend re-arms the listener after a pause.
    fn accept_error(&mut self, now: Instant, token: Token, err: io::Error) {
        if self.accept_errors.report(now, self.core.worker, &err) {
            self.core.call(now, token, Event::AcceptError(err));
        }
    }

    /// mio: accept until `EAGAIN` (at most 64 per turn, then yield to other work).
    fn accept_ready(&mut self, now: Instant, token: Token, fd: RawFd, epoch: u64) {
        for _ in 0..64 {
            let BackendImpl::Mio(b) = &self.core.backend else {
                return;
            };
            if !b.wants_read(fd, epoch) {
                return;
            }
            // SAFETY: accept4 with null address pointers is allowed; the result is checked.
            let c = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if c < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ => {
                        // Edge-triggered: no new readiness comes for connections already
                        // waiting, so look again after a pause (EMFILE: once fds are freed).
                        if let BackendImpl::Mio(b) = &mut self.core.backend {
                            b.reread_at(
                                Completion::Acceptable { token, fd, epoch },
                                now + super::uring::ACCEPT_RETRY,
                            );
                        }
                        self.accept_error(now, token, err);
                        return;
                    }
                }
            }
            self.core.call(now, token, Event::Accepted(c));
        }
        if let BackendImpl::Mio(b) = &mut self.core.backend {
            b.reread(Completion::Acceptable { token, fd, epoch });
        }
    }

    /// mio: read until `EAGAIN` (at most 16 reads per turn, then yield to other sockets).
    fn read_ready(&mut self, now: Instant, token: Token, fd: RawFd, epoch: u64) {
        for _ in 0..16 {
            let BackendImpl::Mio(b) = &mut self.core.backend else {
                return;
            };
            if !b.wants_read(fd, epoch) {
                return;
            }
            // SAFETY: readbuf is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    fd,
                    self.readbuf.as_mut_ptr() as *mut libc::c_void,
                    self.readbuf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                let data = &self.readbuf[..n as usize];
                self.core.call(now, token, Event::Data(data));
                continue;
            }
            if n == 0 {
                b.recv_ended(fd);
                self.core.call(now, token, Event::Eof);
                return;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return,
                io::ErrorKind::Interrupted => continue,
                _ => {
                    b.recv_ended(fd);
                    self.core.call(now, token, Event::RecvError(err));
                    return;
                }
            }
        }
        if let BackendImpl::Mio(b) = &mut self.core.backend {
            b.reread(Completion::Readable { token, fd, epoch });
        }
    }

    fn tick(&mut self, now: Instant) {
        let tokens: Vec<Token> = self
            .core
            .handlers
            .slab
            .iter()
            .filter(|(_, s)| s.ticks && !s.removed)
            .map(|(t, _)| t)
            .collect();
        for t in tokens {
            self.core.call(now, t, Event::Tick(now));
        }
    }

    fn retries(&mut self, now: Instant) {
        let list = std::mem::take(&mut self.core.handlers.retry);
        for (t, g) in list {
            if self
                .core
                .handlers
                .slab
                .get(t)
                .is_some_and(|s| s.generation == g)
            {
                self.core.call(now, t, Event::Retry);
            }
        }
    }

    fn has_ready(&self) -> bool {
        !self.completions.is_empty()
            || match &self.core.backend {
                BackendImpl::Uring(b) => b.has_ready(),
                BackendImpl::Mio(b) => b.has_ready(),
            }
    }

    /// The earliest delayed re-arm the backend holds (a listener pausing after an error).
    fn next_deadline(&self) -> Option<Instant> {
        match &self.core.backend {
            BackendImpl::Uring(b) => b.next_deadline(),
            BackendImpl::Mio(b) => b.next_deadline(),
        }
    }

    fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match &mut self.core.backend {
            BackendImpl::Uring(b) => b.poll(timeout, &mut self.completions, self.bufs.as_mut()),
            BackendImpl::Mio(b) => b.poll(timeout, &mut self.completions),
        }
    }

    fn shutdown(&mut self, now: Instant) {
        self.core.stopping = true;
        let tokens: Vec<Token> = self.core.handlers.slab.iter().map(|(t, _)| t).collect();
        for t in tokens {
            self.core.call(now, t, Event::Shutdown);
        }
        match &mut self.core.backend {
            BackendImpl::Uring(b) => b.close_all(),
            BackendImpl::Mio(b) => b.close_all(),
        }
        self.core.handlers.slab.clear();
    }
}

/// Creates the backend and installs the event-loop state on the calling thread (I/O worker
/// `index`, mesh node `node`). Returns the backend actually used and its raw wake function.
pub(crate) fn install(
    index: usize,
    node: usize,
    kind: BackendKind,
    may_fall_back: bool,
) -> io::Result<(BackendKind, Arc<dyn Fn() + Send + Sync>)> {
    raise_nofile_limit();
    let made = match make_backend(kind) {
        Ok(b) => Ok((b, kind)),
        Err(e) if kind == BackendKind::Uring && may_fall_back => {
            tracing::warn!(io_worker = index, %e, "io_uring setup failed; this event loop uses mio");
            make_backend(BackendKind::Mio).map(|b| (b, BackendKind::Mio))
        }
        Err(e) => Err(e),
    };
    let ((backend, bufs), kind) = made?;
    let wake = match &backend {
        BackendImpl::Uring(b) => b.waker(),
        BackendImpl::Mio(b) => b.waker(),
    };
    let st = IoState {
        core: Core {
            backend,
            handlers: Handlers::default(),
            worker: index,
            node,
            stopping: false,
        },
        bufs,
        completions: VecDeque::with_capacity(1024),
        readbuf: vec![0; 64 * 1024],
        next_tick: Instant::now() + TICK,
        accept_errors: AcceptErrorLog::default(),
    };
    IO.with(|c| *c.borrow_mut() = Some(st));
    Ok((kind, wake))
}

/// True when the installed loop has completions to hand out without waiting (or a hand-off
/// to retry), so the caller must not sleep long.
pub(crate) fn has_ready() -> bool {
    IO.with(|c| {
        c.try_borrow()
            .ok()
            .and_then(|g| g.as_ref().map(|st| st.has_ready()))
            .unwrap_or(false)
    })
}

/// True when handlers are registered on this thread's loop, or file operations are in
/// flight on it (so it is worth polling every turn: a task waiting for a read must not wait
/// for the worker's idle spin before its SQE is even submitted).
pub(crate) fn active() -> bool {
    IO.with(|c| {
        c.try_borrow()
            .ok()
            .and_then(|g| {
                g.as_ref().map(|st| {
                    !st.core.handlers.slab.is_empty()
                        || st.has_ready()
                        || matches!(&st.core.backend, BackendImpl::Uring(b) if b.file_ops > 0)
                })
            })
            .unwrap_or(false)
    })
}

/// One turn of this thread's loop: wait up to `timeout` (shortened for ticks and retries),
/// dispatch completions, retries and ticks. Returns the completions dispatched.
pub(crate) fn turn(timeout: Option<Duration>, stats: &EventLoopStats) -> io::Result<usize> {
    IO.with(|c| {
        let Ok(mut g) = c.try_borrow_mut() else {
            return Ok(0);
        };
        let Some(st) = g.as_mut() else {
            return Ok(0);
        };
        let now = Instant::now();
        let mut timeout = timeout;
        if st.has_ready() {
            timeout = Some(Duration::ZERO);
        } else if !st.core.handlers.retry.is_empty() {
            // A hand-off waits for mailbox room: look again soon, without spinning.
            timeout = Some(timeout.map_or(Duration::from_millis(1), |t| {
                t.min(Duration::from_millis(1))
            }));
        }
        if !st.core.handlers.slab.is_empty() {
            let to_tick = st.next_tick.saturating_duration_since(now);
            timeout = Some(timeout.map_or(to_tick, |t| t.min(to_tick)));
        }
        if let Some(at) = st.next_deadline() {
            let to = at.saturating_duration_since(now);
            timeout = Some(timeout.map_or(to, |t| t.min(to)));
        }
        let r = st.poll(timeout);
        let now = Instant::now();
        let n = st.dispatch(now);
        st.retries(now);
        if now >= st.next_tick {
            st.tick(now);
            st.next_tick = now + TICK;
        }
        stats.turns.fetch_add(1, Ordering::Relaxed);
        stats.completions.fetch_add(n as u64, Ordering::Relaxed);
        stats
            .handlers
            .store(st.core.handlers.slab.len() as u64, Ordering::Relaxed);
        let sys = match &st.core.backend {
            BackendImpl::Uring(b) => b.enters,
            BackendImpl::Mio(_) => stats.turns.load(Ordering::Relaxed),
        };
        stats.syscalls.store(sys, Ordering::Relaxed);
        r.map(|_| n)
    })
}

/// Tells every handler of this thread's loop to stop (they close what they own) and closes
/// whatever fds remain. The loop stays installed (stopping) until [`uninstall`].
pub(crate) fn shutdown_current() {
    IO.with(|c| {
        if let Ok(mut g) = c.try_borrow_mut()
            && let Some(st) = g.as_mut()
            && !st.core.stopping
        {
            st.shutdown(Instant::now());
        }
    });
}

/// Shuts down (if not yet) and removes this thread's loop.
pub(crate) fn uninstall() {
    shutdown_current();
    IO.with(|c| {
        if let Ok(mut g) = c.try_borrow_mut() {
            g.take();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_logged_once_a_second() {
        let mut log = AcceptErrorLog::default();
        let t = Instant::now();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(log.report(t, 0, &e));
        for i in 1..50 {
            assert!(!log.report(t + Duration::from_millis(i * 10), 0, &e));
        }
        assert_eq!(log.suppressed, 49);
        assert!(log.report(t + Duration::from_millis(1001), 0, &e));
        assert_eq!(log.suppressed, 0);
    }
}

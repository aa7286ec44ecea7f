//! The mio (epoll) backend: completion-style operations emulated over edge-triggered readiness.
//! Owns the `Poll`, the per-fd registration and send queues. Reads and accepts are performed by
//! the worker when it dispatches a `Readable`/`Acceptable` completion (so the handler is called
//! between reads); writes are performed here, as soon as they are queued and on writability.
//! A listener whose accept failed (e.g. `EMFILE`) is looked at again after a pause
//! ([`MioBackend::reread_at`]): edge-triggered epoll reports no new edge for connections
//! already waiting.
//!
//! Must not touch: handlers (the worker calls them), protocols, the worker's read buffer, or
//! any fd it was not asked about; it closes an fd only in [`MioBackend::close`].

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token as MioToken, Waker};

use super::Token;
use super::completion::Completion;

const WAKE: MioToken = MioToken(usize::MAX);
/// Buffers written by one `sendmsg`.
const MAX_IOV: usize = 32;

struct MFd {
    token: Token,
    epoch: u64,
    registered: bool,
    recv: bool,
    accept: bool,
    connecting: bool,
    poll_read: bool,
    sends: VecDeque<(Token, Vec<u8>)>,
    /// Bytes of the front buffer already written.
    off: usize,
    queued: usize,
}

pub(crate) struct MioBackend {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    fds: super::fdmap::FdMap<MFd>,
    next_epoch: u64,
    /// Completions produced outside `poll` (immediate writes, arming), handed out by the next
    /// `poll`.
    ready: VecDeque<Completion>,
    /// Completions to hand out once their time has come (listeners pausing after an error).
    delayed: Vec<(Instant, Completion)>,
}

impl MioBackend {
    pub(crate) fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        Ok(MioBackend {
            poll,
            events: Events::with_capacity(1024),
            waker,
            fds: super::fdmap::FdMap::default(),
            next_epoch: 0,
            ready: VecDeque::new(),
            delayed: Vec::new(),
        })
    }

    pub(crate) fn waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let w = self.waker.clone();
        Arc::new(move || {
            let _ = w.wake();
        })
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn entry(&mut self, token: Token, fd: RawFd, interest: Interest) -> &mut MFd {
        let epoch = &mut self.next_epoch;
        let e = self.fds.get_or_insert_with(fd, || {
            *epoch += 1;
            MFd {
                token,
                epoch: *epoch,
                registered: false,
                recv: false,
                accept: false,
                connecting: false,
                poll_read: false,
                sends: VecDeque::new(),
                off: 0,
                queued: 0,
            }
        });
        e.token = token;
        if !e.registered {
            match self
                .poll
                .registry()
                .register(&mut SourceFd(&fd), MioToken(fd as usize), interest)
            {
                Ok(()) => e.registered = true,
                Err(err) => tracing::warn!(fd, %err, "mio: could not register fd"),
            }
        }
        e
    }

    pub(crate) fn epoch(&self, fd: RawFd) -> Option<u64> {
        self.fds.get(&fd).map(|e| e.epoch)
    }

    pub(crate) fn accept(&mut self, token: Token, fd: RawFd) {
        let e = self.entry(token, fd, Interest::READABLE);
        e.accept = true;
        let epoch = e.epoch;
        self.ready
            .push_back(Completion::Acceptable { token, fd, epoch });
    }

    pub(crate) fn recv(&mut self, token: Token, fd: RawFd) {
        let e = self.entry(token, fd, Interest::READABLE | Interest::WRITABLE);
        if !e.recv {
            e.recv = true;
            let epoch = e.epoch;
            // Edge-triggered: data may already be waiting, so try at once.
            self.ready
                .push_back(Completion::Readable { token, fd, epoch });
        }
    }

    pub(crate) fn poll_readable(&mut self, token: Token, fd: RawFd) {
        let e = self.entry(token, fd, Interest::READABLE);
        e.poll_read = true;
        let epoch = e.epoch;
        // Edge-triggered: an edge that came while not armed is lost, so look now.
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        if unsafe { libc::poll(&mut p, 1, 0) } > 0 {
            e.poll_read = false;
            self.ready
                .push_back(Completion::PollReady { token, fd, epoch });
        }
    }

    pub(crate) fn stop_recv(&mut self, fd: RawFd) {
        if let Some(e) = self.fds.get_mut(&fd) {
            e.recv = false;
        }
    }

    pub(crate) fn is_receiving(&self, fd: RawFd) -> bool {
        self.fds.get(&fd).is_some_and(|e| e.recv)
    }

    /// Whether a `Readable`/`Acceptable` completion for (`fd`, `epoch`) is still wanted.
    pub(crate) fn wants_read(&self, fd: RawFd, epoch: u64) -> bool {
        self.fds
            .get(&fd)
            .is_some_and(|e| e.epoch == epoch && (e.recv || e.accept))
    }

    /// Receiving ended (EOF or error): disarm.
    pub(crate) fn recv_ended(&mut self, fd: RawFd) {
        self.stop_recv(fd);
    }

    /// The worker stopped reading `fd` before `EAGAIN`: try again next turn.
    /// Hands out `c` again at `at` (once per listener: a pending one is kept).
    pub(crate) fn reread_at(&mut self, c: Completion, at: Instant) {
        if let Completion::Acceptable { fd, .. } = &c
            && self
                .delayed
                .iter()
                .any(|(_, d)| matches!(d, Completion::Acceptable { fd: f, .. } if f == fd))
        {
            return;
        }
        self.delayed.push((at, c));
    }

    /// The earliest delayed completion's time, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.delayed.iter().map(|d| d.0).min()
    }

    /// The fds registered with `token`.
    pub(crate) fn fds_of(&self, token: Token) -> Vec<RawFd> {
        self.fds.fds_where(|e| e.token == token)
    }

    pub(crate) fn reread(&mut self, c: Completion) {
        self.ready.push_back(c);
    }

    pub(crate) fn send(&mut self, token: Token, fd: RawFd, buf: Vec<u8>) {
        let e = self.entry(token, fd, Interest::READABLE | Interest::WRITABLE);
        e.queued += buf.len();
        e.sends.push_back((token, buf));
        if e.sends.len() == 1 && !e.connecting {
            self.flush(fd);
        }
    }

    pub(crate) fn send_queued(&self, fd: RawFd) -> usize {
        self.fds.get(&fd).map_or(0, |e| e.queued)
    }

    /// Writes queued buffers until done or `EAGAIN`, several per `sendmsg`.
    fn flush(&mut self, fd: RawFd) {
        let Some(e) = self.fds.get_mut(&fd) else {
            return;
        };
        while !e.sends.is_empty() {
            let mut iov: [libc::iovec; MAX_IOV] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOV];
            let mut n_iov = 0;
            for (i, (_, b)) in e.sends.iter().take(MAX_IOV).enumerate() {
                let off = if i == 0 { e.off } else { 0 };
                iov[i] = libc::iovec {
                    iov_base: b[off..].as_ptr() as *mut libc::c_void,
                    iov_len: b.len() - off,
                };
                n_iov += 1;
            }
            // SAFETY: msghdr is plain data; all-zero is valid, then the iovec fields are set.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = n_iov as _;
            // SAFETY: the iovecs point into buffers owned by `e.sends`, alive for the call.
            let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        let token = e.sends.front().map_or(e.token, |s| s.0);
                        e.sends.clear();
                        e.off = 0;
                        e.queued = 0;
                        self.ready.push_back(Completion::SendError {
                            token,
                            fd,
                            epoch: e.epoch,
                            err,
                        });
                        return;
                    }
                }
            }
            let mut n = n as usize;
            e.queued -= n;
            // Complete every buffer the write covered; a zero-length buffer is covered as soon
            // as it reaches the front.
            while let Some((_, front)) = e.sends.front() {
                let left = front.len() - e.off;
                if left > n {
                    e.off += n;
                    break;
                }
                n -= left;
                e.off = 0;
                let (token, buf) = e.sends.pop_front().expect("front exists (checked above)");
                self.ready.push_back(Completion::Sent {
                    token,
                    fd,
                    epoch: e.epoch,
                    buf,
                });
            }
        }
    }

    pub(crate) fn connect(&mut self, token: Token, fd: RawFd, addr: SocketAddr) {
        let (ss, len) = super::sockaddr(&addr);
        // SAFETY: ss is a valid sockaddr of length len.
        let r = unsafe { libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) };
        let err = io::Error::last_os_error();
        let e = self.entry(token, fd, Interest::READABLE | Interest::WRITABLE);
        let epoch = e.epoch;
        if r == 0 {
            self.ready.push_back(Completion::Connected {
                token,
                fd,
                epoch,
                res: Ok(()),
            });
        } else if err.raw_os_error() == Some(libc::EINPROGRESS) {
            e.connecting = true;
        } else {
            self.ready.push_back(Completion::Connected {
                token,
                fd,
                epoch,
                res: Err(err),
            });
        }
    }

    /// Forgets `fd` without closing it (deregistered from this loop's poll), when nothing is
    /// queued or pending on it (false otherwise).
    pub(crate) fn release(&mut self, fd: RawFd) -> bool {
        match self.fds.get(&fd) {
            Some(e) if !e.sends.is_empty() || e.connecting || e.accept || e.poll_read => false,
            Some(_) => {
                if let Some(e) = self.fds.remove(&fd)
                    && e.registered
                {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
                true
            }
            None => true,
        }
    }

    pub(crate) fn close(&mut self, fd: RawFd) {
        if let Some(e) = self.fds.remove(&fd)
            && e.registered
        {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        super::close_fd(fd);
    }

    /// Waits up to `timeout` for readiness and appends the completions to `out`.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut VecDeque<Completion>,
    ) -> io::Result<()> {
        if !self.delayed.is_empty() {
            let now = Instant::now();
            let mut i = 0;
            while i < self.delayed.len() {
                if self.delayed[i].0 <= now {
                    let (_, c) = self.delayed.swap_remove(i);
                    self.ready.push_back(c);
                } else {
                    i += 1;
                }
            }
        }
        let timeout = if self.ready.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        if let Err(e) = self.poll.poll(&mut self.events, timeout)
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e);
        }
        let mut writable = Vec::new();
        for ev in self.events.iter() {
            if ev.token() == WAKE {
                continue;
            }
            let fd = ev.token().0 as RawFd;
            let Some(e) = self.fds.get_mut(&fd) else {
                continue;
            };
            let (token, epoch) = (e.token, e.epoch);
            if e.accept {
                if ev.is_readable() {
                    out.push_back(Completion::Acceptable { token, fd, epoch });
                }
                continue;
            }
            if e.connecting && (ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                e.connecting = false;
                let res = super::take_socket_error(fd);
                let ok = res.is_ok();
                out.push_back(Completion::Connected {
                    token,
                    fd,
                    epoch,
                    res,
                });
                if ok && !e.sends.is_empty() {
                    writable.push(fd);
                }
            }
            if e.poll_read && (ev.is_readable() || ev.is_error()) {
                e.poll_read = false;
                out.push_back(Completion::PollReady { token, fd, epoch });
            }
            if e.recv && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                out.push_back(Completion::Readable { token, fd, epoch });
            }
            if (ev.is_writable() || ev.is_error()) && !e.sends.is_empty() && !e.connecting {
                writable.push(fd);
            }
        }
        for fd in writable {
            self.flush(fd);
        }
        out.extend(self.ready.drain(..));
        Ok(())
    }

    /// Closes every fd still registered (worker exit).
    pub(crate) fn close_all(&mut self) {
        let fds: Vec<RawFd> = self.fds.fds();
        for fd in fds {
            self.close(fd);
        }
    }
}

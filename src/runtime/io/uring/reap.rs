//! The completion side of the io_uring backend: submit and wait in one `io_uring_enter`, then
//! turn each CQE into a [`Completion`] (multishot accept and recv, provided buffers, plain recv,
//! ordered sends, connects, cancellations, stale epochs), re-arming what the kernel ended.
//! Owns the translation only; the operations are armed in `mod.rs`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, types};

use super::*;

impl UringBackend {
    /// Submits what is queued, waits up to `timeout` for at least one completion, and turns
    /// the CQEs into completions in `out`.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut VecDeque<Completion>,
        bufs: Option<&mut BufRing>,
    ) -> io::Result<()> {
        self.start_listed_sends();
        for fd in std::mem::take(&mut self.rearm) {
            if self
                .fds
                .get(&fd)
                .is_some_and(|e| e.recv_wanted && e.recv_op.is_none())
            {
                self.arm_recv(fd, None);
            }
        }
        if !self.accept_retry.is_empty() {
            let now = Instant::now();
            let due: Vec<_> = self
                .accept_retry
                .iter()
                .filter(|r| r.3 <= now)
                .copied()
                .collect();
            self.accept_retry.retain(|r| r.3 > now);
            for (fd, epoch, token, _) in due {
                if self.epoch(fd) == Some(epoch) {
                    self.accept(token, fd);
                }
            }
        }
        if !self.wake_armed {
            self.arm_wake();
        }
        let busy = !self.ready.is_empty() || !self.failed.is_empty();
        let r = match timeout {
            Some(t) if t.is_zero() || busy => {
                // Nothing to submit, no task work pending (IORING_SQ_TASKRUN, set with
                // COOP_TASKRUN + TASKRUN_FLAG) and no overflowed CQEs to flush: the CQ ring
                // can be read without entering the kernel.
                let sq = self.ring.submission();
                if sq.is_empty() && !sq.taskrun() && !sq.cq_overflow() {
                    Ok(0)
                } else {
                    drop(sq);
                    self.enters += 1;
                    self.ring.submit()
                }
            }
            Some(t) => {
                self.enters += 1;
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => {
                self.enters += 1;
                self.ring.submit_and_wait(1)
            }
        };
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.cqes.clear();
        self.cqes
            .extend(self.failed.drain(..).map(|(ud, res)| (ud, res, 0)));
        for cqe in self.ring.completion() {
            self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        let mut bufs = bufs;
        let cqes = std::mem::take(&mut self.cqes);
        for &(ud, res, flags) in &cqes {
            self.complete(ud, res, flags, out, bufs.as_deref_mut());
        }
        self.cqes = cqes;
        out.extend(self.ready.drain(..));
        Ok(())
    }

    fn complete(
        &mut self,
        ud: u64,
        res: i32,
        flags: u32,
        out: &mut VecDeque<Completion>,
        bufs: Option<&mut BufRing>,
    ) {
        if ud == IGNORE_UD {
            return;
        }
        if ud == WAKE_UD {
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into a valid u64 from our non-blocking eventfd.
            unsafe {
                libc::read(self.eventfd, &mut v as *mut u64 as *mut libc::c_void, 8);
            }
            if !cqueue::more(flags) {
                self.wake_armed = false;
            }
            return;
        }
        let key = ud as usize;
        let more = cqueue::more(flags);
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        let (token, fd, epoch, orphan) = (op.token, op.fd, op.epoch, op.orphan);
        match &mut op.kind {
            OpKind::Accept => {
                if !orphan {
                    if res >= 0 {
                        out.push_back(Completion::Accepted { token, fd: res });
                    } else if res != -libc::ECANCELED {
                        out.push_back(Completion::AcceptError {
                            token,
                            err: io::Error::from_raw_os_error(-res),
                        });
                    }
                } else if res >= 0 {
                    crate::runtime::io::close_fd(res);
                }
                if !more {
                    self.ops.remove(key);
                    if let Some(e) = self.fds.get_mut(&fd)
                        && e.accept_op == Some(key)
                    {
                        e.accept_op = None;
                        if orphan || res == -libc::ECANCELED {
                            // Closed or cancelled: stays unarmed.
                        } else if res >= 0 {
                            // Ended by the kernel (e.g. CQ pressure): arm again at once.
                            self.accept(token, fd);
                        } else {
                            // An error (EMFILE, ENFILE, ENOMEM, …) would most likely repeat at
                            // once: arm again after a pause instead of spinning.
                            self.accept_retry.push((
                                fd,
                                epoch,
                                token,
                                Instant::now() + ACCEPT_RETRY,
                            ));
                        }
                    }
                }
            }
            OpKind::RecvMulti => {
                let bid = cqueue::buffer_select(flags);
                if orphan {
                    if let (Some(bid), Some(b)) = (bid, bufs) {
                        b.recycle(bid);
                    }
                } else if res > 0 {
                    match bid {
                        Some(bid) => out.push_back(Completion::BufData {
                            token,
                            fd,
                            epoch,
                            bid,
                            len: res as usize,
                        }),
                        None => tracing::warn!(fd, "io_uring: recv CQE without a buffer"),
                    }
                } else if res == 0 {
                    out.push_back(Completion::Eof { token, fd, epoch });
                } else if res == -libc::ENOBUFS {
                    // Out of provided buffers: re-armed (below) next turn, after recycling.
                } else if res != -libc::ECANCELED {
                    out.push_back(Completion::RecvError {
                        token,
                        fd,
                        epoch,
                        err: io::Error::from_raw_os_error(-res),
                    });
                }
                if !more {
                    self.ops.remove(key);
                    if let Some(e) = self.fds.get_mut(&fd)
                        && e.recv_op == Some(key)
                    {
                        e.recv_op = None;
                        let resumable = res > 0 || res == -libc::ENOBUFS || res == -libc::ECANCELED;
                        if e.recv_wanted && resumable {
                            // Ended by the kernel (CQ pressure, no buffers) or by a cancel the
                            // handler has since overridden with a new `recv`: re-arm.
                            if !self.rearm.contains(&fd) {
                                self.rearm.push(fd);
                            }
                        } else if !resumable {
                            e.recv_wanted = false;
                        }
                    }
                }
            }
            OpKind::RecvPlain(_) => {
                let Op { kind, .. } = self.ops.remove(key);
                let OpKind::RecvPlain(buf) = kind else {
                    unreachable!("matched RecvPlain above")
                };
                if let Some(e) = self.fds.get_mut(&fd)
                    && e.recv_op == Some(key)
                {
                    e.recv_op = None;
                }
                if orphan {
                    return;
                }
                if res > 0 {
                    out.push_back(Completion::OwnedData {
                        token,
                        fd,
                        epoch,
                        buf,
                        len: res as usize,
                    });
                } else if res == 0 {
                    self.stop_recv_state(fd);
                    out.push_back(Completion::Eof { token, fd, epoch });
                } else if res == -libc::ECANCELED || res == -libc::EAGAIN {
                    // EAGAIN: try again. ECANCELED: `stop_recv` cancelled it, but the handler
                    // may have called `recv` again since (which found this op in flight and
                    // armed nothing): re-arm while receiving is wanted, as RecvMulti does.
                    self.rearm_plain(fd, buf);
                } else {
                    self.stop_recv_state(fd);
                    out.push_back(Completion::RecvError {
                        token,
                        fd,
                        epoch,
                        err: io::Error::from_raw_os_error(-res),
                    });
                }
            }
            OpKind::Send { buf, off, .. } => {
                if orphan {
                    self.ops.remove(key);
                    return;
                }
                if res < 0 {
                    self.ops.remove(key);
                    if let Some(e) = self.fds.get_mut(&fd) {
                        e.send_op = None;
                        e.sends.clear();
                        e.queued = 0;
                    }
                    out.push_back(Completion::SendError {
                        token,
                        fd,
                        epoch,
                        err: io::Error::from_raw_os_error(-res),
                    });
                    return;
                }
                *off += res as usize;
                if let Some(e) = self.fds.get_mut(&fd) {
                    e.queued = e.queued.saturating_sub(res as usize);
                }
                if *off < buf.len() {
                    // Short write: send the rest with the same op.
                    let (ptr, len) = (buf[*off..].as_ptr(), (buf.len() - *off) as u32);
                    let sqe = opcode::Send::new(types::Fd(fd), ptr, len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(key as u64);
                    self.push(sqe);
                    return;
                }
                let Op { kind, .. } = self.ops.remove(key);
                let OpKind::Send { buf, merged, .. } = kind else {
                    unreachable!("matched Send above")
                };
                out.push_back(Completion::Sent {
                    token,
                    fd,
                    epoch,
                    buf,
                });
                // One `Sent` per buffer handed to `send`, merged or not.
                for _ in 0..merged {
                    out.push_back(Completion::Sent {
                        token,
                        fd,
                        epoch,
                        buf: Vec::new(),
                    });
                }
                if let Some(e) = self.fds.get_mut(&fd) {
                    e.send_op = None;
                }
                self.start_send(fd);
            }
            OpKind::Poll => {
                self.ops.remove(key);
                if let Some(e) = self.fds.get_mut(&fd)
                    && e.poll_op == Some(key)
                {
                    e.poll_op = None;
                }
                if !orphan && res != -libc::ECANCELED {
                    out.push_back(Completion::PollReady { token, fd, epoch });
                }
            }
            OpKind::Connect(_) => {
                self.ops.remove(key);
                if let Some(e) = self.fds.get_mut(&fd)
                    && e.connect_op == Some(key)
                {
                    e.connect_op = None;
                }
                if !orphan {
                    let r = if res < 0 {
                        Err(io::Error::from_raw_os_error(-res))
                    } else {
                        Ok(())
                    };
                    out.push_back(Completion::Connected {
                        token,
                        fd,
                        epoch,
                        res: r,
                    });
                    if let Some(e) = self.fds.get(&fd)
                        && !e.sends.is_empty()
                        && e.send_op.is_none()
                    {
                        self.start_send(fd);
                    }
                }
            }
            OpKind::File { op, .. } => match op.advance(res as i64) {
                Ok(super::super::file::Step::Again) => self.push_file(key),
                r => {
                    if let OpKind::File { op, .. } = self.ops.remove(key).kind {
                        self.file_ops -= 1;
                        op.finish(r);
                    }
                }
            },
        }
    }

    fn stop_recv_state(&mut self, fd: RawFd) {
        if let Some(e) = self.fds.get_mut(&fd) {
            e.recv_wanted = false;
        }
    }

    fn rearm_plain(&mut self, fd: RawFd, buf: Vec<u8>) {
        if self.fds.get(&fd).is_some_and(|e| e.recv_wanted) {
            self.arm_recv(fd, Some(buf));
        }
    }
}

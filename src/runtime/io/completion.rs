//! [`Completion`]: what a backend reports to the event loop when an operation finishes (or, for
//! mio, when a socket is ready). The one type the backends and the loop share; the loop
//! depends on the backends, never the other way round.

use std::io;
use std::os::fd::RawFd;

use super::Token;

/// A finished (or ready) operation, as backends report it to the worker.
pub(crate) enum Completion {
    /// mio: the listener is readable; the worker accepts until `EAGAIN`.
    Acceptable {
        token: Token,
        fd: RawFd,
        epoch: u64,
    },
    /// io_uring: one accepted connection.
    Accepted {
        token: Token,
        fd: RawFd,
    },
    AcceptError {
        token: Token,
        err: io::Error,
    },
    /// mio: the socket is readable; the worker reads until `EAGAIN`.
    Readable {
        token: Token,
        fd: RawFd,
        epoch: u64,
    },
    /// io_uring: data in provided buffer `bid`.
    BufData {
        token: Token,
        fd: RawFd,
        epoch: u64,
        bid: u16,
        len: usize,
    },
    /// io_uring without buffer rings: data in an owned buffer.
    OwnedData {
        token: Token,
        fd: RawFd,
        epoch: u64,
        buf: Vec<u8>,
        len: usize,
    },
    Eof {
        token: Token,
        fd: RawFd,
        epoch: u64,
    },
    RecvError {
        token: Token,
        fd: RawFd,
        epoch: u64,
        err: io::Error,
    },
    Sent {
        token: Token,
        fd: RawFd,
        epoch: u64,
        buf: Vec<u8>,
    },
    SendError {
        token: Token,
        fd: RawFd,
        epoch: u64,
        err: io::Error,
    },
    Connected {
        token: Token,
        fd: RawFd,
        epoch: u64,
        res: io::Result<()>,
    },
    PollReady {
        token: Token,
        fd: RawFd,
        epoch: u64,
    },
}

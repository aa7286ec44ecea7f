//! Socket system calls on the raw fds the event loops own, in one place: creating, binding and
//! listening, addresses, socket options, `SO_INCOMING_CPU`, accept, datagrams, shutdown, close.
//! Built on `socket2`; the one unsafe step is lending a raw fd as a [`BorrowedFd`]
//! (`with_fd`). Transport and storage call these instead of `libc`, so their modules carry
//! `#![deny(unsafe_code)]`. Owns no fd: the caller does (an event loop's handler, a listener
//! being set up); must not touch loop state.
//!
//! Contract of every function taking a `RawFd`: the caller owns `fd` and keeps it open for the
//! call. A closed (or reused) number is the caller's bug; the worst outcome is an error such as
//! `EBADF`, or an operation on the socket that now has that number — never memory unsafety.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

/// Runs `f` with `fd` lent as a socket.
fn with_fd<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: per the module's contract the caller owns `fd` and keeps it open for this call;
    // the borrow does not outlive `f`, and `SockRef` never closes it.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&b))
}

fn domain(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// A non-blocking, close-on-exec socket of `kind` (`libc::SOCK_STREAM` or `SOCK_DGRAM`) for
/// `addr`'s family. The caller owns the fd (close it with [`close_fd`] or hand it to a loop).
pub fn new_socket(addr: &SocketAddr, kind: libc::c_int) -> io::Result<RawFd> {
    let ty = Type::from(kind).nonblocking().cloexec();
    Ok(Socket::new(domain(addr), ty, None)?.into_raw_fd())
}

/// Binds `fd` to `addr`.
pub fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    with_fd(fd, |s| s.bind(&SockAddr::from(*addr)))
}

/// A non-blocking stream socket bound to `addr` and listening with `backlog`, with
/// `SO_REUSEADDR` and, when `reuse_port`, `SO_REUSEPORT` (so several of this process's loops
/// can bind the same port). Returns the socket and the address it got (the real port for port 0).
pub fn listen_on(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<(OwnedFd, SocketAddr)> {
    let s = Socket::new(domain(&addr), Type::STREAM.nonblocking().cloexec(), None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&SockAddr::from(addr))?;
    s.listen(backlog)?;
    let local = as_inet(s.local_addr()?)?;
    Ok((OwnedFd::from(s), local))
}

fn as_inet(a: SockAddr) -> io::Result<SocketAddr> {
    a.as_socket()
        .ok_or_else(|| io::Error::other(format!("unexpected address family {}", a.family())))
}

/// The local address of socket `fd`.
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    with_fd(fd, |s| as_inet(s.local_addr()?))
}

/// The address of the peer of socket `fd` (`None` if the kernel cannot tell, e.g. it left).
pub fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    with_fd(fd, |s| s.peer_addr().ok()?.as_socket())
}

/// The CPU that processed the last packets of socket `fd` (`SO_INCOMING_CPU`).
pub fn incoming_cpu(fd: RawFd) -> Option<usize> {
    with_fd(fd, |s| s.cpu_affinity().ok())
}

/// Sets `TCP_NODELAY`.
pub fn set_nodelay(fd: RawFd, on: bool) -> io::Result<()> {
    with_fd(fd, |s| s.set_tcp_nodelay(on))
}

/// Reads `TCP_NODELAY`.
pub fn nodelay(fd: RawFd) -> io::Result<bool> {
    with_fd(fd, |s| s.tcp_nodelay())
}

/// Sets `SO_KEEPALIVE`.
pub fn set_keepalive(fd: RawFd, on: bool) -> io::Result<()> {
    with_fd(fd, |s| s.set_keepalive(on))
}

/// Reads `SO_KEEPALIVE`.
pub fn keepalive(fd: RawFd) -> io::Result<bool> {
    with_fd(fd, |s| s.keepalive())
}

/// Sets an integer socket option (`setsockopt(fd, level, opt, &v)`), for options this module
/// has no function for.
pub fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    let r = with_fd(fd, |s| {
        // SAFETY: `v` is a valid c_int for the option value, and its size is passed; `s` is an
        // open socket for the call (see `with_fd`).
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    });
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `SO_ERROR` of `fd` (the outcome of a non-blocking connect).
pub fn take_socket_error(fd: RawFd) -> io::Result<()> {
    match with_fd(fd, |s| s.take_error())? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Shuts down one or both directions of `fd`. On a socket whose connect is still in flight
/// (`SYN_SENT`), `Both` aborts the handshake in the kernel.
pub fn shutdown(fd: RawFd, how: Shutdown) -> io::Result<()> {
    with_fd(fd, |s| s.shutdown(how))
}

/// `accept4(2)`: a new non-blocking, close-on-exec connection on listener `fd`, and its peer's
/// address.
pub fn accept(fd: RawFd) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    let (s, peer) = with_fd(fd, |l| {
        // socket2 asks accept4 for SOCK_CLOEXEC; the loops need non-blocking sockets too.
        let (s, peer) = l.accept()?;
        s.set_nonblocking(true)?;
        Ok::<_, io::Error>((s, peer))
    })?;
    Ok((OwnedFd::from(s), peer.as_socket()))
}

/// One datagram from `fd` into `buf` (without waiting): its length and sender.
/// `WouldBlock` when none is queued.
pub fn recv_from(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>)> {
    with_fd(fd, |s| {
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and recv_from only
        // writes initialised bytes into it (it never de-initialises any).
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        let (n, from) = s.recv_from(uninit)?;
        Ok((n, from.as_socket()))
    })
}

/// Sends `data` to `to` as one datagram (without waiting).
pub fn send_to(fd: RawFd, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    with_fd(fd, |s| s.send_to(data, &SockAddr::from(to)))
}

/// Closes `fd`, ignoring errors (there is nothing useful to do with them). Only for fds no
/// event loop knows about; others go through [`IoCtx::close`](super::IoCtx::close).
pub fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again; `OwnedFd` closes it on drop.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// `addr` as a `sockaddr_storage` and its length, for system calls that keep the address
/// (io_uring's connect reads it after submission).
pub fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address in `ss` (the inverse of [`sockaddr`]); `None` for families other than IPv4/6.
pub fn socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in, which sockaddr_storage can hold.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                sin.sin_addr.s_addr.to_ne_bytes(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6, which sockaddr_storage can hold.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((
                sin6.sin6_addr.s6_addr,
                u16::from_be(sin6.sin6_port),
            )))
        }
        _ => None,
    }
}

/// Seconds since the Unix epoch, from the kernel's coarse wall clock (a plain read of the time
/// the kernel last stored, no clock-source access; lags by at most one timer tick).
pub fn coarse_unix_secs() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    u64::try_from(ts.tv_sec).unwrap_or(0)
}

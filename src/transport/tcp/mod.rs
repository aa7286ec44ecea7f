//! TCP streams and listeners for tasks and actors on app workers: `connect` (with a timeout),
//! `read`/`write_all`, half-close, `TCP_NODELAY`, keep-alive, and a listener whose `accept`
//! yields streams. The socket lives on an I/O event loop (a handler there does the I/O); the
//! app side talks to it through a small shared state and wakers. Owns these sockets and their
//! buffers; owns nothing of protocols (TLS, HTTP, framing live elsewhere) and must not touch the
//! event loop's internals beyond [`IoCtx`](crate::runtime::io::IoCtx).
//!
//! Backpressure: the event loop stops receiving once `READ_BUFFER_LIMIT` bytes wait unread, and
//! resumes when the reader has drained them, so a slow reader slows the peer down through TCP.
//!
//! Listener bounds: a [`TcpListener`] takes connections off the kernel only while its accept
//! queue ([`ListenOptions::accept_queue`]) has room and its connection limit
//! ([`ListenOptions::max_connections`]) allows; the rest wait in the kernel's backlog. A queued
//! connection is a bare socket (nothing is read from it) until [`TcpListener::accept`] takes it;
//! dropping the listener closes every queued one.
//!
//! ```
//! use percore::runtime::Runtime;
//! use percore::transport::tcp::{TcpListener, TcpStream};
//! use std::time::Duration;
//!
//! let rt = Runtime::testing(1).unwrap();
//! let h = rt.handle();
//! let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
//! let addr = listener.local_addr();
//! let reply = rt.block_on(async move {
//!     let server = percore::runtime::spawn_local(async move {
//!         let mut s = listener.accept().await.unwrap();
//!         let mut buf = [0u8; 5];
//!         s.read_exact(&mut buf).await.unwrap();
//!         s.write_all(buf.to_vec()).await.unwrap();
//!     });
//!     let mut c = TcpStream::connect(&h, addr, Duration::from_secs(5)).await.unwrap();
//!     c.write_all(b"hello".to_vec()).await.unwrap();
//!     let mut buf = [0u8; 5];
//!     c.read_exact(&mut buf).await.unwrap();
//!     server.await.unwrap();
//!     buf
//! });
//! assert_eq!(&reply, b"hello");
//! rt.shutdown();
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::runtime::Handle;

use super::TransportError;

mod listener;
mod stream;

pub use listener::{ListenOptions, TcpListener};
pub use stream::TcpStream;

/// Unread bytes buffered per stream before its event loop stops receiving.
pub const READ_BUFFER_LIMIT: usize = 256 * 1024;

/// Default [`ListenOptions::accept_queue`]: accepted connections waiting for
/// [`TcpListener::accept`].
pub const ACCEPT_QUEUE_LIMIT: usize = 1024;

static NEXT_LOOP: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn pick_loop(handle: &Handle) -> Result<usize, TransportError> {
    let n = handle.io_workers();
    if n == 0 {
        return Err(TransportError::NoIoWorkers);
    }
    // Co-located loops: stay on the calling core when there is one.
    if handle.config().io_colocated
        && let Some(w) = crate::runtime::current_worker()
        && w < n
    {
        return Ok(w);
    }
    Ok(NEXT_LOOP.fetch_add(1, Ordering::Relaxed) % n)
}

//! Transport: TCP serving and HTTP/1.1 on the runtime's I/O workers (io_uring with a mio
//! fallback, see [`crate::runtime::io`]), framing codecs. Owns sockets, per-connection buffers
//! and protocol state; hands requests to app actors as messages and writes their replies.
//! Must not touch storage, and reaches the runtime only through its public API.
//!
//! ```
//! use percore::runtime::{Actor, Context, Runtime};
//! use percore::transport::http::{HttpCall, HttpServer, Response, Router};
//!
//! struct Hello;
//! impl Actor for Hello {
//!     type Msg = HttpCall;
//!     async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
//!         call.respond(Response::text(200, "hello"));
//!     }
//! }
//!
//! let rt = Runtime::testing(1).unwrap();
//! let hello = rt.spawn_actor_on(0, || Hello).unwrap();
//! let server = HttpServer::bind(
//!     &rt.handle(),
//!     "127.0.0.1:0".parse().unwrap(),
//!     Router::new().get("/", hello),
//! )
//! .unwrap();
//! println!("listening on {}", server.local_addr());
//! rt.shutdown();
//! ```

#![deny(unsafe_code)]

pub mod admin;
pub mod client;
pub mod codec;
pub mod http;
pub mod server;
pub mod tcp;
pub mod tls;
pub mod udp;

pub use client::{FramedClient, FramedError, Stream};
pub use codec::{Codec, CodecError, LengthPrefixed, RawBytes};
pub use server::{
    AcceptMode, Answer, CodecProtocol, ConnInfo, ConnectionGone, Decoded, Dispatched, FrameCall,
    Pusher, Responder, SendWindow, Server, ServerOptions, ServerProtocol, ServerShutdown,
    ServerStats, Target, TlsInfo,
};

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The runtime has no I/O worker to run sockets on.
    #[error(
        "the runtime has no I/O workers; use a profile with I/O workers or set io_workers >= 1 (PERCORE_IO_WORKERS)"
    )]
    NoIoWorkers,
    /// Binding or listening failed.
    #[error("could not listen on {addr}: {source} (is the port in use or privileged?)")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime refused the work.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// A helper thread (the admin server's renderer) could not be started.
    #[error("could not start a thread: {0}; check the process's thread limit (ulimit -u)")]
    Thread(std::io::Error),
}

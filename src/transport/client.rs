//! The client side of a protocol: a [`Stream`] (plain TCP or TLS over TCP) and a
//! [`FramedClient`] that speaks any [`Codec`] over it — request, response, with a time limit.
//! Owns only the client's connection and read buffer; the event loop, sockets and TLS sessions
//! belong to [`crate::transport::tcp`] and [`crate::transport::tls`].
//!
//! A server plugs in its protocol with [`ServerProtocol`](crate::transport::ServerProtocol)
//! (or a [`Codec`] through [`CodecProtocol`](crate::transport::CodecProtocol)); a client plugs in
//! the same [`Codec`] here:
//!
//! ```no_run
//! use std::time::Duration;
//! use percore::runtime::Runtime;
//! use percore::transport::{FramedClient, LengthPrefixed};
//!
//! let rt = Runtime::auto().unwrap();
//! let h = rt.handle();
//! let reply = rt.block_on(async move {
//!     let addr = "127.0.0.1:7000".parse().unwrap();
//!     let codec = LengthPrefixed::new(1 << 20);
//!     let mut c = FramedClient::connect(&h, addr, codec, Duration::from_secs(5)).await?;
//!     c.call(&b"ping"[..]).await
//! });
//! println!("{:?}", reply);
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::codec::{Codec, CodecError};
use super::tcp::TcpStream;
use super::tls::TlsStream;
use crate::runtime::{Handle, timeout};

/// A connected byte stream for clients: plain TCP, or TLS over TCP.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS (rustls) over TCP.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Connects over plain TCP within `limit`.
    pub async fn connect(handle: &Handle, addr: SocketAddr, limit: Duration) -> io::Result<Stream> {
        Ok(Stream::Tcp(TcpStream::connect(handle, addr, limit).await?))
    }

    /// Connects and runs the TLS client handshake for `server_name` (a DNS name or an IP
    /// address the certificate must name), all within `limit`.
    pub async fn connect_tls(
        handle: &Handle,
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
        limit: Duration,
    ) -> io::Result<Stream> {
        let fut = async {
            let tcp = TcpStream::connect(handle, addr, limit).await?;
            TlsStream::connect(tcp, config, server_name).await
        };
        match timeout(limit, fut).await {
            Ok(r) => Ok(Stream::Tls(Box::new(r?))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS connect to {addr} took over {limit:?}"),
            )),
        }
    }

    /// Reads what is available (at least one byte); `Ok(0)` at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    /// Reads to end of stream, appending to `out`. Returns the bytes read.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_to_end(out).await,
            Stream::Tls(s) => {
                let mut tmp = vec![0u8; 16 * 1024];
                let mut n = 0;
                loop {
                    match s.read(&mut tmp).await? {
                        0 => return Ok(n),
                        k => {
                            out.extend_from_slice(&tmp[..k]);
                            n += k;
                        }
                    }
                }
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, data: Vec<u8>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(data).await,
            Stream::Tls(s) => s.write_all(&data).await,
        }
    }

    /// True for a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

/// Errors of a [`FramedClient`].
#[derive(Debug, thiserror::Error)]
pub enum FramedError {
    /// Connecting, reading or writing failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The codec refused a message or the peer's bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The peer closed the connection before a whole response arrived.
    #[error("the peer closed the connection before a response")]
    Closed,
    /// No response within the time limit.
    #[error("no response within {0:?}; the connection is no longer usable")]
    Timeout(Duration),
}

/// A client for a binary protocol: encodes requests and decodes responses with a [`Codec`]
/// over a [`Stream`]. Requests may be pipelined with [`FramedClient::send`] and
/// [`FramedClient::recv`]; [`FramedClient::call`] does one round trip within the time limit.
pub struct FramedClient<C: Codec> {
    stream: Stream,
    codec: C,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    limit: Duration,
    broken: bool,
}

impl<C: Codec> FramedClient<C> {
    /// Connects over plain TCP; `limit` bounds the connect and each [`FramedClient::call`].
    pub async fn connect(
        handle: &Handle,
        addr: SocketAddr,
        codec: C,
        limit: Duration,
    ) -> Result<Self, FramedError> {
        let stream = Stream::connect(handle, addr, limit).await?;
        Ok(Self::over(stream, codec, limit))
    }

    /// Speaks `codec` over an already connected stream (plain or TLS).
    pub fn over(stream: Stream, codec: C, limit: Duration) -> Self {
        FramedClient {
            stream,
            codec,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            limit,
            broken: false,
        }
    }

    /// Encodes and writes one request (no waiting for its response).
    pub async fn send(&mut self, msg: &C::Out) -> Result<(), FramedError> {
        self.check()?;
        self.wbuf.clear();
        self.codec.encode(msg, &mut self.wbuf)?;
        let bytes = std::mem::take(&mut self.wbuf);
        let r = self.stream.write_all(bytes).await;
        if r.is_err() {
            self.broken = true;
        }
        Ok(r?)
    }

    /// Reads the next response. `Ok(None)` when the peer closed cleanly between responses.
    /// A malformed or truncated response is a [`FramedError::Codec`].
    pub async fn recv(&mut self) -> Result<Option<C::In>, FramedError> {
        self.check()?;
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.codec.decode(&self.rbuf) {
                Ok(Some((msg, used))) => {
                    self.rbuf.drain(..used.min(self.rbuf.len()));
                    return Ok(Some(msg));
                }
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
            let n = match self.stream.read(&mut tmp).await {
                Ok(n) => n,
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            };
            if n == 0 {
                self.broken = true;
                return match self.codec.decode_eof(&self.rbuf)? {
                    Some((msg, used)) => {
                        self.rbuf.drain(..used.min(self.rbuf.len()));
                        Ok(Some(msg))
                    }
                    None => Ok(None),
                };
            }
            self.rbuf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Sends `msg` and waits for its response, within the client's time limit. After a
    /// timeout or an error the connection is out of step and refuses further use.
    pub async fn call(&mut self, msg: &C::Out) -> Result<C::In, FramedError> {
        let limit = self.limit;
        let r = timeout(limit, async {
            self.send(msg).await?;
            self.recv().await?.ok_or(FramedError::Closed)
        })
        .await;
        match r {
            Ok(r) => r,
            Err(_) => {
                self.broken = true;
                Err(FramedError::Timeout(limit))
            }
        }
    }

    /// The stream underneath (e.g. to ask a TLS stream for its ALPN protocol).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    fn check(&self) -> Result<(), FramedError> {
        if self.broken {
            return Err(FramedError::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "this connection failed or timed out earlier; connect a new client",
            )));
        }
        Ok(())
    }
}

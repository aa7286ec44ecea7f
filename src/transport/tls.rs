//! TLS over [`TcpStream`] with rustls (ring provider only): server and client configs from PEM
//! (certificate chain, private key, trusted roots), ALPN, optional client-certificate
//! verification, and [`TlsStream`] with `connect`/`accept`/`read`/`write_all`/`shutdown` for
//! tasks and actors. The TLS state machine runs on the app worker that owns the stream; the
//! event loop only moves ciphertext. A failed handshake fails that stream only, and a server
//! handshake that does not finish within [`HANDSHAKE_TIMEOUT`] (or the limit given to
//! [`TlsStream::accept_with_timeout`]) fails with [`TlsError::HandshakeTimeout`], so a client
//! that stalls or trickles bytes cannot hold the accepting task. Owns the TLS session state;
//! must not touch sockets except through [`TcpStream`].
//!
//! Servers on the event loops ([`Server`](super::Server), [`HttpServer`](super::http::HttpServer))
//! take a [`server_config`] in `ServerOptions::tls`: there the session runs on the event loop.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::tcp::TcpStream;

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input held no usable certificate or key.
    #[error(
        "{what}: {reason} (expected PEM: -----BEGIN CERTIFICATE----- / -----BEGIN PRIVATE KEY-----)"
    )]
    Pem {
        /// Which input.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
    /// The client verifier could not be built from the given roots.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// The peer did not complete the handshake in time (carried inside an `io::Error` of kind
    /// `TimedOut` by [`TlsStream::accept`]; get it back with `get_ref()` and `downcast_ref`).
    #[error(
        "the TLS handshake did not complete within {limit:?}: the peer stalled or is not \
         speaking TLS (raise the limit with TlsStream::accept_with_timeout if peers are slow)"
    )]
    HandshakeTimeout {
        /// The limit that ran out.
        limit: Duration,
    },
}

/// How long [`TlsStream::accept`] waits for a client to complete the handshake: 10 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// rustls releases newer than Cargo.lock's deprecate `ring::default_provider` (it has no
// post-quantum key exchange; aws-lc-rs does, and builds in ~50 s here against ring's ~20 s,
// MACHINE-NOTES). Allowed so that a lockfile update cannot turn `-D warnings` red; moving to
// aws-lc-rs is a separate decision.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let v: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let v = v.map_err(|e| TlsError::Pem {
        what,
        reason: e.to_string(),
    })?;
    if v.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no certificate found".into(),
        });
    }
    Ok(v)
}

fn key(pem: &[u8], what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what,
        reason: e.to_string(),
    })
}

fn roots(pem: &[u8], what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut r = RootCertStore::empty();
    for c in certs(pem, what)? {
        r.add(c)?;
    }
    Ok(r)
}

/// A server configuration from a PEM certificate chain and key. `alpn`: protocols offered in
/// preference order (e.g. `[b"http/1.1"]`). `client_ca_pem`: when given, clients must present a
/// certificate signed by one of these roots.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &[&[u8]],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let b =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let b = match client_ca_pem {
        Some(ca) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "client CA")?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let mut cfg = b.with_single_cert(
        certs(cert_pem, "server certificate")?,
        key(key_pem, "server key")?,
    )?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A client configuration trusting the PEM roots in `roots_pem`; `client_auth` presents a
/// certificate chain and key when the server asks for one.
pub fn client_config(
    roots_pem: &[u8],
    alpn: &[&[u8]],
    client_auth: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(roots_pem, "trusted roots")?);
    let mut cfg = match client_auth {
        Some((c, k)) => {
            b.with_client_auth_cert(certs(c, "client certificate")?, key(k, "client key")?)?
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

enum Conn {
    Client(ClientConnection),
    Server(ServerConnection),
}

macro_rules! on_conn {
    ($c:expr, $x:ident => $body:expr) => {
        match $c {
            Conn::Client($x) => $body,
            Conn::Server($x) => $body,
        }
    };
}

/// A TLS session over a [`TcpStream`].
pub struct TlsStream {
    tcp: TcpStream,
    conn: Conn,
    buf: Vec<u8>,
    eof: bool,
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Runs the client handshake with `server_name` (a DNS name or an IP address).
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<TlsStream> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let c = ClientConnection::new(config, name).map_err(invalid)?;
        let mut s = TlsStream {
            tcp,
            conn: Conn::Client(c),
            buf: vec![0; 16 * 1024],
            eof: false,
        };
        s.handshake().await?;
        Ok(s)
    }

    /// Runs the server handshake, failing after [`HANDSHAKE_TIMEOUT`] (see
    /// [`TlsStream::accept_with_timeout`]).
    pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        Self::accept_with_timeout(tcp, config, HANDSHAKE_TIMEOUT).await
    }

    /// Runs the server handshake; when it has not completed within `limit` the connection is
    /// closed and the error is of kind `TimedOut`, carrying [`TlsError::HandshakeTimeout`].
    pub async fn accept_with_timeout(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        limit: Duration,
    ) -> io::Result<TlsStream> {
        let c = ServerConnection::new(config).map_err(invalid)?;
        let mut s = TlsStream {
            tcp,
            conn: Conn::Server(c),
            buf: vec![0; 16 * 1024],
            eof: false,
        };
        match crate::runtime::timeout(limit, s.handshake()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    TlsError::HandshakeTimeout { limit },
                ));
            }
        }
        Ok(s)
    }

    /// The protocol ALPN agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        on_conn!(&self.conn, c => c.alpn_protocol())
    }

    /// The peer's certificate chain (the client's, on a server with client auth).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        on_conn!(&self.conn, c => c.peer_certificates())
    }

    async fn flush(&mut self) -> io::Result<()> {
        loop {
            let mut out = Vec::new();
            let wants = on_conn!(&mut self.conn, c => c.wants_write());
            if !wants {
                return Ok(());
            }
            on_conn!(&mut self.conn, c => c.write_tls(&mut out))?;
            if out.is_empty() {
                return Ok(());
            }
            self.tcp.write_all(out).await?;
        }
    }

    /// Reads ciphertext and processes it. False at EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        let n = self.tcp.read(&mut self.buf).await?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        let mut rd = &self.buf[..n];
        while !rd.is_empty() {
            on_conn!(&mut self.conn, c => c.read_tls(&mut rd))?;
            if let Err(e) = on_conn!(&mut self.conn, c => c.process_new_packets()) {
                // Tell the peer why (an alert), then fail this stream only.
                let _ = self.flush().await;
                return Err(invalid(e));
            }
        }
        Ok(true)
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while on_conn!(&self.conn, c => c.is_handshaking()) {
            self.flush().await?;
            if on_conn!(&self.conn, c => c.is_handshaking()) && !self.fill().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                ));
            }
        }
        self.flush().await
    }

    /// Reads plaintext; 0 when the peer closed (cleanly or not).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match on_conn!(&mut self.conn, c => c.reader().read(buf)) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.eof || !self.fill().await? {
                        return Ok(0);
                    }
                    // Post-handshake messages (e.g. session tickets) may need answers.
                    self.flush().await?;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts and writes all of `data`.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        // rustls buffers a bounded amount of plaintext: write what it takes, flush, repeat.
        let mut off = 0;
        while off < data.len() {
            let n = on_conn!(&mut self.conn, c => c.writer().write(&data[off..]))?;
            off += n;
            self.flush().await?;
            if n == 0 && !on_conn!(&self.conn, c => c.wants_write()) {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS session refuses data",
                ));
            }
        }
        self.flush().await
    }

    /// Sends close_notify and half-closes the TCP stream.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        on_conn!(&mut self.conn, c => c.send_close_notify());
        self.flush().await?;
        self.tcp.shutdown_write()
    }
}

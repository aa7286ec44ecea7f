//! Transport: dedicated I/O workers (io_uring with a mio fallback), TCP, UDP, framing, HTTP/1.1
//! and TLS. Owns sockets and protocol state; hands requests to app actors as messages.
//! Must not touch storage, and reaches the runtime only through its public API.

pub mod codec;

pub use codec::{Codec, CodecError, LengthPrefixed};

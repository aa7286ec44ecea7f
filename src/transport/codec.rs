//! Framing: the [`Codec`] trait (encode a message into a byte buffer, decode messages from the
//! front of a byte buffer) and [`LengthPrefixed`], a codec for frames carrying a 4-byte
//! big-endian length header followed by that many payload bytes.
//!
//! This module owns only byte-level framing. It must not touch sockets, event loops or actors:
//! connection code feeds it bytes and, on a [`CodecError`], closes only the offending connection.

use thiserror::Error;

/// Errors raised while framing. Each one concerns a single connection; the caller should close
/// that connection and keep serving the others.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// A frame header announced (or an encoder was given) more bytes than allowed.
    #[error(
        "frame of {len} bytes exceeds the maximum of {max} bytes; close this connection or raise the codec's max_frame"
    )]
    FrameTooLarge {
        /// Announced or requested frame length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The peer closed the stream in the middle of a frame.
    #[error(
        "stream ended inside a frame ({have} of {need} bytes received); the peer closed early, drop this connection"
    )]
    Truncated {
        /// Bytes received for the incomplete frame, header included.
        have: usize,
        /// Bytes the complete frame needs, header included (4 when the header itself is short).
        need: usize,
    },
}

/// Encodes outgoing messages into bytes and decodes incoming messages from bytes.
pub trait Codec {
    /// Message type produced by [`Codec::decode`].
    type In;
    /// Message type accepted by [`Codec::encode`].
    type Out: ?Sized;

    /// Decodes one message from the front of `buf`. Returns `Ok(Some((msg, consumed)))` with the
    /// number of bytes consumed, `Ok(None)` when more bytes are needed, or an error when the
    /// input can never form a valid message.
    fn decode(&mut self, buf: &[u8]) -> Result<Option<(Self::In, usize)>, CodecError>;

    /// Appends the encoding of `msg` to `dst`. On error `dst` is left unchanged.
    fn encode(&mut self, msg: &Self::Out, dst: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Called when the stream has ended with `buf` still unconsumed. The default reports
    /// [`CodecError::Truncated`] when any bytes remain.
    fn decode_eof(&mut self, buf: &[u8]) -> Result<Option<(Self::In, usize)>, CodecError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(CodecError::Truncated {
                have: buf.len(),
                need: buf.len() + 1,
            }),
        }
    }
}

/// No framing: every decode takes all bytes received so far as one message (a byte stream, as
/// an echo server or a proxy sees it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawBytes;

impl Codec for RawBytes {
    type In = Vec<u8>;
    type Out = [u8];

    fn decode(&mut self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, CodecError> {
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some((buf.to_vec(), buf.len())))
    }

    fn encode(&mut self, msg: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        dst.extend_from_slice(msg);
        Ok(())
    }
}

/// Size of the [`LengthPrefixed`] header in bytes.
pub const LENGTH_HEADER: usize = 4;

/// Length-prefixed frames: a 4-byte big-endian payload length, then the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthPrefixed {
    max_frame: usize,
}

impl LengthPrefixed {
    /// Default maximum payload size: 8 MiB.
    pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

    /// Creates a codec that rejects payloads larger than `max_frame` bytes (capped at
    /// `u32::MAX`, the largest length the header can carry).
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.min(u32::MAX as usize),
        }
    }

    /// The configured maximum payload size.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Default for LengthPrefixed {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_FRAME)
    }
}

impl Codec for LengthPrefixed {
    type In = Vec<u8>;
    type Out = [u8];

    fn decode(&mut self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, CodecError> {
        let Some(header) = buf.first_chunk::<LENGTH_HEADER>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let total = LENGTH_HEADER + len;
        if buf.len() < total {
            return Ok(None);
        }
        Ok(Some((buf[LENGTH_HEADER..total].to_vec(), total)))
    }

    fn encode(&mut self, msg: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        if msg.len() > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len: msg.len(),
                max: self.max_frame,
            });
        }
        // Cannot truncate: max_frame is capped at u32::MAX in `new`.
        let len = msg.len() as u32;
        dst.reserve(LENGTH_HEADER + msg.len());
        dst.extend_from_slice(&len.to_be_bytes());
        dst.extend_from_slice(msg);
        Ok(())
    }

    fn decode_eof(&mut self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, CodecError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let need = match buf.first_chunk::<LENGTH_HEADER>() {
            Some(h) => LENGTH_HEADER + u32::from_be_bytes(*h) as usize,
            None => LENGTH_HEADER,
        };
        Err(CodecError::Truncated {
            have: buf.len(),
            need,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(codec: &mut LengthPrefixed, mut buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((msg, used)) = codec.decode(buf).expect("valid stream") {
            out.push(msg);
            buf = &buf[used..];
        }
        assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
        out
    }

    #[test]
    fn oversize_header_is_rejected_before_payload_arrives() {
        let mut c = LengthPrefixed::new(16);
        let err = c.decode(&17u32.to_be_bytes()).unwrap_err();
        assert_eq!(err, CodecError::FrameTooLarge { len: 17, max: 16 });
    }

    #[test]
    fn oversize_encode_leaves_dst_unchanged() {
        let mut c = LengthPrefixed::new(2);
        let mut dst = vec![9];
        assert!(c.encode(b"abc", &mut dst).is_err());
        assert_eq!(dst, vec![9]);
    }

    #[test]
    fn truncated_at_eof_is_typed() {
        let mut c = LengthPrefixed::default();
        assert_eq!(
            c.decode_eof(&[0, 0]),
            Err(CodecError::Truncated { have: 2, need: 4 })
        );
        assert_eq!(
            c.decode_eof(&[0, 0, 0, 5, b'a']),
            Err(CodecError::Truncated { have: 5, need: 9 })
        );
        assert_eq!(c.decode_eof(&[]), Ok(None));
    }

    proptest! {
        #[test]
        fn round_trip_any_split(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            split in 0usize..10_000,
        ) {
            let mut c = LengthPrefixed::new(300);
            let mut wire = Vec::new();
            for m in &msgs {
                c.encode(m, &mut wire).unwrap();
            }
            // Whole buffer decodes to the same messages.
            prop_assert_eq!(&decode_all(&mut c, &wire), &msgs);
            // Feeding the stream in two chunks gives the same result.
            let cut = if wire.is_empty() { 0 } else { split % (wire.len() + 1) };
            let mut acc = Vec::new();
            let mut got = Vec::new();
            for chunk in [&wire[..cut], &wire[cut..]] {
                acc.extend_from_slice(chunk);
                while let Some((m, used)) = c.decode(&acc).unwrap() {
                    got.push(m);
                    acc.drain(..used);
                }
            }
            prop_assert!(acc.is_empty());
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn decode_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut c = LengthPrefixed::new(32);
            let _ = c.decode(&bytes);
            let _ = c.decode_eof(&bytes);
        }
    }
}

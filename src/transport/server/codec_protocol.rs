//! [`CodecProtocol`]: any [`Codec`] served as a protocol — each decoded
//! frame goes to a [`Target`] as a [`FrameCall`], whose reply is encoded with the same codec on
//! the app worker.

use crate::runtime::TrySendError;
use crate::transport::{Codec, CodecError};

use super::{Decoded, Dispatched, Responder, ServerProtocol, Target};

/// A protocol on top of a [`Codec`]: each decoded frame goes to `target` as a
/// [`FrameCall`], whose reply is encoded with the same codec on the app worker.
pub struct CodecProtocol<C: Codec> {
    codec: C,
    target: Target<FrameCall<C>>,
}

impl<C> CodecProtocol<C>
where
    C: Codec + Clone + Send + Sync + 'static,
    C::In: Send,
{
    /// Frames decoded with `codec` go to `target`.
    pub fn new(codec: C, target: impl Into<Target<FrameCall<C>>>) -> Self {
        CodecProtocol {
            codec,
            target: target.into(),
        }
    }
}

/// One decoded frame and the way to answer it.
pub struct FrameCall<C: Codec> {
    /// The frame.
    pub frame: C::In,
    codec: C,
    resp: Responder,
}

impl<C: Codec> FrameCall<C> {
    /// Encodes `msg` with the server's codec and sends it as the reply.
    pub fn reply(mut self, msg: &C::Out) -> Result<(), CodecError> {
        let mut out = Vec::new();
        self.codec.encode(msg, &mut out)?;
        self.resp.send(out, false);
        Ok(())
    }

    /// Replies with raw bytes (already encoded); `close` closes the connection afterwards.
    pub fn reply_raw(self, bytes: Vec<u8>, close: bool) {
        self.resp.send(bytes, close);
    }
}

impl<C> ServerProtocol for CodecProtocol<C>
where
    C: Codec + Clone + Send + Sync + 'static,
    C::In: Send,
{
    type Request = C::In;

    fn decode(&self, input: &[u8]) -> Decoded<C::In> {
        let mut codec = self.codec.clone();
        match codec.decode(input) {
            Ok(Some((m, used))) => Decoded::Request(m, used),
            Ok(None) => Decoded::Incomplete,
            Err(e) => Decoded::Reject {
                response: None,
                reason: e.to_string(),
            },
        }
    }

    /// The codec's own verdict on bytes left at the end of the stream
    /// ([`CodecError::Truncated`] by default).
    fn truncated(&self, input: &[u8]) -> Option<String> {
        self.codec
            .clone()
            .decode_eof(input)
            .err()
            .map(|e| e.to_string())
    }

    fn dispatch(&self, frame: C::In, resp: Responder, conn: u64) -> Dispatched<C::In> {
        let call = FrameCall {
            frame,
            codec: self.codec.clone(),
            resp,
        };
        match self.target.try_send(call, conn) {
            Ok(()) => Dispatched::Sent,
            Err(TrySendError::Full(c)) => Dispatched::Full(c.frame, c.resp),
            Err(TrySendError::Stopped(c)) => Dispatched::Answer(c.resp.answer(Vec::new(), true)),
        }
    }
}

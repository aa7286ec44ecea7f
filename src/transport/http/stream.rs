//! Streamed response bodies: a handler that produces its body piece by piece (a large file, a
//! feed, a long computation's output) sends the head now and the body as it comes, with
//! `Transfer-Encoding: chunked` (HTTP/1.1) or delimited by the close (HTTP/1.0). Owns only the
//! framing of such bodies; ordering and flow control belong to
//! [`crate::transport::server`] ([`Responder::send_part`], [`SendWindow`]).
//!
//! Flow control: [`BodyStream::send`] waits while more than [`STREAM_WINDOW`] bytes of this
//! body are not yet taken by the connection (a slow reader slows the producer; nothing piles
//! up), and fails with [`ConnectionGone`] once the client has gone.
//!
//! ```no_run
//! use percore::runtime::{Actor, Context};
//! use percore::transport::http::{HttpCall, Response};
//!
//! struct Feed;
//! impl Actor for Feed {
//!     type Msg = HttpCall;
//!     async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
//!         let (_req, reply) = call.into_parts();
//!         let mut body = reply.stream(Response::new(200).header("Content-Type", "text/plain"));
//!         for i in 0..1000 {
//!             if body.send(format!("line {i}\n").as_bytes()).await.is_err() {
//!                 return; // the client went away
//!             }
//!         }
//!         body.finish();
//!     }
//! }
//! ```

use std::sync::Arc;

use super::{HttpReply, Response, date, push_chunk, push_num, reason};
use crate::transport::server::{ConnectionGone, Responder, SendWindow};

/// Bytes of one streamed body that may wait for the connection before
/// [`BodyStream::send`] waits.
pub const STREAM_WINDOW: usize = 256 << 10;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// HTTP/1.1: `Transfer-Encoding: chunked`.
    Chunked,
    /// HTTP/1.0: raw bytes, the end of the body is the close.
    UntilClose,
    /// A HEAD request: the head only.
    Discard,
}

/// A response body being sent piece by piece; see the [module docs](self). End it with
/// [`finish`](BodyStream::finish): dropped unfinished, the connection is closed (the client
/// sees a body cut short, never a complete-looking one).
#[derive(Debug)]
pub struct BodyStream {
    resp: Responder,
    window: Arc<SendWindow>,
    framing: Framing,
    close: bool,
}

impl HttpReply {
    /// Starts a streamed response: `head`'s status and headers go out now (its body, if any,
    /// as the first piece), the rest through the returned [`BodyStream`]. A `Content-Length`
    /// or `Transfer-Encoding` header in `head` is left out (the stream sets the framing), as
    /// are headers that could split the response.
    pub fn stream(self, head: Response) -> BodyStream {
        let http10 = self.version == 0;
        let framing = if self.head {
            Framing::Discard
        } else if http10 {
            Framing::UntilClose
        } else {
            Framing::Chunked
        };
        let close = !self.keep_alive || http10;
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"HTTP/1.1 ");
        push_num(&mut out, head.status as usize);
        out.push(b' ');
        out.extend_from_slice(reason(head.status).as_bytes());
        out.extend_from_slice(b"\r\nServer: percore\r\nDate: ");
        date::append_now(&mut out);
        if !http10 {
            out.extend_from_slice(b"\r\nTransfer-Encoding: chunked");
        }
        if close {
            out.extend_from_slice(b"\r\nConnection: close");
        }
        head.push_headers(&mut out);
        out.extend_from_slice(b"\r\n\r\n");
        let mut stream = BodyStream {
            resp: self.resp,
            window: SendWindow::new(),
            framing,
            close,
        };
        if !head.body.is_empty() {
            stream.frame(&head.body, &mut out);
        }
        stream.resp.send_part(out, &stream.window);
        stream
    }
}

impl BodyStream {
    /// Sends `data` as the next piece of the body (nothing for an empty slice). Waits first
    /// while more than [`STREAM_WINDOW`] bytes are not yet taken by the connection; fails once
    /// the connection is gone (stop producing).
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ConnectionGone> {
        if self.window.is_closed() {
            return Err(ConnectionGone);
        }
        if data.is_empty() || self.framing == Framing::Discard {
            return Ok(());
        }
        self.window.wait_below(STREAM_WINDOW).await?;
        let mut out = Vec::with_capacity(data.len() + 20);
        self.frame(data, &mut out);
        self.resp.send_part(out, &self.window);
        Ok(())
    }

    /// Ends the body (the last chunk for chunked framing); the connection then serves the next
    /// request, or closes for HTTP/1.0 and `Connection: close`.
    pub fn finish(self) {
        let end = match self.framing {
            Framing::Chunked => b"0\r\n\r\n".to_vec(),
            Framing::UntilClose | Framing::Discard => Vec::new(),
        };
        self.resp.send(end, self.close);
    }

    /// Bytes sent that the connection has not taken yet.
    pub fn unacked(&self) -> usize {
        self.window.unacked()
    }

    /// Appends `data`, framed, to `out`.
    fn frame(&self, data: &[u8], out: &mut Vec<u8>) {
        match self.framing {
            Framing::Chunked => push_chunk(out, data),
            Framing::UntilClose => out.extend_from_slice(data),
            Framing::Discard => {}
        }
    }
}

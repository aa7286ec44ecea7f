//! [`Queued`]: a message as its owner-side queue holds it. Without the `trace-context` feature
//! that is the message itself (no wrapper at all: a wrapper measured slower on the batched
//! cross-core path); with it, an [`Item`]: the message and the `tracing` span that was current
//! where it was sent (the parent of the span its handler runs in, on whatever worker). Owns
//! only this wrapping.

/// A queued message.
#[cfg(not(feature = "trace-context"))]
pub(crate) type Queued<M> = M;

/// A queued message.
#[cfg(feature = "trace-context")]
pub(crate) type Queued<M> = Item<M>;

/// A message with the span it was sent from.
#[cfg(feature = "trace-context")]
pub(crate) struct Item<M> {
    pub(crate) msg: M,
    /// The sender's span (`Span::none()` when it had none).
    pub(crate) parent: tracing::Span,
}

/// `msg` as queued with no sender span.
#[inline]
pub(crate) fn queued<M>(msg: M) -> Queued<M> {
    #[cfg(not(feature = "trace-context"))]
    {
        msg
    }
    #[cfg(feature = "trace-context")]
    {
        Item {
            msg,
            parent: tracing::Span::none(),
        }
    }
}

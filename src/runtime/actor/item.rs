//! [`Item`]: a message as its owner-side queue holds it — the message and, with the
//! `trace-context` feature, the `tracing` span that was current where it was sent (the parent
//! of the span its handler runs in, on whatever worker). Without the feature an `Item<M>` is
//! an `M` (one field, same layout). Owns only this wrapping.

/// A queued message.
pub(crate) struct Item<M> {
    pub(crate) msg: M,
    /// The sender's span (`Span::none()` when it had none or sent through a batch).
    #[cfg(feature = "trace-context")]
    pub(crate) parent: tracing::Span,
}

impl<M> Item<M> {
    /// A message with no sender span.
    #[inline]
    pub(crate) fn plain(msg: M) -> Self {
        Item {
            msg,
            #[cfg(feature = "trace-context")]
            parent: tracing::Span::none(),
        }
    }

    /// A message sent from inside `parent`.
    #[cfg(feature = "trace-context")]
    pub(crate) fn traced(msg: M, parent: tracing::Span) -> Self {
        Item { msg, parent }
    }
}

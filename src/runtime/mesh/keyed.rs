//! Keyed sends: consecutive messages from one thread to one destination (a [`KeyedSink`], in
//! practice an actor's mailbox) are folded into the envelope that thread pushed last while it
//! is still unpublished; the thread holds send credits for the destination until the end of
//! its turn; and a thread-local streaming cursor lets the next send skip the outbound lookup
//! altogether. Owns the [`KeyedSink`] contract, [`SendKey`], what the outbound side remembers of
//! the last keyed push to each target ([`Last`]) and the cursor. The payloads are the sink's
//! (the actor layer's `Single` and `Batch`, in `actor/batch.rs`); the mesh never looks inside.
//!
//! The three entry points, fastest first, each falling back to the next:
//! 1. [`cursor_send`]: the cursor is armed for this sink and a credit is held: one credit
//!    check and the sink's `push`, no borrow, no lookup, no shared read.
//! 2. [`merge_with_credit`]: a credit is held (or granted now) and the last envelope to the
//!    target is this sink's and unpublished: merge into it.
//! 3. [`send_keyed`]: a slot was reserved by the caller: merge or push a new envelope.

// With `trace-context` the actors send every message in an envelope of its own: keyed sends
// are compiled but unused.
#![cfg_attr(feature = "trace-context", allow(dead_code, unused_imports))]

use std::cell::Cell;
use std::num::{NonZeroU8, NonZeroUsize};
use std::ptr::NonNull;

use super::{Envelope, MeshShared, Outbound, with_outbound};

/// The identity of a keyed destination: the address of the sink object (a mailbox). Typed so
/// that it cannot be mixed up with a node index or a count; never zero; never dereferenced by
/// the mesh (only the sink's own [`KeyedSink::release`] turns it back into a reference).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SendKey(NonZeroUsize);

impl SendKey {
    /// The key of the object at `p` (e.g. `Arc::as_ptr`); `None` for a null pointer.
    #[inline]
    pub(crate) fn of<T>(p: *const T) -> Option<SendKey> {
        NonZeroUsize::new(p as usize).map(SendKey)
    }

    /// The address this key was made from.
    #[inline]
    pub(crate) fn addr(self) -> usize {
        self.0.get()
    }
}

/// The kind of an envelope a sink built (the sink's own numbering, e.g. single or batch).
pub(crate) type Kind = NonZeroU8;

/// A destination whose consecutive messages from one thread may be folded into one unpublished
/// envelope and paid for with send credits.
///
/// # Safety
/// An implementation promises, for every value `s` it is implemented for:
/// 1. **One key, one sink.** `s.key()` is the same for the sink's whole life, and no other live
///    sink (of any type) sends under the same key: e.g. the address of an `Arc`-held object.
/// 2. **One builder.** Every envelope sent under `s.key()` is built by `s.make` and changed only
///    by `Self::merge`, and the [`Kind`] they report tells the payload type, so that `merge`,
///    `batch` and `push` may rely on it.
/// 3. **Credits keep the sink alive.** A credit handed out by `s.grant()` is a reserved slot:
///    while this thread holds one (from `grant` until spent or handed back to `release`), the
///    object behind `s.key()` stays alive, so `Self::release(key, n)` may reach it.
pub(crate) unsafe trait KeyedSink {
    /// What one send carries.
    type Msg;

    /// This sink's key (see the contract, 1).
    fn key(&self) -> SendKey;

    /// A new envelope for `msg`, and its kind. `streaming`: the previous envelope for this key
    /// was just filled, so more will likely follow (a batch may be started at once).
    fn make(&self, msg: Self::Msg, streaming: bool) -> (Envelope, Kind);

    /// Up to a chunk of send credits (slots reserved in one step), or 0 for none.
    fn grant(&self) -> u32;

    /// Folds `msg` into `env` (possibly changing its kind); hands `msg` back when `env` can
    /// take no more.
    ///
    /// # Safety
    /// `env` was built by `make` (and changed only by `merge`) of this sink type, and `kind`
    /// is the kind they reported.
    unsafe fn merge(env: &mut Envelope, kind: &mut Kind, msg: Self::Msg) -> Result<(), Self::Msg>;

    /// The payload of `env` for the streaming cursor when it can take more messages (a batch),
    /// else `None`.
    ///
    /// # Safety
    /// As for [`KeyedSink::merge`].
    unsafe fn batch(env: &mut Envelope, kind: Kind) -> Option<NonNull<()>>;

    /// Appends `msg` to the payload `batch` returned; hands it back when full.
    ///
    /// # Safety
    /// `payload` came from [`KeyedSink::batch`] of this sink type, and the envelope it points
    /// into has not been moved, published or dropped since.
    unsafe fn push(payload: NonNull<()>, msg: Self::Msg) -> Result<(), Self::Msg>;

    /// Hands back `n` unused credits of the sink at `key`.
    ///
    /// # Safety
    /// `key` is the key of a sink of this type for which this thread holds at least `n`
    /// credits (which keep it alive, see the contract, 3).
    unsafe fn release(key: SendKey, n: usize);
}

/// What the outbound side remembers of the last keyed push to one target: while it is still
/// the most recent push and unpublished, its key and kind (so the next send may merge into
/// it), and the send credits held for that key with the sink's `release`.
pub(crate) struct Last {
    key: Option<SendKey>,
    /// `None`: nothing to merge into.
    kind: Option<Kind>,
    /// Send credits held for `key`, spent by [`merge_with_credit`] and the cursor, handed back
    /// through `release` when the entry is reset (next push, flush, drop).
    credits: u32,
    release: Option<unsafe fn(SendKey, usize)>,
}

impl Last {
    pub(crate) const NONE: Last = Last {
        key: None,
        kind: None,
        credits: 0,
        release: None,
    };
}

/// Where a streaming sender appends its next message without touching the [`Outbound`]: the
/// key whose unpublished batch envelope sits at `payload`, and the send credits this thread
/// holds for it.
///
/// Invariant (why the pointers are valid when used): the cursor is armed only by
/// `Outbound::arm_cursor`, called while this thread's `Outbound` is borrowed, pointing into
/// that `Outbound` (`credits`: its `last` entry for the target) and into the unpublished ring
/// slot or overflow entry of the batch (`payload`). Every later access to the `Outbound` goes
/// through [`with_outbound`], which disarms the cursor first, and so do `install`/`uninstall`
/// and dropping an `Outbound` (also by the thread's TLS teardown); so while the cursor is armed
/// nothing else has touched, moved, published or freed what it points at. Only this thread
/// reads it. `payload` is the batch of the sink type whose key is `key` (one key, one sink:
/// while `credits` is non-zero the sink is alive, so no other sink can have its key).
#[derive(Clone, Copy)]
pub(super) struct Cursor {
    key: Option<SendKey>,
    payload: NonNull<()>,
    credits: *mut u32,
}

const NO_CURSOR: Cursor = Cursor {
    key: None,
    payload: NonNull::dangling(),
    credits: std::ptr::null_mut(),
};

thread_local! {
    static CURSOR: Cell<Cursor> = const { Cell::new(NO_CURSOR) };
}

/// Disarms this thread's streaming cursor (see [`Cursor`]).
pub(super) fn disarm_cursor() {
    let _ = CURSOR.try_with(|c| c.set(NO_CURSOR));
}

/// The first-tier fast path of a sender streaming to `sink`: when this thread's cursor is
/// armed for it (its last send, this turn, went into a batch envelope for it through
/// [`send_keyed`] or [`merge_with_credit`], and nothing has touched its rings since) and a send
/// credit is left, `msg` is appended and one credit spent. No borrow, no lookup.
#[inline(always)]
pub(crate) fn cursor_send<S: KeyedSink>(sink: &S, msg: S::Msg) -> Result<(), S::Msg> {
    let c = CURSOR.with(Cell::get);
    if c.key != Some(sink.key()) {
        return Err(msg);
    }
    // SAFETY: an armed cursor's `credits` points at this thread's live `Last` entry (see
    // `Cursor`'s invariant), and nothing else borrows it now.
    let credits = unsafe { &mut *c.credits };
    if *credits == 0 {
        return Err(msg);
    }
    // SAFETY: a credit is held, so the sink with this key is alive, and it is `sink` (one key,
    // one sink): `payload` is the untouched batch `S::batch` returned (`Cursor`'s invariant).
    unsafe { S::push(c.payload, msg) }?;
    *credits -= 1;
    Ok(())
}

impl Outbound {
    /// Forgets the last keyed push to `to`, handing unused credits back.
    pub(super) fn reset_last(&mut self, to: usize) {
        let l = std::mem::replace(&mut self.last[to], Last::NONE);
        if l.credits > 0
            && let (Some(key), Some(release)) = (l.key, l.release)
        {
            // SAFETY: `release` is the `KeyedSink::release` of the sink type behind `key`,
            // stored together with the credits it granted; held credits keep it alive.
            unsafe { release(key, l.credits as usize) };
        }
    }

    /// Points this thread's streaming cursor at the last envelope pushed to `to` for `S`'s key
    /// when credits are held for it and it can take more (a batch). See [`Cursor`].
    fn arm_cursor<S: KeyedSink>(&mut self, to: usize, key: SendKey) {
        if self.last[to].credits == 0 {
            return;
        }
        // SAFETY: the envelope was sent under `key`, which only `S` sends under (contract 1 and
        // 2), with the kind recorded by `last_keyed`.
        let Some(payload) = self
            .last_keyed(to, key)
            .and_then(|(env, kind)| unsafe { S::batch(env, *kind) })
        else {
            return;
        };
        let credits: *mut u32 = &mut self.last[to].credits;
        CURSOR.with(|c| {
            c.set(Cursor {
                key: Some(key),
                payload,
                credits,
            })
        });
    }

    /// The most recent envelope pushed to `to` if it is still unpublished and was pushed with
    /// `key`; with its kind.
    fn last_keyed(&mut self, to: usize, key: SendKey) -> Option<(&mut Envelope, &mut Kind)> {
        let Last { key: k, kind, .. } = &mut self.last[to];
        if *k != Some(key) {
            return None;
        }
        let kind = kind.as_mut()?;
        let env = match self.overflow[to].back_mut() {
            Some(e) => Some(e),
            None => self.producers[to].as_mut()?.last_unpublished_mut(),
        }?;
        Some((env, kind))
    }
}

/// The fast path of [`send_keyed`] for a sender streaming to `sink` on its ring to `to`: when
/// this thread holds a send credit for the sink (or `grant` hands a new chunk now that they
/// are spent), one credit is spent, and if the last envelope sent to `to` is still unpublished
/// and the sink's, `msg` is merged into it and the cursor re-armed. Returns `Ok` when merged;
/// `Err((msg, true))` when a credit was spent but `msg` could not be merged (batch full or
/// published: send it with [`send_keyed`] without reserving again); `Err((msg, false))` when
/// no credit was held. One thread-local access in all.
#[inline]
pub(crate) fn merge_with_credit<S: KeyedSink>(
    sink: &S,
    mesh: &MeshShared,
    to: usize,
    msg: S::Msg,
) -> Result<(), (S::Msg, bool)> {
    let key = sink.key();
    with_outbound(|o| {
        let Some(Ok(mut g)) = o.map(|o| o.try_borrow_mut()) else {
            return Err((msg, false));
        };
        let Some(ob) = g.as_mut() else {
            return Err((msg, false));
        };
        if ob.mesh.id != mesh.id || to >= ob.last.len() {
            return Err((msg, false));
        }
        let l = &mut ob.last[to];
        if l.key != Some(key) || l.kind.is_none() {
            return Err((msg, false));
        }
        if l.credits == 0 {
            // Streaming to `key` with the credits spent: take the next chunk in one step.
            if l.release.is_none() {
                return Err((msg, false));
            }
            l.credits = sink.grant();
            if l.credits == 0 {
                return Err((msg, false));
            }
        }
        l.credits -= 1;
        let Some((env, kind)) = ob.last_keyed(to, key) else {
            return Err((msg, true));
        };
        // SAFETY: the envelope was sent under `sink`'s key, so `S` built it (contract 1, 2).
        unsafe { S::merge(env, kind, msg) }.map_err(|m| (m, true))?;
        ob.arm_cursor::<S>(to, key);
        Ok(())
    })
}

/// Sends `msg` to `sink` on node `to`, for which the caller has reserved room (e.g. a mailbox
/// slot). When the last envelope this thread sent to `to` is still unpublished and was sent
/// under the same key, the message is merged into it; otherwise (or when it is full) the
/// sink makes a new envelope. Threads that are not nodes of `mesh` go through the target's
/// injector.
///
/// Credits: after a merge, when the thread holds none for this key, `sink.grant()` may hand it
/// some; [`merge_with_credit`] and [`cursor_send`] spend them, and they go back through
/// `S::release` when this entry is reset (the next push to `to`, the end of the scheduler turn,
/// or the thread leaving the mesh). Merging keeps order: only the most recent push to a target
/// is ever extended.
#[inline]
pub(crate) fn send_keyed<S: KeyedSink>(sink: &S, mesh: &MeshShared, to: usize, msg: S::Msg) {
    let key = sink.key();
    let rest = with_outbound(|o| {
        let Some(Ok(mut g)) = o.map(|o| o.try_borrow_mut()) else {
            return Some(msg);
        };
        match g.as_mut() {
            Some(ob) if ob.mesh.id == mesh.id && ob.me != to => {
                let (msg, streaming) = match ob.last_keyed(to, key) {
                    // SAFETY: sent under `sink`'s key, so `S` built it (contract 1, 2).
                    Some((env, kind)) => match unsafe { S::merge(env, kind, msg) } {
                        Ok(()) => {
                            let l = &mut ob.last[to];
                            if l.credits == 0 {
                                l.credits = sink.grant();
                                l.release = Some(S::release);
                            }
                            ob.arm_cursor::<S>(to, key);
                            return None;
                        }
                        Err(msg) => {
                            // The batch is full: let the target start on it now.
                            ob.publish_now(to);
                            (msg, true)
                        }
                    },
                    // Published mid-turn while this thread streams to `key` (it holds credits).
                    None => (msg, ob.last[to].key == Some(key) && ob.last[to].credits > 0),
                };
                let (env, kind) = sink.make(msg, streaming);
                // Credits held for this key survive a new envelope for the same key.
                if ob.last[to].key != Some(key) {
                    ob.reset_last(to);
                }
                ob.push_env(to, env);
                let l = &mut ob.last[to];
                l.key = Some(key);
                l.kind = Some(kind);
                ob.arm_cursor::<S>(to, key);
                None
            }
            _ => Some(msg),
        }
    });
    if let Some(msg) = rest {
        let node = &mesh.nodes[to];
        node.injector.push(sink.make(msg, false).0);
        node.notify();
    }
}

#[cfg(test)]
mod tests {
    //! The streaming cursor against a real ring, on one thread (runs under Miri).

    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::runtime::envelope::Payload;
    use crate::runtime::mesh::flush_current;

    thread_local! {
        static SEEN: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
        static RELEASED: Cell<usize> = const { Cell::new(0) };
        static GRANTED: Cell<u32> = const { Cell::new(0) };
    }

    /// A batch of values for one key, inline in the envelope (24 bytes).
    struct Acc {
        key: usize,
        items: Vec<u64>,
    }

    impl Payload for Acc {
        fn run(self) {
            SEEN.with(|s| {
                s.borrow_mut()
                    .extend(self.items.iter().map(|&v| (self.key, v)))
            });
        }
    }

    const MAX: usize = 4;
    const GRANT: u32 = 3;
    const KIND: Kind = NonZeroU8::MIN;

    fn push(acc: &mut Acc, v: u64) -> Result<(), u64> {
        if acc.items.len() >= MAX {
            return Err(v);
        }
        acc.items.push(v);
        Ok(())
    }

    /// A test sink: its key is its own address (boxed, so it cannot move).
    struct Sink;

    // SAFETY: the key is the address of a live boxed `Sink` (unique while it lives); every
    // envelope under it is an `Acc` of kind `KIND`; `release` only counts.
    unsafe impl KeyedSink for Sink {
        type Msg = u64;
        fn key(&self) -> SendKey {
            SendKey::of(self as *const Sink).expect("a reference is not null")
        }
        fn make(&self, v: u64, _streaming: bool) -> (Envelope, Kind) {
            let acc = Acc {
                key: self.key().addr(),
                items: vec![v],
            };
            (Envelope::with_payload(acc), KIND)
        }
        fn grant(&self) -> u32 {
            GRANTED.with(|g| g.set(g.get() + GRANT));
            GRANT
        }
        unsafe fn merge(env: &mut Envelope, _kind: &mut Kind, v: u64) -> Result<(), u64> {
            // SAFETY: every envelope under a `Sink` key is an `Acc` (the caller's contract).
            push(unsafe { env.payload_mut::<Acc>() }, v)
        }
        unsafe fn batch(env: &mut Envelope, _kind: Kind) -> Option<NonNull<()>> {
            // SAFETY: as above.
            Some(NonNull::from(unsafe { env.payload_mut::<Acc>() }).cast())
        }
        unsafe fn push(payload: NonNull<()>, v: u64) -> Result<(), u64> {
            // SAFETY: `payload` came from `batch`: an `Acc` in an untouched envelope.
            push(unsafe { payload.cast::<Acc>().as_mut() }, v)
        }
        unsafe fn release(_key: SendKey, n: usize) {
            RELEASED.with(|r| r.set(r.get() + n));
        }
    }

    /// One send the way the actor layer does it: cursor, then credit merge, then `send_keyed`.
    /// Returns whether the send spent a credit.
    fn send(mesh: &MeshShared, sink: &Sink, v: u64) -> bool {
        let Err(v) = cursor_send(sink, v) else {
            return true;
        };
        let (v, spent) = match merge_with_credit(sink, mesh, 1, v) {
            Ok(()) => return true,
            // A credit spent, the batch full: a new envelope without reserving.
            Err((v, spent)) => (v, spent),
        };
        send_keyed(sink, mesh, 1, v);
        spent
    }

    #[test]
    fn cursor_appends_in_order_and_spends_only_held_credits() {
        let (mesh, mut ends) = MeshShared::new(2, 0, 64, 64);
        let mut inbound = std::mem::take(&mut ends[1].inbound);
        let out = std::mem::take(&mut ends[0].outbound);
        Outbound::new(mesh.clone(), 0, out).install();
        let (a, b) = (Box::new(Sink), Box::new(Sink));
        let mut spent = 0u32;
        let mut expect = Vec::new();
        for i in 0..60u64 {
            // Runs of five per key; a flush (end of turn) every 13 sends.
            let sink = if (i / 5) % 2 == 0 { &a } else { &b };
            spent += u32::from(send(&mesh, sink, i));
            expect.push((sink.key().addr(), i));
            if i % 13 == 12 {
                flush_current();
            }
        }
        flush_current();
        let ob = Outbound::uninstall().expect("installed above");
        drop(ob);
        while let Some(env) = inbound[0].pop() {
            env.run();
        }
        let seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
        assert_eq!(seen, expect);
        // Credits: every one granted was either spent on a send or handed back.
        let released = RELEASED.with(Cell::get) as u32;
        let granted = GRANTED.with(Cell::get);
        assert!(spent > 0, "streams of five spend credits");
        assert_eq!(granted, spent + released, "granted = spent + handed back");
    }
}

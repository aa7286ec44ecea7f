//! [`Target`]: where a protocol's requests go — an actor, one of a sharded actor's shards
//! (chosen per connection, the local shard first), or a closure. Owns nothing but the choice.

use std::sync::Arc;

use crate::runtime::{Actor, Addr, ShardedAddr, TrySendError};

/// Where requests go: an actor, or one of a sharded actor's shards (chosen per connection).
pub struct Target<M>(Arc<dyn Fn(M, u64) -> Result<(), TrySendError<M>> + Send + Sync>);

impl<M> Clone for Target<M> {
    fn clone(&self) -> Self {
        Target(self.0.clone())
    }
}

impl<M: Send + 'static> Target<M> {
    /// Delivers `msg` (without waiting); `conn` picks a shard for sharded targets.
    pub fn try_send(&self, msg: M, conn: u64) -> Result<(), TrySendError<M>> {
        (self.0)(msg, conn)
    }

    /// A target from a closure (e.g. to pick a shard from the message).
    pub fn from_fn(
        f: impl Fn(M, u64) -> Result<(), TrySendError<M>> + Send + Sync + 'static,
    ) -> Self {
        Target(Arc::new(f))
    }

    /// Requests go to the shard on the calling core when there is one (a co-located event
    /// loop: the hand-off never leaves the core), else to shard `connection % shards`, so a
    /// connection's requests are always served on one core.
    pub fn sharded<A, K>(s: ShardedAddr<A, K>) -> Self
    where
        A: Actor<Msg = M>,
        K: ?Sized + 'static,
    {
        Target(Arc::new(move |m, conn| {
            let all = s.all();
            if let Some(w) = crate::runtime::current_worker()
                && let Some(a) = all.iter().find(|a| a.worker() == w)
            {
                return a.try_tell(m);
            }
            all[(conn as usize) % all.len()].try_tell(m)
        }))
    }
}

impl<A: Actor> From<Addr<A>> for Target<A::Msg> {
    fn from(a: Addr<A>) -> Self {
        Target(Arc::new(move |m, _| a.try_tell(m)))
    }
}

impl<A: Actor, K: ?Sized + 'static> From<ShardedAddr<A, K>> for Target<A::Msg> {
    fn from(s: ShardedAddr<A, K>) -> Self {
        Target::sharded(s)
    }
}

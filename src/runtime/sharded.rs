//! Sharded actors: one instance per app worker, each owning its partition of the key space.
//! A [`ShardedAddr`] routes a keyed message through a [`Partitioner`] to the shard that owns the
//! key; a message to a shard on the sender's own core never crosses a ring. Owns only routing.

use std::sync::Arc;
use std::time::Duration;

use super::actor::{Actor, Addr, Reply};
use super::error::{AskError, RuntimeError, SendError, TrySendError};
use super::partition::Partitioner;

/// The address of a sharded actor: one [`Addr`] per shard plus the partitioner.
pub struct ShardedAddr<A: Actor, K: ?Sized> {
    shards: Arc<[Addr<A>]>,
    part: Arc<dyn Partitioner<K>>,
}

impl<A: Actor, K: ?Sized> Clone for ShardedAddr<A, K> {
    fn clone(&self) -> Self {
        ShardedAddr {
            shards: self.shards.clone(),
            part: self.part.clone(),
        }
    }
}

impl<A: Actor, K: ?Sized + 'static> ShardedAddr<A, K> {
    /// Shard `w` on worker `w` for every one of `workers`, each started by `spawn(w, make)`
    /// (plain or supervised), behind `partitioner`.
    pub(crate) fn build<F, P>(
        workers: usize,
        make: F,
        partitioner: P,
        mut spawn: impl FnMut(usize, Arc<F>) -> Result<Addr<A>, RuntimeError>,
    ) -> Result<Self, RuntimeError>
    where
        F: Fn(usize) -> A + Send + Sync + 'static,
        P: Partitioner<K>,
    {
        let make = Arc::new(make);
        let shards = (0..workers)
            .map(|w| spawn(w, make.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ShardedAddr::new(shards, Arc::new(partitioner)))
    }

    pub(crate) fn new(shards: Vec<Addr<A>>, part: Arc<dyn Partitioner<K>>) -> Self {
        ShardedAddr {
            shards: shards.into(),
            part,
        }
    }

    /// Number of shards (= app workers).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `key`.
    pub fn shard_of(&self, key: &K) -> usize {
        self.part
            .partition(key, self.shards.len())
            .min(self.shards.len() - 1)
    }

    /// The address of shard `i`.
    pub fn shard(&self, i: usize) -> Option<&Addr<A>> {
        self.shards.get(i)
    }

    /// Every shard's address.
    pub fn all(&self) -> &[Addr<A>] {
        &self.shards
    }

    /// [`Addr::tell`] to the shard owning `key`.
    pub async fn tell(&self, key: &K, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.shards[self.shard_of(key)].tell(msg).await
    }

    /// [`Addr::try_tell`] to the shard owning `key`.
    pub fn try_tell(&self, key: &K, msg: A::Msg) -> Result<(), TrySendError<A::Msg>> {
        self.shards[self.shard_of(key)].try_tell(msg)
    }

    /// [`Addr::ask`] to the shard owning `key`.
    pub async fn ask<R: Send + 'static>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<R>) -> A::Msg,
        timeout: Duration,
    ) -> Result<R, AskError> {
        self.shards[self.shard_of(key)].ask(make, timeout).await
    }

    /// Asks every shard to stop gracefully.
    pub fn stop(&self) {
        for s in self.shards.iter() {
            s.stop();
        }
    }
}

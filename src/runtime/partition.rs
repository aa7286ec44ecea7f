//! Partitioners: map a key to a shard index for [`ShardedAddr`](crate::runtime::ShardedAddr).
//! Hash, range, consistent hash (virtual nodes), round robin and a user closure. Owns only the
//! key → shard function; knows nothing of actors or workers.
//!
//! All hashing uses one stable hash (SipHash-1-3 with fixed zero keys, `std`'s `DefaultHasher::new()`),
//! so a key maps to the same shard in every process and run.
//!
//! ```
//! use percore::runtime::partition::{ConsistentHash, HashPartitioner, Partitioner, RangePartitioner};
//!
//! assert!(HashPartitioner.partition("user-42", 4) < 4);
//! let r = RangePartitioner::new(vec![100, 200]).unwrap();
//! assert_eq!(r.partition(&150, 3), 1);
//! let ch = ConsistentHash::default();
//! assert_eq!(ch.partition("k", 8), ch.partition("k", 8));
//! ```

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Maps a key to a shard index in `0..shards`.
pub trait Partitioner<K: ?Sized>: Send + Sync + 'static {
    /// Shard index in `0..shards` for `key`; `shards >= 1`.
    fn partition(&self, key: &K, shards: usize) -> usize;
}

/// The stable 64-bit hash every partitioner here uses.
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// `stable_hash(key) % shards`: uniform, but most keys move when the shard count changes (use
/// [`ConsistentHash`] when that matters).
#[derive(Debug, Clone, Copy, Default)]
pub struct HashPartitioner;

impl<K: Hash + ?Sized> Partitioner<K> for HashPartitioner {
    fn partition(&self, key: &K, shards: usize) -> usize {
        (stable_hash(key) % shards.max(1) as u64) as usize
    }
}

/// The split points given to [`RangePartitioner::new`] were not strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "range split points must be strictly increasing; point {index} is not greater than the one before"
)]
pub struct UnsortedSplits {
    /// Index of the first offending split point.
    pub index: usize,
}

/// Ordered ranges: with split points `b`, keys `< b[0]` go to shard 0, `b[0] <= k < b[1]` to
/// shard 1, and so on. With fewer shards than ranges, the upper ranges clamp to the last shard.
#[derive(Debug, Clone)]
pub struct RangePartitioner<K> {
    splits: Vec<K>,
}

impl<K: Ord> RangePartitioner<K> {
    /// Validates that `splits` is strictly increasing.
    pub fn new(splits: Vec<K>) -> Result<Self, UnsortedSplits> {
        if let Some(i) = splits.windows(2).position(|w| w[0] >= w[1]) {
            return Err(UnsortedSplits { index: i + 1 });
        }
        Ok(RangePartitioner { splits })
    }

    /// Number of ranges (`splits + 1`).
    pub fn ranges(&self) -> usize {
        self.splits.len() + 1
    }
}

impl<K: Ord + Send + Sync + 'static> Partitioner<K> for RangePartitioner<K> {
    fn partition(&self, key: &K, shards: usize) -> usize {
        let range = self.splits.partition_point(|s| s <= key);
        range.min(shards.max(1) - 1)
    }
}

/// Sorted (point, shard) pairs of one ring.
type Ring = Vec<(u64, u32)>;

/// A consistent-hash ring with virtual nodes.
///
/// Each shard owns `vnodes` points on a 64-bit ring at `stable_hash((shard, v))`; a key belongs to
/// the first point at or after its hash. Growing from `n` to `n + 1` shards adds only the new
/// shard's points, so the only keys that move are those that now land on them: about
/// `1 / (n + 1)` of all keys, all moving *to* the new shard. Rings are built once per shard count
/// and cached.
pub struct ConsistentHash {
    vnodes: usize,
    rings: RwLock<Vec<Option<Arc<Ring>>>>,
}

impl Default for ConsistentHash {
    /// 128 virtual nodes per shard.
    fn default() -> Self {
        ConsistentHash::new(128)
    }
}

impl std::fmt::Debug for ConsistentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsistentHash")
            .field("vnodes", &self.vnodes)
            .finish()
    }
}

impl ConsistentHash {
    /// A ring with `vnodes` virtual nodes per shard (at least 1).
    pub fn new(vnodes: usize) -> Self {
        ConsistentHash {
            vnodes: vnodes.max(1),
            rings: RwLock::new(Vec::new()),
        }
    }

    fn ring(&self, shards: usize) -> Arc<Vec<(u64, u32)>> {
        if let Some(Some(r)) = self
            .rings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(shards)
        {
            return r.clone();
        }
        let mut points: Vec<(u64, u32)> = (0..shards as u32)
            .flat_map(|s| (0..self.vnodes as u32).map(move |v| (stable_hash(&(s, v)), s)))
            .collect();
        points.sort_unstable();
        let ring = Arc::new(points);
        let mut w = self.rings.write().unwrap_or_else(|p| p.into_inner());
        if w.len() <= shards {
            w.resize(shards + 1, None);
        }
        w[shards] = Some(ring.clone());
        ring
    }
}

impl<K: Hash + ?Sized> Partitioner<K> for ConsistentHash {
    fn partition(&self, key: &K, shards: usize) -> usize {
        let shards = shards.max(1);
        let ring = self.ring(shards);
        let h = stable_hash(key);
        let i = ring.partition_point(|(p, _)| *p < h);
        ring.get(i).unwrap_or(&ring[0]).1 as usize
    }
}

/// Ignores the key: shard 0, 1, 2, … in turn. For spreading work, not for owning keys.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl<K: ?Sized> Partitioner<K> for RoundRobin {
    fn partition(&self, _key: &K, shards: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % shards.max(1)
    }
}

/// A user closure `Fn(&K, shards) -> usize`; results out of range are reduced modulo `shards`.
pub struct FnPartitioner<F>(pub F);

impl<K: ?Sized, F> Partitioner<K> for FnPartitioner<F>
where
    F: Fn(&K, usize) -> usize + Send + Sync + 'static,
{
    fn partition(&self, key: &K, shards: usize) -> usize {
        (self.0)(key, shards) % shards.max(1)
    }
}

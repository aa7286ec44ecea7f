//! TEMPORARY shim with the agreed API; replaced by the real partitioners at merge.
#![allow(missing_docs)]
use std::hash::{Hash, Hasher};
pub trait Partitioner<K: ?Sized>: Send + Sync + 'static {
    fn partition(&self, key: &K, shards: usize) -> usize;
}
pub struct HashPartitioner;
impl<K: Hash + ?Sized> Partitioner<K> for HashPartitioner {
    fn partition(&self, key: &K, shards: usize) -> usize {
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % shards as u64) as usize
    }
}

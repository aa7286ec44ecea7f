//! Property tests for the partitioners.

use percore::runtime::partition::{
    ConsistentHash, FnPartitioner, HashPartitioner, Partitioner, RangePartitioner, RoundRobin,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_partitioner_stays_in_range(key in any::<u64>(), shards in 1usize..64) {
        prop_assert!(HashPartitioner.partition(&key, shards) < shards);
        prop_assert!(ConsistentHash::new(16).partition(&key, shards) < shards);
        prop_assert!(RoundRobin::default().partition(&key, shards) < shards);
        prop_assert!(FnPartitioner(|k: &u64, _| *k as usize).partition(&key, shards) < shards);
        let r = RangePartitioner::new(vec![10u64, 1000, 1_000_000]).unwrap();
        prop_assert!(r.partition(&key, shards) < shards);
    }

    #[test]
    fn hashing_is_deterministic(key in ".*", shards in 1usize..64) {
        prop_assert_eq!(HashPartitioner.partition(key.as_str(), shards), HashPartitioner.partition(key.as_str(), shards));
        // Two separate instances agree: nothing depends on per-instance state.
        prop_assert_eq!(
            ConsistentHash::new(32).partition(key.as_str(), shards),
            ConsistentHash::new(32).partition(key.as_str(), shards)
        );
    }

    #[test]
    fn range_respects_order(mut splits in prop::collection::btree_set(any::<i64>(), 1..8), a in any::<i64>(), b in any::<i64>()) {
        let splits: Vec<i64> = std::mem::take(&mut splits).into_iter().collect();
        let r = RangePartitioner::new(splits.clone()).unwrap();
        let n = r.ranges();
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(r.partition(&lo, n) <= r.partition(&hi, n));
        // The shard's range really contains the key.
        let s = r.partition(&a, n);
        if s > 0 { prop_assert!(splits[s - 1] <= a); }
        if s < splits.len() { prop_assert!(a < splits[s]); }
    }

    #[test]
    fn consistent_hash_moves_only_to_the_new_shard(n in 1usize..16, seed in any::<u64>()) {
        let ch = ConsistentHash::new(128);
        let keys: Vec<u64> = (0..2000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed).collect();
        let mut moved = 0;
        for k in &keys {
            let before = ch.partition(k, n);
            let after = ch.partition(k, n + 1);
            if before != after {
                prop_assert_eq!(after, n, "a key moved between old shards");
                moved += 1;
            }
        }
        // Expected share 1/(n+1); allow 2x for vnode variance.
        prop_assert!(moved as f64 <= 2.0 * keys.len() as f64 / (n + 1) as f64 + 10.0, "moved {} of {}", moved, keys.len());
    }

    /// Shrinking from `n` to `n - 1` shards drops the last shard's virtual nodes and nothing else
    /// (the API takes a shard count, so only the last shard can be removed). A key on a surviving
    /// shard keeps its shard (its successor point is unchanged); a key on the removed shard moves to
    /// the next surviving point. So the keys that move are exactly those that lived on shard
    /// `n - 1`: about `1 / n` of all keys.
    #[test]
    fn consistent_hash_shrinking_moves_only_the_removed_shards_keys(n in 2usize..17, seed in any::<u64>()) {
        let ch = ConsistentHash::new(128);
        let keys: Vec<u64> = (0..4000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed).collect();
        let (mut moved, mut on_removed) = (0usize, 0usize);
        for k in &keys {
            let before = ch.partition(k, n);
            let after = ch.partition(k, n - 1);
            prop_assert!(after < n - 1);
            if before == n - 1 {
                on_removed += 1;
            } else {
                prop_assert_eq!(after, before, "a key moved between surviving shards");
            }
            if before != after {
                moved += 1;
            }
        }
        // Every key of the removed shard moved (trivially: it is out of range now), and only those.
        prop_assert_eq!(moved, on_removed);
        // Expected share 1/n; allow 1.8x for vnode variance (and some floor so the removed shard
        // really owned keys).
        let share = moved as f64 / keys.len() as f64;
        prop_assert!(share <= 1.8 / n as f64, "moved {} of {} (n = {})", moved, keys.len(), n);
        prop_assert!(share >= 0.4 / n as f64, "moved {} of {} (n = {})", moved, keys.len(), n);
    }
}

#[test]
fn unsorted_ranges_are_a_typed_error() {
    let e = RangePartitioner::new(vec![1, 5, 5]).unwrap_err();
    assert_eq!(e.index, 2);
}

#[test]
fn consistent_hash_balances_with_vnodes() {
    let ch = ConsistentHash::new(128);
    let shards = 8;
    let mut counts = vec![0usize; shards];
    for i in 0..80_000u64 {
        counts[ch.partition(&i, shards)] += 1;
    }
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(max as f64 / min as f64 <= 1.6, "unbalanced: {counts:?}");
}

#[test]
fn round_robin_cycles() {
    let rr = RoundRobin::default();
    let got: Vec<usize> = (0..6).map(|_| rr.partition(&(), 3)).collect();
    assert_eq!(got, [0, 1, 2, 0, 1, 2]);
}

//! [`RecentCache`]: the most recently written bytes of a shard's log, kept in memory up to a
//! byte budget ([`KvOptions::read_cache_bytes`](super::KvOptions::read_cache_bytes)) so that
//! reads of recent data are a copy instead of a system call. It costs the write path nothing:
//! the chunks the flusher has just written are kept instead of dropped, oldest evicted first.
//! Must be told when a segment slot is freed (compaction), so a reused slot never serves
//! another segment's bytes.

use std::collections::{BTreeMap, VecDeque};

/// Written chunks by (segment slot, offset), evicted oldest first.
#[derive(Debug, Default)]
pub(crate) struct RecentCache {
    budget: usize,
    bytes: usize,
    map: BTreeMap<(u32, u64), Vec<u8>>,
    order: VecDeque<(u32, u64)>,
}

impl RecentCache {
    pub(crate) fn new(budget: usize) -> RecentCache {
        RecentCache {
            budget,
            ..RecentCache::default()
        }
    }

    /// Keeps `bytes`, written at `off` of segment `slot`.
    pub(crate) fn insert(&mut self, slot: u32, off: u64, bytes: Vec<u8>) {
        if bytes.is_empty() || bytes.len() > self.budget {
            return;
        }
        self.bytes += bytes.len();
        if let Some(old) = self.map.insert((slot, off), bytes) {
            self.bytes -= old.len();
        } else {
            self.order.push_back((slot, off));
        }
        while self.bytes > self.budget {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.map.remove(&k) {
                self.bytes -= b.len();
            }
        }
    }

    /// `len` bytes at `off` of segment `slot`, if a kept chunk holds all of them.
    pub(crate) fn get(&self, slot: u32, off: u64, len: usize) -> Option<&[u8]> {
        let (&(s, o), b) = self.map.range(..=(slot, off)).next_back()?;
        if s != slot || off + len as u64 > o + b.len() as u64 {
            return None;
        }
        let at = (off - o) as usize;
        Some(&b[at..at + len])
    }

    /// Forgets every chunk of `slot` (its segment was deleted).
    pub(crate) fn purge_slot(&mut self, slot: u32) {
        let keys: Vec<_> = self
            .map
            .range((slot, 0)..=(slot, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            if let Some(b) = self.map.remove(k) {
                self.bytes -= b.len();
            }
        }
        if !keys.is_empty() {
            self.order.retain(|k| k.0 != slot);
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::RecentCache;

    #[test]
    fn keeps_recent_chunks_within_budget_and_forgets_a_purged_slot() {
        let mut c = RecentCache::new(100);
        c.insert(1, 0, vec![1; 40]);
        c.insert(1, 40, vec![2; 40]);
        assert_eq!(c.get(1, 45, 10), Some(&[2u8; 10][..]));
        assert_eq!(c.get(1, 35, 10), None, "spans two chunks");
        assert_eq!(c.get(2, 0, 1), None);
        c.insert(2, 0, vec![3; 40]); // over budget: the oldest chunk goes
        assert_eq!(c.get(1, 0, 10), None);
        assert_eq!(c.bytes(), 80);
        c.purge_slot(2);
        assert_eq!(c.get(2, 0, 1), None);
        assert_eq!(c.bytes(), 40);
        c.insert(3, 0, vec![0; 101]); // larger than the whole budget: not kept
        assert_eq!(c.get(3, 0, 1), None);
    }
}

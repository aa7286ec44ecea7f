//! `maxmemory` and its eviction policies, as Redis approximates them: memory is the
//! allocator's count of bytes in use for the whole process (glibc's `mallinfo2`, read at most
//! once a millisecond per shard and lowered by each eviction's estimate in between); when a
//! write that may grow memory (`denyoom` commands) finds it over the limit, the shard evicts
//! from its own keys — the best of `maxmemory-samples` sampled keys by the policy's rule, as
//! many times as needed — or, with `noeviction` or nothing left to evict, answers
//! `OOM command not allowed when used memory > 'maxmemory'.` Owns the settings, the gauge and
//! the choice of victims; the keyspace gives the samples (`db.rs`).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// The reply when a write is refused for memory.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Which keys may be evicted, and which first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Never evict: writes that may grow memory get the OOM error.
    NoEviction = 0,
    /// The least recently used of a sample of all keys.
    AllKeysLru = 1,
    /// The least frequently used (Redis's logarithmic counter with decay) of all keys.
    AllKeysLfu = 2,
    /// A random key.
    AllKeysRandom = 3,
    /// The least recently used of a sample of keys with a TTL.
    VolatileLru = 4,
    /// The least frequently used of keys with a TTL.
    VolatileLfu = 5,
    /// A random key with a TTL.
    VolatileRandom = 6,
    /// The key with a TTL nearest to expiring, of a sample.
    VolatileTtl = 7,
}

impl Policy {
    /// Every policy with its Redis name.
    pub const ALL: [(&'static str, Policy); 8] = [
        ("noeviction", Policy::NoEviction),
        ("allkeys-lru", Policy::AllKeysLru),
        ("allkeys-lfu", Policy::AllKeysLfu),
        ("allkeys-random", Policy::AllKeysRandom),
        ("volatile-lru", Policy::VolatileLru),
        ("volatile-lfu", Policy::VolatileLfu),
        ("volatile-random", Policy::VolatileRandom),
        ("volatile-ttl", Policy::VolatileTtl),
    ];

    /// The policy named `s` (Redis's names).
    pub fn parse(s: &str) -> Option<Policy> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|p| p.1)
    }

    /// Its Redis name.
    pub fn name(self) -> &'static str {
        Self::ALL[self as usize].0
    }

    fn from_u8(v: u8) -> Policy {
        Self::ALL
            .get(v as usize)
            .map_or(Policy::NoEviction, |p| p.1)
    }

    /// Whether only keys with a TTL are candidates.
    pub fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    /// Whether the access field counts frequency (LFU) rather than time (LRU).
    pub fn lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }
}

/// The memory settings, shared by every shard and the protocol (CONFIG SET changes them live).
#[derive(Debug)]
pub struct MemConfig {
    maxmemory: AtomicU64,
    policy: AtomicU8,
    samples: AtomicU8,
    /// Keys evicted, all shards.
    pub evicted: AtomicU64,
}

impl Default for MemConfig {
    /// No limit, `noeviction`.
    fn default() -> Self {
        MemConfig::new(0, Policy::NoEviction)
    }
}

impl MemConfig {
    /// Settings: `maxmemory` bytes (0: no limit), `policy`, 5 samples (Redis's default).
    pub fn new(maxmemory: u64, policy: Policy) -> MemConfig {
        MemConfig {
            maxmemory: AtomicU64::new(maxmemory),
            policy: AtomicU8::new(policy as u8),
            samples: AtomicU8::new(5),
            evicted: AtomicU64::new(0),
        }
    }

    /// The limit in bytes (0: none).
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    /// Sets the limit.
    pub fn set_maxmemory(&self, v: u64) {
        self.maxmemory.store(v, Ordering::Relaxed);
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        Policy::from_u8(self.policy.load(Ordering::Relaxed))
    }

    /// Sets the policy.
    pub fn set_policy(&self, p: Policy) {
        self.policy.store(p as u8, Ordering::Relaxed);
    }

    /// Keys sampled per eviction.
    pub fn samples(&self) -> usize {
        self.samples.load(Ordering::Relaxed).max(1) as usize
    }

    /// Sets the sample size (1-64).
    pub fn set_samples(&self, n: u8) {
        self.samples.store(n.clamp(1, 64), Ordering::Relaxed);
    }
}

/// Bytes the process's allocator has handed out and not taken back (glibc: `mallinfo2`'s
/// in-use arena bytes plus mmapped blocks), Redis's `used_memory` for this allocator.
pub fn allocated_bytes() -> u64 {
    // SAFETY: mallinfo2 takes no arguments, returns a plain struct by value and only reads the
    // allocator's own statistics under its locks; it is safe to call from any thread.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// A shard's view of the process's memory: the allocator's figure, re-read at most once a
/// millisecond, minus what this shard freed since.
#[derive(Debug, Default)]
pub struct Gauge {
    read_at_ms: u64,
    bytes: u64,
}

impl Gauge {
    /// Bytes in use now (approximately).
    pub fn used(&mut self, now_ms: u64) -> u64 {
        if now_ms != self.read_at_ms {
            self.read_at_ms = now_ms;
            self.bytes = allocated_bytes();
        }
        self.bytes
    }

    /// This shard just freed about `n` bytes.
    pub fn freed(&mut self, n: u64) {
        self.bytes = self.bytes.saturating_sub(n);
    }
}

/// LRU clock: seconds, 24 bits as in Redis (wraps every 194 days; ages compare modulo).
pub fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) & 0xFF_FFFF) as u32
}

/// Idle time in seconds of an access field holding an LRU clock.
pub fn lru_idle(field: u32, now_ms: u64) -> u32 {
    lru_clock(now_ms).wrapping_sub(field) & 0xFF_FFFF
}

/// LFU's initial counter for a new key (Redis's `LFU_INIT_VAL`).
pub const LFU_INIT: u8 = 5;

/// The LFU access field: 16 bits of minutes since the last decrement, 8 bits of counter.
pub fn lfu_field(minutes: u16, counter: u8) -> u32 {
    ((minutes as u32) << 8) | counter as u32
}

fn minutes(now_ms: u64) -> u16 {
    ((now_ms / 60_000) & 0xFFFF) as u16
}

/// The counter after decay: one point per minute idle (Redis's `lfu-decay-time 1`).
pub fn lfu_decayed(field: u32, now_ms: u64) -> u8 {
    let last = (field >> 8) as u16;
    let counter = (field & 0xFF) as u8;
    let idle = minutes(now_ms).wrapping_sub(last) as u32;
    counter.saturating_sub(idle.min(255) as u8)
}

/// An access: the new field. LFU increments the counter with probability
/// 1 / ((counter - LFU_INIT) * 10 + 1) (Redis's `lfu-log-factor 10`), after decay.
pub fn touch(field: u32, lfu: bool, now_ms: u64, rand: u64) -> u32 {
    if !lfu {
        return lru_clock(now_ms);
    }
    let mut c = lfu_decayed(field, now_ms);
    if c < 255 {
        let base = c.saturating_sub(LFU_INIT) as u64;
        let p = 1.0 / (base as f64 * 10.0 + 1.0);
        if ((rand >> 11) as f64 / (1u64 << 53) as f64) < p {
            c += 1;
        }
    }
    lfu_field(minutes(now_ms), c)
}

/// The access field of a new key.
pub fn new_field(lfu: bool, now_ms: u64) -> u32 {
    if lfu {
        lfu_field(minutes(now_ms), LFU_INIT)
    } else {
        lru_clock(now_ms)
    }
}

/// How good a victim a key is under `policy` (higher: evict first).
pub fn score(policy: Policy, field: u32, expire_at: Option<u64>, now_ms: u64) -> u64 {
    match policy {
        Policy::AllKeysLru | Policy::VolatileLru => lru_idle(field, now_ms) as u64,
        Policy::AllKeysLfu | Policy::VolatileLfu => 255 - lfu_decayed(field, now_ms) as u64,
        Policy::VolatileTtl => u64::MAX - expire_at.unwrap_or(u64::MAX),
        Policy::AllKeysRandom | Policy::VolatileRandom | Policy::NoEviction => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_clocks_and_counters() {
        for (n, p) in Policy::ALL {
            assert_eq!(Policy::parse(n), Some(p));
            assert_eq!(p.name(), n);
        }
        assert_eq!(Policy::parse("bogus"), None);
        let t = 1_000_000_000u64;
        assert_eq!(lru_idle(lru_clock(t), t + 5000), 5);
        // Decay: one point a minute.
        let f = lfu_field(minutes(t), 20);
        assert_eq!(lfu_decayed(f, t + 3 * 60_000), 17);
        // The counter grows ever more slowly.
        let mut f = new_field(true, t);
        let mut rng = 0x12345678u64;
        for _ in 0..10_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            f = touch(f, true, t, rng);
        }
        let c = f & 0xFF;
        assert!((15..60).contains(&c), "counter {c} after 10,000 hits");
        assert!(allocated_bytes() > 0);
        // Victims: the longest idle, the least used, the nearest to expire.
        assert!(
            score(Policy::AllKeysLru, lru_clock(t), None, t + 9000)
                > score(Policy::AllKeysLru, lru_clock(t + 8000), None, t + 9000)
        );
        assert!(
            score(Policy::VolatileTtl, 0, Some(t + 10), t)
                > score(Policy::VolatileTtl, 0, Some(t + 20), t)
        );
    }
}

//! One shard's keyspace: the keys it owns, their values (string, hash, list, set) and expiry
//! times, with lazy expiry on access and an incremental active sweep (Redis's sampling
//! algorithm), and the log records a change produces when persistence is on. Owns the data;
//! knows nothing of connections, routing or the wire (commands are `cmd_*.rs`).

use std::collections::{HashMap, HashSet, VecDeque};

use indexmap::IndexMap;

use super::persist::{self, Kind};

/// The hasher of every table: foldhash, seeded at random per process (keys come from clients).
pub type Hasher = foldhash::quality::RandomState;
/// A key or element as stored.
pub type Bytes = Box<[u8]>;
/// A hash's fields.
pub type HashVal = HashMap<Bytes, Bytes, Hasher>;
/// A set's members.
pub type SetVal = HashSet<Bytes, Hasher>;

/// A list's elements with their log sequence numbers (see `persist.rs`).
#[derive(Debug, Default, Clone)]
pub struct ListVal {
    /// Elements front to back, each with its sequence number.
    pub items: VecDeque<(i64, Bytes)>,
}

impl ListVal {
    /// The seq a new head element takes.
    pub fn head_seq(&self) -> i64 {
        self.items.front().map_or(0, |e| e.0 - 1)
    }

    /// The seq a new tail element takes.
    pub fn tail_seq(&self) -> i64 {
        self.items.back().map_or(0, |e| e.0 + 1)
    }
}

/// A value.
#[derive(Debug, Clone)]
pub enum Value {
    /// A string (numbers are strings too, as in Redis).
    Str(Bytes),
    /// A hash.
    Hash(Box<HashVal>),
    /// A list.
    List(Box<ListVal>),
    /// A set.
    Set(Box<SetVal>),
}

impl Value {
    /// The persistence kind.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::Str,
            Value::Hash(_) => Kind::Hash,
            Value::List(_) => Kind::List,
            Value::Set(_) => Kind::Set,
        }
    }

    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
        }
    }

    /// Approximate heap bytes (for INFO memory).
    pub fn heap_bytes(&self) -> usize {
        const SLOT: usize = 48;
        match self {
            Value::Str(s) => s.len(),
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len() + SLOT).sum(),
            Value::List(l) => l.items.iter().map(|(_, v)| v.len() + 24).sum(),
            Value::Set(s) => s.iter().map(|m| m.len() + SLOT).sum(),
        }
    }
}

/// One change to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOp {
    /// Set a KV key.
    Put(Vec<u8>, Vec<u8>),
    /// Delete a KV key.
    Del(Vec<u8>),
}

/// Counters for INFO stats.
#[derive(Debug, Default, Clone, Copy)]
pub struct DbStats {
    /// Keys removed because their time was up.
    pub expired_keys: u64,
    /// Reads that found their key.
    pub keyspace_hits: u64,
    /// Reads that did not.
    pub keyspace_misses: u64,
}

/// The error text of a type mismatch.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// A value and its access field (LRU clock or LFU counter, see `evict.rs`).
#[derive(Debug, Clone)]
struct Entry {
    v: Value,
    access: u32,
}

/// One shard's keyspace.
pub struct Db {
    map: IndexMap<Bytes, Entry, Hasher>,
    /// Expiry times (ms since the epoch) of the keys that have one.
    expires: IndexMap<Bytes, u64, Hasher>,
    /// Changes of the command being run (`Some` when persistence is on).
    log: Option<Vec<LogOp>>,
    /// Counters.
    pub stats: DbStats,
    /// The clock of the command being run, ms since the epoch.
    now: u64,
    /// Cheap generator for sampling (xorshift).
    rng: u64,
    /// Memory settings (the policy decides what an access records).
    mem: std::sync::Arc<super::evict::MemConfig>,
}

/// Milliseconds since the Unix epoch, from the kernel's coarse wall clock
/// (`CLOCK_REALTIME_COARSE`: a plain memory read, no time-source access; its resolution is the
/// kernel tick, 1-4 ms, finer than the expiry precision clients see: TTLs are in seconds, and
/// Redis itself reads its clock once per command or event-loop turn). Measured: the precise
/// clock was 3 % of the server's CPU time under `redis-benchmark -t get`.
pub fn now_ms() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

impl Db {
    /// An empty keyspace; `persistent` turns on change logging.
    pub fn new(persistent: bool, mem: std::sync::Arc<super::evict::MemConfig>) -> Db {
        Db {
            map: IndexMap::default(),
            expires: IndexMap::default(),
            log: persistent.then(Vec::new),
            stats: DbStats::default(),
            now: now_ms(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ now_ms(),
            mem,
        }
    }

    fn entry(&self, v: Value) -> Entry {
        Entry {
            v,
            access: super::evict::new_field(self.mem.policy().lfu(), self.now),
        }
    }

    /// Sets the clock for the next command (one reading per command, as Redis does, so a key
    /// cannot expire halfway through one).
    pub fn tick(&mut self, now: u64) {
        self.now = now;
    }

    /// The command clock.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Takes the changes logged since the last call.
    pub fn take_log(&mut self) -> Vec<LogOp> {
        match &mut self.log {
            Some(l) => std::mem::take(l),
            None => Vec::new(),
        }
    }

    /// Number of keys (expired ones not yet swept included, as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Keys with an expiry time.
    pub fn volatile(&self) -> usize {
        self.expires.len()
    }

    fn log(&mut self, op: impl FnOnce() -> LogOp) {
        if let Some(l) = &mut self.log {
            l.push(op());
        }
    }

    fn expired(&self, key: &[u8]) -> bool {
        !self.expires.is_empty() && self.expires.get(key).is_some_and(|&t| t <= self.now)
    }

    /// Removes `key` if its time is up; true if it did.
    fn expire_if_due(&mut self, key: &[u8]) -> bool {
        if self.expired(key) {
            self.remove(key);
            self.stats.expired_keys += 1;
            true
        } else {
            false
        }
    }

    /// The live value of `key` (read access: counts a hit or miss).
    pub fn get(&mut self, key: &[u8]) -> Option<&Value> {
        self.expire_if_due(key);
        let lfu = self.mem.policy().lfu();
        let r = if lfu { self.rand() } else { 0 };
        match self.map.get_mut(key) {
            Some(e) => {
                self.stats.keyspace_hits += 1;
                e.access = super::evict::touch(e.access, lfu, self.now, r);
                Some(&e.v)
            }
            None => {
                self.stats.keyspace_misses += 1;
                None
            }
        }
    }

    /// The live value of `key`, for a change (no hit/miss counted).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        self.expire_if_due(key);
        let lfu = self.mem.policy().lfu();
        let r = if lfu { self.rand() } else { 0 };
        let now = self.now;
        self.map.get_mut(key).map(|e| {
            e.access = super::evict::touch(e.access, lfu, now, r);
            &mut e.v
        })
    }

    /// Whether `key` exists (expiring it if due).
    pub fn contains(&mut self, key: &[u8]) -> bool {
        self.expire_if_due(key);
        self.map.contains_key(key)
    }

    /// The expiry time of `key`, if it has one.
    pub fn expire_at(&self, key: &[u8]) -> Option<u64> {
        self.expires.get(key).copied()
    }

    /// Sets a string value. `keep_ttl` keeps an existing expiry time; otherwise `expire`
    /// replaces it (`None`: no expiry).
    pub fn set_str(&mut self, key: &[u8], val: &[u8], expire: Option<u64>, keep_ttl: bool) {
        // One lookup of the key in the common case (an existing string, or a new key): each
        // lookup of a random key is a cache miss, and they were a fifth of SET's CPU time.
        self.expire_if_due(key);
        let exp = if keep_ttl {
            self.expire_at(key)
        } else {
            match expire {
                Some(t) => {
                    self.expires.insert(key.into(), t);
                    Some(t)
                }
                None => {
                    if !self.expires.is_empty() {
                        self.expires.swap_remove(key);
                    }
                    None
                }
            }
        };
        let lfu = self.mem.policy().lfu();
        let r = if lfu { self.rand() } else { 0 };
        let now = self.now;
        let replaced_collection = match self.map.get_mut(key) {
            Some(Entry {
                v: Value::Str(s),
                access,
            }) => {
                if s.len() == val.len() {
                    // Same size: overwrite in place (no free and malloc).
                    s.copy_from_slice(val);
                } else {
                    *s = val.into();
                }
                *access = super::evict::touch(*access, lfu, now, r);
                false
            }
            Some(_) => true,
            None => {
                let e = self.entry(Value::Str(val.into()));
                self.map.insert(key.into(), e);
                false
            }
        };
        if replaced_collection {
            // A collection is replaced: its element records go, and the TTL just set stays.
            self.remove(key);
            if let Some(t) = exp {
                self.expires.insert(key.into(), t);
            }
            let e = self.entry(Value::Str(val.into()));
            self.map.insert(key.into(), e);
        }
        self.log(|| {
            LogOp::Put(
                persist::meta_key(key),
                persist::meta_value(Kind::Str, exp.unwrap_or(0), val),
            )
        });
    }

    /// Creates an empty collection at `key` (the caller checked it is absent) and logs its
    /// meta record.
    pub fn create(&mut self, key: &[u8], v: Value) -> &mut Value {
        let kind = v.kind();
        self.log(|| LogOp::Put(persist::meta_key(key), persist::meta_value(kind, 0, &[])));
        let e = self.entry(v);
        &mut self.map.entry(key.into()).or_insert(e).v
    }

    /// Logs an element change of a collection: `Some(value)` sets it, `None` removes it.
    pub fn log_elem(&mut self, kind: Kind, key: &[u8], suffix: &[u8], val: Option<&[u8]>) {
        let Some(tag) = kind.tag() else { return };
        self.log(|| {
            let k = persist::elem_key(tag, key, suffix);
            match val {
                Some(v) => LogOp::Put(k, v.to_vec()),
                None => LogOp::Del(k),
            }
        });
    }

    /// Removes `key` if it is a collection left empty (Redis never keeps empty ones).
    pub fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.map.get(key).map(|e| &e.v) {
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::List(l)) => l.items.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            _ => false,
        };
        if empty {
            self.map.swap_remove(key);
            self.expires.swap_remove(key);
            self.log(|| LogOp::Del(persist::meta_key(key)));
        }
    }

    /// Removes `key` and every record of it; returns the value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Value> {
        let v = self.map.swap_remove(key)?.v;
        self.expires.swap_remove(key);
        if let Some(log) = &mut self.log {
            log.push(LogOp::Del(persist::meta_key(key)));
            log_elements(log, key, &v, false);
        }
        Some(v)
    }

    /// Inserts `v` at `key` (replacing whatever was there) with `expire`, logging every record
    /// (RENAME's destination, a restored value).
    pub fn insert(&mut self, key: &[u8], v: Value, expire: Option<u64>) {
        self.remove(key);
        if let Some(log) = &mut self.log {
            let payload: &[u8] = match &v {
                Value::Str(s) => s,
                _ => &[],
            };
            log.push(LogOp::Put(
                persist::meta_key(key),
                persist::meta_value(v.kind(), expire.unwrap_or(0), payload),
            ));
            log_elements(log, key, &v, true);
        }
        if let Some(t) = expire {
            self.expires.insert(key.into(), t);
        }
        let e = self.entry(v);
        self.map.insert(key.into(), e);
    }

    /// Sets or clears the expiry time of an existing key; false if it does not exist.
    pub fn set_expire(&mut self, key: &[u8], at: Option<u64>) -> bool {
        if !self.contains(key) {
            return false;
        }
        match at {
            Some(t) => {
                self.expires.insert(key.into(), t);
            }
            None => {
                self.expires.swap_remove(key);
            }
        }
        if let Some(log) = &mut self.log
            && let Some(Entry { v, .. }) = self.map.get(key)
        {
            let payload: &[u8] = match v {
                Value::Str(s) => s,
                _ => &[],
            };
            log.push(LogOp::Put(
                persist::meta_key(key),
                persist::meta_value(v.kind(), at.unwrap_or(0), payload),
            ));
        }
        true
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        let keys: Vec<Bytes> = self.map.keys().cloned().collect();
        for k in keys {
            self.remove(&k);
        }
    }

    /// The key at position `i` (SCAN), if any.
    pub fn key_at(&self, i: usize) -> Option<(&Bytes, &Value)> {
        self.map.get_index(i).map(|(k, e)| (k, &e.v))
    }

    /// Every key (KEYS).
    pub fn keys(&self) -> impl Iterator<Item = (&Bytes, &Value)> {
        self.map.iter().map(|(k, e)| (k, &e.v))
    }

    /// Whether `key` is expired at the command clock (for listings that must not show it).
    pub fn is_expired(&self, key: &[u8]) -> bool {
        self.expired(key)
    }

    fn rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// One active-expiry cycle (Redis's `activeExpireCycle`): sample 20 keys with a TTL,
    /// remove the expired ones, and repeat while more than a quarter of a sample was expired
    /// and the time budget allows. Returns keys removed.
    pub fn active_expire(&mut self, budget: std::time::Duration) -> usize {
        const SAMPLE: usize = 20;
        let start = std::time::Instant::now();
        self.now = now_ms();
        let mut removed = 0;
        loop {
            let n = self.expires.len();
            if n == 0 {
                return removed;
            }
            let mut hit = 0;
            for _ in 0..SAMPLE.min(n) {
                let n = self.expires.len();
                if n == 0 {
                    break;
                }
                let i = (self.rand() % n as u64) as usize;
                let due = self
                    .expires
                    .get_index(i)
                    .filter(|(_, t)| **t <= self.now)
                    .map(|(k, _)| k.clone());
                if let Some(k) = due {
                    self.remove(&k);
                    self.stats.expired_keys += 1;
                    hit += 1;
                }
            }
            removed += hit;
            if hit * 4 <= SAMPLE || start.elapsed() >= budget {
                return removed;
            }
        }
    }

    /// Approximate bytes held (keys, values, tables), for INFO memory.
    pub fn approx_bytes(&self) -> usize {
        let table = self.map.capacity() * (8 + 16 + 32 + 8) + self.expires.capacity() * 40;
        table
            + self
                .map
                .iter()
                .map(|(k, e)| k.len() + e.v.heap_bytes())
                .sum::<usize>()
    }

    /// Restores a value during recovery (no logging).
    pub fn restore(&mut self, key: &[u8], v: Value, expire: Option<u64>) {
        if let Some(t) = expire {
            self.expires.insert(key.into(), t);
        }
        let e = self.entry(v);
        self.map.insert(key.into(), e);
    }

    /// Mutable access during recovery (no expiry check, no logging).
    pub fn restore_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        self.map.get_mut(key).map(|e| &mut e.v)
    }

    /// Evicts one key chosen by `policy` from `samples` random candidates (keys with a TTL
    /// for the volatile policies); returns an estimate of the bytes freed, or `None` when no
    /// key qualifies. The eviction is logged like a DEL, so a restart agrees.
    pub fn evict_one(&mut self, policy: super::evict::Policy, samples: usize) -> Option<u64> {
        let pool = if policy.volatile() {
            self.expires.len()
        } else {
            self.map.len()
        };
        if pool == 0 || policy == super::evict::Policy::NoEviction {
            return None;
        }
        let now = self.now;
        let mut best: Option<(u64, Bytes)> = None;
        for _ in 0..samples.min(pool) {
            let i = (self.rand() % pool as u64) as usize;
            let (k, field, exp) = if policy.volatile() {
                let (k, &t) = self.expires.get_index(i)?;
                (k, self.map.get(k).map_or(0, |e| e.access), Some(t))
            } else {
                let (k, e) = self.map.get_index(i)?;
                (k, e.access, self.expires.get(k).copied())
            };
            let sc = super::evict::score(policy, field, exp, now);
            if best.as_ref().is_none_or(|b| sc > b.0) {
                best = Some((sc, k.clone()));
            }
        }
        let (_, k) = best?;
        let freed = self.map.get(&k).map_or(0, |e| e.v.heap_bytes()) + k.len() + 96;
        self.remove(&k);
        Some(freed as u64)
    }
}

fn log_elements(log: &mut Vec<LogOp>, key: &[u8], v: &Value, put: bool) {
    let Some(tag) = v.kind().tag() else { return };
    let mut rec = |suffix: &[u8], val: &[u8]| {
        let k = persist::elem_key(tag, key, suffix);
        log.push(if put {
            LogOp::Put(k, val.to_vec())
        } else {
            LogOp::Del(k)
        });
    };
    match v {
        Value::Str(_) => {}
        Value::Hash(h) => h.iter().for_each(|(f, v)| rec(f, v)),
        Value::List(l) => l
            .items
            .iter()
            .for_each(|(s, v)| rec(&persist::seq_bytes(*s), v)),
        Value::Set(s) => s.iter().for_each(|m| rec(m, &[])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_expiry_and_logging() {
        let mut db = Db::new(true, Default::default());
        db.tick(1000);
        db.set_str(b"a", b"1", Some(1500), false);
        assert!(db.get(b"a").is_some());
        db.tick(1500);
        assert!(db.get(b"a").is_none());
        assert_eq!(db.stats.expired_keys, 1);
        let log = db.take_log();
        // The SET's meta record, then its deletion when it expired on access.
        assert_eq!(log.len(), 2);
        assert!(matches!(&log[0], LogOp::Put(k, _) if k == &persist::meta_key(b"a")));
        assert_eq!(log[1], LogOp::Del(persist::meta_key(b"a")));
    }

    #[test]
    fn active_expiry_removes_due_keys_only() {
        let mut db = Db::new(false, Default::default());
        for i in 0..1000u32 {
            let exp = if i % 2 == 0 { Some(1) } else { None };
            db.set_str(&i.to_be_bytes(), b"v", exp, false);
        }
        for _ in 0..200 {
            db.active_expire(std::time::Duration::from_millis(5));
        }
        assert_eq!(db.len(), 500);
        assert_eq!(db.volatile(), 0);
    }
}

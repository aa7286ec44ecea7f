//! [`TypeStats`]: per actor type and worker counters — live actors, started, handled, failures,
//! restarts, and a sampled handler-latency histogram — and their aggregation into
//! [`ActorTypeSnapshot`]s. Each cell is written only by its own worker (plain loads and stores,
//! no locked instructions on the hot path) and read by scrapes from anywhere. Owns the counters;
//! the run loop decides when to bump them.

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Upper bounds (seconds) of the handler-latency histogram's buckets (`+Inf` implied).
pub const LATENCY_BUCKETS: [f64; 8] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0];

/// At most one handled message in this many (per actor type and worker) has its latency
/// measured (two clock reads per sample): the first message of a batch once this many have
/// been handled since the last sample.
pub const LATENCY_SAMPLE_EVERY: u64 = 64;

/// Counters of one actor type on one worker.
#[derive(Debug)]
pub(crate) struct TypeStats {
    pub(crate) type_name: &'static str,
    pub(crate) worker: usize,
    live: AtomicU64,
    started: AtomicU64,
    handled: AtomicU64,
    failures: AtomicU64,
    restarts: AtomicU64,
    /// Sampled handler latencies: per bucket (non-cumulative), sum (ns), count.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    samples: AtomicU64,
    /// The actor whose handler is being timed (0: none): one sample in flight per cell, so the
    /// start time can live here instead of in every actor's task.
    sampling: AtomicU64,
    /// `handled` at which the next sample may start.
    next_sample: AtomicU64,
    sample_start: std::sync::OnceLock<Instant>,
    sample_offset_ns: AtomicU64,
}

/// Adds one with a plain load and store: the cell has a single writer (its worker).
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl TypeStats {
    fn new(type_name: &'static str, worker: usize) -> Self {
        TypeStats {
            type_name,
            worker,
            live: AtomicU64::new(0),
            started: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            sampling: AtomicU64::new(0),
            next_sample: AtomicU64::new(0),
            sample_start: std::sync::OnceLock::new(),
            sample_offset_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn on_start(&self) {
        bump(&self.live, 1);
        bump(&self.started, 1);
    }

    pub(crate) fn on_end(&self) {
        self.live.store(
            self.live.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn on_failure(&self) {
        bump(&self.failures, 1);
    }

    pub(crate) fn on_restart(&self) {
        bump(&self.restarts, 1);
    }

    /// Counts `n` handled messages (added per batch, when their mailbox slots are released).
    #[inline]
    pub(crate) fn add_handled(&self, n: u64) {
        bump(&self.handled, n);
    }

    /// True when the message actor `id` is about to handle is to be timed (then
    /// [`TypeStats::end_sample`] follows).
    #[inline]
    pub(crate) fn begin_sample(&self, id: u64) -> bool {
        let h = self.handled.load(Ordering::Relaxed);
        if h < self.next_sample.load(Ordering::Relaxed)
            || self.sampling.load(Ordering::Relaxed) != 0
        {
            return false;
        }
        self.next_sample
            .store(h + LATENCY_SAMPLE_EVERY, Ordering::Relaxed);
        let base = *self.sample_start.get_or_init(Instant::now);
        self.sample_offset_ns
            .store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.sampling.store(id, Ordering::Relaxed);
        true
    }

    /// Ends the sample begun by actor `id` and returns its latency in nanoseconds (`None` if
    /// another actor's sample is in flight).
    pub(crate) fn end_sample(&self, id: u64) -> Option<u64> {
        if self.sampling.load(Ordering::Relaxed) != id {
            return None;
        }
        self.sampling.store(0, Ordering::Relaxed);
        let base = self.sample_start.get()?;
        let ns = (base.elapsed().as_nanos() as u64)
            .saturating_sub(self.sample_offset_ns.load(Ordering::Relaxed));
        let secs = ns as f64 / 1e9;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        bump(&self.buckets[i], 1);
        bump(&self.sum_ns, ns);
        bump(&self.samples, 1);
        Some(ns)
    }
}

/// Per actor type figures summed over workers, plus what only a walk over the actors gives
/// (mailbox depth).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ActorTypeSnapshot {
    /// The actor's Rust type.
    pub actor_type: String,
    /// Live actors (supervised ones count once across restarts).
    pub live: u64,
    /// Incarnations started (first starts and restarts).
    pub started: u64,
    /// Messages handled, counted when their mailbox slots are released: per batch (of up to
    /// 64) while the actor is busy, and always before it waits for more.
    pub handled: u64,
    /// Incarnations that ended in a failure (panic, error, kill, linked failure).
    pub failures: u64,
    /// Restarts by a supervisor.
    pub restarts: u64,
    /// Messages queued or in flight to actors of this type (summed at the snapshot; a busy
    /// actor's slots of up to one batch already handled count until they are released).
    pub mailbox_depth: u64,
    /// Sampled handler latencies per bucket of [`LATENCY_BUCKETS`] (+Inf last), not cumulative.
    pub latency_buckets: Vec<u64>,
    /// Sum of the sampled latencies, seconds.
    pub latency_sum_seconds: f64,
    /// Number of samples.
    pub latency_samples: u64,
}

/// Every [`TypeStats`] cell of one runtime.
#[derive(Default)]
pub(crate) struct TypeStatsTable {
    cells: Mutex<Vec<Arc<TypeStats>>>,
}

thread_local! {
    /// This worker's cells by actor type (a worker thread belongs to one runtime).
    static LOCAL: RefCell<HashMap<TypeId, Arc<TypeStats>>> = RefCell::new(HashMap::new());
}

impl TypeStatsTable {
    /// The cell of actor type `T` on `worker` (the calling thread).
    pub(crate) fn cell<T: 'static>(&self, worker: usize) -> Arc<TypeStats> {
        let id = TypeId::of::<T>();
        if let Some(c) = LOCAL.with(|l| l.borrow().get(&id).cloned())
            && c.worker == worker
        {
            return c;
        }
        let c = Arc::new(TypeStats::new(std::any::type_name::<T>(), worker));
        self.cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c.clone());
        LOCAL.with(|l| l.borrow_mut().insert(id, c.clone()));
        c
    }

    /// Sums the cells per type; `depth` gives the mailbox depth per type name.
    pub(crate) fn snapshot(&self, depth: &HashMap<&'static str, u64>) -> Vec<ActorTypeSnapshot> {
        let cells: Vec<Arc<TypeStats>> =
            self.cells.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut by: HashMap<&'static str, ActorTypeSnapshot> = HashMap::new();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for c in &cells {
            let s = by.entry(c.type_name).or_insert_with(|| ActorTypeSnapshot {
                actor_type: c.type_name.to_string(),
                latency_buckets: vec![0; LATENCY_BUCKETS.len() + 1],
                ..Default::default()
            });
            s.live += r(&c.live);
            s.started += r(&c.started);
            s.handled += r(&c.handled);
            s.failures += r(&c.failures);
            s.restarts += r(&c.restarts);
            for (i, b) in c.buckets.iter().enumerate() {
                s.latency_buckets[i] += r(b);
            }
            s.latency_sum_seconds += r(&c.sum_ns) as f64 / 1e9;
            s.latency_samples += r(&c.samples);
        }
        let mut v: Vec<_> = by
            .into_values()
            .map(|mut s| {
                s.mailbox_depth = depth.get(s.actor_type.as_str()).copied().unwrap_or(0);
                s
            })
            .collect();
        v.sort_by(|a, b| a.actor_type.cmp(&b.actor_type));
        v
    }
}

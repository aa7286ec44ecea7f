//! User metrics: [`MetricsRegistry`] hands out [`Counter`]s, [`Gauge`]s and [`Histogram`]s
//! (optionally with constant labels) that the runtime's `/metrics` renders next to its own
//! series. Handles are cheap clones of one shared cell; updating one is a relaxed atomic
//! operation. Owns the user's series only; rendering is `prometheus.rs`'s.
//!
//! ```
//! use percore::runtime::Runtime;
//!
//! let rt = Runtime::testing(1).unwrap();
//! let jobs = rt.handle().metrics_registry().counter("jobs_done_total", "Jobs finished.").unwrap();
//! jobs.inc();
//! assert!(rt.handle().prometheus().contains("jobs_done_total 1"));
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::prometheus::Exposition;

/// Why a metric could not be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricError {
    /// The name is not a valid Prometheus metric name.
    #[error(
        "{0:?} is not a valid metric name: use [a-zA-Z_:][a-zA-Z0-9_:]* (and no percore_ prefix, which the runtime's own series use)"
    )]
    BadName(String),
    /// A label name is not valid.
    #[error("{0:?} is not a valid label name: use [a-zA-Z_][a-zA-Z0-9_]* (not starting with __)")]
    BadLabel(String),
    /// The name and labels are registered already with another type or help text.
    #[error("metric {0:?} is registered already with another type, help or bucket set")]
    Conflict(String),
    /// Histogram buckets must be finite and increasing.
    #[error("histogram buckets must be finite and strictly increasing")]
    BadBuckets,
}

/// A monotonically increasing count.
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (an `f64`).
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    /// Adds `d` (may be negative).
    pub fn add(&self, d: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + d).to_bits())
            });
    }
    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct HistCell {
    bounds: Vec<f64>,
    /// Per bucket, not cumulative; the last is +Inf.
    counts: Vec<AtomicU64>,
    /// Sum in nano-units (value × 1e9, rounded), so that it is one atomic add.
    sum_nano: AtomicI64,
}

/// A distribution of observations in fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistCell>);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let c = &self.0;
        let i = c
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(c.bounds.len());
        c.counts[i].fetch_add(1, Ordering::Relaxed);
        c.sum_nano
            .fetch_add((v * 1e9).round() as i64, Ordering::Relaxed);
    }
    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

#[derive(Debug, Clone)]
enum Cell {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    /// Rendered label set (`a="x",b="y"`) → cell.
    series: BTreeMap<String, Cell>,
}

/// The user's metrics of one runtime.
#[derive(Default)]
pub struct MetricsRegistry {
    families: Mutex<BTreeMap<String, Family>>,
    breakers: Mutex<Vec<std::sync::Weak<super::breaker::Core>>>,
    collectors: Mutex<Vec<std::sync::Weak<CollectorFn>>>,
}

/// The function behind a [`Collector`].
pub type CollectorFn = dyn Fn(&mut Exposition) + Send + Sync;

/// Writes series of its own into `/metrics` at each scrape (on the admin thread); registered
/// with [`MetricsRegistry::add_collector`], rendered while the `Arc` lives.
pub type Collector = Arc<CollectorFn>;

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry").finish_non_exhaustive()
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
        && !n.starts_with("percore_")
}

fn valid_label(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !n.starts_with("__")
}

impl MetricsRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Family>> {
        // Registration inserts whole entries: a poisoned lock is still consistent.
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_or_add(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Cell,
        fits: impl Fn(&Cell) -> bool,
    ) -> Result<Cell, MetricError> {
        if !valid_name(name) {
            return Err(MetricError::BadName(name.to_string()));
        }
        if let Some((l, _)) = labels.iter().find(|(l, _)| !valid_label(l)) {
            return Err(MetricError::BadLabel(l.to_string()));
        }
        let key = Exposition::labels(labels);
        let mut f = self.lock();
        let fam = f.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            series: BTreeMap::new(),
        });
        if fam.kind != kind || fam.help != help {
            return Err(MetricError::Conflict(name.to_string()));
        }
        let cell = fam.series.entry(key).or_insert_with(make);
        if !fits(cell) {
            return Err(MetricError::Conflict(name.to_string()));
        }
        Ok(cell.clone())
    }

    /// A counter (name should end in `_total`); the same name and labels give the same cell.
    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricError> {
        self.counter_with(name, help, &[])
    }

    /// A counter with constant labels.
    pub fn counter_with(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricError> {
        match self.get_or_add(
            name,
            help,
            "counter",
            labels,
            || Cell::Counter(Counter(Arc::new(AtomicU64::new(0)))),
            |c| matches!(c, Cell::Counter(_)),
        )? {
            Cell::Counter(c) => Ok(c),
            _ => Err(MetricError::Conflict(name.to_string())),
        }
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricError> {
        self.gauge_with(name, help, &[])
    }

    /// A gauge with constant labels.
    pub fn gauge_with(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricError> {
        match self.get_or_add(
            name,
            help,
            "gauge",
            labels,
            || Cell::Gauge(Gauge(Arc::new(AtomicU64::new(0f64.to_bits())))),
            |c| matches!(c, Cell::Gauge(_)),
        )? {
            Cell::Gauge(g) => Ok(g),
            _ => Err(MetricError::Conflict(name.to_string())),
        }
    }

    /// A histogram with upper bounds `buckets` (finite, increasing; `+Inf` is implied).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricError> {
        self.histogram_with(name, help, buckets, &[])
    }

    /// A histogram with constant labels.
    pub fn histogram_with(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[(&str, &str)],
    ) -> Result<Histogram, MetricError> {
        if buckets.iter().any(|b| !b.is_finite()) || buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(MetricError::BadBuckets);
        }
        if labels.iter().any(|(l, _)| *l == "le") {
            return Err(MetricError::BadLabel("le".into()));
        }
        let bounds = buckets.to_vec();
        match self.get_or_add(
            name,
            help,
            "histogram",
            labels,
            || {
                Cell::Histogram(Histogram(Arc::new(HistCell {
                    counts: (0..=buckets.len()).map(|_| AtomicU64::new(0)).collect(),
                    bounds: buckets.to_vec(),
                    sum_nano: AtomicI64::new(0),
                })))
            },
            |c| matches!(c, Cell::Histogram(h) if h.0.bounds == bounds),
        )? {
            Cell::Histogram(h) => Ok(h),
            _ => Err(MetricError::Conflict(name.to_string())),
        }
    }

    /// A circuit breaker whose state and counts appear in `/metrics`
    /// (`percore_circuit_breaker_state`, `percore_circuit_breaker_calls_total`) for as long as
    /// a clone of it lives.
    pub fn circuit_breaker(
        &self,
        name: &str,
        cfg: super::breaker::BreakerConfig,
    ) -> super::breaker::CircuitBreaker {
        let b = super::breaker::CircuitBreaker::new(name, cfg);
        let mut v = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|w| w.strong_count() > 0);
        v.push(std::sync::Arc::downgrade(&b.0));
        b
    }

    /// Renders `c` at every scrape for as long as the `Arc` lives (layers use this for their
    /// figures: the accelerator's queues, say). It runs on the scraping thread: keep it to
    /// reading counters, never blocking on a worker.
    pub fn add_collector(&self, c: &Collector) {
        let mut v = self.collectors.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(c));
    }

    /// Renders the registered breakers.
    fn render_breakers(&self, out: &mut Exposition) {
        let live: Vec<_> = self
            .breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|w| w.upgrade())
            .map(super::breaker::CircuitBreaker)
            .collect();
        out.family(
            "percore_circuit_breaker_state",
            "gauge",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
        );
        for b in &live {
            out.sample(
                "percore_circuit_breaker_state",
                &[("breaker", b.name())],
                b.state().code() as f64,
            );
        }
        out.family(
            "percore_circuit_breaker_calls_total",
            "counter",
            "Calls through the breaker by outcome (rejected: refused while open).",
        );
        for b in &live {
            let (s, f, r) = b.counts();
            for (outcome, n) in [("success", s), ("failure", f), ("rejected", r)] {
                out.sample(
                    "percore_circuit_breaker_calls_total",
                    &[("breaker", b.name()), ("outcome", outcome)],
                    n as f64,
                );
            }
        }
    }

    /// Renders every user series (and the registered breakers) into `out`.
    pub(crate) fn render(&self, out: &mut Exposition) {
        self.render_breakers(out);
        let live: Vec<Collector> = self
            .collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|w| w.upgrade())
            .collect();
        for c in live {
            c(out);
        }
        let f = self.lock();
        for (name, fam) in f.iter() {
            out.family(name, fam.kind, &fam.help);
            for (labels, cell) in &fam.series {
                match cell {
                    Cell::Counter(c) => out.raw(name, labels, c.get() as f64),
                    Cell::Gauge(g) => out.raw(name, labels, g.get()),
                    Cell::Histogram(h) => {
                        let counts: Vec<u64> =
                            h.0.counts
                                .iter()
                                .map(|c| c.load(Ordering::Relaxed))
                                .collect();
                        let sum = h.0.sum_nano.load(Ordering::Relaxed) as f64 / 1e9;
                        out.histogram_raw(name, labels, &h.0.bounds, &counts, sum);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_conflicts_are_checked() {
        let r = MetricsRegistry::default();
        assert!(matches!(
            r.counter("9bad", "x"),
            Err(MetricError::BadName(_))
        ));
        assert!(matches!(
            r.counter("percore_mine_total", "x"),
            Err(MetricError::BadName(_))
        ));
        assert!(matches!(
            r.counter_with("ok_total", "x", &[("__x", "1")]),
            Err(MetricError::BadLabel(_))
        ));
        let a = r.counter_with("ok_total", "x", &[("k", "1")]).unwrap();
        let b = r.counter_with("ok_total", "x", &[("k", "1")]).unwrap();
        a.inc();
        b.add(2);
        assert_eq!(a.get(), 3, "same name and labels, same cell");
        assert!(matches!(
            r.gauge("ok_total", "x"),
            Err(MetricError::Conflict(_))
        ));
        assert!(matches!(
            r.histogram("h", "x", &[1.0, 1.0]),
            Err(MetricError::BadBuckets)
        ));
        let g = r.gauge("g", "x").unwrap();
        g.set(1.5);
        g.add(-0.5);
        assert_eq!(g.get(), 1.0);
        let h = r.histogram("h_seconds", "x", &[0.1, 1.0]).unwrap();
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        assert_eq!(h.count(), 3);
        let mut e = Exposition::default();
        r.render(&mut e);
        let text = e.finish();
        assert!(text.contains("ok_total{k=\"1\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_sum 5.55\n"), "{text}");
        assert!(text.contains("h_seconds_count 3\n"), "{text}");
    }
}

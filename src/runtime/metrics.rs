//! Per-worker counters (messages in/out, ring depth, tasks polled, busy time, parks), updated by
//! the owning thread with relaxed atomics and readable from anywhere, also as Prometheus text.
//! Owns only the counters; the worker loop decides when to update them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one mesh node: an app worker, or an external node (a dedicated I/O worker
/// or an accelerator worker) attached to the rings. Event-loop counters are [`EventLoopStats`](crate::runtime::io::EventLoopStats),
/// accelerator counters [`AccelWorkerStats`](crate::accelerator::AccelWorkerStats).
#[derive(Debug)]
pub struct NodeMetrics {
    /// Node index.
    pub node: usize,
    /// Envelopes (messages, spawns, wake-ups from other threads) received over rings/injector.
    pub messages_in: AtomicU64,
    /// Envelopes sent to other nodes.
    pub messages_out: AtomicU64,
    /// Envelopes waiting in this node's inbound rings when its latest turn began draining them
    /// (updated every turn, busy or idle).
    pub ring_depth: AtomicU64,
    /// Task polls.
    pub tasks_polled: AtomicU64,
    /// Tasks alive at the last sample.
    pub tasks_alive: AtomicU64,
    /// Nanoseconds spent doing work (not spinning or parked).
    pub busy_ns: AtomicU64,
    /// Times the worker went to sleep.
    pub parks: AtomicU64,
    /// When the worker's current scheduler turn began, in milliseconds since the process's
    /// metrics epoch plus one; 0 while it sleeps. Read by stall detection (`/ready`).
    pub turn_started_ms: AtomicU64,
}

/// The instant [`NodeMetrics::turn_started_ms`] counts from.
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// `t` as [`NodeMetrics::turn_started_ms`] stores it (never 0).
#[inline]
pub(crate) fn stamp_ms(t: std::time::Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_millis() as u64 + 1
}

/// A point-in-time copy of [`NodeMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Node index.
    pub node: usize,
    /// See [`NodeMetrics::messages_in`].
    pub messages_in: u64,
    /// See [`NodeMetrics::messages_out`].
    pub messages_out: u64,
    /// See [`NodeMetrics::ring_depth`].
    pub ring_depth: u64,
    /// See [`NodeMetrics::tasks_polled`].
    pub tasks_polled: u64,
    /// See [`NodeMetrics::tasks_alive`].
    pub tasks_alive: u64,
    /// See [`NodeMetrics::busy_ns`].
    pub busy_ns: u64,
    /// See [`NodeMetrics::parks`].
    pub parks: u64,
}

impl NodeMetrics {
    pub(crate) fn new(node: usize) -> Self {
        NodeMetrics {
            node,
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            ring_depth: AtomicU64::new(0),
            tasks_polled: AtomicU64::new(0),
            tasks_alive: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            parks: AtomicU64::new(0),
            turn_started_ms: AtomicU64::new(0),
        }
    }

    /// True when the node has been inside one turn for longer than `limit` (a task blocking
    /// its thread, or an endless poll).
    pub fn stalled(&self, limit: std::time::Duration) -> bool {
        let t = self.turn_started_ms.load(Ordering::Relaxed);
        let now = stamp_ms(std::time::Instant::now());
        t != 0 && now.saturating_sub(t) > limit.as_millis() as u64
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            node: self.node,
            messages_in: r(&self.messages_in),
            messages_out: r(&self.messages_out),
            ring_depth: r(&self.ring_depth),
            tasks_polled: r(&self.tasks_polled),
            tasks_alive: r(&self.tasks_alive),
            busy_ns: r(&self.busy_ns),
            parks: r(&self.parks),
        }
    }
}

/// Renders snapshots in the Prometheus text exposition format (version 0.0.4).
pub fn prometheus_text(snaps: &[MetricsSnapshot]) -> String {
    let mut out = String::new();
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&MetricsSnapshot) -> u64,
    );
    let series: [Series; 7] = [
        (
            "percore_messages_in_total",
            "counter",
            "Envelopes received by the worker.",
            |s| s.messages_in,
        ),
        (
            "percore_messages_out_total",
            "counter",
            "Envelopes sent by the worker.",
            |s| s.messages_out,
        ),
        (
            "percore_ring_depth",
            "gauge",
            "Envelopes waiting in the worker's inbound rings.",
            |s| s.ring_depth,
        ),
        (
            "percore_tasks_polled_total",
            "counter",
            "Task polls.",
            |s| s.tasks_polled,
        ),
        (
            "percore_tasks_alive",
            "gauge",
            "Live tasks on the worker.",
            |s| s.tasks_alive,
        ),
        (
            "percore_busy_seconds_total",
            "counter",
            "Time the worker spent working.",
            |s| s.busy_ns,
        ),
        (
            "percore_parks_total",
            "counter",
            "Times the worker went to sleep.",
            |s| s.parks,
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in snaps {
            let v = get(s);
            if name == "percore_busy_seconds_total" {
                let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", s.node, v as f64 / 1e9);
            } else {
                let _ = writeln!(out, "{name}{{worker=\"{}\"}} {v}", s.node);
            }
        }
    }
    out
}

/// The former name of [`NodeMetrics`].
#[deprecated(
    since = "0.1.0",
    note = "renamed NodeMetrics (it counts any mesh node, not only app workers)"
)]
pub type WorkerMetrics = NodeMetrics;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_format_has_help_type_and_labels() {
        let m = NodeMetrics::new(3);
        m.messages_in.store(42, Ordering::Relaxed);
        m.busy_ns.store(1_500_000_000, Ordering::Relaxed);
        let text = prometheus_text(&[m.snapshot()]);
        assert!(text.contains("# TYPE percore_messages_in_total counter"));
        assert!(text.contains("percore_messages_in_total{worker=\"3\"} 42"));
        assert!(text.contains("percore_busy_seconds_total{worker=\"3\"} 1.5"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (lhs, rhs) = line.rsplit_once(' ').expect("sample line has a value");
            assert!(lhs.starts_with("percore_"));
            rhs.parse::<f64>().expect("value parses as a float");
        }
    }
}

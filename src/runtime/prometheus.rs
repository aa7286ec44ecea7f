//! [`Exposition`]: a writer of the Prometheus text exposition format (version 0.0.4) — one
//! `# HELP` / `# TYPE` per family, escaped label values, histograms as cumulative `_bucket`
//! series with `_sum` and `_count` — and [`render`], the runtime's whole `/metrics` page:
//! workers, event loops, actor types, supervision, dead letters and user metrics. Owns the
//! format only; every figure comes from the layer that keeps it.

use std::fmt::Write as _;

use super::handle::Handle;
use super::supervision::SupervisorReport;

/// Text being written in the exposition format.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Formats a sample value as Prometheus parses it.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// Renders a label set: `a="x",b="y"` with `\`, `"` and newlines escaped.
    pub fn labels(labels: &[(&str, &str)]) -> String {
        let mut s = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push_str("=\"");
            for ch in v.chars() {
                match ch {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        s
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample with labels given as pairs.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let l = Self::labels(labels);
        self.raw(name, &l, v);
    }

    /// One sample with an already rendered label set.
    pub fn raw(&mut self, name: &str, labels: &str, v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {}", value(v));
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {}", value(v));
        }
    }

    /// A histogram's series from per-bucket (non-cumulative) `counts` (the last is `+Inf`).
    pub fn histogram_raw(
        &mut self,
        name: &str,
        labels: &str,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0u64;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            let le = bounds.get(i).map_or("+Inf".to_string(), |b| value(*b));
            let _ = writeln!(self.out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        self.raw(&format!("{name}_sum"), labels, sum);
        self.raw(&format!("{name}_count"), labels, cum as f64);
    }

    /// The text written.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A family of [`table`]: name, type, help, and how to measure a row.
type Series<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);

/// One family per entry of `series`, each with a sample per row: `labels(row)` names it,
/// `get(row)` measures it.
fn table<T>(
    e: &mut Exposition,
    rows: &[T],
    labels: impl Fn(&T) -> Vec<(&'static str, String)>,
    series: &[Series<T>],
) {
    let rendered: Vec<String> = rows
        .iter()
        .map(|r| {
            let l = labels(r);
            let pairs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Exposition::labels(&pairs)
        })
        .collect();
    for (name, kind, help, get) in series {
        e.family(name, kind, help);
        for (r, l) in rows.iter().zip(&rendered) {
            e.raw(name, l, get(r));
        }
    }
}

/// The runtime's `/metrics` page.
pub(crate) fn render(h: &Handle) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut e = Exposition::default();
    // Workers (and other mesh nodes), with the app workers' stall flags.
    let stalled = h.stalled_workers();
    let nodes: Vec<(super::MetricsSnapshot, bool)> = h
        .metrics()
        .into_iter()
        .map(|s| (s, stalled.get(s.node).copied().unwrap_or(false)))
        .collect();
    table(
        &mut e,
        &nodes,
        |(s, _)| vec![("worker", s.node.to_string())],
        &[
            (
                "percore_messages_in_total",
                "counter",
                "Envelopes received by the worker.",
                |(s, _)| s.messages_in as f64,
            ),
            (
                "percore_messages_out_total",
                "counter",
                "Envelopes sent by the worker.",
                |(s, _)| s.messages_out as f64,
            ),
            (
                "percore_ring_depth",
                "gauge",
                "Envelopes waiting in the worker's inbound rings.",
                |(s, _)| s.ring_depth as f64,
            ),
            (
                "percore_tasks_polled_total",
                "counter",
                "Task polls.",
                |(s, _)| s.tasks_polled as f64,
            ),
            (
                "percore_tasks_alive",
                "gauge",
                "Live tasks on the worker.",
                |(s, _)| s.tasks_alive as f64,
            ),
            (
                "percore_busy_seconds_total",
                "counter",
                "Time the worker spent working (rate() of it is the busy fraction).",
                |(s, _)| s.busy_ns as f64 / 1e9,
            ),
            (
                "percore_parks_total",
                "counter",
                "Times the worker went to sleep.",
                |(s, _)| s.parks as f64,
            ),
            (
                "percore_worker_stalled",
                "gauge",
                "1 while the worker has been inside one scheduler turn for more than a second.",
                |(_, st)| *st as u8 as f64,
            ),
        ],
    );
    // Event loops.
    let loops: Vec<(usize, std::sync::Arc<super::io::EventLoopStats>, String)> = (0..h
        .io_workers())
        .filter_map(|i| {
            let b = h
                .io_backend(i)
                .map_or("unknown".to_string(), |b| format!("{b:?}").to_lowercase());
            Some((i, h.io_stats(i)?, b))
        })
        .collect();
    table(
        &mut e,
        &loops,
        |(i, _, b)| vec![("loop", i.to_string()), ("backend", b.clone())],
        &[
            (
                "percore_io_turns_total",
                "counter",
                "Event-loop turns.",
                |(_, s, _)| s.turns.load(Relaxed) as f64,
            ),
            (
                "percore_io_completions_total",
                "counter",
                "I/O completions dispatched to handlers.",
                |(_, s, _)| s.completions.load(Relaxed) as f64,
            ),
            (
                "percore_io_syscalls_total",
                "counter",
                "Kernel entries (io_uring_enter or epoll_wait).",
                |(_, s, _)| s.syscalls.load(Relaxed) as f64,
            ),
            (
                "percore_io_handlers",
                "gauge",
                "Live I/O handlers (connections, listeners, files).",
                |(_, s, _)| s.handlers.load(Relaxed) as f64,
            ),
        ],
    );
    // Actor types.
    let types = h.actor_types();
    table(
        &mut e,
        &types,
        |t| vec![("actor_type", t.actor_type.clone())],
        &[
            ("percore_actors", "gauge", "Live actors of the type.", |t| {
                t.live as f64
            }),
            (
                "percore_actor_starts_total",
                "counter",
                "Incarnations started (first starts and restarts).",
                |t| t.started as f64,
            ),
            (
                "percore_actor_messages_handled_total",
                "counter",
                "Messages handled.",
                |t| t.handled as f64,
            ),
            (
                "percore_actor_failures_total",
                "counter",
                "Incarnations that ended in a failure (panic, error, kill, linked failure).",
                |t| t.failures as f64,
            ),
            (
                "percore_actor_restarts_total",
                "counter",
                "Restarts by a supervisor.",
                |t| t.restarts as f64,
            ),
            (
                "percore_actor_mailbox_depth",
                "gauge",
                "Messages queued or in flight to actors of the type.",
                |t| t.mailbox_depth as f64,
            ),
        ],
    );
    e.family(
        "percore_actor_handler_seconds",
        "histogram",
        "Handler latency, sampled (at most one message in 64 per actor type and worker).",
    );
    for t in &types {
        let l = Exposition::labels(&[("actor_type", &t.actor_type)]);
        e.histogram_raw(
            "percore_actor_handler_seconds",
            &l,
            &super::actor::LATENCY_BUCKETS,
            &t.latency_buckets,
            t.latency_sum_seconds,
        );
    }
    // Dead letters.
    let dl = h.dead_letters();
    table(
        &mut e,
        &dl.by_actor(),
        |(a, _)| vec![("actor", a.clone())],
        &[(
            "percore_dead_letters_total",
            "counter",
            "Messages the runtime dropped because their actor could not take them.",
            |(_, n)| *n as f64,
        )],
    );
    table(
        &mut e,
        &[dl.evicted()],
        |_| vec![],
        &[(
            "percore_dead_letters_evicted_total",
            "counter",
            "Dead-letter records dropped because the queue was full (still counted above).",
            |n| *n as f64,
        )],
    );
    // Supervision, by path in the tree.
    fn walk(r: &SupervisorReport, path: &str, out: &mut Vec<(String, SupervisorReport)>) {
        let p = if path.is_empty() {
            r.name.clone()
        } else {
            format!("{path}/{}", r.name)
        };
        for c in &r.children {
            if let Some(s) = &c.supervisor {
                walk(s, &p, out);
            }
        }
        let mut flat = r.clone();
        flat.children.clear();
        out.push((p, flat));
    }
    let mut sups = Vec::new();
    walk(&h.root_supervisor().report(), "", &mut sups);
    sups.sort_by(|a, b| a.0.cmp(&b.0));
    table(
        &mut e,
        &sups,
        |(p, _)| vec![("supervisor", p.clone())],
        &[
            (
                "percore_supervisor_restarts_total",
                "counter",
                "Restarts made by the supervisor.",
                |(_, r)| r.restarts as f64,
            ),
            (
                "percore_supervisor_escalations_total",
                "counter",
                "Times the supervisor exceeded its restart intensity.",
                |(_, r)| r.escalations as f64,
            ),
            (
                "percore_supervisor_stopped",
                "gauge",
                "1 once the supervisor has stopped for good.",
                |(_, r)| r.stopped as u8 as f64,
            ),
        ],
    );
    table(
        &mut e,
        &[h.readiness().ready],
        |_| vec![],
        &[(
            "percore_ready",
            "gauge",
            "1 when the runtime is ready (see /ready).",
            |r| *r as u8 as f64,
        )],
    );
    // User metrics, breakers and the layers' collectors.
    h.metrics_registry().render(&mut e);
    e.finish()
}

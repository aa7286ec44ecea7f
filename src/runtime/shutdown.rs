//! Graceful shutdown of a [`Runtime`]: stop intake, close the event loops, stop actors in
//! reverse start order (each draining its mailbox and running `stopping`), cancel the remaining
//! tasks on their own threads, join the threads, all within a deadline; the
//! [`ShutdownReport`] names whatever was still running. Owns the order of shutdown only.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::actor::{self, ActorProbe};
use super::envelope::Envelope;
use super::executor;
use super::mesh;
use super::rt::Runtime;
use super::time;

/// What [`Runtime::shutdown`] did.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    /// True when every actor stopped and every thread was joined within the deadline.
    pub clean: bool,
    /// Actors stopped gracefully.
    pub actors_stopped: usize,
    /// Actors still running at the deadline, as "name@workerN".
    pub still_running: Vec<String>,
    /// Tasks cancelled when the workers exited.
    pub tasks_cancelled: u64,
    /// Workers whose threads had not exited by the deadline (left detached).
    pub workers_not_joined: Vec<usize>,
    /// How long shutdown took.
    pub elapsed: Duration,
}

impl Runtime {
    /// Shuts down with the configured deadline (`shutdown_timeout`).
    pub fn shutdown(mut self) -> ShutdownReport {
        let d = self.inner.config.shutdown_timeout;
        self.shutdown_inner(d)
    }

    /// Shuts down with an explicit deadline.
    ///
    /// Stops intake (no new actors or tasks; new messages to stopping actors fail), then stops
    /// actors in reverse start order, each draining its mailbox first and running
    /// [`Actor::stopping`](super::Actor::stopping); then cancels remaining tasks and joins the worker threads. Whatever
    /// is still running at the deadline is named in the report and left behind.
    pub fn shutdown_with_deadline(mut self, deadline: Duration) -> ShutdownReport {
        self.shutdown_inner(deadline)
    }

    pub(super) fn shutdown_inner(&mut self, deadline: Duration) -> ShutdownReport {
        if self.done {
            return ShutdownReport {
                clean: true,
                ..Default::default()
            };
        }
        self.done = true;
        let start = Instant::now();
        let end = start + deadline;
        let mesh = &self.inner.mesh;
        mesh.accepting.store(false, Ordering::SeqCst);
        let mut report = ShutdownReport::default();
        // Network intake first: the I/O workers close their listeners and connections.
        let io_not_joined = self.stop_io_workers(end);
        let mesh = &self.inner.mesh;

        // Actors in reverse start order, in runs of consecutive actors on the same worker: each
        // run is stopped by its worker in order, and the next run starts when it is done.
        let actors = mesh.actors.newest_first();
        let mut i = 0;
        let mut timed_out = false;
        while i < actors.len() {
            let node = actors[i].node();
            let mut j = i;
            while j < actors.len() && actors[j].node() == node {
                j += 1;
            }
            let run: Vec<Arc<dyn ActorProbe>> = actors[i..j].to_vec();
            let to_stop = run.clone();
            mesh::send(
                mesh,
                node,
                Envelope::new(move || {
                    for a in to_stop {
                        a.begin_stop();
                    }
                }),
            );
            let left = end.saturating_duration_since(Instant::now());
            let ok = executor::run_until(time::timeout(left, async {
                for a in &run {
                    actor::wait_terminated(&**a).await;
                }
            }))
            .is_ok();
            if !ok {
                timed_out = true;
                for a in &actors[i..] {
                    if !a.is_terminated() {
                        report
                            .still_running
                            .push(format!("{}@worker{}", a.name(), a.node()));
                    }
                }
                break;
            }
            report.actors_stopped += run.len();
            i = j;
        }

        // Then the workers: cancel their tasks, exit, join.
        self.inner.stop.store(true, Ordering::SeqCst);
        for n in &mesh.nodes[..mesh.app_workers] {
            n.notify();
        }
        for (idx, t) in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                report.workers_not_joined.push(idx);
            }
        }
        report.workers_not_joined.extend(io_not_joined);
        report.tasks_cancelled = self.inner.tasks_cancelled.load(Ordering::Relaxed);
        report.elapsed = start.elapsed();
        report.clean = !timed_out && report.workers_not_joined.is_empty();
        if report.clean {
            tracing::info!(elapsed = ?report.elapsed, actors = report.actors_stopped, "percore runtime stopped");
        } else {
            tracing::warn!(
                elapsed = ?report.elapsed,
                still_running = ?report.still_running,
                workers_not_joined = ?report.workers_not_joined,
                "percore runtime shutdown hit its deadline"
            );
        }
        report
    }
}

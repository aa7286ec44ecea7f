//! Where a connection is served ([`AcceptMode::IncomingCpu`](super::AcceptMode::IncomingCpu)):
//! the connections each loop holds, the CPUs their packets arrive on (`SO_INCOMING_CPU`: on
//! loopback the client thread's CPU, behind a NIC its receive queue's), and the rule that turns
//! both into a loop. Owns the counts and the rule; the listener asks at accept, a connection
//! asks again on its ticks (`migrate.rs`).
//!
//! The rule, measured on 2 vCPUs (BENCHMARKS.md, "TCP echo"):
//! - Connections whose packets come from one CPU share a loop: one wake-up of a client thread
//!   then carries the answers of one loop, not two (HTTP with `wrk -t2`: 1.4x the requests of
//!   round robin).
//! - That loop is the one on the packets' CPU, unless other loops run on CPUs no client sends
//!   from: then the connections go there (the least loaded of them). A client thread is busy
//!   on its own CPU; a loop there waits behind it for CPU time slices (one client thread with
//!   64 connections: p99 5.7 ms on the shared CPU vs 0.5 ms on the free one). A CPU counts as
//!   a client's when at least an eighth of the server's connections come from it.
//! - No loop takes a new connection while it holds 8 more than the least-loaded loop of the
//!   same kind, so one busy client cannot pile everything on one core.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::runtime::Handle;

/// CPUs counted by index (a higher index, on a machine that large, is not counted: its
/// connections are placed as if their CPU were unknown).
const MAX_CPUS: usize = 1024;

/// A loop takes no new connection while it holds this many more than the least-loaded loop.
const CAP: usize = 8;

/// Connections per loop and per incoming CPU, and the placement rule.
pub(crate) struct Placement {
    loops: usize,
    /// The loop pinned to each CPU (indexed by CPU).
    loop_of_cpu: Vec<Option<usize>>,
    /// The CPU each loop is pinned to.
    cpu_of_loop: Vec<Option<usize>>,
    /// Connections open on each loop.
    loop_conns: Vec<AtomicUsize>,
    /// Open connections whose packets arrive on each CPU (as last seen).
    cpu_conns: Vec<AtomicUsize>,
    /// The sum of `cpu_conns`.
    counted: AtomicUsize,
}

impl Placement {
    /// The placement state of a server on `loops` event loops of `handle`'s runtime.
    pub(super) fn new(handle: &Handle, loops: usize) -> Placement {
        let cpu_of_loop: Vec<Option<usize>> = (0..loops).map(|i| handle.io_cpu(i)).collect();
        let mut loop_of_cpu = Vec::new();
        for (i, cpu) in cpu_of_loop.iter().enumerate() {
            if let Some(cpu) = *cpu {
                if loop_of_cpu.len() <= cpu {
                    loop_of_cpu.resize(cpu + 1, None);
                }
                loop_of_cpu[cpu].get_or_insert(i);
            }
        }
        Placement {
            loops,
            loop_of_cpu,
            cpu_of_loop,
            loop_conns: (0..loops).map(|_| AtomicUsize::new(0)).collect(),
            cpu_conns: (0..MAX_CPUS).map(|_| AtomicUsize::new(0)).collect(),
            counted: AtomicUsize::new(0),
        }
    }

    /// Connections open on loop `i`.
    pub(super) fn load(&self, i: usize) -> usize {
        self.loop_conns[i].load(Ordering::Relaxed)
    }

    /// One more connection on loop `i`.
    pub(super) fn enter_loop(&self, i: usize) {
        self.loop_conns[i].fetch_add(1, Ordering::Relaxed);
    }

    /// One connection fewer on loop `i`.
    pub(super) fn leave_loop(&self, i: usize) {
        self.loop_conns[i].fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a connection whose packets arrive on `cpu`; returns the CPU it is counted under
    /// (`None`: unknown or out of range, not counted). Uncount it with [`Placement::uncount`].
    pub(super) fn count(&self, cpu: Option<usize>) -> Option<usize> {
        let c = cpu.filter(|&c| c < MAX_CPUS)?;
        self.cpu_conns[c].fetch_add(1, Ordering::Relaxed);
        self.counted.fetch_add(1, Ordering::Relaxed);
        Some(c)
    }

    /// Takes back what [`Placement::count`] counted.
    pub(super) fn uncount(&self, counted: Option<usize>) {
        if let Some(c) = counted {
            self.cpu_conns[c].fetch_sub(1, Ordering::Relaxed);
            self.counted.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether loop `i` runs on a CPU that no client sends from (fewer than an eighth of the
    /// counted connections come from it).
    fn is_free(&self, i: usize) -> bool {
        let total = self.counted.load(Ordering::Relaxed);
        match self.cpu_of_loop[i] {
            Some(c) if c < MAX_CPUS => self.cpu_conns[c].load(Ordering::Relaxed) * 8 < total,
            _ => false,
        }
    }

    /// The loop for a connection whose packets arrive on `cpu` (already counted), now on
    /// `current` (`None`: a new connection). `None` when the rule has no opinion (the CPU is
    /// unknown or runs no loop): a new connection then goes round robin, a served one stays.
    pub(super) fn choose(&self, cpu: Option<usize>, current: Option<usize>) -> Option<usize> {
        let own = cpu.and_then(|c| self.loop_of_cpu.get(c).copied().flatten())?;
        // The least-loaded loop on a CPU no client runs on (other than the packets' own).
        let least_free = (0..self.loops)
            .filter(|&i| i != own && self.is_free(i))
            .min_by_key(|&i| self.load(i));
        if let Some(least) = least_free
            && !self.is_free(own)
        {
            // The packets' CPU runs a client: serve on a CPU that runs none.
            return Some(match current {
                Some(c)
                    if c != own && self.is_free(c) && self.load(c) <= self.load(least) + CAP =>
                {
                    c
                }
                _ => least,
            });
        }
        Some(match current {
            // A newcomer goes to its CPU's loop unless that one is already CAP ahead.
            None => {
                let least = (0..self.loops).min_by_key(|&i| self.load(i)).unwrap_or(own);
                if self.load(own) >= self.load(least) + CAP {
                    least
                } else {
                    own
                }
            }
            Some(c) if c == own => own,
            // A served connection follows its packets within the same cap.
            Some(c) => {
                if self.load(own) + 1 < self.load(c) + CAP {
                    own
                } else {
                    c
                }
            }
        })
    }
}

//! Join handles: [`JoinHandle`] (await a task's output, abort it, detach it) and its completing
//! side [`JoinSlot`], which reports `Cancelled` if dropped unused so no handle ever hangs. Owns
//! the shared result slot; knows nothing of executors.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::runtime::error::JoinError;

pub(super) struct JoinInner<T> {
    result: Option<Result<T, JoinError>>,
    waiter: Option<Waker>,
    pub(super) task_waker: Option<Waker>,
    done: bool,
}

pub(super) struct JoinState<T> {
    inner: Mutex<JoinInner<T>>,
    pub(super) aborted: AtomicBool,
}

impl<T> JoinState<T> {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, JoinInner<T>> {
        // Critical sections only move values; a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(super) fn complete(&self, r: Result<T, JoinError>) {
        let w = {
            let mut g = self.lock();
            if g.done {
                return;
            }
            g.done = true;
            g.result = Some(r);
            g.task_waker = None;
            g.waiter.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// An owned permission to await a spawned task's output.
///
/// Dropping the handle **cancels** the task (the future is dropped on its own worker at its next
/// turn); call [`JoinHandle::detach`] to let it run on unobserved. Awaiting gives
/// `Err(JoinError::Cancelled)` for an aborted task and `Err(JoinError::Panicked(msg))` for one that
/// panicked: a panic never takes the worker down.
pub struct JoinHandle<T> {
    state: Arc<JoinState<T>>,
    detached: bool,
}

impl<T> JoinHandle<T> {
    /// Cancels the task. Safe to call from any thread, any number of times.
    pub fn abort(&self) {
        self.state.aborted.store(true, Ordering::Release);
        let w = self.state.lock().task_waker.clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Lets the task run to completion without a handle.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// True once the task has finished (value, panic or cancellation).
    pub fn is_finished(&self) -> bool {
        self.state.lock().done
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if !self.detached && !self.state.lock().done {
            self.abort();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = self.state.lock();
        if let Some(r) = g.result.take() {
            return Poll::Ready(r);
        }
        if g.done {
            // Result already taken by an earlier poll.
            return Poll::Ready(Err(JoinError::Cancelled));
        }
        match &g.waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => g.waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The completing side of a join handle. Dropped without use, it completes the handle with
/// `Cancelled`, so an envelope lost at shutdown never leaves a join handle hanging.
pub(crate) struct JoinSlot<T>(pub(super) Option<Arc<JoinState<T>>>);

impl<T> Drop for JoinSlot<T> {
    fn drop(&mut self) {
        if let Some(st) = self.0.take() {
            st.complete(Err(JoinError::Cancelled));
        }
    }
}

/// A fresh join handle and its completing side.
pub(crate) fn join_pair<T>() -> (JoinHandle<T>, JoinSlot<T>) {
    let state = Arc::new(JoinState {
        inner: Mutex::new(JoinInner {
            result: None,
            waiter: None,
            task_waker: None,
            done: false,
        }),
        aborted: AtomicBool::new(false),
    });
    (
        JoinHandle {
            state: state.clone(),
            detached: false,
        },
        JoinSlot(Some(state)),
    )
}

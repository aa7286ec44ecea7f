//! Tasks: [`spawn_local`] / [`try_spawn_local`] on the current worker, the task body that
//! reports to a [`JoinHandle`] (abort, panics caught), and the handle itself (`join`).
//! Owns task bodies; placement and queues are the executor's.
//!
//! ```
//! use percore::runtime::{Runtime, spawn_local};
//!
//! let rt = Runtime::testing(1).unwrap();
//! let v = rt.block_on(async { spawn_local(async { 21 * 2 }).await.unwrap() });
//! assert_eq!(v, 42);
//! ```

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::task::Poll;

mod join;

pub use join::JoinHandle;
pub(crate) use join::{JoinSlot, join_pair};

use super::error::{JoinError, RuntimeError};
use super::executor::{panic_message, with_current};

/// Wraps a future into a task body that reports to `slot`, honours abort and catches panics.
#[allow(clippy::manual_async_fn)] // the explicit `+ 'static` bound documents what spawn needs
pub(crate) fn task_with<F>(fut: F, slot: JoinSlot<F::Output>) -> impl Future<Output = ()> + 'static
where
    F: Future + 'static,
    F::Output: 'static,
{
    async move {
        // `slot` completes the handle with Cancelled if this body is dropped before the end.
        let st = slot.0.clone().expect("a fresh JoinSlot holds its state");
        let mut registered = false;
        let res = {
            let mut fut = std::pin::pin!(fut);
            std::future::poll_fn(|cx| {
                if st.aborted.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                if !registered {
                    st.lock().task_waker = Some(cx.waker().clone());
                    registered = true;
                }
                match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                    Ok(Poll::Ready(v)) => Poll::Ready(Some(Ok(v))),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(p) => {
                        let msg = panic_message(&*p);
                        tracing::error!(panic = %msg, "task panicked");
                        Poll::Ready(Some(Err(JoinError::Panicked(msg))))
                    }
                }
            })
            .await
            // The inner future is dropped here, on the owner thread, before completion is
            // reported.
        };
        match res {
            Some(r) => st.complete(r),
            None => st.complete(Err(JoinError::Cancelled)),
        }
        drop(slot);
    }
}

/// Spawns a task on the current worker (or `block_on` thread). The future need not be `Send`.
///
/// # Panics
/// When called outside a percore worker or `block_on`; use [`try_spawn_local`] to get an error
/// instead.
pub fn spawn_local<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match try_spawn_local(fut) {
        Ok(h) => h,
        Err(_) => panic!(
            "percore::runtime::spawn_local called outside a percore worker or Runtime::block_on"
        ),
    }
}

/// Like [`spawn_local`], but returns [`RuntimeError::NotInRuntime`] outside a runtime thread.
pub fn try_spawn_local<F>(fut: F) -> Result<JoinHandle<F::Output>, RuntimeError>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (handle, slot) = join_pair();
    let mut body = Some(task_with(fut, slot));
    with_current(|e| {
        if let Some(b) = body.take() {
            e.spawn_raw(Box::pin(b));
        }
    })
    .ok_or(RuntimeError::NotInRuntime)?;
    Ok(handle)
}

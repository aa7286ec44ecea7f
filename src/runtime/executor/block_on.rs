//! `block_on`: drives one future to completion on the calling (outside) thread with a fresh
//! executor, parking between wake-ups with the [`Notifier`] handshake. Tasks spawned inside run
//! on this thread too. Owns nothing beyond that one call.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use super::{Executor, Notifier};

/// Drives `fut` to completion on the calling thread with a fresh executor (used by
/// `Runtime::block_on`). Tasks spawned with [`spawn_local`](crate::runtime::spawn_local) inside run on this thread too.
pub(crate) fn run_until<F: Future>(fut: F) -> F::Output {
    let notifier = Notifier::for_current_thread();
    let exec = Executor::new(notifier.clone(), None, None);
    let _guard = exec.enter();
    let main_woken = Arc::new(MainWake {
        flag: AtomicBool::new(true),
        notifier: notifier.clone(),
    });
    let waker = Waker::from(main_woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if main_woken.flag.swap(false, Ordering::AcqRel)
            && let Poll::Ready(v) = fut.as_mut().poll(&mut cx)
        {
            exec.cancel_all();
            return v;
        }
        let mut did = exec.drain_remote();
        did += exec.fire_timers(Instant::now());
        did += exec.run_ready(256);
        if did > 0 || main_woken.flag.load(Ordering::Acquire) {
            continue;
        }
        notifier.set_sleeping(true);
        if exec.shared.has_remote() || exec.has_ready() || main_woken.flag.load(Ordering::SeqCst) {
            notifier.set_sleeping(false);
            continue;
        }
        match exec.next_deadline() {
            Some(d) => {
                let now = Instant::now();
                if d > now {
                    std::thread::park_timeout(d - now);
                }
            }
            None => std::thread::park(),
        }
        notifier.set_sleeping(false);
    }
}

struct MainWake {
    flag: AtomicBool,
    notifier: Arc<Notifier>,
}

impl Wake for MainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        crate::runtime::mesh::flush_current();
        self.flag.store(true, Ordering::SeqCst);
        self.notifier.notify();
    }
}

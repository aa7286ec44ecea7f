//! [`OwnerCell`]: the one unsafe type of a mailbox's owner side. A `RefCell` that may be shared
//! across threads because only the thread running the owning executor ever touches its
//! contents (checked at run time on every access). Owns nothing else.

use std::cell::RefCell;

use crate::runtime::executor::current_exec_id;

/// A cell touched only by the thread whose executor owns it.
///
/// Invariant: `cell` is accessed only through [`OwnerCell::with`], called only by
/// `Mailbox::local` with the mailbox's immutable `owner`, and `with` checks that the calling
/// thread's current executor is that owner. Executor ids are unique per process and an executor
/// never moves between threads, so at most one thread ever touches `cell` (dropping it from
/// another thread is fine because `T: Send`).
pub(super) struct OwnerCell<T> {
    cell: RefCell<T>,
}

// SAFETY: the only shared-reference access path to `cell` is `with`, which runs only on the
// owning executor's thread (checked at run time); `T: Send` makes moving/dropping the value on
// another thread sound. So `&OwnerCell<T>` may be shared across threads.
unsafe impl<T: Send> Sync for OwnerCell<T> {}

impl<T> OwnerCell<T> {
    #[inline]
    pub(super) fn with<R>(&self, owner: u64, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if current_exec_id() != owner {
            return None;
        }
        let mut g = self.cell.try_borrow_mut().ok()?;
        Some(f(&mut g))
    }

    /// A cell owned by the executor that will call [`OwnerCell::with`].
    pub(super) fn new(value: T) -> Self {
        OwnerCell {
            cell: RefCell::new(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::executor::run_until;

    /// Only the owning executor's thread gets in; another thread, or a re-entrant call, gets
    /// `None` (small enough for Miri).
    #[test]
    fn only_the_owner_thread_touches_the_value() {
        let cell = std::sync::Arc::new(OwnerCell::new(vec![1u32]));
        let c2 = cell.clone();
        run_until(async move {
            let me = current_exec_id();
            assert_ne!(me, 0, "block_on runs an executor");
            assert_eq!(c2.with(me, |v| v.push(2)), Some(()));
            // Re-entrant access is refused, not aliased.
            assert_eq!(c2.with(me, |_| c2.with(me, |_| ())), Some(None));
            let other = c2.clone();
            let seen = std::thread::spawn(move || other.with(me, |v| v.len()))
                .join()
                .expect("the other thread finishes");
            assert_eq!(seen, None, "another thread is refused");
            assert_eq!(c2.with(me, |v| v.clone()), Some(vec![1, 2]));
        });
    }
}

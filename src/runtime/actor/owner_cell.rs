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

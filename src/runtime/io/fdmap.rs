//! [`FdMap`]: per-file-descriptor state of an event loop, in a `Vec` indexed by the descriptor.
//! Owns nothing but the map: it must not open, close or otherwise act on the descriptors it is
//! keyed by (the backends do that), nor hold anything of the handlers. The kernel hands out the lowest free descriptor, so descriptors are
//! dense small integers and a slot lookup is an index, where a `HashMap` spent ~2 % of an echo
//! server's time hashing (perf).

use std::os::fd::RawFd;

/// A map from file descriptor to `V`, stored densely by descriptor number.
pub(crate) struct FdMap<V> {
    slots: Vec<Option<V>>,
}

impl<V> Default for FdMap<V> {
    fn default() -> Self {
        FdMap { slots: Vec::new() }
    }
}

impl<V> FdMap<V> {
    fn index(fd: &RawFd) -> Option<usize> {
        usize::try_from(*fd).ok()
    }

    /// The state of `fd`, if any.
    #[inline]
    pub(crate) fn get(&self, fd: &RawFd) -> Option<&V> {
        self.slots.get(Self::index(fd)?)?.as_ref()
    }

    /// The state of `fd`, mutably, if any.
    #[inline]
    pub(crate) fn get_mut(&mut self, fd: &RawFd) -> Option<&mut V> {
        self.slots.get_mut(Self::index(fd)?)?.as_mut()
    }

    /// The state of `fd`, made with `make` if absent.
    ///
    /// # Panics
    /// On a negative descriptor (never handed out by the kernel; an invariant of the callers,
    /// which pass descriptors of open sockets).
    pub(crate) fn get_or_insert_with(&mut self, fd: RawFd, make: impl FnOnce() -> V) -> &mut V {
        let i = Self::index(&fd).expect("file descriptors of open sockets are not negative");
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].get_or_insert_with(make)
    }

    /// Removes and returns the state of `fd`.
    pub(crate) fn remove(&mut self, fd: &RawFd) -> Option<V> {
        self.slots.get_mut(Self::index(fd)?)?.take()
    }

    /// The descriptors with state, ascending.
    pub(crate) fn fds(&self) -> Vec<RawFd> {
        self.fds_where(|_| true)
    }

    /// The descriptors whose state satisfies `keep`, ascending.
    pub(crate) fn fds_where(&self, keep: impl Fn(&V) -> bool) -> Vec<RawFd> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].as_ref().is_some_and(&keep))
            .filter_map(|i| RawFd::try_from(i).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_and_list() {
        let mut m = FdMap::default();
        assert!(m.get(&5).is_none() && m.get(&-1).is_none());
        *m.get_or_insert_with(5, || 1) += 10;
        assert_eq!(*m.get_or_insert_with(5, || 99), 11, "existing entry kept");
        m.get_or_insert_with(2, || 7);
        assert_eq!(m.fds(), vec![2, 5]);
        assert_eq!(m.fds_where(|v| *v > 10), vec![5]);
        *m.get_mut(&2).unwrap() = 8;
        assert_eq!(m.remove(&2), Some(8));
        assert_eq!(m.remove(&2), None);
        assert_eq!(m.fds(), vec![5]);
        assert!(m.remove(&-3).is_none() && m.get_mut(&1000).is_none());
    }
}

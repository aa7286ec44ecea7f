//! TEMPORARY shim with the agreed API; replaced by the real ring at merge.
#![allow(missing_docs, dead_code)]
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
pub struct Full<T>(pub T);
impl<T> std::fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Full")
    }
}
struct Inner<T> {
    q: Mutex<VecDeque<T>>,
    cap: usize,
}
pub struct Producer<T> {
    i: Arc<Inner<T>>,
    pending: Vec<T>,
}
pub struct Consumer<T> {
    i: Arc<Inner<T>>,
}
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let i = Arc::new(Inner {
        q: Mutex::new(VecDeque::new()),
        cap: capacity.next_power_of_two().max(2),
    });
    (
        Producer {
            i: i.clone(),
            pending: Vec::new(),
        },
        Consumer { i },
    )
}
impl<T> Producer<T> {
    pub fn push(&mut self, v: T) -> Result<(), Full<T>> {
        if self.i.q.lock().unwrap().len() + self.pending.len() >= self.i.cap {
            return Err(Full(v));
        }
        self.pending.push(v);
        Ok(())
    }
    pub fn publish(&mut self) -> usize {
        let n = self.pending.len();
        self.i.q.lock().unwrap().extend(self.pending.drain(..));
        n
    }
    pub fn push_now(&mut self, v: T) -> Result<(), Full<T>> {
        self.push(v)?;
        self.publish();
        Ok(())
    }
    pub fn unpublished(&self) -> usize {
        self.pending.len()
    }
    pub fn capacity(&self) -> usize {
        self.i.cap
    }
}
impl<T> Consumer<T> {
    pub fn pop(&mut self) -> Option<T> {
        self.i.q.lock().unwrap().pop_front()
    }
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        while n < max {
            match self.pop() {
                Some(v) => {
                    f(v);
                    n += 1
                }
                None => break,
            }
        }
        n
    }
    pub fn len(&self) -> usize {
        self.i.q.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

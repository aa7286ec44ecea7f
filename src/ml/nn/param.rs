//! [`Param`]: a trainable tensor and its accumulated gradient. Owns nothing else.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ml::element::Element;
use crate::ml::tensor::Tensor;

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A trainable tensor with the gradient accumulated for it since the last
/// [`zero_grad`](Param::zero_grad).
#[derive(Debug)]
pub struct Param<T: Element = f32> {
    /// The current value.
    pub value: Tensor<T>,
    /// The accumulated gradient (same shape).
    pub grad: Tensor<T>,
    /// A process-unique identity, linking this parameter to its leaf on a tape.
    uid: u64,
}

impl<T: Element> Clone for Param<T> {
    /// A copy with a new identity (a parameter of its own).
    fn clone(&self) -> Self {
        Param {
            value: self.value.clone(),
            grad: self.grad.clone(),
            uid: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl<T: Element> Param<T> {
    /// A parameter holding `value`, with a zero gradient.
    pub fn new(value: Tensor<T>) -> Self {
        Param {
            grad: Tensor::zeros(value.shape()),
            value,
            uid: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.data_mut().fill(T::zero());
    }

    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }
}

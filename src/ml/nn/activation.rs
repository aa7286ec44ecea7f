//! Parameter-free activation layers: [`Relu`], [`Gelu`] (exact), [`Tanh`], [`Sigmoid`].

use super::{Module, Param};
use crate::ml::autograd::Var;
use crate::ml::element::Element;
use crate::ml::error::Result;

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $method:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl<T: Element> Module<T> for $name {
            fn forward<'t>(&mut self, x: Var<'t, T>, _train: bool) -> Result<Var<'t, T>> {
                Ok(x.$method())
            }

            fn params_mut(&mut self) -> Vec<&mut Param<T>> {
                Vec::new()
            }
        }
    };
}

activation!(
    /// `max(x, 0)`.
    Relu,
    relu
);
activation!(
    /// `x * Phi(x)`, exact (PyTorch's `GELU()` default).
    Gelu,
    gelu
);
activation!(
    /// `tanh(x)`.
    Tanh,
    tanh
);
activation!(
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    sigmoid
);

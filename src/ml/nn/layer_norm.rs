//! [`LayerNorm`]: normalisation over the last dimension with a learned scale and shift
//! (PyTorch's `nn.LayerNorm(d)`, `eps = 1e-5`, biased variance).

use super::{Module, Param};
use crate::ml::autograd::Var;
use crate::ml::element::Element;
use crate::ml::error::Result;
use crate::ml::tensor::Tensor;

/// Layer normalisation of rows of width `d`.
#[derive(Debug, Clone)]
pub struct LayerNorm<T: Element = f32> {
    /// Scale, `d`, ones at first.
    pub gamma: Param<T>,
    /// Shift, `d`, zeros at first.
    pub beta: Param<T>,
    /// Added to the variance.
    pub eps: f64,
}

impl<T: Element> LayerNorm<T> {
    /// Rows of width `d`, `eps = 1e-5`.
    pub fn new(d: usize) -> Self {
        LayerNorm {
            gamma: Param::new(Tensor::full(&[d], T::one())),
            beta: Param::new(Tensor::zeros(&[d])),
            eps: 1e-5,
        }
    }
}

impl<T: Element> Module<T> for LayerNorm<T> {
    fn forward<'t>(&mut self, x: Var<'t, T>, _train: bool) -> Result<Var<'t, T>> {
        let tape = x.tape();
        let (g, b) = (tape.param(&self.gamma), tape.param(&self.beta));
        x.layer_norm(g, b, self.eps)
    }

    fn params_mut(&mut self) -> Vec<&mut Param<T>> {
        vec![&mut self.gamma, &mut self.beta]
    }
}

//! Layers: the [`Module`] trait and the building blocks of a network ([`Linear`], the
//! activations, [`Dropout`], [`LayerNorm`], [`Sequential`]), each a few parameters and a
//! forward pass recorded on a [`Tape`](super::Tape). Must not touch optimizers or data.
//!
//! ```
//! use percore::ml::nn::{Linear, Module, Relu, Sequential};
//! use percore::ml::{Init, Rng, Tape, Tensor};
//!
//! let mut rng = Rng::seed(0);
//! let mut mlp = Sequential::<f32>::new()
//!     .push(Linear::new(64, 128, Init::KaimingUniform, &mut rng))
//!     .push(Relu)
//!     .push(Linear::new(128, 10, Init::TorchDefault, &mut rng));
//! let tape = Tape::new();
//! let x = tape.leaf(Tensor::zeros(&[32, 64]));
//! let logits = mlp.forward(x, true).unwrap();
//! let loss = logits.softmax_cross_entropy(&[3; 32], 0.0).unwrap();
//! let grads = tape.backward(loss).unwrap();
//! grads.accumulate(&mut mlp.params_mut()).unwrap();
//! assert_eq!(mlp.params_mut().len(), 4);
//! ```

mod activation;
mod dropout;
mod layer_norm;
mod linear;
mod param;
mod sequential;

pub use activation::{Gelu, Relu, Sigmoid, Tanh};
pub use dropout::Dropout;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use param::Param;
pub use sequential::Sequential;

use super::autograd::Var;
use super::element::Element;
use super::error::Result;

/// A layer or a network: a forward pass and its parameters.
pub trait Module<T: Element = f32> {
    /// Records the forward pass of `x` on `x`'s tape. `train` turns on training-only
    /// behaviour (dropout).
    ///
    /// # Errors
    /// When `x`'s shape does not fit the layer.
    fn forward<'t>(&mut self, x: Var<'t, T>, train: bool) -> Result<Var<'t, T>>;

    /// The parameters, in a fixed order (optimizer state is kept in this order).
    fn params_mut(&mut self) -> Vec<&mut Param<T>>;

    /// Sets every parameter's gradient to zero.
    fn zero_grad(&mut self) {
        for p in self.params_mut() {
            p.zero_grad();
        }
    }
}

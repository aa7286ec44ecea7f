//! [`Linear`]: `y = x W^T + b`, with `W` stored `out x in` as PyTorch stores it.

use super::{Module, Param};
use crate::ml::autograd::Var;
use crate::ml::element::Element;
use crate::ml::error::{Result, shape};
use crate::ml::init::{Init, Rng};
use crate::ml::tensor::Tensor;

/// A fully connected layer.
#[derive(Debug, Clone)]
pub struct Linear<T: Element = f32> {
    /// `out x in`.
    pub weight: Param<T>,
    /// `out`.
    pub bias: Param<T>,
}

impl<T: Element> Linear<T> {
    /// `inputs -> outputs`, the weight drawn by `init`, the bias by PyTorch's default rule
    /// (`U(-1/sqrt(in), 1/sqrt(in))`; zeros when `init` is [`Init::Zeros`]).
    pub fn new(inputs: usize, outputs: usize, init: Init, rng: &mut Rng) -> Self {
        let w = init.weights(outputs, inputs, rng);
        let b = if init == Init::Zeros {
            Tensor::zeros(&[outputs])
        } else {
            let bound = 1.0 / (inputs.max(1) as f64).sqrt();
            Tensor::new(
                &[outputs],
                (0..outputs)
                    .map(|_| T::of(rng.uniform_in(-bound, bound)))
                    .collect(),
            )
            .expect("outputs elements")
        };
        Linear {
            weight: Param::new(w),
            bias: Param::new(b),
        }
    }

    /// A layer with the given weight (`out x in`) and bias (`out`).
    ///
    /// # Errors
    /// When the shapes do not match.
    pub fn from_tensors(weight: Tensor<T>, bias: Tensor<T>) -> Result<Self> {
        let (o, _) = weight.dims2("Linear")?;
        if bias.shape() != [o] {
            return Err(shape(
                "Linear",
                format!("bias {:?} for {o} outputs", bias.shape()),
            ));
        }
        Ok(Linear {
            weight: Param::new(weight),
            bias: Param::new(bias),
        })
    }
}

impl<T: Element> Module<T> for Linear<T> {
    fn forward<'t>(&mut self, x: Var<'t, T>, _train: bool) -> Result<Var<'t, T>> {
        let tape = x.tape();
        let w = tape.param(&self.weight);
        let b = tape.param(&self.bias);
        x.matmul_t(w, false, true)?.add_row(b)
    }

    fn params_mut(&mut self) -> Vec<&mut Param<T>> {
        vec![&mut self.weight, &mut self.bias]
    }
}

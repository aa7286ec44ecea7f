//! [`Dropout`]: zeroes each element with probability `p` while training and scales the rest
//! by `1 / (1 - p)` (inverted dropout); the identity in evaluation.

use super::{Module, Param};
use crate::ml::autograd::Var;
use crate::ml::element::Element;
use crate::ml::error::{Result, invalid};
use crate::ml::init::Rng;

/// Inverted dropout with its own seeded mask stream.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f64,
    rng: Rng,
}

impl Dropout {
    /// Drops with probability `p` (in `[0, 1)`), masks drawn from `seed`'s stream.
    ///
    /// # Errors
    /// When `p` is outside `[0, 1)`.
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid("dropout p", format!("{p} is outside [0, 1)")));
        }
        Ok(Dropout {
            p,
            rng: Rng::seed(seed),
        })
    }
}

impl<T: Element> Module<T> for Dropout {
    fn forward<'t>(&mut self, x: Var<'t, T>, train: bool) -> Result<Var<'t, T>> {
        if !train || self.p == 0.0 {
            return Ok(x);
        }
        let n: usize = x.shape().iter().product();
        let keep: Vec<bool> = (0..n).map(|_| !self.rng.bernoulli(self.p)).collect();
        x.dropout_mask(self.p, &keep)
    }

    fn params_mut(&mut self) -> Vec<&mut Param<T>> {
        Vec::new()
    }
}

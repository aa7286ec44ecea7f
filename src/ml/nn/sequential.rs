//! [`Sequential`]: layers applied one after another.

use super::{Module, Param};
use crate::ml::autograd::Var;
use crate::ml::element::Element;
use crate::ml::error::Result;

/// A chain of layers; its parameters are the layers' in order.
#[derive(Default)]
pub struct Sequential<T: Element = f32> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Element> Sequential<T> {
    /// No layers yet.
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Appends `layer`.
    pub fn push(mut self, layer: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True with no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<T: Element> Module<T> for Sequential<T> {
    fn forward<'t>(&mut self, x: Var<'t, T>, train: bool) -> Result<Var<'t, T>> {
        let mut x = x;
        for l in &mut self.layers {
            x = l.forward(x, train)?;
        }
        Ok(x)
    }

    fn params_mut(&mut self) -> Vec<&mut Param<T>> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.params_mut())
            .collect()
    }
}

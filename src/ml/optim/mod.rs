//! Optimizers with PyTorch's update rules and defaults ([`Sgd`], [`Adam`] (also AdamW),
//! [`RmsProp`], [`Adagrad`]), parameter groups with their own learning rate and weight
//! decay, gradient clipping ([`clip_grad_norm`], [`clip_grad_value`]) and state that saves and
//! restores bit for bit ([`OptimState`]). Must not touch models or tapes: an optimizer sees
//! a list of [`Param`]s, always in the same order.
//!
//! ```
//! use percore::ml::nn::Param;
//! use percore::ml::optim::{Optimizer, Sgd, SgdConfig};
//! use percore::ml::Tensor;
//!
//! let mut p = Param::new(Tensor::new(&[2], vec![1.0f32, -1.0]).unwrap());
//! p.grad = Tensor::new(&[2], vec![0.5, 0.5]).unwrap();
//! let mut sgd = Sgd::new(SgdConfig { lr: 0.1, ..SgdConfig::default() });
//! sgd.step(&mut [&mut p]).unwrap();
//! assert_eq!(p.value.data(), [0.95, -1.05]);
//! ```

mod adagrad;
mod adam;
mod clip;
mod rmsprop;
mod sgd;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};

use serde::{Deserialize, Serialize};

use super::element::Element;
use super::error::{MlError, Result};
use super::nn::Param;
use super::tensor::Tensor;

/// Parameters that share a learning rate and a weight decay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamGroup {
    /// Indices into the parameter list given to [`Optimizer::step`]; `None`: every parameter
    /// that no other group names.
    pub params: Option<Vec<usize>>,
    /// Learning rate (schedules change it).
    pub lr: f64,
    /// Weight decay (L2 for SGD/Adam/RMSprop/Adagrad, decoupled for AdamW).
    pub weight_decay: f64,
}

/// An optimizer over a fixed list of parameters.
pub trait Optimizer<T: Element = f32> {
    /// Updates every parameter from its gradient. Parameters are matched to their state by
    /// position: pass the same list, in the same order, every step.
    ///
    /// # Errors
    /// When a parameter's shape changed since the state was made or loaded.
    fn step(&mut self, params: &mut [&mut Param<T>]) -> Result<()>;

    /// The parameter groups.
    fn groups(&self) -> &[ParamGroup];

    /// The parameter groups, to change learning rates.
    fn groups_mut(&mut self) -> &mut [ParamGroup];

    /// Everything a later [`load`](Optimizer::load) needs to continue bit for bit.
    fn save(&self) -> OptimState<T>;

    /// Continues from a saved state.
    ///
    /// # Errors
    /// When the state was saved by another kind of optimizer.
    fn load(&mut self, state: OptimState<T>) -> Result<()>;
}

/// The state of one parameter: its step count and buffers (momentum, moments, sums).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "T: Element")]
pub struct Slot<T: Element> {
    /// Updates applied.
    pub step: u64,
    /// The optimizer's buffers for this parameter, in a fixed order per optimizer.
    pub bufs: Vec<Tensor<T>>,
}

/// A saved optimizer: its kind, groups and per-parameter slots. `serde` round-trips it exactly
/// (JSON writes the shortest decimal that reads back as the same `f32`/`f64`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "T: Element")]
pub struct OptimState<T: Element> {
    /// `"sgd"`, `"adam"`, `"adamw"`, `"rmsprop"` or `"adagrad"`.
    pub kind: String,
    /// The groups with their current learning rates.
    pub groups: Vec<ParamGroup>,
    /// Per parameter, by position; `None` before its first update.
    pub slots: Vec<Option<Slot<T>>>,
}

/// The group that parameter `i` belongs to.
pub(crate) fn group_of(groups: &[ParamGroup], i: usize) -> Option<usize> {
    groups
        .iter()
        .position(|g| g.params.as_ref().is_some_and(|v| v.contains(&i)))
        .or_else(|| groups.iter().position(|g| g.params.is_none()))
}

/// The shared bookkeeping of every optimizer: groups and slots.
#[derive(Clone, Debug)]
pub(crate) struct Core<T: Element> {
    pub(crate) kind: &'static str,
    pub(crate) groups: Vec<ParamGroup>,
    pub(crate) slots: Vec<Option<Slot<T>>>,
}

impl<T: Element> Core<T> {
    pub(crate) fn new(kind: &'static str, lr: f64, weight_decay: f64) -> Self {
        Core {
            kind,
            groups: vec![ParamGroup {
                params: None,
                lr,
                weight_decay,
            }],
            slots: Vec::new(),
        }
    }

    /// Runs `f(group, slot, param)` for every parameter that has a group, making its slot
    /// with `bufs` zero buffers on first use.
    pub(crate) fn each(
        &mut self,
        params: &mut [&mut Param<T>],
        bufs: usize,
        mut f: impl FnMut(&ParamGroup, &mut Slot<T>, &mut Param<T>),
    ) -> Result<()> {
        if self.slots.len() < params.len() {
            self.slots.resize(params.len(), None);
        }
        for (i, p) in params.iter_mut().enumerate() {
            let Some(g) = group_of(&self.groups, i) else {
                continue;
            };
            p.value.same_shape(&p.grad, "optimizer step")?;
            let slot = self.slots[i].get_or_insert_with(|| Slot {
                step: 0,
                bufs: (0..bufs).map(|_| Tensor::zeros(p.value.shape())).collect(),
            });
            if slot.bufs.iter().any(|b| b.shape() != p.value.shape()) {
                return Err(MlError::State(format!(
                    "parameter {i} has shape {:?}; its state was made for {:?}",
                    p.value.shape(),
                    slot.bufs[0].shape()
                )));
            }
            f(&self.groups[g], slot, p);
        }
        Ok(())
    }

    pub(crate) fn save(&self) -> OptimState<T> {
        OptimState {
            kind: self.kind.to_string(),
            groups: self.groups.clone(),
            slots: self.slots.clone(),
        }
    }

    pub(crate) fn load(&mut self, s: OptimState<T>) -> Result<()> {
        if s.kind != self.kind {
            return Err(MlError::State(format!(
                "saved by {}, loaded into {}",
                s.kind, self.kind
            )));
        }
        self.groups = s.groups;
        self.slots = s.slots;
        Ok(())
    }
}

/// Implements the [`Optimizer`] methods other than `step` through a `core` field.
macro_rules! core_methods {
    () => {
        fn groups(&self) -> &[crate::ml::optim::ParamGroup] {
            &self.core.groups
        }
        fn groups_mut(&mut self) -> &mut [crate::ml::optim::ParamGroup] {
            &mut self.core.groups
        }
        fn save(&self) -> crate::ml::optim::OptimState<T> {
            self.core.save()
        }
        fn load(&mut self, s: crate::ml::optim::OptimState<T>) -> crate::ml::error::Result<()> {
            self.core.load(s)
        }
    };
}
pub(crate) use core_methods;

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod testing {
    //! Runs an optimizer for a few steps on a fixed parameter with fixed gradients, for
    //! comparing against values computed from the published update rules.
    use super::*;

    /// Parameter `[0.5, -1.5, 2.0]`, gradients `g(step)` per step; returns the parameter after
    /// each step, as `f64`.
    pub(crate) fn run(opt: &mut dyn Optimizer<f32>, steps: usize) -> Vec<Vec<f64>> {
        let mut p = Param::new(Tensor::new(&[3], vec![0.5f32, -1.5, 2.0]).unwrap());
        let mut out = Vec::new();
        for s in 0..steps {
            p.grad = Tensor::new(&[3], grad(s)).unwrap();
            opt.step(&mut [&mut p]).unwrap();
            out.push(p.value.data().iter().map(|&x| x as f64).collect());
        }
        out
    }

    /// The gradient at step `s` (0-based): varies in sign and size so that momentum and
    /// second moments matter.
    pub(crate) fn grad(s: usize) -> Vec<f32> {
        let s = s as f32;
        vec![0.1 + 0.2 * s, -0.3 + 0.15 * s, 1.0 - 0.5 * s]
    }

    /// Every value within `rel` of the expected one (relative, floor 1e-3 absolute scale).
    pub(crate) fn assert_close(got: &[Vec<f64>], want: &[[f64; 3]], rel: f64) {
        assert_eq!(got.len(), want.len());
        for (s, (g, w)) in got.iter().zip(want).enumerate() {
            for j in 0..3 {
                let d = (g[j] - w[j]).abs() / w[j].abs().max(1e-3);
                assert!(d < rel, "step {s} element {j}: got {} want {}", g[j], w[j]);
            }
        }
    }
}

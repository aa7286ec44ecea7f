//! [`Sgd`]: stochastic gradient descent with momentum, dampening, Nesterov and weight decay,
//! PyTorch's `torch.optim.SGD` rule:
//! `g += wd p`; `b = g` on the first step, else `b = mu b + (1 - dampening) g`;
//! `g = g + mu b` (Nesterov) or `g = b`; `p -= lr g`.

use super::{Core, Optimizer, core_methods};
use crate::ml::element::Element;
use crate::ml::error::{Result, invalid};
use crate::ml::nn::Param;

/// SGD settings; the defaults are PyTorch's (its `lr` has none: 1e-3 here).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor `mu` (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum's gradient term.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// Stochastic gradient descent.
#[derive(Clone, Debug)]
pub struct Sgd<T: Element = f32> {
    cfg: SgdConfig,
    core: Core<T>,
}

impl<T: Element> Sgd<T> {
    /// One group with `cfg`'s learning rate and weight decay.
    pub fn new(cfg: SgdConfig) -> Self {
        Sgd {
            core: Core::new("sgd", cfg.lr, cfg.weight_decay),
            cfg,
        }
    }

    /// Checks the settings as PyTorch does.
    ///
    /// # Errors
    /// Nesterov without momentum or with dampening; a negative rate or factor.
    pub fn checked(cfg: SgdConfig) -> Result<Self> {
        if cfg.lr < 0.0 || cfg.momentum < 0.0 || cfg.weight_decay < 0.0 {
            return Err(invalid("SGD", "lr, momentum and weight_decay must be >= 0"));
        }
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(invalid(
                "SGD",
                "Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        Ok(Self::new(cfg))
    }
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn step(&mut self, params: &mut [&mut Param<T>]) -> Result<()> {
        let c = self.cfg;
        let (mu, damp) = (T::of(c.momentum), T::of(1.0 - c.dampening));
        self.core.each(params, 1, |g, slot, p| {
            let (lr, wd) = (T::of(g.lr), T::of(g.weight_decay));
            let first = slot.step == 0;
            slot.step += 1;
            let buf = slot.bufs[0].data_mut();
            let grad = p.grad.data();
            for (j, x) in p.value.data_mut().iter_mut().enumerate() {
                let mut d = grad[j];
                if c.weight_decay != 0.0 {
                    d += wd * *x;
                }
                if c.momentum != 0.0 {
                    buf[j] = if first { d } else { mu * buf[j] + damp * d };
                    d = if c.nesterov { d + mu * buf[j] } else { buf[j] };
                }
                *x -= lr * d;
            }
        })
    }

    core_methods!();
}

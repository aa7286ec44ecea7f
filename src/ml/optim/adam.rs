//! [`Adam`] and AdamW, PyTorch's `torch.optim.Adam` / `AdamW` rule (single-tensor path):
//! `g += wd p` (Adam) or `p *= 1 - lr wd` (AdamW, decoupled); `m = lerp(m, g, 1 - b1)`;
//! `v = b2 v + (1 - b2) g^2`; with `bc_i = 1 - b_i^t`: `denom = sqrt(v) / sqrt(bc2) + eps`
//! (AMSGrad: the running maximum of `v`), `p -= (lr / bc1) m / denom`.

use super::{Core, Optimizer, core_methods};
use crate::ml::element::Element;
use crate::ml::error::Result;
use crate::ml::nn::Param;

/// Adam settings; `Default` is PyTorch's `Adam`, [`AdamConfig::adamw`] its `AdamW`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// `beta1` (0.9).
    pub beta1: f64,
    /// `beta2` (0.999).
    pub beta2: f64,
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// Weight decay (Adam 0, AdamW 1e-2).
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW).
    pub decoupled: bool,
    /// Keep the maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch's `AdamW` defaults (weight decay 1e-2, decoupled).
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled: true,
            ..Self::default()
        }
    }
}

/// Adam / AdamW.
#[derive(Clone, Debug)]
pub struct Adam<T: Element = f32> {
    cfg: AdamConfig,
    core: Core<T>,
}

impl<T: Element> Adam<T> {
    /// One group with `cfg`'s learning rate and weight decay.
    pub fn new(cfg: AdamConfig) -> Self {
        let kind = if cfg.decoupled { "adamw" } else { "adam" };
        Adam {
            core: Core::new(kind, cfg.lr, cfg.weight_decay),
            cfg,
        }
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
    fn step(&mut self, params: &mut [&mut Param<T>]) -> Result<()> {
        let c = self.cfg;
        let bufs = if c.amsgrad { 3 } else { 2 };
        let (w1, b2, w2, eps) = (
            T::of(1.0 - c.beta1),
            T::of(c.beta2),
            T::of(1.0 - c.beta2),
            T::of(c.eps),
        );
        self.core.each(params, bufs, |g, slot, p| {
            slot.step += 1;
            let t = slot.step as f64;
            // As PyTorch: the bias corrections and step size in f64, then used as the
            // element type.
            let bc1 = 1.0 - c.beta1.powf(t);
            let bc2_sqrt = T::of((1.0 - c.beta2.powf(t)).sqrt());
            let step_size = T::of(g.lr / bc1);
            let wd = T::of(g.weight_decay);
            let decay = T::of(1.0 - g.lr * g.weight_decay);
            let (m, rest) = slot.bufs.split_at_mut(1);
            let (v, vmax) = rest.split_at_mut(1);
            let (m, v) = (m[0].data_mut(), v[0].data_mut());
            let mut vmax = vmax.first_mut().map(|t| t.data_mut());
            let grad = p.grad.data();
            for (j, x) in p.value.data_mut().iter_mut().enumerate() {
                let mut d = grad[j];
                if g.weight_decay != 0.0 {
                    if c.decoupled {
                        *x *= decay;
                    } else {
                        d += wd * *x;
                    }
                }
                m[j] += w1 * (d - m[j]); // lerp with weight 1 - beta1 (< 0.5)
                v[j] = v[j] * b2 + w2 * d * d;
                let second = match vmax.as_deref_mut() {
                    Some(vm) => {
                        vm[j] = vm[j].max(v[j]);
                        vm[j]
                    }
                    None => v[j],
                };
                let denom = second.sqrt() / bc2_sqrt + eps;
                *x -= step_size * (m[j] / denom);
            }
        })
    }

    core_methods!();
}

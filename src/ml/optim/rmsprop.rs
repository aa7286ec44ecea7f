//! [`RmsProp`], PyTorch's `torch.optim.RMSprop` rule: `g += wd p`;
//! `s = alpha s + (1 - alpha) g^2`; centered: `a = lerp(a, g, 1 - alpha)`,
//! `avg = sqrt(s - a^2) + eps`, else `avg = sqrt(s) + eps`; with momentum `b = mu b + g / avg`,
//! `p -= lr b`, else `p -= lr g / avg`.

use super::{Core, Optimizer, core_methods};
use crate::ml::element::Element;
use crate::ml::error::Result;
use crate::ml::nn::Param;

/// RMSprop settings; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate (1e-2).
    pub lr: f64,
    /// Smoothing constant (0.99).
    pub alpha: f64,
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// Momentum (0).
    pub momentum: f64,
    /// Normalise by the estimated variance instead of the raw second moment.
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

/// RMSprop.
#[derive(Clone, Debug)]
pub struct RmsProp<T: Element = f32> {
    cfg: RmsPropConfig,
    core: Core<T>,
}

impl<T: Element> RmsProp<T> {
    /// One group with `cfg`'s learning rate and weight decay.
    pub fn new(cfg: RmsPropConfig) -> Self {
        RmsProp {
            core: Core::new("rmsprop", cfg.lr, cfg.weight_decay),
            cfg,
        }
    }
}

impl<T: Element> Optimizer<T> for RmsProp<T> {
    fn step(&mut self, params: &mut [&mut Param<T>]) -> Result<()> {
        let c = self.cfg;
        let (alpha, w, eps, mu) = (
            T::of(c.alpha),
            T::of(1.0 - c.alpha),
            T::of(c.eps),
            T::of(c.momentum),
        );
        // Buffers: square average, momentum buffer, gradient average (centered).
        self.core.each(params, 3, |g, slot, p| {
            slot.step += 1;
            let (lr, wd) = (T::of(g.lr), T::of(g.weight_decay));
            let [s, b, a] = &mut slot.bufs[..] else {
                unreachable!("three buffers made by `each`")
            };
            let (s, b, a) = (s.data_mut(), b.data_mut(), a.data_mut());
            let grad = p.grad.data();
            for (j, x) in p.value.data_mut().iter_mut().enumerate() {
                let mut d = grad[j];
                if g.weight_decay != 0.0 {
                    d += wd * *x;
                }
                s[j] = s[j] * alpha + w * d * d;
                let avg = if c.centered {
                    a[j] += w * (d - a[j]);
                    (s[j] - a[j] * a[j]).sqrt() + eps
                } else {
                    s[j].sqrt() + eps
                };
                if c.momentum > 0.0 {
                    b[j] = b[j] * mu + d / avg;
                    *x -= lr * b[j];
                } else {
                    *x -= lr * (d / avg);
                }
            }
        })
    }

    core_methods!();
}

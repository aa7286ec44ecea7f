//! Gradient clipping, PyTorch's `clip_grad_norm_` (2-norm over all gradients together, scaled
//! by `max_norm / (norm + 1e-6)` when that is below 1) and `clip_grad_value_`.

use crate::ml::element::Element;
use crate::ml::error::{Result, invalid};
use crate::ml::nn::Param;

/// Scales all gradients so that their joint 2-norm is at most `max_norm`; returns the norm
/// before clipping.
///
/// # Errors
/// When `max_norm` is negative or not finite.
pub fn clip_grad_norm<T: Element>(params: &mut [&mut Param<T>], max_norm: f64) -> Result<f64> {
    if !(max_norm >= 0.0 && max_norm.is_finite()) {
        return Err(invalid(
            "max_norm",
            format!("{max_norm}: needs a finite value >= 0"),
        ));
    }
    let total = params
        .iter()
        .flat_map(|p| p.grad.data().iter())
        .map(|g| g.f64() * g.f64())
        .sum::<f64>()
        .sqrt();
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    if coef < 1.0 {
        let c = T::of(coef);
        for p in params.iter_mut() {
            for g in p.grad.data_mut() {
                *g *= c;
            }
        }
    }
    Ok(total)
}

/// Clamps every gradient element to `[-clip, clip]`.
///
/// # Errors
/// When `clip` is negative or not finite.
pub fn clip_grad_value<T: Element>(params: &mut [&mut Param<T>], clip: f64) -> Result<()> {
    if !(clip >= 0.0 && clip.is_finite()) {
        return Err(invalid(
            "clip value",
            format!("{clip}: needs a finite value >= 0"),
        ));
    }
    let c = T::of(clip);
    for p in params.iter_mut() {
        for g in p.grad.data_mut() {
            *g = g.max(-c).min(c);
        }
    }
    Ok(())
}

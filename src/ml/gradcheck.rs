//! Finite-difference gradient checks in `f64`: the analytic gradient from a [`Tape`] against
//! central differences `(f(x + h) - f(x - h)) / 2h`, element by element, for inputs
//! ([`check_fn`]) and for a layer's parameters ([`check_module`]). Used by the tests of every
//! operation and layer, and by anyone writing a new one. Owns no state.

use super::autograd::{Tape, Var};
use super::error::Result;
use super::init::Rng;
use super::nn::Module;
use super::tensor::Tensor;

/// Step of the central differences.
pub const STEP: f64 = 1e-6;

/// The largest disagreement between an analytic and a numeric derivative, relative to
/// `max(|analytic|, |numeric|, 1e-4)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Worst relative error.
    pub max_rel: f64,
    /// Derivatives compared.
    pub checked: usize,
}

fn rel(a: f64, n: f64) -> f64 {
    (a - n).abs() / a.abs().max(n.abs()).max(1e-4)
}

/// Checks the gradient of the scalar `f(inputs)` with respect to every input element.
///
/// # Errors
/// Whatever `f` returns.
pub fn check_fn<F>(inputs: &[Tensor<f64>], f: F) -> Result<Report>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Result<Var<'t, f64>>,
{
    let eval = |xs: &[Tensor<f64>]| -> Result<f64> {
        let tape = Tape::new();
        let vars: Vec<_> = xs.iter().map(|x| tape.leaf(x.clone())).collect();
        f(&tape, &vars)?.value().item()
    };
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&tape, &vars)?;
    let grads = tape.backward(out)?;
    let mut rep = Report {
        max_rel: 0.0,
        checked: 0,
    };
    let mut xs = inputs.to_vec();
    for (i, v) in vars.iter().enumerate() {
        let analytic = grads
            .of(*v)
            .cloned()
            .unwrap_or_else(|| Tensor::zeros(inputs[i].shape()));
        for j in 0..inputs[i].len() {
            let x0 = xs[i].data()[j];
            xs[i].data_mut()[j] = x0 + STEP;
            let up = eval(&xs)?;
            xs[i].data_mut()[j] = x0 - STEP;
            let down = eval(&xs)?;
            xs[i].data_mut()[j] = x0;
            let numeric = (up - down) / (2.0 * STEP);
            rep.max_rel = rep.max_rel.max(rel(analytic.data()[j], numeric));
            rep.checked += 1;
        }
    }
    Ok(rep)
}

/// Checks a layer: the loss is `sum(forward(x) * r)` with a fixed random `r` (so every output
/// matters with its own weight), differentiated with respect to `x` and every parameter.
/// `train` is passed to the forward pass (a dropout layer must draw the same mask each
/// time: give it `train = false` or a fresh clone per evaluation).
///
/// # Errors
/// Whatever the layer returns.
pub fn check_module<M: Module<f64>>(
    module: &mut M,
    x: &Tensor<f64>,
    train: bool,
    seed: u64,
) -> Result<Report> {
    let shape_out = {
        let tape = Tape::new();
        module.forward(tape.leaf(x.clone()), train)?.shape()
    };
    let mut rng = Rng::seed(seed);
    let n: usize = shape_out.iter().product();
    let r = Tensor::new(
        &shape_out,
        (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect(),
    )?;
    let loss_of = |m: &mut M, x: &Tensor<f64>| -> Result<f64> {
        let tape = Tape::new();
        let y = m.forward(tape.leaf(x.clone()), train)?;
        y.mul(tape.leaf(r.clone()))?.sum().value().item()
    };
    // Analytic.
    module.zero_grad();
    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    let y = module.forward(xv, train)?;
    let loss = y.mul(tape.leaf(r.clone()))?.sum();
    let grads = tape.backward(loss)?;
    grads.accumulate(&mut module.params_mut())?;
    let gx = grads
        .of(xv)
        .cloned()
        .unwrap_or_else(|| Tensor::zeros(x.shape()));
    let gp: Vec<Tensor<f64>> = module.params_mut().iter().map(|p| p.grad.clone()).collect();
    let mut rep = Report {
        max_rel: 0.0,
        checked: 0,
    };
    let mut xs = x.clone();
    for j in 0..x.len() {
        let x0 = xs.data()[j];
        xs.data_mut()[j] = x0 + STEP;
        let up = loss_of(module, &xs)?;
        xs.data_mut()[j] = x0 - STEP;
        let down = loss_of(module, &xs)?;
        xs.data_mut()[j] = x0;
        rep.max_rel = rep
            .max_rel
            .max(rel(gx.data()[j], (up - down) / (2.0 * STEP)));
        rep.checked += 1;
    }
    for (pi, g) in gp.iter().enumerate() {
        for j in 0..g.len() {
            let set = |m: &mut M, v: f64| m.params_mut()[pi].value.data_mut()[j] = v;
            let p0 = module.params_mut()[pi].value.data()[j];
            set(module, p0 + STEP);
            let up = loss_of(module, x)?;
            set(module, p0 - STEP);
            let down = loss_of(module, x)?;
            set(module, p0);
            rep.max_rel = rep
                .max_rel
                .max(rel(g.data()[j], (up - down) / (2.0 * STEP)));
            rep.checked += 1;
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    //! Every differentiable operation and every layer against central differences in `f64`.
    use super::*;
    use crate::ml::nn::{Dropout, Gelu, LayerNorm, Linear, Relu, Sequential, Sigmoid, Tanh};
    use crate::ml::{Init, Tape};

    const TOL: f64 = 1e-6;

    fn rand(shape: &[usize], seed: u64) -> Tensor<f64> {
        let mut r = Rng::seed(seed);
        let n = shape.iter().product();
        // Away from 0 by at least 0.05, so ReLU's kink is never within a step.
        let v = (0..n)
            .map(|_| {
                let x = r.uniform_in(-2.0, 2.0);
                if x.abs() < 0.05 { x + 0.1 } else { x }
            })
            .collect();
        Tensor::new(shape, v).unwrap()
    }

    fn ok(rep: Report, what: &str) {
        assert!(rep.checked > 0, "{what}: nothing checked");
        assert!(rep.max_rel < TOL, "{what}: {rep:?}");
    }

    /// A fixed weighting, so that `sum(y * r)` sees every output element differently.
    fn weigh<'t>(t: &'t Tape<f64>, y: Var<'t, f64>, seed: u64) -> Result<Var<'t, f64>> {
        let r = rand(&y.shape(), seed);
        Ok(y.mul(t.leaf(r))?.sum())
    }

    #[test]
    fn elementwise_and_matrix_ops() {
        let (a, b) = (rand(&[3, 4], 1), rand(&[3, 4], 2));
        ok(
            check_fn(&[a.clone(), b.clone()], |t, v| weigh(t, v[0].add(v[1])?, 9)).unwrap(),
            "add",
        );
        ok(
            check_fn(&[a.clone(), b.clone()], |t, v| weigh(t, v[0].sub(v[1])?, 9)).unwrap(),
            "sub",
        );
        ok(
            check_fn(&[a.clone(), b.clone()], |t, v| weigh(t, v[0].mul(v[1])?, 9)).unwrap(),
            "mul",
        );
        ok(
            check_fn(std::slice::from_ref(&a), |t, v| {
                weigh(t, v[0].scale(-1.7), 9)
            })
            .unwrap(),
            "scale",
        );
        ok(
            check_fn(&[a.clone(), rand(&[4], 3)], |t, v| {
                weigh(t, v[0].add_row(v[1])?, 9)
            })
            .unwrap(),
            "add_row",
        );
        ok(
            check_fn(std::slice::from_ref(&a), |_, v| Ok(v[0].sum())).unwrap(),
            "sum",
        );
        ok(
            check_fn(std::slice::from_ref(&a), |_, v| Ok(v[0].mean())).unwrap(),
            "mean",
        );
        // Every transpose combination of a 3x4 by 4x5 product.
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let x = if ta {
                rand(&[4, 3], 4)
            } else {
                rand(&[3, 4], 4)
            };
            let w = if tb {
                rand(&[5, 4], 5)
            } else {
                rand(&[4, 5], 5)
            };
            ok(
                check_fn(&[x, w], |t, v| weigh(t, v[0].matmul_t(v[1], ta, tb)?, 9)).unwrap(),
                &format!("matmul ta={ta} tb={tb}"),
            );
        }
    }

    #[test]
    fn activations_dropout_and_layer_norm() {
        let a = rand(&[3, 5], 11);
        ok(
            check_fn(std::slice::from_ref(&a), |t, v| weigh(t, v[0].relu(), 9)).unwrap(),
            "relu",
        );
        ok(
            check_fn(std::slice::from_ref(&a), |t, v| weigh(t, v[0].gelu(), 9)).unwrap(),
            "gelu",
        );
        ok(
            check_fn(std::slice::from_ref(&a), |t, v| weigh(t, v[0].tanh(), 9)).unwrap(),
            "tanh",
        );
        ok(
            check_fn(std::slice::from_ref(&a), |t, v| weigh(t, v[0].sigmoid(), 9)).unwrap(),
            "sigmoid",
        );
        let keep: Vec<bool> = (0..15).map(|i| i % 3 != 0).collect();
        ok(
            check_fn(std::slice::from_ref(&a), |t, v| {
                weigh(t, v[0].dropout_mask(0.3, &keep)?, 9)
            })
            .unwrap(),
            "dropout",
        );
        ok(
            check_fn(&[a.clone(), rand(&[5], 12), rand(&[5], 13)], |t, v| {
                weigh(t, v[0].layer_norm(v[1], v[2], 1e-5)?, 9)
            })
            .unwrap(),
            "layer_norm",
        );
    }

    #[test]
    fn losses() {
        let logits = rand(&[4, 3], 21);
        for smoothing in [0.0, 0.1] {
            ok(
                check_fn(std::slice::from_ref(&logits), |_, v| {
                    v[0].softmax_cross_entropy(&[0, 2, 1, 2], smoothing)
                })
                .unwrap(),
                &format!("softmax_cross_entropy smoothing {smoothing}"),
            );
        }
        let target = rand(&[4, 3], 22);
        ok(
            check_fn(std::slice::from_ref(&logits), |_, v| v[0].mse(&target)).unwrap(),
            "mse",
        );
        let probs = target.map(|x| (x + 2.0) / 4.0); // in [0, 1]
        ok(
            check_fn(std::slice::from_ref(&logits), |_, v| {
                v[0].bce_with_logits(&probs)
            })
            .unwrap(),
            "bce_with_logits",
        );
    }

    #[test]
    fn layers() {
        let mut rng = Rng::seed(31);
        let x = rand(&[4, 6], 32);
        let mut lin = Linear::<f64>::new(6, 3, Init::XavierUniform { gain: 1.0 }, &mut rng);
        ok(check_module(&mut lin, &x, true, 1).unwrap(), "Linear");
        ok(check_module(&mut Relu, &x, true, 1).unwrap(), "ReLU");
        ok(check_module(&mut Gelu, &x, true, 1).unwrap(), "GELU");
        ok(check_module(&mut Tanh, &x, true, 1).unwrap(), "Tanh");
        ok(check_module(&mut Sigmoid, &x, true, 1).unwrap(), "Sigmoid");
        let mut ln = LayerNorm::<f64>::new(6);
        // Non-trivial scale and shift, so their gradients flow through something.
        ln.gamma.value = rand(&[6], 33);
        ln.beta.value = rand(&[6], 34);
        ok(check_module(&mut ln, &x, true, 1).unwrap(), "LayerNorm");
        let mut drop = Dropout::new(0.5, 7).unwrap();
        ok(
            check_module(&mut drop, &x, false, 1).unwrap(),
            "Dropout (eval)",
        );
        let mut mlp = Sequential::<f64>::new()
            .push(Linear::new(6, 8, Init::KaimingUniform, &mut rng))
            .push(LayerNorm::new(8))
            .push(Gelu)
            .push(Linear::new(8, 3, Init::TorchDefault, &mut rng))
            .push(Tanh);
        ok(
            check_module(&mut mlp, &x, true, 1).unwrap(),
            "Sequential MLP",
        );
    }

    #[test]
    fn a_wrong_derivative_is_caught() {
        // The check itself can fail: compare a function against a deliberately different one
        // by feeding the same analytic graph a perturbed numeric function.
        let a = rand(&[2, 2], 41);
        let tape = Tape::new();
        let v = tape.leaf(a.clone());
        let g = tape.backward(v.tanh().sum()).unwrap();
        let analytic = g.of(v).unwrap().clone();
        // d/dx sigmoid(x) is not d/dx tanh(x): the relative error is far above TOL.
        let numeric = a.map(|x| {
            let s = |x: f64| 1.0 / (1.0 + (-x).exp());
            (s(x + STEP) - s(x - STEP)) / (2.0 * STEP)
        });
        let worst = analytic
            .data()
            .iter()
            .zip(numeric.data())
            .map(|(&p, &q)| rel(p, q))
            .fold(0.0, f64::max);
        assert!(worst > 1e-2, "{worst}");
    }

    #[test]
    fn dropout_in_training_drops_about_p_and_keeps_the_mean() {
        let mut d = Dropout::new(0.25, 5).unwrap();
        let tape = Tape::<f64>::new();
        let x = tape.leaf(Tensor::full(&[100, 100], 1.0));
        let y = <Dropout as crate::ml::nn::Module<f64>>::forward(&mut d, x, true)
            .unwrap()
            .value();
        let zeros = y.data().iter().filter(|&&v| v == 0.0).count() as f64 / 1e4;
        assert!((zeros - 0.25).abs() < 0.02, "{zeros}");
        assert!((y.sum() / 1e4 - 1.0).abs() < 0.03);
        assert!(
            y.data()
                .iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-12)
        );
    }
}

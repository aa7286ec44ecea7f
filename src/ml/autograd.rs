//! Reverse-mode automatic differentiation on a tape: every operation on a [`Var`] computes its
//! value at once and appends a node to its [`Tape`]; [`Tape::backward`] walks the nodes in
//! reverse and returns the [`Gradients`]. A tape serves one forward/backward pass and is then
//! dropped. Owns the differentiable operations and their derivatives; layers, losses and
//! optimizers are built on it and live elsewhere.
//!
//! ```
//! use percore::ml::{Tape, Tensor};
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.leaf(Tensor::new(&[1, 2], vec![1.0, -2.0]).unwrap());
//! let w = tape.leaf(Tensor::new(&[2, 1], vec![3.0, 4.0]).unwrap());
//! let y = x.matmul(w).unwrap().tanh().sum(); // tanh(1*3 - 2*4) = tanh(-5)
//! let g = tape.backward(y).unwrap();
//! let d = 1.0 - (-5.0f64).tanh().powi(2);
//! assert!((g.of(w).unwrap().data()[0] - d * 1.0).abs() < 1e-12); // dy/dw0 = d * x0
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use super::element::Element;
use super::error::{Result, invalid, shape};
use super::nn::Param;
use super::tensor::Tensor;

/// One recorded operation: its value and how to send a gradient to its inputs.
struct Node<T: Element> {
    value: Tensor<T>,
    op: Op<T>,
    /// The [`Param`] this leaf was made from.
    param: Option<u64>,
}

enum Op<T: Element> {
    Leaf,
    Add(usize, usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Scale(usize, T),
    /// `a [n, m] + b [m]` (a bias per column).
    AddRow(usize, usize),
    MatMul {
        a: usize,
        b: usize,
        ta: bool,
        tb: bool,
    },
    Relu(usize),
    Gelu(usize),
    Tanh(usize),
    Sigmoid(usize),
    /// `a * mask`, the mask holding 0 or `1 / (1 - p)`.
    Dropout {
        a: usize,
        mask: Vec<T>,
    },
    LayerNorm {
        x: usize,
        gamma: usize,
        beta: usize,
        xhat: Vec<T>,
        rstd: Vec<T>,
    },
    Sum(usize),
    Mean(usize),
    /// Softmax cross-entropy: `probs` of the logits and `q`, the (smoothed) target distribution.
    SoftmaxCe {
        logits: usize,
        probs: Vec<T>,
        q: Vec<T>,
        rows: usize,
    },
    Mse {
        a: usize,
        diff: Vec<T>,
    },
    /// Binary cross-entropy with logits: `sigmoid(x) - t` per element.
    BceLogits {
        a: usize,
        resid: Vec<T>,
    },
}

/// The record of one forward pass. Values live here; [`Var`]s are indices into it.
pub struct Tape<T: Element = f32> {
    nodes: RefCell<Vec<Node<T>>>,
}

impl<T: Element> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A value on a tape. Cheap to copy; operations on it record onto the same tape.
#[derive(Clone, Copy)]
pub struct Var<'t, T: Element = f32> {
    tape: &'t Tape<T>,
    id: usize,
}

impl<T: Element> std::fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var#{}", self.id)
    }
}

/// The gradient of one scalar with respect to every value on the tape that it depends on.
pub struct Gradients<T: Element = f32> {
    grads: Vec<Option<Tensor<T>>>,
    params: HashMap<u64, usize>,
}

impl<T: Element> Tape<T> {
    /// An empty tape.
    pub fn new() -> Self {
        Tape {
            nodes: RefCell::new(Vec::new()),
        }
    }

    /// Number of recorded values.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True before anything is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An input (a leaf): its gradient is reported but nothing flows past it.
    pub fn leaf(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push(value, Op::Leaf, None)
    }

    /// A model parameter as a leaf; [`Gradients::accumulate`] adds its gradient to
    /// [`Param::grad`].
    pub fn param(&self, p: &Param<T>) -> Var<'_, T> {
        self.push(p.value.clone(), Op::Leaf, Some(p.uid()))
    }

    fn push(&self, value: Tensor<T>, op: Op<T>, param: Option<u64>) -> Var<'_, T> {
        let mut n = self.nodes.borrow_mut();
        n.push(Node { value, op, param });
        Var {
            tape: self,
            id: n.len() - 1,
        }
    }

    /// The gradients of `loss` (a one-element value) with respect to everything before it.
    ///
    /// # Errors
    /// When `loss` has more than one element, or is on another tape.
    pub fn backward(&self, loss: Var<'_, T>) -> Result<Gradients<T>> {
        if !std::ptr::eq(loss.tape, self) {
            return Err(invalid("backward", "the loss is on another tape"));
        }
        let nodes = self.nodes.borrow();
        let n = &nodes[loss.id];
        if n.value.len() != 1 {
            return Err(shape(
                "backward",
                format!("needs a scalar loss, got shape {:?}", n.value.shape()),
            ));
        }
        let mut grads: Vec<Option<Tensor<T>>> = (0..nodes.len()).map(|_| None).collect();
        grads[loss.id] = Some(Tensor::full(n.value.shape(), T::one()));
        for id in (0..=loss.id).rev() {
            let Some(g) = grads[id].take() else { continue };
            backprop(&nodes, id, &g, &mut grads)?;
            grads[id] = Some(g);
        }
        let params = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.param.map(|p| (p, i)))
            .collect();
        Ok(Gradients { grads, params })
    }

    fn value_of(&self, id: usize) -> Tensor<T> {
        self.nodes.borrow()[id].value.clone()
    }
}

/// Adds `g` into the gradient slot `id`.
fn acc<T: Element>(grads: &mut [Option<Tensor<T>>], id: usize, g: Tensor<T>) -> Result<()> {
    match &mut grads[id] {
        Some(cur) => cur.add_scaled(&g, T::one()),
        slot => {
            *slot = Some(g);
            Ok(())
        }
    }
}

/// Sends node `id`'s gradient `g` to its inputs.
fn backprop<T: Element>(
    nodes: &[Node<T>],
    id: usize,
    g: &Tensor<T>,
    grads: &mut [Option<Tensor<T>>],
) -> Result<()> {
    let val = |i: usize| &nodes[i].value;
    let y = &nodes[id].value;
    let one = T::one();
    let half = T::of(0.5);
    match &nodes[id].op {
        Op::Leaf => {}
        &Op::Add(a, b) => {
            acc(grads, a, g.clone())?;
            acc(grads, b, g.clone())?;
        }
        &Op::Sub(a, b) => {
            acc(grads, a, g.clone())?;
            acc(grads, b, g.map(|x| -x))?;
        }
        &Op::Mul(a, b) => {
            acc(grads, a, g.zip_map(val(b), "mul", |g, b| g * b)?)?;
            acc(grads, b, g.zip_map(val(a), "mul", |g, a| g * a)?)?;
        }
        &Op::Scale(a, c) => acc(grads, a, g.map(|x| x * c))?,
        &Op::AddRow(a, b) => {
            acc(grads, a, g.clone())?;
            acc(grads, b, g.sum_rows()?)?;
        }
        &Op::MatMul { a, b, ta, tb } => {
            let (av, bv) = (val(a), val(b));
            // C = op(A) op(B): d op(A) = dC op(B)^T, d op(B) = op(A)^T dC, stored the way
            // A and B are (transposed when ta / tb).
            let ga = if ta {
                bv.matmul(g, tb, true)?
            } else {
                g.matmul(bv, false, !tb)?
            };
            let gb = if tb {
                g.matmul(av, true, ta)?
            } else {
                av.matmul(g, !ta, false)?
            };
            acc(grads, a, ga)?;
            acc(grads, b, gb)?;
        }
        &Op::Relu(a) => acc(
            grads,
            a,
            g.zip_map(
                val(a),
                "relu",
                |g, x| if x > T::zero() { g } else { T::zero() },
            )?,
        )?,
        &Op::Gelu(a) => {
            // d/dx x Phi(x) = Phi(x) + x phi(x).
            let inv_sqrt2 = T::of(std::f64::consts::FRAC_1_SQRT_2);
            let inv_sqrt_2pi = T::of(1.0 / (2.0 * std::f64::consts::PI).sqrt());
            acc(
                grads,
                a,
                g.zip_map(val(a), "gelu", |g, x| {
                    let cdf = half * (one + (x * inv_sqrt2).erf());
                    let pdf = inv_sqrt_2pi * (-(x * x) * half).exp();
                    g * (cdf + x * pdf)
                })?,
            )?
        }
        &Op::Tanh(a) => acc(grads, a, g.zip_map(y, "tanh", |g, y| g * (one - y * y))?)?,
        &Op::Sigmoid(a) => acc(grads, a, g.zip_map(y, "sigmoid", |g, y| g * y * (one - y))?)?,
        Op::Dropout { a, mask } => {
            let mut d = g.clone();
            for (x, &m) in d.data_mut().iter_mut().zip(mask) {
                *x *= m;
            }
            acc(grads, *a, d)?
        }
        Op::LayerNorm {
            x,
            gamma,
            beta,
            xhat,
            rstd,
        } => {
            let gv = val(*gamma).data();
            let d = gv.len();
            let mut dx = Vec::with_capacity(xhat.len());
            let mut dgamma = vec![T::zero(); d];
            let mut dbeta = vec![T::zero(); d];
            let dn = T::of(d as f64);
            for ((grow, xrow), &r) in g.data().chunks(d).zip(xhat.chunks(d)).zip(rstd) {
                let mut m1 = T::zero(); // mean of dxhat
                let mut m2 = T::zero(); // mean of dxhat * xhat
                for j in 0..d {
                    let dxh = grow[j] * gv[j];
                    m1 += dxh;
                    m2 += dxh * xrow[j];
                    dgamma[j] += grow[j] * xrow[j];
                    dbeta[j] += grow[j];
                }
                m1 = m1 / dn;
                m2 = m2 / dn;
                for j in 0..d {
                    dx.push(r * (grow[j] * gv[j] - m1 - xrow[j] * m2));
                }
            }
            acc(grads, *x, Tensor::new(val(*x).shape(), dx)?)?;
            acc(grads, *gamma, Tensor::new(&[d], dgamma)?)?;
            acc(grads, *beta, Tensor::new(&[d], dbeta)?)?;
        }
        &Op::Sum(a) => {
            let s = g.item()?;
            acc(grads, a, Tensor::full(val(a).shape(), s))?
        }
        &Op::Mean(a) => {
            let n = T::of(val(a).len().max(1) as f64);
            acc(grads, a, Tensor::full(val(a).shape(), g.item()? / n))?
        }
        Op::SoftmaxCe {
            logits,
            probs,
            q,
            rows,
        } => {
            let s = g.item()? / T::of(*rows as f64);
            let d: Vec<T> = probs.iter().zip(q).map(|(&p, &q)| (p - q) * s).collect();
            acc(grads, *logits, Tensor::new(val(*logits).shape(), d)?)?
        }
        Op::Mse { a, diff } => {
            let s = g.item()? * T::of(2.0) / T::of(diff.len().max(1) as f64);
            let d = diff.iter().map(|&x| x * s).collect();
            acc(grads, *a, Tensor::new(val(*a).shape(), d)?)?
        }
        Op::BceLogits { a, resid } => {
            let s = g.item()? / T::of(resid.len().max(1) as f64);
            let d = resid.iter().map(|&x| x * s).collect();
            acc(grads, *a, Tensor::new(val(*a).shape(), d)?)?
        }
    }
    Ok(())
}

impl<T: Element> Gradients<T> {
    /// The gradient of the loss with respect to `v`; `None` when the loss does not depend
    /// on it.
    pub fn of(&self, v: Var<'_, T>) -> Option<&Tensor<T>> {
        self.grads.get(v.id).and_then(|g| g.as_ref())
    }

    /// Adds each parameter's gradient (if the loss depends on it) to its [`Param::grad`].
    ///
    /// # Errors
    /// When a parameter's shape changed since the forward pass.
    pub fn accumulate(&self, params: &mut [&mut Param<T>]) -> Result<()> {
        for p in params.iter_mut() {
            if let Some(g) = self
                .params
                .get(&p.uid())
                .and_then(|&i| self.grads[i].as_ref())
            {
                p.grad.add_scaled(g, T::one())?;
            }
        }
        Ok(())
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// The tape this value is on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// This value (a copy).
    pub fn value(&self) -> Tensor<T> {
        self.tape.value_of(self.id)
    }

    /// The shape of this value.
    pub fn shape(&self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.id].value.shape().to_vec()
    }

    fn same_tape(&self, o: &Var<'t, T>, op: &'static str) -> Result<()> {
        if std::ptr::eq(self.tape, o.tape) {
            Ok(())
        } else {
            Err(invalid(op, "the operands are on different tapes"))
        }
    }

    fn unary(self, op: Op<T>, value: Tensor<T>) -> Var<'t, T> {
        self.tape.push(value, op, None)
    }

    fn zip(self, o: Var<'t, T>, name: &'static str, f: impl Fn(T, T) -> T) -> Result<Tensor<T>> {
        self.same_tape(&o, name)?;
        let n = self.tape.nodes.borrow();
        n[self.id].value.zip_map(&n[o.id].value, name, f)
    }

    /// `self + o`, same shapes.
    ///
    /// # Errors
    /// When the shapes differ or the operands are on different tapes.
    #[allow(clippy::should_implement_trait)] // returns a Result: shapes are checked
    pub fn add(self, o: Var<'t, T>) -> Result<Var<'t, T>> {
        let v = self.zip(o, "add", |a, b| a + b)?;
        Ok(self.unary(Op::Add(self.id, o.id), v))
    }

    /// `self - o`, same shapes.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    #[allow(clippy::should_implement_trait)] // returns a Result: shapes are checked
    pub fn sub(self, o: Var<'t, T>) -> Result<Var<'t, T>> {
        let v = self.zip(o, "sub", |a, b| a - b)?;
        Ok(self.unary(Op::Sub(self.id, o.id), v))
    }

    /// `self * o` element by element, same shapes.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    #[allow(clippy::should_implement_trait)] // returns a Result: shapes are checked
    pub fn mul(self, o: Var<'t, T>) -> Result<Var<'t, T>> {
        let v = self.zip(o, "mul", |a, b| a * b)?;
        Ok(self.unary(Op::Mul(self.id, o.id), v))
    }

    /// `self * c`.
    pub fn scale(self, c: f64) -> Var<'t, T> {
        let c = T::of(c);
        let v = self.value().map(|x| x * c);
        self.unary(Op::Scale(self.id, c), v)
    }

    /// `self [n, m] + bias [m]`, the bias added to every row.
    ///
    /// # Errors
    /// When `self` is not 2-D or `bias` is not a vector of its width.
    pub fn add_row(self, bias: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_tape(&bias, "add_row")?;
        let v = {
            let n = self.tape.nodes.borrow();
            let (x, b) = (&n[self.id].value, &n[bias.id].value);
            let (_, c) = x.dims2("add_row")?;
            if b.shape() != [c] {
                return Err(shape(
                    "add_row",
                    format!("bias {:?} for rows of {c}", b.shape()),
                ));
            }
            let mut out = x.clone();
            for row in out.data_mut().chunks_mut(c.max(1)) {
                for (o, &bv) in row.iter_mut().zip(b.data()) {
                    *o += bv;
                }
            }
            out
        };
        Ok(self.unary(Op::AddRow(self.id, bias.id), v))
    }

    /// `op(self) · op(o)` (2-D; `trans_*`: use the transpose), through the accelerator's CPU
    /// GEMM for `f32`.
    ///
    /// # Errors
    /// When the shapes do not chain.
    pub fn matmul_t(self, o: Var<'t, T>, trans_a: bool, trans_b: bool) -> Result<Var<'t, T>> {
        self.same_tape(&o, "matmul")?;
        let v = {
            let n = self.tape.nodes.borrow();
            n[self.id].value.matmul(&n[o.id].value, trans_a, trans_b)?
        };
        Ok(self.unary(
            Op::MatMul {
                a: self.id,
                b: o.id,
                ta: trans_a,
                tb: trans_b,
            },
            v,
        ))
    }

    /// `self · o` (2-D).
    ///
    /// # Errors
    /// When the shapes do not chain.
    pub fn matmul(self, o: Var<'t, T>) -> Result<Var<'t, T>> {
        self.matmul_t(o, false, false)
    }

    /// `max(x, 0)`.
    pub fn relu(self) -> Var<'t, T> {
        let v = self.value().map(|x| x.max(T::zero()));
        self.unary(Op::Relu(self.id), v)
    }

    /// GELU, exact (`x * Phi(x)` with the normal CDF, PyTorch's default `approximate='none'`).
    pub fn gelu(self) -> Var<'t, T> {
        let s = T::of(std::f64::consts::FRAC_1_SQRT_2);
        let h = T::of(0.5);
        let v = self.value().map(|x| h * x * (T::one() + (x * s).erf()));
        self.unary(Op::Gelu(self.id), v)
    }

    /// `tanh(x)`.
    pub fn tanh(self) -> Var<'t, T> {
        let v = self.value().map(|x| x.tanh());
        self.unary(Op::Tanh(self.id), v)
    }

    /// `1 / (1 + e^-x)`.
    pub fn sigmoid(self) -> Var<'t, T> {
        let v = self.value().map(sigmoid);
        self.unary(Op::Sigmoid(self.id), v)
    }

    /// Multiplies by a 0 / `1/(1-p)` mask (inverted dropout: the expectation is unchanged).
    /// `mask` holds one draw per element, true = keep.
    ///
    /// # Errors
    /// When `p` is outside `[0, 1)` or the mask has the wrong length.
    pub fn dropout_mask(self, p: f64, keep: &[bool]) -> Result<Var<'t, T>> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid("dropout p", format!("{p} is outside [0, 1)")));
        }
        let mut v = self.value();
        if keep.len() != v.len() {
            return Err(shape(
                "dropout",
                format!("mask of {} for {} elements", keep.len(), v.len()),
            ));
        }
        let s = T::of(1.0 / (1.0 - p));
        let mask: Vec<T> = keep
            .iter()
            .map(|&k| if k { s } else { T::zero() })
            .collect();
        for (x, &m) in v.data_mut().iter_mut().zip(&mask) {
            *x *= m;
        }
        Ok(self.unary(Op::Dropout { a: self.id, mask }, v))
    }

    /// Layer normalisation over the last dimension of a 2-D value: `(x - mean) / sqrt(var +
    /// eps) * gamma + beta`, the variance biased (PyTorch's `LayerNorm`).
    ///
    /// # Errors
    /// When `self` is not 2-D or `gamma`/`beta` are not vectors of its width.
    pub fn layer_norm(self, gamma: Var<'t, T>, beta: Var<'t, T>, eps: f64) -> Result<Var<'t, T>> {
        self.same_tape(&gamma, "layer_norm")?;
        self.same_tape(&beta, "layer_norm")?;
        let (v, xhat, rstd) = {
            let n = self.tape.nodes.borrow();
            let (x, g, b) = (&n[self.id].value, &n[gamma.id].value, &n[beta.id].value);
            let (_, d) = x.dims2("layer_norm")?;
            if g.shape() != [d] || b.shape() != [d] || d == 0 {
                return Err(shape(
                    "layer_norm",
                    format!(
                        "gamma {:?}, beta {:?} for rows of {d}",
                        g.shape(),
                        b.shape()
                    ),
                ));
            }
            let dn = T::of(d as f64);
            let mut xhat = Vec::with_capacity(x.len());
            let mut rstd = Vec::new();
            let mut out = Vec::with_capacity(x.len());
            for row in x.data().chunks(d) {
                let mean = row.iter().copied().sum::<T>() / dn;
                let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / dn;
                let r = T::one() / (var + T::of(eps)).sqrt();
                rstd.push(r);
                for ((&v, &gj), &bj) in row.iter().zip(g.data()).zip(b.data()) {
                    let h = (v - mean) * r;
                    xhat.push(h);
                    out.push(h * gj + bj);
                }
            }
            (Tensor::new(x.shape(), out)?, xhat, rstd)
        };
        Ok(self.unary(
            Op::LayerNorm {
                x: self.id,
                gamma: gamma.id,
                beta: beta.id,
                xhat,
                rstd,
            },
            v,
        ))
    }

    /// Sum of all elements (a scalar).
    pub fn sum(self) -> Var<'t, T> {
        let s = self.value().sum();
        self.unary(Op::Sum(self.id), Tensor::scalar(s))
    }

    /// Mean of all elements (a scalar).
    pub fn mean(self) -> Var<'t, T> {
        let v = self.value();
        let m = v.sum() / T::of(v.len().max(1) as f64);
        self.unary(Op::Mean(self.id), Tensor::scalar(m))
    }

    /// Mean softmax cross-entropy of logits `[n, c]` against class `labels` (PyTorch's
    /// `CrossEntropyLoss(label_smoothing=smoothing)`: the target is `1 - smoothing` on the
    /// label plus `smoothing / c` on every class).
    ///
    /// # Errors
    /// When `self` is not 2-D, `labels` is not one per row, a label is `>= c`, or
    /// `smoothing` is outside `[0, 1]`.
    pub fn softmax_cross_entropy(self, labels: &[usize], smoothing: f64) -> Result<Var<'t, T>> {
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(invalid(
                "label smoothing",
                format!("{smoothing} is outside [0, 1]"),
            ));
        }
        let x = self.value();
        let (n, c) = x.dims2("softmax_cross_entropy")?;
        if labels.len() != n {
            return Err(shape(
                "softmax_cross_entropy",
                format!("{} labels for {n} rows", labels.len()),
            ));
        }
        let (off, on) = (
            T::of(smoothing / c as f64),
            T::of(1.0 - smoothing + smoothing / c as f64),
        );
        let mut probs = Vec::with_capacity(n * c);
        let mut q = Vec::with_capacity(n * c);
        let mut loss = T::zero();
        for (row, (xr, &label)) in x.data().chunks(c.max(1)).zip(labels).enumerate() {
            if label >= c {
                return Err(super::MlError::Label {
                    label,
                    row,
                    classes: c,
                });
            }
            let m = xr.iter().copied().fold(T::neg_infinity(), T::max);
            let z: T = xr.iter().map(|&v| (v - m).exp()).sum();
            let lz = z.ln();
            for (j, &v) in xr.iter().enumerate() {
                let logp = v - m - lz;
                let qj = if j == label { on } else { off };
                loss -= qj * logp;
                probs.push(logp.exp());
                q.push(qj);
            }
        }
        let v = Tensor::scalar(loss / T::of(n.max(1) as f64));
        Ok(self.unary(
            Op::SoftmaxCe {
                logits: self.id,
                probs,
                q,
                rows: n.max(1),
            },
            v,
        ))
    }

    /// Mean squared error against `target` (same shape).
    ///
    /// # Errors
    /// When the shapes differ.
    pub fn mse(self, target: &Tensor<T>) -> Result<Var<'t, T>> {
        let d = self.value().zip_map(target, "mse", |a, b| a - b)?;
        let l = d.data().iter().map(|&x| x * x).sum::<T>() / T::of(d.len().max(1) as f64);
        Ok(self.unary(
            Op::Mse {
                a: self.id,
                diff: d.into_data(),
            },
            Tensor::scalar(l),
        ))
    }

    /// Mean binary cross-entropy of logits against targets in `[0, 1]` (PyTorch's
    /// `BCEWithLogitsLoss`, computed as `max(x, 0) - x t + log(1 + e^-|x|)`, stable for any
    /// `x`).
    ///
    /// # Errors
    /// When the shapes differ.
    pub fn bce_with_logits(self, target: &Tensor<T>) -> Result<Var<'t, T>> {
        let x = self.value();
        x.same_shape(target, "bce_with_logits")?;
        let mut l = T::zero();
        let mut resid = Vec::with_capacity(x.len());
        for (&x, &t) in x.data().iter().zip(target.data()) {
            l += x.max(T::zero()) - x * t + (-x.abs()).exp().ln_1p();
            resid.push(sigmoid(x) - t);
        }
        let v = Tensor::scalar(l / T::of(resid.len().max(1) as f64));
        Ok(self.unary(Op::BceLogits { a: self.id, resid }, v))
    }
}

/// The logistic function, stable for large `|x|`.
pub(crate) fn sigmoid<T: Element>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

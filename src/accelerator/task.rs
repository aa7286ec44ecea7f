//! The description of work: [`Tensor`] (a row-major 2-D array of `f32` or `u32`), [`Kernel`]
//! (what to compute, with its parameters), [`ComputeTask`] (kernel + input buffers + priority)
//! and the shape rules every backend shares ([`Kernel::output_shapes`], [`ComputeTask::validate`]).
//! Owns the semantics contract only: it runs nothing and must not touch devices or threads.

use serde::Serialize;

use super::error::AccelError;
use super::pipeline::Place;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer (labels, argmax indices).
    U32,
}

/// The shape and element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Shape {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Element type.
    pub dtype: DType,
}

impl Shape {
    /// An `f32` shape.
    pub const fn f32(rows: usize, cols: usize) -> Shape {
        Shape {
            rows,
            cols,
            dtype: DType::F32,
        }
    }

    /// A `u32` shape.
    pub const fn u32(rows: usize, cols: usize) -> Shape {
        Shape {
            rows,
            cols,
            dtype: DType::U32,
        }
    }

    /// Elements (saturating).
    pub fn len(&self) -> usize {
        self.rows.saturating_mul(self.cols)
    }

    /// True when the shape holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes (4 per element, saturating).
    pub fn bytes(&self) -> u64 {
        (self.len() as u64).saturating_mul(4)
    }
}

/// The elements of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `u32` elements.
    U32(Vec<u32>),
}

/// A row-major 2-D array. Vectors are `1 x n` (or `n x 1` for per-row results).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    rows: usize,
    cols: usize,
    data: TensorData,
}

impl Tensor {
    /// An `f32` tensor; `data.len()` must be `rows * cols`.
    pub fn f32(rows: usize, cols: usize, data: Vec<f32>) -> Result<Tensor, AccelError> {
        Self::new(rows, cols, TensorData::F32(data))
    }

    /// A `u32` tensor; `data.len()` must be `rows * cols`.
    pub fn u32(rows: usize, cols: usize, data: Vec<u32>) -> Result<Tensor, AccelError> {
        Self::new(rows, cols, TensorData::U32(data))
    }

    /// A tensor from its parts; `data` must hold `rows * cols` elements.
    pub fn new(rows: usize, cols: usize, data: TensorData) -> Result<Tensor, AccelError> {
        let len = match &data {
            TensorData::F32(v) => v.len(),
            TensorData::U32(v) => v.len(),
        };
        if rows.checked_mul(cols) != Some(len) {
            return Err(AccelError::BadTensor { rows, cols, len });
        }
        Ok(Tensor { rows, cols, data })
    }

    /// A `rows x cols` tensor of `f32` zeros.
    pub fn zeros(rows: usize, cols: usize) -> Tensor {
        Tensor {
            rows,
            cols,
            data: TensorData::F32(vec![0.0; rows * cols]),
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Shape and element type.
    pub fn shape(&self) -> Shape {
        Shape {
            rows: self.rows,
            cols: self.cols,
            dtype: self.dtype(),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::U32(_) => DType::U32,
        }
    }

    /// The `f32` elements, or `None` for a `u32` tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::U32(_) => None,
        }
    }

    /// The `u32` elements, or `None` for an `f32` tensor.
    pub fn as_u32(&self) -> Option<&[u32]> {
        match &self.data {
            TensorData::U32(v) => Some(v),
            TensorData::F32(_) => None,
        }
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Takes the elements out.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The raw bytes (native endian, 4 per element).
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::U32(v) => bytemuck::cast_slice(v),
        }
    }
}

/// Activation fused after a matmul (and available as elementwise ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    Gelu,
    /// `tanh(x)`.
    Tanh,
}

/// Binary elementwise ops on two tensors of one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
}

/// Unary elementwise ops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum UnaryOp {
    /// `a * s`.
    Scale(f32),
    /// `max(a, 0)`.
    Relu,
    /// GELU (tanh approximation, see [`Activation::Gelu`]).
    Gelu,
    /// `tanh(a)`.
    Tanh,
    /// `exp(a)`.
    Exp,
}

/// Row reductions: an `r x c` input gives an `r x 1` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Reduce {
    /// Sum of the row (`f32`).
    Sum,
    /// Largest element of the row (`f32`).
    Max,
    /// Index of the largest element, the first one on ties (`u32`).
    ArgMax,
}

/// Adam / AdamW hyper-parameters for one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// Weight decay: decoupled (`p -= lr * wd * p`) when `decoupled`, else added to the gradient.
    pub weight_decay: f32,
    /// AdamW (decoupled weight decay) when true, Adam with L2 when false.
    pub decoupled: bool,
    /// The step number, starting at 1 (bias correction).
    pub step: u32,
}

impl Default for AdamParams {
    fn default() -> Self {
        AdamParams {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: true,
            step: 1,
        }
    }
}

impl AdamParams {
    /// `(1 - beta1^step, 1 - beta2^step)`, computed once on the host so both backends use the
    /// same values.
    pub fn bias_corrections(&self) -> (f32, f32) {
        let t = self.step.max(1) as i32;
        (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t))
    }
}

/// What to compute. Inputs are listed per variant; every output is row-major.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Kernel {
    /// `act(op(A) · op(B) + bias)`. Inputs: `A` (`m x k`, or `k x m` stored when `trans_a`),
    /// `B` (`k x n`, or `n x k` when `trans_b`), and with `bias` a `1 x n` bias. Output `m x n`.
    MatMul {
        /// Use `Aᵀ`.
        trans_a: bool,
        /// Use `Bᵀ`.
        trans_b: bool,
        /// A third input is a `1 x n` bias added to every row.
        bias: bool,
        /// Activation applied last.
        act: Activation,
    },
    /// Two inputs of one shape, one output of that shape.
    Binary(BinaryOp),
    /// One input, one output of its shape.
    Unary(UnaryOp),
    /// One `r x c` input (`c >= 1`), one `r x 1` output.
    Reduce(Reduce),
    /// Row softmax: one input, one output of its shape.
    Softmax,
    /// Row log-softmax: one input, one output of its shape.
    LogSoftmax,
    /// Cross-entropy forward: logits `r x c` and labels `u32` (`r x 1` or `1 x r`); output the
    /// per-row loss `r x 1` (`logsumexp(row) - row[label]`).
    CrossEntropy,
    /// Cross-entropy backward of the mean loss: logits and labels as above; output
    /// `(softmax(row) - onehot(label)) / r`, shape `r x c`.
    CrossEntropyGrad,
    /// Fused Adam/AdamW step. Inputs: params, grads, m, v (one shape). Outputs: new params,
    /// new m, new v.
    Adam(AdamParams),
}

impl Kernel {
    /// Short name used in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::MatMul { .. } => "matmul",
            Kernel::Binary(_) => "binary",
            Kernel::Unary(_) => "unary",
            Kernel::Reduce(_) => "reduce",
            Kernel::Softmax => "softmax",
            Kernel::LogSoftmax => "log_softmax",
            Kernel::CrossEntropy => "cross_entropy",
            Kernel::CrossEntropyGrad => "cross_entropy_grad",
            Kernel::Adam(_) => "adam",
        }
    }

    /// Number of inputs the kernel takes.
    pub fn arity(&self) -> usize {
        match self {
            Kernel::MatMul { bias, .. } => 2 + usize::from(*bias),
            Kernel::Binary(_) | Kernel::CrossEntropy | Kernel::CrossEntropyGrad => 2,
            Kernel::Unary(_) | Kernel::Reduce(_) | Kernel::Softmax | Kernel::LogSoftmax => 1,
            Kernel::Adam(_) => 4,
        }
    }

    /// Floating-point operations of one run on inputs of `shapes` (for GFLOP/s figures and
    /// placement): `2mnk` for a matmul, a few per element otherwise.
    pub fn flops(&self, shapes: &[Shape]) -> f64 {
        match (self, shapes) {
            (
                Kernel::MatMul {
                    trans_a, trans_b, ..
                },
                [a, b, ..],
            ) => {
                let (m, k) = if *trans_a {
                    (a.cols, a.rows)
                } else {
                    (a.rows, a.cols)
                };
                let n = if *trans_b { b.rows } else { b.cols };
                2.0 * m as f64 * n as f64 * k as f64
            }
            (_, [a, ..]) => 4.0 * a.len() as f64,
            _ => 0.0,
        }
    }

    /// The output shapes for inputs of `shapes`, or the typed error that any backend would
    /// return. Checks counts, element types and dimensions; never looks at data.
    pub fn output_shapes(&self, shapes: &[Shape]) -> Result<Vec<Shape>, AccelError> {
        let name = self.name();
        let mismatch = |detail: String| AccelError::ShapeMismatch {
            kernel: name,
            detail,
        };
        if shapes.len() != self.arity() {
            return Err(mismatch(format!(
                "expected {} input(s), got {}",
                self.arity(),
                shapes.len()
            )));
        }
        let want_f32 = |i: usize| {
            if shapes[i].dtype == DType::F32 {
                Ok(())
            } else {
                Err(mismatch(format!("input {i} must be f32")))
            }
        };
        let want_labels = |rows: usize| {
            let l = shapes[1];
            if l.dtype != DType::U32 {
                return Err(mismatch("labels must be u32".into()));
            }
            if l.len() != rows || (l.rows != 1 && l.cols != 1) {
                return Err(mismatch(format!(
                    "labels {}x{} do not give one label per row of {rows} rows",
                    l.rows, l.cols
                )));
            }
            Ok(())
        };
        match *self {
            Kernel::MatMul {
                trans_a,
                trans_b,
                bias,
                ..
            } => {
                want_f32(0)?;
                want_f32(1)?;
                let (a, b) = (shapes[0], shapes[1]);
                let (m, k) = if trans_a {
                    (a.cols, a.rows)
                } else {
                    (a.rows, a.cols)
                };
                let (k2, n) = if trans_b {
                    (b.cols, b.rows)
                } else {
                    (b.rows, b.cols)
                };
                if k != k2 {
                    return Err(mismatch(format!(
                        "inner dimensions differ: op(A) is {m}x{k}, op(B) is {k2}x{n}"
                    )));
                }
                if bias {
                    want_f32(2)?;
                    let s = shapes[2];
                    if s.len() != n || (s.rows != 1 && s.cols != 1) {
                        return Err(mismatch(format!(
                            "bias is {}x{}, expected 1x{n}",
                            s.rows, s.cols
                        )));
                    }
                }
                Ok(vec![Shape::f32(m, n)])
            }
            Kernel::Binary(_) => {
                want_f32(0)?;
                want_f32(1)?;
                if (shapes[0].rows, shapes[0].cols) != (shapes[1].rows, shapes[1].cols) {
                    return Err(mismatch(format!(
                        "{}x{} vs {}x{}",
                        shapes[0].rows, shapes[0].cols, shapes[1].rows, shapes[1].cols
                    )));
                }
                Ok(vec![shapes[0]])
            }
            Kernel::Unary(_) | Kernel::Softmax | Kernel::LogSoftmax => {
                want_f32(0)?;
                Ok(vec![shapes[0]])
            }
            Kernel::Reduce(r) => {
                want_f32(0)?;
                if shapes[0].cols == 0 && shapes[0].rows > 0 {
                    return Err(mismatch("a row reduction needs at least one column".into()));
                }
                Ok(vec![match r {
                    Reduce::ArgMax => Shape::u32(shapes[0].rows, 1),
                    _ => Shape::f32(shapes[0].rows, 1),
                }])
            }
            Kernel::CrossEntropy | Kernel::CrossEntropyGrad => {
                want_f32(0)?;
                let l = shapes[0];
                if l.cols == 0 && l.rows > 0 {
                    return Err(mismatch("logits need at least one class".into()));
                }
                want_labels(l.rows)?;
                Ok(vec![if matches!(self, Kernel::CrossEntropy) {
                    Shape::f32(l.rows, 1)
                } else {
                    l
                }])
            }
            Kernel::Adam(_) => {
                for i in 0..4 {
                    want_f32(i)?;
                    if (shapes[i].rows, shapes[i].cols) != (shapes[0].rows, shapes[0].cols) {
                        return Err(mismatch(format!(
                            "input {i} is {}x{}, params are {}x{}",
                            shapes[i].rows, shapes[i].cols, shapes[0].rows, shapes[0].cols
                        )));
                    }
                }
                Ok(vec![shapes[0]; 3])
            }
        }
    }
}

/// Scheduling priority: higher runs first; FIFO within one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub enum Priority {
    /// Background work.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Latency-sensitive work.
    High,
}

/// One unit of work for an accelerator: a kernel, its input buffers and a priority.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeTask {
    /// What to compute.
    pub kernel: Kernel,
    /// Input buffers, in the order the kernel documents.
    pub inputs: Vec<Tensor>,
    /// Scheduling priority.
    pub priority: Priority,
    /// Where it runs (default: the worker's device).
    pub place: Place,
}

impl ComputeTask {
    /// A task at normal priority.
    pub fn new(kernel: Kernel, inputs: Vec<Tensor>) -> ComputeTask {
        ComputeTask {
            kernel,
            inputs,
            priority: Priority::Normal,
            place: Place::Device,
        }
    }

    /// Sets the placement (builder style).
    pub fn with_place(mut self, place: Place) -> ComputeTask {
        self.place = place;
        self
    }

    /// Sets the priority (builder style).
    pub fn with_priority(mut self, p: Priority) -> ComputeTask {
        self.priority = p;
        self
    }

    /// Input shapes.
    pub fn shapes(&self) -> Vec<Shape> {
        self.inputs.iter().map(Tensor::shape).collect()
    }

    /// Bytes of every input and output buffer.
    pub fn bytes(&self) -> u64 {
        let inb: u64 = self.inputs.iter().map(|t| t.shape().bytes()).sum();
        let outb: u64 = self
            .kernel
            .output_shapes(&self.shapes())
            .map(|v| v.iter().map(Shape::bytes).sum())
            .unwrap_or(0);
        inb + outb
    }

    /// Workgroups the WGSL kernel dispatches (`[x, y, z]`) for these inputs, before splitting
    /// an oversize `x` into `y`.
    pub fn dispatch_size(&self) -> Result<[u32; 3], AccelError> {
        let out = self.kernel.output_shapes(&self.shapes())?;
        let sat = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(match self.kernel {
            Kernel::MatMul { .. } => {
                let t = super::wgsl::TILE;
                [
                    sat(out[0].cols.div_ceil(t)),
                    sat(out[0].rows.div_ceil(t)),
                    1,
                ]
            }
            Kernel::Binary(_) | Kernel::Unary(_) | Kernel::Adam(_) => [
                sat(out[0].len().div_ceil(super::wgsl::ELEMENTWISE_WG)),
                1,
                1,
            ],
            _ => [sat(self.inputs[0].rows()), 1, 1],
        })
    }

    /// Checks the task against a device whose largest storage binding is `max_binding` bytes:
    /// shapes, element types, label range and buffer sizes. Returns the output shapes.
    pub fn validate(&self, max_binding: u64) -> Result<Vec<Shape>, AccelError> {
        let shapes = self.shapes();
        let out = self.kernel.output_shapes(&shapes)?;
        for s in shapes.iter().chain(&out) {
            if s.bytes() > max_binding {
                return Err(AccelError::BufferTooLarge {
                    kernel: self.kernel.name(),
                    bytes: s.bytes(),
                    limit: max_binding,
                });
            }
        }
        if matches!(self.kernel, Kernel::CrossEntropy | Kernel::CrossEntropyGrad) {
            check_labels(&self.inputs[1], self.inputs[0].cols())?;
        }
        Ok(out)
    }
}

/// Every label must be below `classes`.
pub(crate) fn check_labels(labels: &Tensor, classes: usize) -> Result<(), AccelError> {
    if let Some(l) = labels.as_u32() {
        if let Some((row, &label)) = l.iter().enumerate().find(|(_, v)| **v as usize >= classes) {
            return Err(AccelError::LabelOutOfRange {
                row,
                label,
                classes,
            });
        }
    }
    Ok(())
}

//! Machine learning on the runtime: the building blocks a training or serving actor is made
//! of. Sits on the runtime and the accelerator layer (matrix products run on its CPU GEMM);
//! must not import transport or storage.
//!
//! Modules, one concept each:
//! - [`tensor`]: [`Tensor`], dense row-major `f32`/`f64` arrays ([`Element`]).
//! - [`autograd`]: [`Tape`], [`Var`] and [`Gradients`], reverse-mode differentiation with
//!   the differentiable operations and losses (softmax cross-entropy with label smoothing,
//!   MSE, binary cross-entropy with logits).
//! - [`nn`]: [`Module`](nn::Module) and the layers (Linear, ReLU, GELU, Tanh, Sigmoid,
//!   Dropout, LayerNorm, Sequential) with [`Param`](nn::Param)s.
//! - [`data`]: a typed CSV loader, the UCI digits set (CC BY 4.0) and synthetic generators.
//! - [`gradcheck`]: finite-difference checks of gradients in `f64`.
//! - [`init`]: the seeded [`Rng`] and weight [`Init`] schemes.
//! - [`optim`]: SGD, Adam/AdamW, RMSprop, Adagrad with PyTorch's rules, parameter groups,
//!   clipping, saved state.
//! - [`preprocess`]: scalers, imputer, encoders, polynomial features, binning, pipelines and
//!   splits with scikit-learn's definitions.
//! - [`sparse`]: [`CsrMatrix`](sparse::CsrMatrix), the sparse output of encoders.
//! - [`schedule`]: learning-rate schedules and reduce-on-plateau.
//! - [`metrics`]: accuracy, confusion matrix, precision/recall/F1, log loss, R².
//!
//! ```
//! use percore::ml::nn::{Linear, Module, Relu, Sequential};
//! use percore::ml::optim::{Adam, AdamConfig, Optimizer};
//! use percore::ml::{Init, Rng, Tape, Tensor};
//!
//! // Learn y = x0 - x1 with a tiny MLP.
//! let mut rng = Rng::seed(1);
//! let mut net = Sequential::<f32>::new()
//!     .push(Linear::new(2, 16, Init::KaimingUniform, &mut rng))
//!     .push(Relu)
//!     .push(Linear::new(16, 1, Init::TorchDefault, &mut rng));
//! let mut opt = Adam::new(AdamConfig { lr: 1e-2, ..AdamConfig::default() });
//! let xs: Vec<f32> = (0..64).map(|_| rng.uniform_in(-1.0, 1.0) as f32).collect();
//! let x = Tensor::new(&[32, 2], xs.clone()).unwrap();
//! let y = Tensor::new(&[32, 1], xs.chunks(2).map(|p| p[0] - p[1]).collect()).unwrap();
//! let mut last = f32::MAX;
//! for _ in 0..300 {
//!     let tape = Tape::new();
//!     let loss = net.forward(tape.leaf(x.clone()), true).unwrap().mse(&y).unwrap();
//!     last = loss.value().item().unwrap();
//!     net.zero_grad();
//!     tape.backward(loss).unwrap().accumulate(&mut net.params_mut()).unwrap();
//!     opt.step(&mut net.params_mut()).unwrap();
//! }
//! assert!(last < 1e-3, "{last}");
//! ```

pub mod autograd;
pub mod data;
pub mod element;
pub mod error;
pub mod gradcheck;
pub mod init;
pub mod metrics;
pub mod nn;
pub mod optim;
pub mod preprocess;
pub mod schedule;
pub mod sparse;
pub mod tensor;

pub use autograd::{Gradients, Tape, Var};
pub use element::Element;
pub use error::{MlError, Result};
pub use init::{Init, Rng};
pub use tensor::Tensor;

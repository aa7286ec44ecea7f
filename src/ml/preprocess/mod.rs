//! Preprocessing with scikit-learn's definitions: fit on training data, transform anything,
//! state serialisable (serde). Numeric transformers ([`Transformer`]) take a 2-D
//! `Tensor<f64>` with NaN for a missing value: [`StandardScaler`], [`MinMaxScaler`],
//! [`RobustScaler`], [`SimpleImputer`], [`PolynomialFeatures`], [`KBinsDiscretizer`], chained
//! by a [`Pipeline`]. Categorical encoders take string columns: [`OneHotEncoder`],
//! [`OrdinalEncoder`], [`LabelEncoder`], [`TargetEncoder`]. [`train_test_split`] makes
//! seeded, optionally stratified splits. Must not touch models.
//!
//! ```
//! use percore::ml::preprocess::{Pipeline, SimpleImputer, StandardScaler, Step, Strategy, Transformer};
//! use percore::ml::Tensor;
//!
//! let x = Tensor::new(&[3, 2], vec![1.0, f64::NAN, 2.0, 4.0, 3.0, 8.0]).unwrap();
//! let mut p = Pipeline::new(vec![
//!     Step::Impute(SimpleImputer::new(Strategy::Mean)),
//!     Step::Standard(StandardScaler::default()),
//! ]);
//! let z = p.fit_transform(&x).unwrap();
//! assert!((z.data()[0] + 1.224744871391589).abs() < 1e-12);
//! ```

mod encode;
mod impute;
mod kbins;
mod pipeline;
mod poly;
mod scale;
mod split;
#[cfg(test)]
mod tests;

pub use encode::{LabelEncoder, OneHotEncoder, OrdinalEncoder, TargetEncoder, Unknown};
pub use impute::{SimpleImputer, Strategy};
pub use kbins::{BinStrategy, KBinsDiscretizer};
pub use pipeline::{Pipeline, Step};
pub use poly::PolynomialFeatures;
pub use scale::{MinMaxScaler, RobustScaler, StandardScaler};
pub use split::train_test_split;

use super::error::{Result, shape};
use super::tensor::Tensor;

/// A numeric transformer: learns from training rows, then maps any rows of the same width.
pub trait Transformer {
    /// Learns the transformer's state from `x` (rows x features).
    ///
    /// # Errors
    /// When `x` is not 2-D, or has nothing to learn from (see each type).
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()>;

    /// Maps `x` with the learned state.
    ///
    /// # Errors
    /// When `x`'s width is not the width seen by `fit`.
    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>>;

    /// `fit` then `transform` on the same rows.
    ///
    /// # Errors
    /// As [`fit`](Transformer::fit) and [`transform`](Transformer::transform).
    fn fit_transform(&mut self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        self.fit(x)?;
        self.transform(x)
    }
}

/// The columns of a 2-D tensor.
pub(crate) fn columns(x: &Tensor<f64>) -> Result<Vec<Vec<f64>>> {
    let (r, c) = x.dims2("fit")?;
    let mut cols = vec![Vec::with_capacity(r); c];
    for row in x.data().chunks(c.max(1)) {
        for (j, &v) in row.iter().enumerate() {
            cols[j].push(v);
        }
    }
    Ok(cols)
}

/// Errors unless `x` is 2-D with `width` columns (the width seen by `fit`; 0 before it).
pub(crate) fn check_width(x: &Tensor<f64>, width: usize, what: &'static str) -> Result<usize> {
    let (_, c) = x.dims2(what)?;
    if c != width {
        return Err(shape(
            what,
            format!("fitted on {width} columns, given {c} (call fit first)"),
        ));
    }
    Ok(c)
}

/// The non-NaN values, sorted.
pub(crate) fn nan_sorted(v: Vec<f64>) -> Vec<f64> {
    let mut s: Vec<f64> = v.into_iter().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// numpy's default (`linear`) quantile of sorted values; NaN when empty.
pub(crate) fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q * (s.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 >= s.len() {
        s[s.len() - 1]
    } else {
        s[i] + (s[i + 1] - s[i]) * f
    }
}

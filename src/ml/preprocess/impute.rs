//! [`SimpleImputer`]: replaces NaN by a per-column statistic learned in `fit` (mean, median,
//! most frequent value, or a constant), scikit-learn's `SimpleImputer`. Unlike sklearn, a
//! column with no observed value is an error at `fit` (sklearn drops it, which changes the
//! width silently).

use serde::{Deserialize, Serialize};

use super::{Transformer, check_width, columns, nan_sorted, quantile_sorted};
use crate::ml::error::{Result, invalid};
use crate::ml::tensor::Tensor;

/// What replaces a missing value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// The column mean.
    Mean,
    /// The column median.
    Median,
    /// The most frequent value (the smallest among ties, as sklearn).
    MostFrequent,
    /// A fixed value.
    Constant(f64),
}

/// Fills NaN per column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimpleImputer {
    /// The rule.
    pub strategy: Strategy,
    /// The fill value per column (after `fit`).
    pub statistics: Vec<f64>,
}

impl SimpleImputer {
    /// An imputer with `strategy`, not fitted.
    pub fn new(strategy: Strategy) -> Self {
        SimpleImputer {
            strategy,
            statistics: Vec::new(),
        }
    }
}

impl Transformer for SimpleImputer {
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()> {
        self.statistics.clear();
        for (j, c) in columns(x)?.into_iter().enumerate() {
            let s = nan_sorted(c);
            if s.is_empty() && !matches!(self.strategy, Strategy::Constant(_)) {
                return Err(invalid(
                    "SimpleImputer",
                    format!("column {j} has no observed value to learn a fill from"),
                ));
            }
            let v = match self.strategy {
                Strategy::Mean => s.iter().sum::<f64>() / s.len() as f64,
                Strategy::Median => quantile_sorted(&s, 0.5),
                Strategy::MostFrequent => {
                    // Sorted: runs of equal values; the first longest run is the smallest.
                    let (mut best, mut best_n, mut i) = (s[0], 0usize, 0usize);
                    while i < s.len() {
                        let mut k = i;
                        while k < s.len() && s[k] == s[i] {
                            k += 1;
                        }
                        if k - i > best_n {
                            best = s[i];
                            best_n = k - i;
                        }
                        i = k;
                    }
                    best
                }
                Strategy::Constant(v) => v,
            };
            self.statistics.push(v);
        }
        Ok(())
    }

    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let d = check_width(x, self.statistics.len(), "SimpleImputer")?;
        let mut out = x.clone();
        for row in out.data_mut().chunks_mut(d.max(1)) {
            for (j, v) in row.iter_mut().enumerate() {
                if v.is_nan() {
                    *v = self.statistics[j];
                }
            }
        }
        Ok(out)
    }
}

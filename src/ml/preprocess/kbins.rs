//! [`KBinsDiscretizer`]: each column cut into `n_bins` intervals, uniform in width or by
//! quantiles (numpy's linear interpolation, sklearn's `quantile_method="linear"`), the value
//! replaced by its bin index (sklearn's `encode="ordinal"`). Quantile edges closer than 1e-8
//! are merged, as sklearn does.

use serde::{Deserialize, Serialize};

use super::{Transformer, check_width, columns, nan_sorted, quantile_sorted};
use crate::ml::error::{Result, invalid};
use crate::ml::tensor::Tensor;

/// How bin edges are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinStrategy {
    /// Equal widths between the column's minimum and maximum.
    Uniform,
    /// Equal counts (edges at quantiles).
    Quantile,
}

/// Bins values into ordinal indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KBinsDiscretizer {
    /// Bins per column (>= 2).
    pub n_bins: usize,
    /// Edge placement.
    pub strategy: BinStrategy,
    /// Edges per column, `bins + 1` of them (after `fit`).
    pub edges: Vec<Vec<f64>>,
}

impl KBinsDiscretizer {
    /// `n_bins` bins placed by `strategy`.
    pub fn new(n_bins: usize, strategy: BinStrategy) -> Self {
        KBinsDiscretizer {
            n_bins,
            strategy,
            edges: Vec::new(),
        }
    }
}

impl Transformer for KBinsDiscretizer {
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()> {
        if self.n_bins < 2 {
            return Err(invalid("KBinsDiscretizer n_bins", "needs at least 2"));
        }
        self.edges.clear();
        for (j, c) in columns(x)?.into_iter().enumerate() {
            let s = nan_sorted(c);
            if s.is_empty() {
                return Err(invalid(
                    "KBinsDiscretizer",
                    format!("column {j} has no values"),
                ));
            }
            let (lo, hi) = (s[0], s[s.len() - 1]);
            let k = self.n_bins;
            let mut e: Vec<f64> = match self.strategy {
                // numpy.linspace: lo + i * step, the last edge exactly hi.
                BinStrategy::Uniform => (0..=k)
                    .map(|i| {
                        if i == k {
                            hi
                        } else {
                            lo + i as f64 * ((hi - lo) / k as f64)
                        }
                    })
                    .collect(),
                BinStrategy::Quantile => (0..=k)
                    .map(|i| quantile_sorted(&s, i as f64 / k as f64))
                    .collect(),
            };
            if self.strategy == BinStrategy::Quantile {
                let mut kept = vec![e[0]];
                for &v in &e[1..] {
                    if v - kept[kept.len() - 1] > 1e-8 {
                        kept.push(v);
                    }
                }
                e = kept;
            }
            if lo == hi {
                e = vec![f64::NEG_INFINITY, f64::INFINITY];
            }
            self.edges.push(e);
        }
        Ok(())
    }

    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let d = check_width(x, self.edges.len(), "KBinsDiscretizer")?;
        let mut out = x.clone();
        for row in out.data_mut().chunks_mut(d.max(1)) {
            for (j, v) in row.iter_mut().enumerate() {
                let e = &self.edges[j];
                // sklearn: searchsorted(edges[1:-1], v, side="right"), clipped to the bins.
                let inner = &e[1..e.len() - 1];
                let b = inner.partition_point(|&t| t <= *v);
                *v = b.min(e.len() - 2) as f64;
            }
        }
        Ok(out)
    }
}

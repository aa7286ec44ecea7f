//! Column scalers with scikit-learn's definitions: [`StandardScaler`] (population standard
//! deviation), [`MinMaxScaler`] and [`RobustScaler`] (median and inter-quartile range, numpy's
//! linear interpolation). Missing values (NaN) are ignored when fitting and stay NaN; a
//! constant column gets scale 1 (sklearn's `_handle_zeros_in_scale`).

use serde::{Deserialize, Serialize};

use super::{Transformer, check_width, columns, nan_sorted, quantile_sorted};
use crate::ml::error::{Result, invalid};
use crate::ml::tensor::Tensor;

/// A scale of 0 (or nearly: below 10 ulps of the mean, as sklearn) becomes 1.
fn nonzero(scale: f64, mean: f64) -> f64 {
    if scale == 0.0 || scale.abs() < 10.0 * f64::EPSILON * mean.abs().max(1.0) {
        1.0
    } else {
        scale
    }
}

/// `(x - mean) / std` per column.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    /// Column means (after `fit`).
    pub mean: Vec<f64>,
    /// Column scales: the population standard deviation, 1 where it is 0.
    pub scale: Vec<f64>,
}

impl Transformer for StandardScaler {
    /// Two passes over the rows in memory order (mean, then the sum of squared deviations),
    /// NaN skipped: no per-column copy of the data.
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()> {
        let (_, d) = x.dims2("StandardScaler")?;
        let mut n = vec![0usize; d];
        let mut sum = vec![0.0; d];
        // Branch-free (a NaN adds 0 and counts 0), so the loop vectorises.
        for row in x.data().chunks_exact(d.max(1)) {
            for j in 0..d {
                let v = row[j];
                let ok = !v.is_nan();
                n[j] += ok as usize;
                sum[j] += if ok { v } else { 0.0 };
            }
        }
        let mean: Vec<f64> = sum
            .iter()
            .zip(&n)
            .map(|(s, &k)| s / k.max(1) as f64)
            .collect();
        let mut sq = vec![0.0; d];
        for row in x.data().chunks_exact(d.max(1)) {
            for j in 0..d {
                let e = row[j] - mean[j];
                sq[j] += if e.is_nan() { 0.0 } else { e * e };
            }
        }
        self.scale = sq
            .iter()
            .zip(&n)
            .zip(&mean)
            .map(|((q, &k), &m)| nonzero((q / k.max(1) as f64).sqrt(), m))
            .collect();
        self.mean = mean;
        Ok(())
    }

    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let d = check_width(x, self.mean.len(), "StandardScaler")?;
        // Multiplying by the reciprocal would be faster but not sklearn's numbers to the bit.
        let mut out = Vec::with_capacity(x.len());
        for row in x.data().chunks_exact(d.max(1)) {
            out.extend(
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.scale)
                    .map(|((v, m), s)| (v - m) / s),
            );
        }
        Tensor::new(x.shape(), out)
    }
}

impl StandardScaler {
    /// [`transform`](Transformer::transform) in place (scikit-learn's `copy=False`): no new
    /// matrix, so no first touch of fresh pages.
    ///
    /// # Errors
    /// When `x`'s width is not the fitted one.
    pub fn transform_in_place(&self, x: &mut Tensor<f64>) -> Result<()> {
        let d = check_width(x, self.mean.len(), "StandardScaler")?;
        for row in x.data_mut().chunks_exact_mut(d.max(1)) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        Ok(())
    }
}

/// `(x - min) / (max - min)` mapped onto `range` per column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinMaxScaler {
    /// The output range (`(0, 1)` by default).
    pub range: (f64, f64),
    /// Column minimums (after `fit`).
    pub min: Vec<f64>,
    /// Column maximums (after `fit`).
    pub max: Vec<f64>,
}

impl Default for MinMaxScaler {
    fn default() -> Self {
        MinMaxScaler {
            range: (0.0, 1.0),
            min: Vec::new(),
            max: Vec::new(),
        }
    }
}

impl Transformer for MinMaxScaler {
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()> {
        if self.range.0 >= self.range.1 {
            return Err(invalid(
                "MinMaxScaler range",
                format!("{:?}: the minimum must be below the maximum", self.range),
            ));
        }
        self.min.clear();
        self.max.clear();
        for c in columns(x)? {
            let v = c.into_iter().filter(|x| !x.is_nan());
            let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
            self.min.push(lo);
            self.max.push(hi);
        }
        Ok(())
    }

    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let d = check_width(x, self.min.len(), "MinMaxScaler")?;
        let (a, b) = self.range;
        let mut out = x.clone();
        for row in out.data_mut().chunks_mut(d.max(1)) {
            for (j, v) in row.iter_mut().enumerate() {
                // sklearn: scale = (b - a) / range, min = a - data_min * scale.
                let scale = (b - a) / nonzero(self.max[j] - self.min[j], 0.0);
                *v = *v * scale + (a - self.min[j] * scale);
            }
        }
        Ok(out)
    }
}

/// `(x - median) / IQR` per column (the 25th to 75th percentile by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustScaler {
    /// The quantile range in percent (`(25, 75)`).
    pub quantile_range: (f64, f64),
    /// Column medians (after `fit`).
    pub center: Vec<f64>,
    /// Column inter-quantile ranges, 1 where 0.
    pub scale: Vec<f64>,
}

impl Default for RobustScaler {
    fn default() -> Self {
        RobustScaler {
            quantile_range: (25.0, 75.0),
            center: Vec::new(),
            scale: Vec::new(),
        }
    }
}

impl Transformer for RobustScaler {
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()> {
        let (lo, hi) = self.quantile_range;
        if !(0.0 <= lo && lo <= hi && hi <= 100.0) {
            return Err(invalid(
                "RobustScaler quantile_range",
                format!("{:?}: needs 0 <= low <= high <= 100", self.quantile_range),
            ));
        }
        self.center.clear();
        self.scale.clear();
        for c in columns(x)? {
            let s = nan_sorted(c);
            self.center.push(quantile_sorted(&s, 0.5));
            let iqr = quantile_sorted(&s, hi / 100.0) - quantile_sorted(&s, lo / 100.0);
            self.scale.push(nonzero(iqr, 0.0));
        }
        Ok(())
    }

    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let d = check_width(x, self.center.len(), "RobustScaler")?;
        let mut out = x.clone();
        for row in out.data_mut().chunks_mut(d.max(1)) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - self.center[j]) / self.scale[j];
            }
        }
        Ok(out)
    }
}

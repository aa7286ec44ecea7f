//! [`PolynomialFeatures`]: all products of the features up to a degree, in scikit-learn's
//! order (the bias column, then degree 1, 2, … with the feature indices of each product
//! non-decreasing and in lexicographic order), optionally interaction terms only.

use serde::{Deserialize, Serialize};

use super::{Transformer, check_width};
use crate::ml::error::{Result, invalid};
use crate::ml::tensor::Tensor;

/// Polynomial and interaction features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolynomialFeatures {
    /// Highest total degree (>= 1).
    pub degree: usize,
    /// Only products of distinct features.
    pub interaction_only: bool,
    /// Starts with a column of ones.
    pub include_bias: bool,
    /// Each output column as the feature indices it multiplies (after `fit`).
    pub powers: Vec<Vec<usize>>,
    /// Input width (after `fit`).
    pub width: usize,
}

impl PolynomialFeatures {
    /// Degree `degree` with a bias column and all products (sklearn's defaults for degree 2).
    pub fn new(degree: usize) -> Self {
        PolynomialFeatures {
            degree,
            interaction_only: false,
            include_bias: true,
            powers: Vec::new(),
            width: 0,
        }
    }
}

/// Appends every non-decreasing (strictly increasing if `strict`) index list of length `len`
/// over `0..n`, in lexicographic order.
fn combos(n: usize, len: usize, strict: bool, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    if cur.len() == len {
        out.push(cur.clone());
        return;
    }
    let start = match cur.last() {
        Some(&l) if strict => l + 1,
        Some(&l) => l,
        None => 0,
    };
    for i in start..n {
        cur.push(i);
        combos(n, len, strict, cur, out);
        cur.pop();
    }
}

impl Transformer for PolynomialFeatures {
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()> {
        if self.degree == 0 {
            return Err(invalid("PolynomialFeatures degree", "needs at least 1"));
        }
        let (_, n) = x.dims2("PolynomialFeatures")?;
        self.width = n;
        self.powers.clear();
        if self.include_bias {
            self.powers.push(Vec::new());
        }
        for d in 1..=self.degree {
            combos(
                n,
                d,
                self.interaction_only,
                &mut Vec::new(),
                &mut self.powers,
            );
        }
        Ok(())
    }

    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let d = check_width(x, self.width, "PolynomialFeatures")?;
        let (r, _) = x.dims2("PolynomialFeatures")?;
        let mut out = Vec::with_capacity(r * self.powers.len());
        for row in x.data().chunks(d.max(1)).take(r) {
            for p in &self.powers {
                out.push(p.iter().map(|&i| row[i]).product::<f64>());
            }
        }
        Tensor::new(&[r, self.powers.len()], out)
    }
}

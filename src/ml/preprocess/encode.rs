//! Categorical encoders over string columns (rows of equal width), with scikit-learn's
//! definitions: categories sorted, [`OneHotEncoder`] (unknown categories an error or all
//! zeros), [`OrdinalEncoder`] (index of the category; unknown an error or a given value),
//! [`LabelEncoder`] (one column of class labels) and [`TargetEncoder`] (the smoothed target
//! mean per category, sklearn's `TargetEncoder(smooth=m)` after `fit`, for a continuous or
//! binary target).

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet, HashSetExt};

use serde::{Deserialize, Serialize};

use crate::ml::error::{Result, invalid, shape};
use crate::ml::sparse::CsrMatrix;
use crate::ml::tensor::Tensor;

/// What to do with a category not seen by `fit`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Unknown {
    /// Fail with an error naming the column and value.
    Error,
    /// One-hot: all zeros. Ordinal/target: this value.
    Ignore(f64),
}

fn width(rows: &[Vec<String>], what: &'static str) -> Result<usize> {
    let w = rows.first().map_or(0, |r| r.len());
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != w) {
        return Err(shape(
            what,
            format!("row {i} has {} values, row 0 has {w}", r.len()),
        ));
    }
    Ok(w)
}

/// Sorted distinct values per column (borrowed while counting: one copy per category, not
/// per value).
fn categories(rows: &[Vec<String>], what: &'static str) -> Result<Vec<Vec<String>>> {
    let w = width(rows, what)?;
    let mut cats: Vec<HashSet<&str>> = vec![HashSet::new(); w];
    for r in rows {
        for (j, v) in r.iter().enumerate() {
            cats[j].insert(v.as_str());
        }
    }
    Ok(cats
        .into_iter()
        .map(|s| {
            let mut v: Vec<String> = s.into_iter().map(str::to_string).collect();
            v.sort();
            v
        })
        .collect())
}

/// Category -> index maps for lookups while transforming.
fn index_of(cats: &[Vec<String>]) -> Vec<HashMap<&str, usize>> {
    cats.iter()
        .map(|c| c.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect())
        .collect()
}

fn check_cols(rows: &[Vec<String>], n: usize, what: &'static str) -> Result<()> {
    let w = width(rows, what)?;
    if !rows.is_empty() && w != n {
        return Err(shape(what, format!("fitted on {n} columns, given {w}")));
    }
    Ok(())
}

fn unknown(what: &'static str, col: usize, v: &str) -> crate::ml::MlError {
    invalid(what, format!("unknown category {v:?} in column {col}"))
}

/// One indicator column per (column, category).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneHotEncoder {
    /// Unknown categories: `Error` or `Ignore(_)` (all zeros).
    pub handle_unknown: Unknown,
    /// Sorted categories per column (after `fit`).
    pub categories: Vec<Vec<String>>,
}

impl OneHotEncoder {
    /// Not fitted; unknown categories handled by `handle_unknown`.
    pub fn new(handle_unknown: Unknown) -> Self {
        OneHotEncoder {
            handle_unknown,
            categories: Vec::new(),
        }
    }

    /// Learns the categories.
    ///
    /// # Errors
    /// When rows differ in width.
    pub fn fit(&mut self, rows: &[Vec<String>]) -> Result<()> {
        self.categories = categories(rows, "OneHotEncoder")?;
        Ok(())
    }

    /// Output width: the number of categories over all columns.
    pub fn width(&self) -> usize {
        self.categories.iter().map(|c| c.len()).sum()
    }

    /// The indicator matrix.
    ///
    /// # Errors
    /// Width mismatch, or an unknown category with `Unknown::Error`.
    pub fn transform(&self, rows: &[Vec<String>]) -> Result<Tensor<f64>> {
        check_cols(rows, self.categories.len(), "OneHotEncoder")?;
        let w = self.width();
        let idx = index_of(&self.categories);
        let mut out = vec![0.0; rows.len() * w];
        for (i, r) in rows.iter().enumerate() {
            let mut off = 0;
            for (j, v) in r.iter().enumerate() {
                match idx[j].get(v.as_str()) {
                    Some(&k) => out[i * w + off + k] = 1.0,
                    None if self.handle_unknown == Unknown::Error => {
                        return Err(unknown("OneHotEncoder", j, v));
                    }
                    None => {}
                }
                off += self.categories[j].len();
            }
        }
        Tensor::new(&[rows.len(), w], out)
    }
}

impl OneHotEncoder {
    /// The indicator matrix in CSR form (scikit-learn's default `sparse_output=True`): one
    /// stored 1 per known value, nothing for an ignored unknown one.
    ///
    /// # Errors
    /// As [`transform`](Self::transform).
    pub fn transform_sparse(&self, rows: &[Vec<String>]) -> Result<CsrMatrix> {
        check_cols(rows, self.categories.len(), "OneHotEncoder")?;
        let idx = index_of(&self.categories);
        let offsets: Vec<u32> = self
            .categories
            .iter()
            .scan(0u32, |o, c| {
                let at = *o;
                *o += c.len() as u32;
                Some(at)
            })
            .collect();
        let width = self.categories.len();
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        let mut indices = Vec::with_capacity(rows.len() * width);
        indptr.push(0);
        for r in rows {
            for (j, v) in r.iter().enumerate() {
                match idx[j].get(v.as_str()) {
                    Some(&k) => indices.push(offsets[j] + k as u32),
                    None if self.handle_unknown == Unknown::Error => {
                        return Err(unknown("OneHotEncoder", j, v));
                    }
                    None => {}
                }
            }
            indptr.push(indices.len());
        }
        Ok(CsrMatrix {
            rows: rows.len(),
            cols: self.width(),
            data: vec![1.0; indices.len()],
            indptr,
            indices,
        })
    }
}

/// The index of each value's category, per column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrdinalEncoder {
    /// Unknown categories: `Error`, or `Ignore(v)` (encoded as `v`).
    pub handle_unknown: Unknown,
    /// Sorted categories per column (after `fit`).
    pub categories: Vec<Vec<String>>,
}

impl OrdinalEncoder {
    /// Not fitted.
    pub fn new(handle_unknown: Unknown) -> Self {
        OrdinalEncoder {
            handle_unknown,
            categories: Vec::new(),
        }
    }

    /// Learns the categories.
    ///
    /// # Errors
    /// When rows differ in width.
    pub fn fit(&mut self, rows: &[Vec<String>]) -> Result<()> {
        self.categories = categories(rows, "OrdinalEncoder")?;
        Ok(())
    }

    /// Category indices as `f64`.
    ///
    /// # Errors
    /// Width mismatch, or an unknown category with `Unknown::Error`.
    pub fn transform(&self, rows: &[Vec<String>]) -> Result<Tensor<f64>> {
        check_cols(rows, self.categories.len(), "OrdinalEncoder")?;
        let w = self.categories.len();
        let mut out = Vec::with_capacity(rows.len() * w);
        for r in rows {
            for (j, v) in r.iter().enumerate() {
                out.push(
                    match (self.categories[j].binary_search(v), self.handle_unknown) {
                        (Ok(k), _) => k as f64,
                        (Err(_), Unknown::Ignore(x)) => x,
                        (Err(_), Unknown::Error) => return Err(unknown("OrdinalEncoder", j, v)),
                    },
                );
            }
        }
        Tensor::new(&[rows.len(), w], out)
    }
}

/// Class labels to `0..n_classes` (sorted classes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelEncoder {
    /// Sorted distinct labels (after `fit`).
    pub classes: Vec<String>,
}

impl LabelEncoder {
    /// Learns the classes.
    pub fn fit(&mut self, labels: &[String]) {
        let s: std::collections::BTreeSet<_> = labels.iter().cloned().collect();
        self.classes = s.into_iter().collect();
    }

    /// The index of each label.
    ///
    /// # Errors
    /// A label not seen by `fit`.
    pub fn transform(&self, labels: &[String]) -> Result<Vec<usize>> {
        labels
            .iter()
            .map(|l| {
                self.classes
                    .binary_search(l)
                    .map_err(|_| invalid("LabelEncoder", format!("unknown label {l:?}")))
            })
            .collect()
    }

    /// The labels of indices.
    ///
    /// # Errors
    /// An index `>= classes`.
    pub fn inverse(&self, idx: &[usize]) -> Result<Vec<String>> {
        idx.iter()
            .map(|&i| {
                self.classes.get(i).cloned().ok_or_else(|| {
                    invalid(
                        "LabelEncoder",
                        format!("index {i} of {}", self.classes.len()),
                    )
                })
            })
            .collect()
    }
}

/// Each category replaced by a smoothed mean of the target:
/// `(n_c * mean_c + smooth * mean) / (n_c + smooth)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetEncoder {
    /// Weight of the global mean (sklearn's `smooth` as a number).
    pub smooth: f64,
    /// Unknown categories: `Error`, or encoded as the global target mean (`Ignore(_)`; the
    /// value is not used, as sklearn).
    pub handle_unknown: Unknown,
    /// The global target mean (after `fit`).
    pub target_mean: f64,
    /// Per column, category -> encoding (after `fit`).
    pub encodings: Vec<BTreeMap<String, f64>>,
}

impl TargetEncoder {
    /// Not fitted; `smooth` >= 0.
    pub fn new(smooth: f64) -> Self {
        TargetEncoder {
            smooth,
            handle_unknown: Unknown::Ignore(0.0),
            target_mean: 0.0,
            encodings: Vec::new(),
        }
    }

    /// Learns the encodings from `rows` and their targets `y`.
    ///
    /// # Errors
    /// Width or length mismatch, a negative `smooth`, no rows.
    pub fn fit(&mut self, rows: &[Vec<String>], y: &[f64]) -> Result<()> {
        if self.smooth.is_nan() || self.smooth < 0.0 {
            return Err(invalid(
                "TargetEncoder smooth",
                format!("{} < 0", self.smooth),
            ));
        }
        if rows.len() != y.len() || rows.is_empty() {
            return Err(shape(
                "TargetEncoder",
                format!("{} rows, {} targets", rows.len(), y.len()),
            ));
        }
        let w = width(rows, "TargetEncoder")?;
        self.target_mean = y.iter().sum::<f64>() / y.len() as f64;
        self.encodings = (0..w)
            .map(|j| {
                let mut acc: BTreeMap<String, (f64, f64)> = BTreeMap::new();
                for (r, &t) in rows.iter().zip(y) {
                    let e = acc.entry(r[j].clone()).or_default();
                    e.0 += t;
                    e.1 += 1.0;
                }
                acc.into_iter()
                    .map(|(k, (sum, n))| {
                        (
                            k,
                            (sum + self.smooth * self.target_mean) / (n + self.smooth),
                        )
                    })
                    .collect()
            })
            .collect();
        Ok(())
    }

    /// The encodings of `rows`.
    ///
    /// # Errors
    /// Width mismatch, or an unknown category with `Unknown::Error`.
    pub fn transform(&self, rows: &[Vec<String>]) -> Result<Tensor<f64>> {
        check_cols(rows, self.encodings.len(), "TargetEncoder")?;
        let w = self.encodings.len();
        let mut out = Vec::with_capacity(rows.len() * w);
        for r in rows {
            for (j, v) in r.iter().enumerate() {
                out.push(match (self.encodings[j].get(v), self.handle_unknown) {
                    (Some(&e), _) => e,
                    (None, Unknown::Ignore(_)) => self.target_mean,
                    (None, Unknown::Error) => return Err(unknown("TargetEncoder", j, v)),
                });
            }
        }
        Tensor::new(&[rows.len(), w], out)
    }
}

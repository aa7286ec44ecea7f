//! [`CsrMatrix`]: a compressed sparse row matrix (scipy's CSR layout: `indptr`, `indices`,
//! `data`), the output of encoders whose results are mostly zeros. Owns storage and
//! conversion to dense only.

use super::error::{Result, shape};
use super::tensor::Tensor;

/// Rows x cols with only the non-zero entries stored: row `i`'s entries are
/// `indices[indptr[i]..indptr[i + 1]]` (column numbers, increasing) with values `data[..]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows + 1` offsets into `indices` and `data`.
    pub indptr: Vec<usize>,
    /// Column of each stored entry.
    pub indices: Vec<u32>,
    /// Value of each stored entry.
    pub data: Vec<f64>,
}

impl CsrMatrix {
    /// Checks the layout invariants.
    ///
    /// # Errors
    /// Offsets that are not `rows + 1` non-decreasing values ending at the entry count, or a
    /// column out of range.
    pub fn validate(&self) -> Result<()> {
        let ok = self.indptr.len() == self.rows + 1
            && self.indptr.first() == Some(&0)
            && self.indptr.windows(2).all(|w| w[0] <= w[1])
            && self.indptr.last() == Some(&self.indices.len())
            && self.indices.len() == self.data.len()
            && self.indices.iter().all(|&c| (c as usize) < self.cols);
        if !ok {
            return Err(shape(
                "CsrMatrix",
                "offsets, columns or lengths are inconsistent",
            ));
        }
        Ok(())
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// The dense matrix.
    ///
    /// # Errors
    /// When the layout is inconsistent.
    pub fn to_dense(&self) -> Result<Tensor<f64>> {
        self.validate()?;
        let mut out = vec![0.0; self.rows * self.cols];
        for i in 0..self.rows {
            for k in self.indptr[i]..self.indptr[i + 1] {
                out[i * self.cols + self.indices[k] as usize] = self.data[k];
            }
        }
        Tensor::new(&[self.rows, self.cols], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_checked_and_densifies() {
        let m = CsrMatrix {
            rows: 2,
            cols: 3,
            indptr: vec![0, 1, 3],
            indices: vec![2, 0, 1],
            data: vec![5.0, 1.0, 2.0],
        };
        assert_eq!(m.to_dense().unwrap().data(), [0., 0., 5., 1., 2., 0.]);
        let mut bad = m.clone();
        bad.indices[0] = 3; // column out of range
        assert!(bad.validate().is_err());
        let mut bad = m.clone();
        bad.indptr = vec![0, 2, 1]; // decreasing
        assert!(bad.to_dense().is_err());
        let mut bad = m;
        bad.data.pop();
        assert!(bad.validate().is_err());
    }
}

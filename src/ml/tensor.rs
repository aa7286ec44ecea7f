//! [`Tensor`]: a dense, row-major, contiguous array of [`Element`]s with a shape. Owns storage
//! and the plain (non-differentiated) operations the autograd tape and the optimizers build
//! on; knows nothing of gradients.

use serde::{Deserialize, Serialize};

use super::element::Element;
use super::error::{Result, shape};

/// A dense row-major tensor. A scalar has shape `[]` and one element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "T: Element")]
pub struct Tensor<T: Element = f32> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Element> Tensor<T> {
    /// A tensor of `shape` holding `data` (row-major).
    ///
    /// # Errors
    /// [`MlError::Shape`](super::MlError::Shape) when `data` has not `shape`'s element count.
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(super::error::shape(
                "Tensor::new",
                format!(
                    "shape {shape:?} holds {n} elements, data has {}",
                    data.len()
                ),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// All zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    /// Every element `v`.
    pub fn full(shape: &[usize], v: T) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![v; shape.iter().product()],
        }
    }

    /// A scalar (shape `[]`).
    pub fn scalar(v: T) -> Self {
        Tensor {
            shape: Vec::new(),
            data: vec![v],
        }
    }

    /// A 2-D tensor from rows of equal length.
    ///
    /// # Errors
    /// When the rows differ in length.
    pub fn from_rows(rows: &[&[T]]) -> Result<Self> {
        let cols = rows.first().map_or(0, |r| r.len());
        if rows.iter().any(|r| r.len() != cols) {
            return Err(shape("Tensor::from_rows", "rows differ in length"));
        }
        Ok(Tensor {
            shape: vec![rows.len(), cols],
            data: rows.concat(),
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The elements, consumed.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// `(rows, cols)` of a 2-D tensor.
    ///
    /// # Errors
    /// When the tensor is not 2-D.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(shape(
                op,
                format!("needs a 2-D tensor, got {:?}", self.shape),
            )),
        }
    }

    /// The same elements under another shape with the same count.
    ///
    /// # Errors
    /// When the counts differ.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.data.len() {
            return Err(super::error::shape(
                "reshape",
                format!("{:?} -> {shape:?}", self.shape),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// The value of a one-element tensor.
    ///
    /// # Errors
    /// When the tensor has more or fewer elements.
    pub fn item(&self) -> Result<T> {
        match self.data[..] {
            [v] => Ok(v),
            _ => Err(shape(
                "item",
                format!("needs one element, shape {:?}", self.shape),
            )),
        }
    }

    /// `op(self) · op(other)` for 2-D tensors (`trans_*`: use the transpose).
    ///
    /// # Errors
    /// When either is not 2-D or the inner dimensions differ.
    pub fn matmul(&self, other: &Self, trans_a: bool, trans_b: bool) -> Result<Self> {
        let (ar, ac) = self.dims2("matmul")?;
        let (br, bc) = other.dims2("matmul")?;
        let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
        if k != k2 {
            return Err(shape(
                "matmul",
                format!(
                    "{:?}{} x {:?}{}: inner dimensions {k} and {k2}",
                    self.shape,
                    if trans_a { "^T" } else { "" },
                    other.shape,
                    if trans_b { "^T" } else { "" }
                ),
            ));
        }
        let mut out = Tensor::zeros(&[m, n]);
        T::gemm(
            &self.data,
            &other.data,
            &mut out.data,
            (m, n, k),
            trans_a,
            trans_b,
        )?;
        Ok(out)
    }

    /// The transpose of a 2-D tensor.
    ///
    /// # Errors
    /// When the tensor is not 2-D.
    pub fn transpose(&self) -> Result<Self> {
        let (r, c) = self.dims2("transpose")?;
        let mut out = Vec::with_capacity(r * c);
        for j in 0..c {
            for i in 0..r {
                out.push(self.data[i * c + j]);
            }
        }
        Ok(Tensor {
            shape: vec![c, r],
            data: out,
        })
    }

    /// `f` applied to every element.
    pub fn map(&self, f: impl Fn(T) -> T) -> Self {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }

    /// `f` applied to matching elements of two tensors of one shape.
    ///
    /// # Errors
    /// When the shapes differ.
    pub fn zip_map(&self, o: &Self, op: &'static str, f: impl Fn(T, T) -> T) -> Result<Self> {
        self.same_shape(o, op)?;
        Ok(Tensor {
            shape: self.shape.clone(),
            data: self
                .data
                .iter()
                .zip(&o.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        })
    }

    /// Adds `o * c` into `self` (shapes must match).
    ///
    /// # Errors
    /// When the shapes differ.
    pub fn add_scaled(&mut self, o: &Self, c: T) -> Result<()> {
        self.same_shape(o, "add_scaled")?;
        for (a, &b) in self.data.iter_mut().zip(&o.data) {
            *a += b * c;
        }
        Ok(())
    }

    /// Sum of the elements.
    pub fn sum(&self) -> T {
        self.data.iter().copied().sum()
    }

    /// Column sums of a 2-D tensor (a vector of `cols`).
    ///
    /// # Errors
    /// When the tensor is not 2-D.
    pub fn sum_rows(&self) -> Result<Self> {
        let (_, c) = self.dims2("sum_rows")?;
        let mut out = vec![T::zero(); c];
        for row in self.data.chunks(c.max(1)) {
            for (o, &x) in out.iter_mut().zip(row) {
                *o += x;
            }
        }
        Ok(Tensor {
            shape: vec![c],
            data: out,
        })
    }

    /// The elements converted to another element type.
    pub fn cast<U: Element>(&self) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|x| U::of(x.f64())).collect(),
        }
    }

    /// Errors unless `o` has this tensor's shape.
    pub(crate) fn same_shape(&self, o: &Self, op: &'static str) -> Result<()> {
        if self.shape != o.shape {
            return Err(shape(op, format!("{:?} vs {:?}", self.shape, o.shape)));
        }
        Ok(())
    }

    /// Largest absolute difference to `o` relative to `max(|o|, floor)`, element by element.
    ///
    /// # Errors
    /// When the shapes differ.
    pub fn max_rel_diff(&self, o: &Self, floor: f64) -> Result<f64> {
        self.same_shape(o, "max_rel_diff")?;
        Ok(self
            .data
            .iter()
            .zip(&o.data)
            .map(|(&a, &b)| (a.f64() - b.f64()).abs() / b.f64().abs().max(floor))
            .fold(0.0, f64::max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_in_every_transpose_matches_a_hand_product() {
        // [[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] = [[58,64],[139,154]] (by hand).
        let a = Tensor::<f32>::new(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let b = Tensor::<f32>::new(&[3, 2], vec![7., 8., 9., 10., 11., 12.]).unwrap();
        let want = [58., 64., 139., 154.];
        assert_eq!(a.matmul(&b, false, false).unwrap().data(), want);
        let (at, bt) = (a.transpose().unwrap(), b.transpose().unwrap());
        assert_eq!(at.matmul(&b, true, false).unwrap().data(), want);
        assert_eq!(a.matmul(&bt, false, true).unwrap().data(), want);
        assert_eq!(at.matmul(&bt, true, true).unwrap().data(), want);
        let a64: Tensor<f64> = a.cast();
        assert_eq!(
            a64.matmul(&bt.cast(), false, true).unwrap().data(),
            [58., 64., 139., 154.]
        );
        assert!(a.matmul(&a, false, false).is_err());
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert!(Tensor::<f32>::new(&[2, 2], vec![1.0; 3]).is_err());
        let t = Tensor::<f32>::zeros(&[4]);
        assert!(t.dims2("x").is_err());
        assert!(t.clone().reshape(&[3]).is_err());
        assert_eq!(t.clone().reshape(&[2, 2]).unwrap().shape(), [2, 2]);
        assert!(t.item().is_err());
        assert!(t.zip_map(&Tensor::zeros(&[5]), "z", |a, b| a + b).is_err());
        assert!(Tensor::<f32>::from_rows(&[&[1.0], &[1.0, 2.0]]).is_err());
    }
}

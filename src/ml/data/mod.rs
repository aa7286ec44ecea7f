//! Data for models: a typed CSV loader ([`Table`], [`CsvOptions`]), the UCI handwritten
//! digits set shipped in the crate ([`digits`], CC BY 4.0, see `DIGITS.md` beside this file),
//! and seeded synthetic generators ([`blobs`], [`moons`], [`regression`]). Must not touch
//! models or preprocessing.

mod csv_table;
mod synthetic;

pub use csv_table::{ColType, Column, CsvOptions, Table};
pub use synthetic::{blobs, moons, regression};

use super::error::Result;
use super::tensor::Tensor;

/// A labelled dataset: rows of features and one class per row.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    /// `rows x features`.
    pub x: Tensor<f64>,
    /// Class of each row.
    pub y: Vec<usize>,
}

/// The 1797 8x8 handwritten digits (pixel counts 0-16 as `f64`, classes 0-9), parsed from the
/// CSV compiled into the crate.
///
/// # Errors
/// Never for the shipped file; the parse is checked like any CSV.
pub fn digits() -> Result<Labelled> {
    let t = Table::from_reader(
        include_str!("digits.csv").as_bytes(),
        &CsvOptions::default(),
    )?;
    let names: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let x = t.numeric(&refs)?;
    let y = t.labels("label")?;
    Ok(Labelled { x, y })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_the_published_set() {
        let d = digits().unwrap();
        assert_eq!(d.x.shape(), [1797, 64]);
        // Per-class counts and the pixel sum as scikit-learn's load_digits reports them.
        let mut counts = [0usize; 10];
        for &c in &d.y {
            counts[c] += 1;
        }
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert_eq!(d.x.sum(), 561718.0);
        assert_eq!(&d.x.data()[..8], &[0., 0., 5., 13., 9., 1., 0., 0.]);
        assert!(d.x.data().iter().all(|&v| (0.0..=16.0).contains(&v)));
    }
}

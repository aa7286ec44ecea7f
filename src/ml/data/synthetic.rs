//! Seeded synthetic datasets with scikit-learn's shapes: [`blobs`] (isotropic Gaussian
//! clusters), [`moons`] (two interleaving half circles) and [`regression`] (a random linear
//! model plus noise). The same seed gives the same data; the values are not sklearn's (a
//! different generator).

use super::Labelled;
use crate::ml::error::{Result, invalid};
use crate::ml::init::Rng;
use crate::ml::tensor::Tensor;

/// `n` points in `features` dimensions around `centers` centres drawn uniformly in
/// `[-10, 10]^features`, standard deviation `std`; rows are shuffled.
///
/// # Errors
/// Zero centres or features, or a negative `std`.
pub fn blobs(n: usize, features: usize, centers: usize, std: f64, seed: u64) -> Result<Labelled> {
    if centers == 0 || features == 0 || std.is_nan() || std < 0.0 {
        return Err(invalid(
            "blobs",
            "needs centers >= 1, features >= 1, std >= 0",
        ));
    }
    let mut r = Rng::seed(seed);
    let c: Vec<f64> = (0..centers * features)
        .map(|_| r.uniform_in(-10.0, 10.0))
        .collect();
    let mut idx: Vec<usize> = (0..n).collect();
    r.shuffle(&mut idx);
    let mut x = vec![0.0; n * features];
    let mut y = vec![0; n];
    for (row, &i) in idx.iter().enumerate() {
        let k = i % centers; // classes as balanced as n allows
        y[row] = k;
        for f in 0..features {
            x[row * features + f] = c[k * features + f] + std * r.normal();
        }
    }
    Ok(Labelled {
        x: Tensor::new(&[n, features], x)?,
        y,
    })
}

/// `n` points on two interleaving half circles (class 0 the upper, class 1 the lower,
/// shifted), with Gaussian `noise`, rows shuffled.
pub fn moons(n: usize, noise: f64, seed: u64) -> Labelled {
    let mut r = Rng::seed(seed);
    let n0 = n.div_ceil(2);
    let n1 = n - n0;
    let mut pts: Vec<(f64, f64, usize)> = Vec::with_capacity(n);
    let step = |m: usize, i: usize| {
        if m <= 1 {
            0.0
        } else {
            std::f64::consts::PI * i as f64 / (m - 1) as f64
        }
    };
    for i in 0..n0 {
        let t = step(n0, i);
        pts.push((t.cos(), t.sin(), 0));
    }
    for i in 0..n1 {
        let t = step(n1, i);
        pts.push((1.0 - t.cos(), 0.5 - t.sin(), 1));
    }
    r.shuffle(&mut pts);
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(n);
    for (a, b, c) in pts {
        x.push(a + noise * r.normal());
        x.push(b + noise * r.normal());
        y.push(c);
    }
    Labelled {
        x: Tensor::new(&[n, 2], x).expect("2 n values"),
        y,
    }
}

/// `n` rows of `features` standard-normal inputs and targets `x . w + bias + noise N(0,
/// noise^2)` with `w` drawn uniformly in `[0, 100)` (sklearn's `make_regression`, all features
/// informative). Returns `(x, y, w)`.
pub fn regression(
    n: usize,
    features: usize,
    bias: f64,
    noise: f64,
    seed: u64,
) -> (Tensor<f64>, Vec<f64>, Vec<f64>) {
    let mut r = Rng::seed(seed);
    let w: Vec<f64> = (0..features).map(|_| 100.0 * r.uniform()).collect();
    let mut x = Vec::with_capacity(n * features);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..features).map(|_| r.normal()).collect();
        y.push(row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + bias + noise * r.normal());
        x.extend(row);
    }
    (
        Tensor::new(&[n, features], x).expect("n * features values"),
        y,
        w,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_seeded_and_have_their_shapes() {
        let a = blobs(300, 2, 3, 0.5, 1).unwrap();
        assert_eq!(a, blobs(300, 2, 3, 0.5, 1).unwrap());
        assert_ne!(a.x, blobs(300, 2, 3, 0.5, 2).unwrap().x);
        assert_eq!(a.x.shape(), [300, 2]);
        assert_eq!(a.y.iter().filter(|&&c| c == 2).count(), 100);
        // Tight clusters: every point is closest to its own cluster's mean.
        let mean = |k: usize| {
            let pts: Vec<&[f64]> =
                a.x.data()
                    .chunks(2)
                    .zip(&a.y)
                    .filter(|(_, c)| **c == k)
                    .map(|(p, _)| p)
                    .collect();
            let n = pts.len() as f64;
            (
                pts.iter().map(|p| p[0]).sum::<f64>() / n,
                pts.iter().map(|p| p[1]).sum::<f64>() / n,
            )
        };
        let ms: Vec<_> = (0..3).map(mean).collect();
        for (p, &c) in a.x.data().chunks(2).zip(&a.y) {
            let d = |m: (f64, f64)| (p[0] - m.0).powi(2) + (p[1] - m.1).powi(2);
            let best = (0..3)
                .min_by(|&i, &j| d(ms[i]).total_cmp(&d(ms[j])))
                .unwrap();
            assert_eq!(best, c);
        }
        let m = moons(101, 0.0, 3);
        assert_eq!(m.y.iter().filter(|&&c| c == 0).count(), 51);
        for (p, &c) in m.x.data().chunks(2).zip(&m.y) {
            let r = if c == 0 {
                p[0].hypot(p[1])
            } else {
                (p[0] - 1.0).hypot(p[1] - 0.5)
            };
            assert!((r - 1.0).abs() < 1e-12);
        }
        let (x, y, w) = regression(200, 3, 5.0, 0.0, 4);
        for (row, t) in x.data().chunks(3).zip(&y) {
            let p: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + 5.0;
            assert!((p - t).abs() < 1e-9);
        }
        assert!(blobs(10, 0, 1, 1.0, 0).is_err());
    }
}

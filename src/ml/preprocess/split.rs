//! [`train_test_split`]: a seeded shuffle of row indices into train and test sets, optionally
//! stratified (each class split in the same proportion). The split depends only on the seed,
//! the row count and the labels; it does not reproduce sklearn's numbers (a different random
//! generator), only its rules: `ceil(test_fraction * n)` test rows, and with stratification
//! every class keeps its share within one row.

use std::collections::BTreeMap;

use crate::ml::error::{Result, invalid, shape};
use crate::ml::init::Rng;

/// `(train, test)` row indices of `n` rows, `test_fraction` of them (rounded up) in the test
/// set, shuffled with `seed`; with `stratify`, per class.
///
/// # Errors
/// A fraction outside `(0, 1)`, labels of the wrong length, or a split that leaves either
/// side empty.
pub fn train_test_split(
    n: usize,
    test_fraction: f64,
    seed: u64,
    stratify: Option<&[usize]>,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(invalid(
            "test_fraction",
            format!("{test_fraction} is outside (0, 1)"),
        ));
    }
    let n_test = (test_fraction * n as f64).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(invalid(
            "train_test_split",
            format!("{n} rows leave an empty side at {test_fraction}"),
        ));
    }
    let mut rng = Rng::seed(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    match stratify {
        None => {
            let mut idx: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut idx);
            test.extend_from_slice(&idx[..n_test]);
            train.extend_from_slice(&idx[n_test..]);
        }
        Some(labels) => {
            if labels.len() != n {
                return Err(shape(
                    "train_test_split",
                    format!("{} labels for {n} rows", labels.len()),
                ));
            }
            let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, &c) in labels.iter().enumerate() {
                by.entry(c).or_default().push(i);
            }
            // Each class's share of the test rows, largest remainders first, so the total
            // is exactly n_test.
            let mut shares: Vec<(usize, usize, f64)> = by
                .iter()
                .map(|(&c, v)| {
                    let exact = n_test as f64 * v.len() as f64 / n as f64;
                    (c, exact.floor() as usize, exact - exact.floor())
                })
                .collect();
            let mut left = n_test - shares.iter().map(|s| s.1).sum::<usize>();
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_by(|&a, &b| shares[b].2.total_cmp(&shares[a].2).then(a.cmp(&b)));
            for &i in &order {
                if left == 0 {
                    break;
                }
                if shares[i].1 < by[&shares[i].0].len() {
                    shares[i].1 += 1;
                    left -= 1;
                }
            }
            for (c, k, _) in shares {
                let mut v = by[&c].clone();
                rng.shuffle(&mut v);
                test.extend_from_slice(&v[..k]);
                train.extend_from_slice(&v[k..]);
            }
            rng.shuffle(&mut test);
            rng.shuffle(&mut train);
        }
    }
    Ok((train, test))
}

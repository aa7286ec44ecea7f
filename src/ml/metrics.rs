//! Classification and regression metrics with scikit-learn's definitions: accuracy,
//! confusion matrix, precision / recall / F1 (binary, micro, macro, weighted; a zero
//! denominator gives 0, sklearn's `zero_division=0`), log loss and R². Owns nothing else.

use super::error::{Result, invalid, shape};

/// How per-class precision, recall and F1 are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Average {
    /// Only the given positive class.
    Binary(usize),
    /// From the total true positives, false positives and false negatives.
    Micro,
    /// The unweighted mean over classes.
    Macro,
    /// The mean over classes weighted by their support (true count).
    Weighted,
}

/// Precision, recall and F1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prf {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

fn same_len(a: usize, b: usize, op: &'static str) -> Result<()> {
    if a != b {
        return Err(shape(op, format!("{a} predictions for {b} labels")));
    }
    Ok(())
}

/// Fraction of predictions equal to the truth.
///
/// # Errors
/// When the lengths differ.
pub fn accuracy(pred: &[usize], truth: &[usize]) -> Result<f64> {
    same_len(pred.len(), truth.len(), "accuracy")?;
    let hit = pred.iter().zip(truth).filter(|(p, t)| p == t).count();
    Ok(hit as f64 / truth.len().max(1) as f64)
}

/// `m[truth][pred]` counts (sklearn's layout: rows are true classes).
///
/// # Errors
/// When the lengths differ or a class is `>= classes`.
pub fn confusion_matrix(pred: &[usize], truth: &[usize], classes: usize) -> Result<Vec<Vec<u64>>> {
    same_len(pred.len(), truth.len(), "confusion_matrix")?;
    let mut m = vec![vec![0u64; classes]; classes];
    for (&p, &t) in pred.iter().zip(truth) {
        if p >= classes || t >= classes {
            return Err(invalid(
                "class",
                format!("{} is outside 0..{classes}", p.max(t)),
            ));
        }
        m[t][p] += 1;
    }
    Ok(m)
}

fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

fn f1(p: f64, r: f64) -> f64 {
    div(2.0 * p * r, p + r)
}

/// Precision, recall and F1 combined by `avg`.
///
/// # Errors
/// As [`confusion_matrix`].
pub fn precision_recall_f1(
    pred: &[usize],
    truth: &[usize],
    classes: usize,
    avg: Average,
) -> Result<Prf> {
    let m = confusion_matrix(pred, truth, classes)?;
    let tp = |c: usize| m[c][c] as f64;
    let predicted = |c: usize| (0..classes).map(|t| m[t][c]).sum::<u64>() as f64;
    let support = |c: usize| m[c].iter().sum::<u64>() as f64;
    let per = |c: usize| {
        let (p, r) = (div(tp(c), predicted(c)), div(tp(c), support(c)));
        Prf {
            precision: p,
            recall: r,
            f1: f1(p, r),
        }
    };
    Ok(match avg {
        Average::Binary(c) => {
            if c >= classes {
                return Err(invalid("positive class", format!("{c} of {classes}")));
            }
            per(c)
        }
        Average::Micro => {
            let t: f64 = (0..classes).map(tp).sum();
            let p = div(t, pred.len() as f64);
            let r = div(t, truth.len() as f64);
            Prf {
                precision: p,
                recall: r,
                f1: f1(p, r),
            }
        }
        Average::Macro | Average::Weighted => {
            let total: f64 = (0..classes).map(support).sum();
            let w = |c: usize| {
                if avg == Average::Macro {
                    1.0 / classes.max(1) as f64
                } else {
                    div(support(c), total)
                }
            };
            let mut out = Prf {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
            };
            for c in 0..classes {
                let x = per(c);
                out.precision += w(c) * x.precision;
                out.recall += w(c) * x.recall;
                out.f1 += w(c) * x.f1;
            }
            out
        }
    })
}

/// Mean negative log-likelihood of the true class, probabilities clipped to
/// `[eps, 1 - eps]` with `eps = f64::EPSILON` (sklearn's `log_loss` default) and each row
/// renormalised.
///
/// # Errors
/// When the lengths differ or a label is outside its row.
pub fn log_loss(probs: &[Vec<f64>], truth: &[usize]) -> Result<f64> {
    same_len(probs.len(), truth.len(), "log_loss")?;
    let eps = f64::EPSILON;
    let mut s = 0.0;
    for (row, &t) in probs.iter().zip(truth) {
        if t >= row.len() {
            return Err(invalid("label", format!("{t} for a row of {}", row.len())));
        }
        let clipped: Vec<f64> = row.iter().map(|p| p.clamp(eps, 1.0 - eps)).collect();
        let z: f64 = clipped.iter().sum();
        s -= (clipped[t] / z).ln();
    }
    Ok(s / truth.len().max(1) as f64)
}

/// Coefficient of determination `1 - SS_res / SS_tot` (1 for a perfect fit; sklearn's
/// conventions when the truth is constant: 1 if the fit is perfect, else 0).
///
/// # Errors
/// When the lengths differ.
pub fn r2(pred: &[f64], truth: &[f64]) -> Result<f64> {
    same_len(pred.len(), truth.len(), "r2")?;
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let ss_res: f64 = pred.iter().zip(truth).map(|(p, t)| (t - p) * (t - p)).sum();
    let ss_tot: f64 = truth.iter().map(|t| (t - mean) * (t - mean)).sum();
    Ok(if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values by hand from the confusion matrix of this example
    // (truth rows x predicted columns): [[2,0,0],[1,1,1],[0,1,2]].
    const TRUTH: [usize; 8] = [0, 0, 1, 1, 1, 2, 2, 2];
    const PRED: [usize; 8] = [0, 0, 0, 1, 2, 1, 2, 2];

    #[test]
    fn classification_metrics_match_hand_counts() {
        assert_eq!(accuracy(&PRED, &TRUTH).unwrap(), 5.0 / 8.0);
        assert_eq!(
            confusion_matrix(&PRED, &TRUTH, 3).unwrap(),
            vec![vec![2, 0, 0], vec![1, 1, 1], vec![0, 1, 2]]
        );
        // Per class: precision 2/3, 1/2, 2/3; recall 1, 1/3, 2/3; F1 0.8, 0.4, 2/3.
        let m = precision_recall_f1(&PRED, &TRUTH, 3, Average::Macro).unwrap();
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(m.precision, (2.0 / 3.0 + 0.5 + 2.0 / 3.0) / 3.0);
        close(m.recall, (1.0 + 1.0 / 3.0 + 2.0 / 3.0) / 3.0);
        close(m.f1, (0.8 + 0.4 + 2.0 / 3.0) / 3.0);
        let w = precision_recall_f1(&PRED, &TRUTH, 3, Average::Weighted).unwrap();
        close(w.f1, (2.0 * 0.8 + 3.0 * 0.4 + 3.0 * 2.0 / 3.0) / 8.0);
        let mi = precision_recall_f1(&PRED, &TRUTH, 3, Average::Micro).unwrap();
        close(mi.f1, 5.0 / 8.0);
        let b = precision_recall_f1(&PRED, &TRUTH, 3, Average::Binary(1)).unwrap();
        close(b.precision, 0.5);
        close(b.recall, 1.0 / 3.0);
        assert!(confusion_matrix(&[3], &[0], 3).is_err());
        assert!(accuracy(&[0], &[0, 1]).is_err());
    }

    #[test]
    fn log_loss_and_r2_match_hand_values() {
        let p = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.5, 0.5]];
        let want = -(0.9f64.ln() + 0.8f64.ln() + 0.5f64.ln()) / 3.0;
        assert!((log_loss(&p, &[0, 1, 1]).unwrap() - want).abs() < 1e-12);
        // truth mean 2; SS_tot = 2; SS_res = 0.01 + 0 + 0.04.
        let r = r2(&[1.1, 2.0, 3.2], &[1.0, 2.0, 3.0]).unwrap();
        assert!((r - (1.0 - 0.05 / 2.0)).abs() < 1e-12);
        assert_eq!(r2(&[1.0, 1.0], &[1.0, 1.0]).unwrap(), 1.0);
    }
}

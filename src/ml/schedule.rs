//! Learning-rate schedules with PyTorch's formulas: [`Schedule`] (step, multi-step,
//! exponential, linear warm-up, cosine annealing, cosine with warm restarts) computed in
//! closed form from the epoch, and [`ReduceOnPlateau`], driven by a metric. Each sets the
//! learning rate of every group of an [`Optimizer`] from that group's base rate. Must not
//! touch parameters.

use super::element::Element;
use super::error::{Result, invalid};
use super::optim::Optimizer;

/// A learning rate as a function of the epoch (PyTorch's closed forms).
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// `base * gamma^floor(epoch / step_size)` (`StepLR`).
    Step {
        /// Epochs per decay.
        step_size: u64,
        /// Factor per decay.
        gamma: f64,
    },
    /// `base * gamma^(milestones passed)` (`MultiStepLR`; sorted milestones).
    MultiStep {
        /// Epochs at which the rate decays.
        milestones: Vec<u64>,
        /// Factor per milestone.
        gamma: f64,
    },
    /// `base * gamma^epoch` (`ExponentialLR`).
    Exponential {
        /// Factor per epoch.
        gamma: f64,
    },
    /// Linear from `start * base` to `end * base` over `total` epochs, then flat (`LinearLR`,
    /// the usual warm-up).
    Linear {
        /// Starting factor.
        start: f64,
        /// Final factor.
        end: f64,
        /// Epochs of the ramp.
        total: u64,
    },
    /// `eta_min + (base - eta_min) (1 + cos(pi epoch / t_max)) / 2` (`CosineAnnealingLR`).
    Cosine {
        /// Half period.
        t_max: u64,
        /// Lowest rate.
        eta_min: f64,
    },
    /// Cosine annealing restarted after `t0`, then `t0 t_mult`, … epochs
    /// (`CosineAnnealingWarmRestarts`).
    CosineWarmRestarts {
        /// First period.
        t0: u64,
        /// Growth of each next period (>= 1).
        t_mult: u64,
        /// Lowest rate.
        eta_min: f64,
    },
}

impl Schedule {
    /// Checks the settings.
    ///
    /// # Errors
    /// Zero periods, `t_mult < 1`, unsorted milestones.
    pub fn validate(&self) -> Result<()> {
        let bad = match self {
            Schedule::Step { step_size, .. } => *step_size == 0,
            Schedule::MultiStep { milestones, .. } => milestones.windows(2).any(|w| w[0] > w[1]),
            Schedule::Exponential { .. } => false,
            Schedule::Linear { total, .. } => *total == 0,
            Schedule::Cosine { t_max, .. } => *t_max == 0,
            Schedule::CosineWarmRestarts { t0, t_mult, .. } => *t0 == 0 || *t_mult == 0,
        };
        if bad {
            return Err(invalid("schedule", format!("{self:?}")));
        }
        Ok(())
    }

    /// The rate at `epoch` for a group whose base rate is `base`.
    pub fn lr(&self, base: f64, epoch: u64) -> f64 {
        use std::f64::consts::PI;
        match self {
            Schedule::Step { step_size, gamma } => {
                base * gamma.powi((epoch / (*step_size).max(1)) as i32)
            }
            Schedule::MultiStep { milestones, gamma } => {
                let passed = milestones.partition_point(|&m| m <= epoch);
                base * gamma.powi(passed as i32)
            }
            Schedule::Exponential { gamma } => base * gamma.powi(epoch as i32),
            Schedule::Linear { start, end, total } => {
                let t = epoch.min(*total) as f64 / (*total).max(1) as f64;
                base * (start + (end - start) * t)
            }
            Schedule::Cosine { t_max, eta_min } => {
                eta_min
                    + (base - eta_min) * (1.0 + (PI * epoch as f64 / (*t_max).max(1) as f64).cos())
                        / 2.0
            }
            Schedule::CosineWarmRestarts {
                t0,
                t_mult,
                eta_min,
            } => {
                let (t0, m) = ((*t0).max(1), (*t_mult).max(1));
                let (t_cur, t_i) = if m == 1 {
                    (epoch % t0, t0)
                } else {
                    // The period epoch falls in: t0 (m^n - 1) / (m - 1) <= epoch.
                    let (mut start, mut len) = (0u64, t0);
                    while epoch >= start + len {
                        start += len;
                        len *= m;
                    }
                    (epoch - start, len)
                };
                eta_min + (base - eta_min) * (1.0 + (PI * t_cur as f64 / t_i as f64).cos()) / 2.0
            }
        }
    }
}

/// A [`Schedule`] bound to an optimizer's base rates; [`step`](Scheduler::step) once per
/// epoch (or per iteration, for warm-ups counted in iterations).
#[derive(Clone, Debug)]
pub struct Scheduler {
    schedule: Schedule,
    base: Vec<f64>,
    epoch: u64,
}

impl Scheduler {
    /// Takes each group's current rate as its base and sets epoch 0's rate.
    ///
    /// # Errors
    /// When the schedule's settings are invalid.
    pub fn new<T: Element>(schedule: Schedule, opt: &mut dyn Optimizer<T>) -> Result<Self> {
        schedule.validate()?;
        let base = opt.groups().iter().map(|g| g.lr).collect();
        let s = Scheduler {
            schedule,
            base,
            epoch: 0,
        };
        s.apply(opt);
        Ok(s)
    }

    /// Moves to the next epoch and sets the rates.
    pub fn step<T: Element>(&mut self, opt: &mut dyn Optimizer<T>) {
        self.epoch += 1;
        self.apply(opt);
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn apply<T: Element>(&self, opt: &mut dyn Optimizer<T>) {
        for (g, &b) in opt.groups_mut().iter_mut().zip(&self.base) {
            g.lr = self.schedule.lr(b, self.epoch);
        }
    }
}

/// PyTorch's `ReduceLROnPlateau` in `min` mode with a relative threshold: when the metric has
/// not improved on the best by more than `threshold` (relative) for more than `patience`
/// steps, every rate is multiplied by `factor` (not below `min_lr`), then `cooldown` steps
/// pass before counting again.
#[derive(Clone, Debug)]
pub struct ReduceOnPlateau {
    /// Multiplier on a reduction (0.1).
    pub factor: f64,
    /// Steps without improvement tolerated (10).
    pub patience: u64,
    /// Relative improvement that counts (1e-4).
    pub threshold: f64,
    /// Steps after a reduction before counting resumes (0).
    pub cooldown: u64,
    /// Lowest rate (0).
    pub min_lr: f64,
    /// A change smaller than this is not made (1e-8).
    pub eps: f64,
    best: f64,
    bad: u64,
    cooling: u64,
}

impl Default for ReduceOnPlateau {
    fn default() -> Self {
        ReduceOnPlateau {
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
            best: f64::INFINITY,
            bad: 0,
            cooling: 0,
        }
    }
}

impl ReduceOnPlateau {
    /// Feeds one value of the metric (lower is better); returns whether rates were reduced.
    pub fn step<T: Element>(&mut self, metric: f64, opt: &mut dyn Optimizer<T>) -> bool {
        if metric < self.best * (1.0 - self.threshold) {
            self.best = metric;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.cooling > 0 {
            self.cooling -= 1;
            self.bad = 0;
        }
        if self.bad > self.patience {
            let mut changed = false;
            for g in opt.groups_mut() {
                let new = (g.lr * self.factor).max(self.min_lr);
                if g.lr - new > self.eps {
                    g.lr = new;
                    changed = true;
                }
            }
            self.cooling = self.cooldown;
            self.bad = 0;
            return changed;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    //! Expected rates by hand from PyTorch's closed forms (base rate 0.1).
    use super::*;
    use crate::ml::optim::{Sgd, SgdConfig};

    fn rates(s: Schedule, epochs: u64) -> Vec<f64> {
        let mut opt = Sgd::<f32>::new(SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        });
        let mut sch = Scheduler::new(s, &mut opt).unwrap();
        let mut out = vec![opt.groups()[0].lr];
        for _ in 0..epochs {
            sch.step(&mut opt);
            out.push(opt.groups()[0].lr);
        }
        out
    }

    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (e, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-12, "epoch {e}: {g} vs {w}");
        }
    }

    #[test]
    fn closed_forms_match_hand_values() {
        close(
            &rates(
                Schedule::Step {
                    step_size: 3,
                    gamma: 0.5,
                },
                7,
            ),
            &[0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025],
        );
        close(
            &rates(
                Schedule::MultiStep {
                    milestones: vec![2, 5],
                    gamma: 0.1,
                },
                6,
            ),
            &[0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001],
        );
        close(
            &rates(Schedule::Exponential { gamma: 0.9 }, 3),
            &[0.1, 0.09, 0.081, 0.0729],
        );
        close(
            &rates(
                Schedule::Linear {
                    start: 0.1,
                    end: 1.0,
                    total: 4,
                },
                5,
            ),
            &[0.01, 0.0325, 0.055, 0.0775, 0.1, 0.1],
        );
        let c = 0.1 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0; // cos(pi/4)
        let c3 = 0.1 * (1.0 - std::f64::consts::FRAC_1_SQRT_2) / 2.0; // cos(3pi/4)
        close(
            &rates(
                Schedule::Cosine {
                    t_max: 4,
                    eta_min: 0.0,
                },
                4,
            ),
            &[0.1, c, 0.05, c3, 0.0],
        );
        // Periods [0, 2), [2, 6), [6, 14).
        close(
            &rates(
                Schedule::CosineWarmRestarts {
                    t0: 2,
                    t_mult: 2,
                    eta_min: 0.0,
                },
                6,
            ),
            &[0.1, 0.05, 0.1, c, 0.05, c3, 0.1],
        );
        assert!(
            Schedule::Step {
                step_size: 0,
                gamma: 0.5
            }
            .validate()
            .is_err()
        );
        assert!(
            Schedule::MultiStep {
                milestones: vec![5, 2],
                gamma: 0.1
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn reduce_on_plateau_waits_patience_then_cools_down() {
        let mut opt = Sgd::<f32>::new(SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        });
        let mut r = ReduceOnPlateau {
            patience: 2,
            factor: 0.5,
            cooldown: 1,
            ..ReduceOnPlateau::default()
        };
        // 1.0 best; 0.9 better; then three without improvement: the third exceeds patience 2.
        let cuts: Vec<bool> = [1.0, 0.9, 0.95, 0.95, 0.95]
            .iter()
            .map(|&m| r.step(m, &mut opt))
            .collect();
        assert_eq!(cuts, [false, false, false, false, true]);
        assert!((opt.groups()[0].lr - 0.05).abs() < 1e-12);
        // Cooldown 1: the next bad step does not count; then three more are needed.
        let cuts: Vec<bool> = [0.95, 0.95, 0.95, 0.95]
            .iter()
            .map(|&m| r.step(m, &mut opt))
            .collect();
        assert_eq!(cuts, [false, false, false, true]);
        assert!((opt.groups()[0].lr - 0.025).abs() < 1e-12);
        // An improvement by less than the relative threshold (1e-4) is not one.
        let mut r = ReduceOnPlateau {
            patience: 0,
            ..ReduceOnPlateau::default()
        };
        assert!(!r.step(1.0, &mut opt));
        assert!(r.step(0.99999, &mut opt));
    }
}

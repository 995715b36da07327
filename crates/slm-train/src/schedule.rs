//! Learning-rate schedules, computed exactly as transformers' `get_*_schedule_with_warmup`
//! (`transformers/optimization.py`): a `LambdaLR` whose multiplier at step `s` scales the base
//! learning rate.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_non_negative, check_positive};

/// A learning-rate schedule: the base `lr` and how it evolves over optimizer steps.
///
/// [`lr_at`](Self::lr_at)`(s)` is the rate the optimizer uses at step `s` (counted from 0, read
/// before `opt.step(); sched.step()` in PyTorch terms). Warmup rises linearly from 0 at step 0
/// to `lr` at `num_warmup_steps`. Field names are transformers' argument names; serde writes
/// `{"type": "cosine_with_warmup", "lr": .., ..}`.
///
/// Build through the constructors ([`cosine_with_warmup`](Self::cosine_with_warmup), ...), which
/// validate; a value built or deserialized directly can be checked with
/// [`validate`](Self::validate). [`lr_at`](Self::lr_at) never panics either way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LrSchedule {
    /// `lr` at every step (`get_constant_schedule`).
    Constant {
        /// Base learning rate.
        lr: f64,
    },
    /// Warmup, then `lr` (`get_constant_schedule_with_warmup`).
    ConstantWithWarmup {
        /// Base learning rate.
        lr: f64,
        /// Steps of linear warmup.
        num_warmup_steps: u64,
    },
    /// Warmup, then linear decay to 0 at `num_training_steps`
    /// (`get_linear_schedule_with_warmup`).
    LinearWithWarmup {
        /// Base learning rate.
        lr: f64,
        /// Steps of linear warmup.
        num_warmup_steps: u64,
        /// Total optimizer steps.
        num_training_steps: u64,
    },
    /// Warmup, then cosine decay (`get_cosine_schedule_with_warmup`): `num_cycles = 0.5`
    /// decays to 0 at `num_training_steps`. Past it the cosine goes on, as in transformers.
    CosineWithWarmup {
        /// Base learning rate.
        lr: f64,
        /// Steps of linear warmup.
        num_warmup_steps: u64,
        /// Total optimizer steps.
        num_training_steps: u64,
        /// Cosine periods over the decay (transformers' default: 0.5).
        num_cycles: f64,
    },
}

impl LrSchedule {
    /// A constant rate.
    pub fn constant(lr: f64) -> Result<Self> {
        Self::validated(LrSchedule::Constant { lr })
    }

    /// Linear warmup, then constant.
    pub fn constant_with_warmup(lr: f64, num_warmup_steps: u64) -> Result<Self> {
        Self::validated(LrSchedule::ConstantWithWarmup {
            lr,
            num_warmup_steps,
        })
    }

    /// Linear warmup, then linear decay to 0 at `num_training_steps`.
    pub fn linear_with_warmup(
        lr: f64,
        num_warmup_steps: u64,
        num_training_steps: u64,
    ) -> Result<Self> {
        Self::validated(LrSchedule::LinearWithWarmup {
            lr,
            num_warmup_steps,
            num_training_steps,
        })
    }

    /// Linear warmup, then half a cosine down to 0 at `num_training_steps` (`num_cycles = 0.5`).
    pub fn cosine_with_warmup(
        lr: f64,
        num_warmup_steps: u64,
        num_training_steps: u64,
    ) -> Result<Self> {
        Self::validated(LrSchedule::CosineWithWarmup {
            lr,
            num_warmup_steps,
            num_training_steps,
            num_cycles: 0.5,
        })
    }

    fn validated(self) -> Result<Self> {
        self.validate()?;
        Ok(self)
    }

    /// Checks the hyper-parameters: `lr` finite and `>= 0`, warmup no longer than training,
    /// `num_cycles` finite and `> 0`.
    pub fn validate(&self) -> Result<()> {
        check_non_negative("lr", self.base_lr())?;
        match *self {
            LrSchedule::Constant { .. } | LrSchedule::ConstantWithWarmup { .. } => Ok(()),
            LrSchedule::LinearWithWarmup {
                num_warmup_steps,
                num_training_steps,
                ..
            }
            | LrSchedule::CosineWithWarmup {
                num_warmup_steps,
                num_training_steps,
                ..
            } if num_warmup_steps > num_training_steps => Err(Error::WarmupExceedsTotal {
                num_warmup_steps,
                num_training_steps,
            }),
            LrSchedule::CosineWithWarmup { num_cycles, .. } => {
                check_positive("num_cycles", num_cycles)
            }
            LrSchedule::LinearWithWarmup { .. } => Ok(()),
        }
    }

    /// The base learning rate.
    pub fn base_lr(&self) -> f64 {
        match *self {
            LrSchedule::Constant { lr }
            | LrSchedule::ConstantWithWarmup { lr, .. }
            | LrSchedule::LinearWithWarmup { lr, .. }
            | LrSchedule::CosineWithWarmup { lr, .. } => lr,
        }
    }

    /// The multiplier of the base rate at `step` (the `lr_lambda` transformers hands `LambdaLR`).
    pub fn multiplier_at(&self, step: u64) -> f64 {
        let s = step as f64;
        let warmup = |w: u64| s / w.max(1) as f64;
        match *self {
            LrSchedule::Constant { .. } => 1.0,
            LrSchedule::ConstantWithWarmup {
                num_warmup_steps: w,
                ..
            } => {
                if step < w {
                    warmup(w)
                } else {
                    1.0
                }
            }
            LrSchedule::LinearWithWarmup {
                num_warmup_steps: w,
                num_training_steps: t,
                ..
            } => {
                if step < w {
                    warmup(w)
                } else {
                    let left = t as f64 - s;
                    (left / t.saturating_sub(w).max(1) as f64).max(0.0)
                }
            }
            LrSchedule::CosineWithWarmup {
                num_warmup_steps: w,
                num_training_steps: t,
                num_cycles,
                ..
            } => {
                if step < w {
                    warmup(w)
                } else {
                    let progress = (step - w) as f64 / t.saturating_sub(w).max(1) as f64;
                    // transformers: math.pi * float(num_cycles) * 2.0 * progress, left to right.
                    (0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos())).max(0.0)
                }
            }
        }
    }

    /// The learning rate at `step`: `base_lr * multiplier_at(step)`, as `LambdaLR` computes it.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.base_lr() * self.multiplier_at(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_linear_from_zero() {
        let s = LrSchedule::linear_with_warmup(1e-3, 4, 8).unwrap();
        let lrs: Vec<f64> = (0..=9).map(|i| s.lr_at(i)).collect();
        assert_eq!(lrs[..5], [0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3]);
        assert_eq!(lrs[6], 1e-3 * 0.5);
        assert_eq!((lrs[8], lrs[9]), (0.0, 0.0), "clamped at 0 past the end");
    }

    #[test]
    fn cosine_reaches_half_at_midpoint_and_zero_at_end() {
        let s = LrSchedule::cosine_with_warmup(2.0, 0, 10).unwrap();
        assert_eq!(s.lr_at(0), 2.0);
        assert!((s.lr_at(5) - 1.0).abs() < 1e-15);
        assert!(s.lr_at(10).abs() < 1e-15);
    }

    #[test]
    fn constant_ignores_steps() {
        let s = LrSchedule::constant(0.1).unwrap();
        assert_eq!(s.lr_at(0), 0.1);
        assert_eq!(s.lr_at(u64::MAX), 0.1);
        let w = LrSchedule::constant_with_warmup(0.1, 0).unwrap();
        assert_eq!(w.lr_at(0), 0.1, "no warmup: full rate at step 0");
    }

    #[test]
    fn invalid_hyper_parameters_are_typed_errors() {
        assert!(matches!(
            LrSchedule::constant(-1e-3),
            Err(Error::InvalidHyperParameter { name: "lr", .. })
        ));
        assert!(matches!(
            LrSchedule::constant(f64::NAN),
            Err(Error::InvalidHyperParameter { name: "lr", .. })
        ));
        assert!(matches!(
            LrSchedule::cosine_with_warmup(1e-3, 11, 10),
            Err(Error::WarmupExceedsTotal {
                num_warmup_steps: 11,
                num_training_steps: 10
            })
        ));
        let bad = LrSchedule::CosineWithWarmup {
            lr: 1.0,
            num_warmup_steps: 0,
            num_training_steps: 1,
            num_cycles: 0.0,
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidHyperParameter {
                name: "num_cycles",
                ..
            })
        ));
        // Warmup equal to the total is allowed (transformers divides by max(1, T - W)).
        assert_eq!(
            LrSchedule::linear_with_warmup(1.0, 5, 5).unwrap().lr_at(5),
            0.0
        );
    }

    #[test]
    fn serde_uses_transformers_names() {
        let s = LrSchedule::cosine_with_warmup(1e-3, 10, 100).unwrap();
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "cosine_with_warmup", "lr": 1e-3, "num_warmup_steps": 10,
                               "num_training_steps": 100, "num_cycles": 0.5})
        );
        assert_eq!(serde_json::from_value::<LrSchedule>(json).unwrap(), s);
    }
}

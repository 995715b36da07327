//! AdamW with PyTorch's semantics (`torch.optim.AdamW`, single-tensor path): decoupled weight
//! decay first, then bias-corrected moments.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check, check_finite, check_non_negative};

/// AdamW's hyper-parameters; [`Default`] is PyTorch's (`lr` 1e-3, `betas` (0.9, 0.999),
/// `eps` 1e-8, `weight_decay` 0.01).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates, each in `[0, 1)`.
    pub betas: (f64, f64),
    /// Added to the denominator for numerical stability.
    pub eps: f64,
    /// Decoupled weight decay: each step multiplies the parameters by `1 - lr * weight_decay`.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWConfig {
    /// Checks the ranges PyTorch checks: `lr`, `eps`, `weight_decay` finite and `>= 0`, each beta
    /// in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        check_non_negative("lr", self.lr)?;
        for (name, beta) in [("betas.0", self.betas.0), ("betas.1", self.betas.1)] {
            check((0.0..1.0).contains(&beta), name, beta, "a number in [0, 1)")?;
        }
        check_non_negative("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)
    }

    /// An optimizer for a parameter slice of `len` elements, with zeroed moments.
    pub fn init(&self, len: usize) -> Result<AdamW> {
        self.validate()?;
        Ok(AdamW {
            config: *self,
            step: 0,
            exp_avg: vec![0.0; len],
            exp_avg_sq: vec![0.0; len],
        })
    }
}

/// AdamW's state over one flat `f32` parameter slice: the reference the burn trainer is
/// checked against.
///
/// Each [`step`](Self::step), with `t` the step count from 1:
/// ```text
/// p <- p * (1 - lr * wd)
/// m <- lerp(m, g, 1 - b1);   v <- v * b2 + (1 - b2) * g * g
/// p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
/// Scalars are computed in `f64` (Python floats) and applied in `f32`, as PyTorch does.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
}

impl AdamW {
    /// The current hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Sets the learning rate for the next steps (what a scheduler does between steps).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_non_negative("lr", lr)?;
        self.config.lr = lr;
        Ok(())
    }

    /// One optimizer step on `params` with `grads`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when either slice differs from the length given to
    /// [`AdamWConfig::init`], [`Error::NonFinite`] for a NaN or infinite gradient. On error
    /// neither the parameters nor the state change.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        let expected = self.exp_avg.len();
        for (what, got) in [("params", params.len()), ("grads", grads.len())] {
            if got != expected {
                return Err(Error::LengthMismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        check_finite(None, grads)?;

        self.step += 1;
        let AdamWConfig {
            lr,
            betas: (beta1, beta2),
            eps,
            weight_decay,
        } = self.config;
        let t = self.step.min(i32::MAX as u64) as i32;
        let decay = (1.0 - lr * weight_decay) as f32;
        let w1 = (1.0 - beta1) as f32;
        let (b2, w2) = (beta2 as f32, (1.0 - beta2) as f32);
        let step_size = lr / (1.0 - beta1.powi(t));
        let bias_correction2_sqrt = ((1.0 - beta2.powi(t)).sqrt()) as f32;
        let (neg_step_size, eps) = (-step_size as f32, eps as f32);

        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.exp_avg)
            .zip(&mut self.exp_avg_sq)
        {
            if weight_decay != 0.0 {
                *p *= decay;
            }
            // torch.lerp with a weight below 0.5: m + w * (g - m).
            *m = if w1 < 0.5 {
                *m + w1 * (g - *m)
            } else {
                g - (g - *m) * (1.0 - w1)
            };
            *v = *v * b2 + w2 * g * g;
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            *p += neg_step_size * *m / denom;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pytorchs() {
        let c = AdamWConfig::default();
        assert_eq!(
            (c.lr, c.betas, c.eps, c.weight_decay),
            (1e-3, (0.9, 0.999), 1e-8, 0.01)
        );
        let partial: AdamWConfig = serde_json::from_str(r#"{"lr": 0.01}"#).unwrap();
        assert_eq!(partial, AdamWConfig { lr: 0.01, ..c });
    }

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        // Without decay, step 1's bias-corrected m / sqrt(v) is sign(g) (up to eps).
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = cfg.init(3).unwrap();
        let mut p = [1.0f32, 1.0, 1.0];
        opt.step(&mut p, &[2.0, -0.5, 0.0]).unwrap();
        assert!(
            (p[0] - 0.9).abs() < 1e-6 && (p[1] - 1.1).abs() < 1e-6,
            "{p:?}"
        );
        assert_eq!(p[2], 1.0, "a zero gradient does not move the parameter");
    }

    #[test]
    fn weight_decay_alone_shrinks_parameters() {
        let cfg = AdamWConfig {
            lr: 0.5,
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = cfg.init(2).unwrap();
        let mut p = [2.0f32, -4.0];
        opt.step(&mut p, &[0.0, 0.0]).unwrap();
        assert_eq!(p, [2.0 * 0.95, -4.0 * 0.95]);
        assert_eq!(opt.steps_taken(), 1);
    }

    #[test]
    fn bad_inputs_change_nothing() {
        let mut opt = AdamWConfig::default().init(2).unwrap();
        let mut p = [1.0f32, 2.0];
        let err = opt.step(&mut p, &[0.1, f32::NAN]).unwrap_err();
        assert!(matches!(
            err,
            Error::NonFinite {
                tensor: None,
                index: 1,
                ..
            }
        ));
        let err = opt.step(&mut p, &[0.1]).unwrap_err();
        assert!(matches!(
            err,
            Error::LengthMismatch {
                what: "grads",
                expected: 2,
                got: 1
            }
        ));
        assert_eq!((p, opt.steps_taken()), ([1.0, 2.0], 0));
    }

    #[test]
    fn invalid_hyper_parameters_are_refused() {
        let bad = |c: AdamWConfig| c.init(1).unwrap_err();
        let d = AdamWConfig::default();
        assert!(matches!(
            bad(AdamWConfig { lr: -1.0, ..d }),
            Error::InvalidHyperParameter { name: "lr", .. }
        ));
        assert!(matches!(
            bad(AdamWConfig {
                betas: (0.9, 1.0),
                ..d
            }),
            Error::InvalidHyperParameter {
                name: "betas.1",
                ..
            }
        ));
        assert!(matches!(
            bad(AdamWConfig { eps: -1e-8, ..d }),
            Error::InvalidHyperParameter { name: "eps", .. }
        ));
        assert!(matches!(
            bad(AdamWConfig {
                weight_decay: f64::NAN,
                ..d
            }),
            Error::InvalidHyperParameter {
                name: "weight_decay",
                ..
            }
        ));
        let mut opt = d.init(1).unwrap();
        assert!(opt.set_lr(-0.5).is_err());
        opt.set_lr(0.5).unwrap();
        assert_eq!(opt.config().lr, 0.5);
    }
}

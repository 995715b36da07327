//! # slm-train
//!
//! Training for `slm`. Today this crate holds the pure-Rust reference pieces every fine-tuning
//! loop needs and that the burn trainer is checked against: learning-rate schedules matching
//! transformers' `get_*_schedule_with_warmup` ([`LrSchedule`]), PyTorch's AdamW over a flat
//! `f32` slice ([`AdamWConfig`] → [`AdamW`]) and PyTorch's `clip_grad_norm_`
//! ([`clip_grad_norm`]). Each is tested against fixtures produced by transformers and PyTorch
//! (`tests/parity_*.rs`), and hyper-parameters out of range are typed errors, never a silent NaN.
//!
//! ```
//! use slm_train::prelude::*;
//!
//! # fn main() -> slm_train::Result<()> {
//! // Warm up for 2 steps, then decay along a cosine to 0 at step 10.
//! let schedule = LrSchedule::cosine_with_warmup(1e-2, 2, 10)?;
//! let mut opt = AdamWConfig { lr: schedule.lr_at(0), ..Default::default() }.init(3)?;
//!
//! // Minimise sum(p^2) from (1, -2, 3): the gradient is 2p.
//! let mut params = [1.0f32, -2.0, 3.0];
//! for step in 0..10 {
//!     let mut grads: Vec<f32> = params.iter().map(|p| 2.0 * p).collect();
//!     let norm = clip_grad_norm(&mut [grads.as_mut_slice()], 1.0)?;
//!     assert!(norm > 0.0);
//!     opt.set_lr(schedule.lr_at(step))?;
//!     opt.step(&mut params, &grads)?;
//! }
//! assert!(params.iter().map(|p| p * p).sum::<f32>() < 14.0);
//!
//! // A NaN gradient is refused and nothing moves.
//! assert!(matches!(opt.step(&mut params, &[0.0, f32::NAN, 0.0]), Err(Error::NonFinite { .. })));
//! # Ok(()) }
//! ```
//!
//! ## Later
//! Later issues add the burn training loop (LoRA, full fine-tuning, distillation losses) on top
//! of slm-core's decoder, the trainer's `TrainConfig`, checkpointing and energy phases; the
//! reference implementations here stay as the yardstick its tests use.
//!
//! This crate has no features.

mod adamw;
pub mod checkpoint;
pub mod classify;
mod clip;
mod config;
pub mod distill;
mod error;
pub mod forward;
pub mod loss;
pub mod optim;
mod schedule;
mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use classify::{ClassifierEval, Prediction, evaluate_classifier};
pub use clip::{CLIP_EPS, clip_grad_norm};
pub use config::{ScheduleKind, TrainConfig};
pub use distill::{DistillLoss, distill_loss, divergence, hard_ce};
pub use error::{Error, Result};
pub use forward::batch_logits;
pub use loss::causal_lm_loss;
pub use optim::{Grads, OptimizerState, ParamMoments, TensorAdamW};
pub use schedule::LrSchedule;
pub use trainer::{
    EvalCallback, EvalMetrics, StepMetrics, TrainObserver, TrainReport, Trainer, TuneMode,
};

/// The names most programs need: `use slm_train::prelude::*;`.
pub mod prelude {
    pub use crate::{AdamW, AdamWConfig, Error, LrSchedule, Result, clip_grad_norm};
}

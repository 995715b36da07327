//! # slm-train
//!
//! Training for `slm`: LoRA / rsLoRA and full fine-tuning of slm-core's
//! [`Decoder`](slm_core::model::Decoder) with burn autodiff, distillation losses, and
//! classifier evaluation.
//!
//! - [`Trainer`] runs the loop over slm-data's batchers: loss on target tokens only
//!   ([`causal_lm_loss`], -100 semantics), padded or packed rows ([`batch_logits`]: block-diagonal
//!   attention over packed examples), gradient accumulation, global-norm clipping, warmup with a
//!   linear/cosine/constant schedule, [`TensorAdamW`], `metrics.jsonl`, evaluation with early
//!   stopping, atomic checkpoints and `--resume` on the same loss curve
//!   ([`checkpoint`]), energy phases (`training/epoch-N`, `evaluation`).
//! - [`distill`]: forward/reverse KL with temperature, TRL GKD's generalized JSD, hard CE;
//!   the teacher online or its top-k soft labels cached on disk once ([`TeacherCache`]).
//! - [`evaluate_classifier`]: label scoring on a labelled dataset (accuracy, macro-F1, ...).
//! - The pure-Rust references the burn pieces are checked against: learning-rate schedules
//!   matching transformers' `get_*_schedule_with_warmup` ([`LrSchedule`]), PyTorch's AdamW over a
//!   flat `f32` slice ([`AdamWConfig`] → [`AdamW`]) and `clip_grad_norm_` ([`clip_grad_norm`]),
//!   each tested against fixtures from transformers and PyTorch (`tests/parity_*.rs`).
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
//! # Features
//! `flex` (default): burn's CPU backend; `cuda`: burn's CUDA backend. Both with autodiff.

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
pub mod sparsity;
pub mod teacher_cache;
mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use classify::{ClassifierEval, Prediction, evaluate_classifier, label_prompt};
pub use clip::{CLIP_EPS, clip_grad_norm};
pub use config::{ScheduleKind, TrainConfig};
pub use distill::{
    DistillConfig, DistillLoss, TeacherRows, distill_loss, divergence, divergence_top_k, hard_ce,
};
pub use error::{Error, Result};
pub use forward::{TargetLogits, batch_logits, target_logits, target_rows};
pub use loss::{causal_lm_loss, target_loss};
pub use optim::{Grads, OptimizerState, ParamMoments, TensorAdamW};
pub use schedule::LrSchedule;
pub use sparsity::SparsityMask;
pub use teacher_cache::TeacherCache;
pub use trainer::{
    EvalCallback, EvalMetrics, StepMetrics, Teacher, TrainObserver, TrainReport, Trainer, TuneMode,
};

/// The names most programs need: `use slm_train::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AdamW, AdamWConfig, DistillLoss, Error, LrSchedule, Result, TrainConfig, Trainer, TuneMode,
        clip_grad_norm, evaluate_classifier,
    };
}

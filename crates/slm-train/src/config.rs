//! [`TrainConfig`]: everything a fine-tuning run needs besides the model and the data, with
//! transformers' `TrainingArguments` defaults where the two overlap.

use serde::{Deserialize, Serialize};

use crate::adamw::AdamWConfig;
use crate::error::Result;
use crate::schedule::LrSchedule;

/// How the learning rate moves over the run (after the warmup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Linear decay to 0 (transformers' default).
    Linear,
    /// Half a cosine to 0.
    Cosine,
    /// Constant.
    Constant,
}

/// The settings of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Passes over the training data (ignored once `max_steps` is reached).
    pub epochs: u64,
    /// Stop after this many optimizer steps.
    pub max_steps: Option<u64>,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (their gradients are averaged).
    pub grad_accum: usize,
    /// Longest row in tokens.
    pub seq_len: usize,
    /// Pack several examples per row (block-diagonal attention) instead of padding each.
    pub packing: bool,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup as a fraction of all steps (`warmup_ratio`).
    pub warmup: f64,
    /// The schedule after warmup.
    pub schedule: ScheduleKind,
    /// AdamW betas.
    pub betas: (f64, f64),
    /// AdamW epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// Evaluate every this many steps (and at the end) when an eval set is given.
    pub eval_every: Option<u64>,
    /// Stop when the eval loss has not improved for this many evaluations.
    pub early_stopping_patience: Option<usize>,
    /// Save a checkpoint every this many steps (and at the end).
    pub save_every: Option<u64>,
    /// Checkpoints kept (the best one by eval loss is kept on top of these).
    pub save_total_limit: usize,
    /// With an eval set: also evaluate before the first step, and make the run's output the
    /// weights of its lowest eval loss, the starting ones included (transformers'
    /// `load_best_model_at_end`), so tuning never hands back a model worse on the eval set
    /// than the one it was given. The best weights are kept in memory: a resumed run picks
    /// among the evaluations it made itself.
    pub load_best_at_end: bool,
    /// Seed of the data order (and of fresh adapters).
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            seq_len: 256,
            packing: false,
            lr: 2e-4,
            warmup: 0.05,
            schedule: ScheduleKind::Linear,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            eval_every: None,
            early_stopping_patience: None,
            save_every: None,
            save_total_limit: 2,
            load_best_at_end: false,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// [`Error::InvalidHyperParameter`] for zero sizes, a warmup outside `[0, 1]`, or
    /// optimizer settings out of range.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &'static str, v: usize| {
            crate::error::check(v > 0, name, v as f64, "a positive integer")
        };
        positive("batch_size", self.batch_size)?;
        positive("grad_accum", self.grad_accum)?;
        positive("seq_len", self.seq_len)?;
        positive("save_total_limit", self.save_total_limit)?;
        crate::error::check(
            self.epochs > 0 || self.max_steps.is_some_and(|s| s > 0),
            "epochs",
            self.epochs as f64,
            "a positive number of epochs or max_steps",
        )?;
        crate::error::check(
            (0.0..=1.0).contains(&self.warmup),
            "warmup",
            self.warmup,
            "a fraction in [0, 1]",
        )?;
        if let Some(n) = self.max_grad_norm {
            crate::error::check(n > 0.0 && n.is_finite(), "max_grad_norm", n, "positive")?;
        }
        self.adamw().validate()
    }

    /// The optimizer settings.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }

    /// The learning-rate schedule over `total_steps` optimizer steps.
    pub fn schedule(&self, total_steps: u64) -> Result<LrSchedule> {
        let warmup = (self.warmup * total_steps as f64).ceil() as u64;
        match self.schedule {
            ScheduleKind::Linear => LrSchedule::linear_with_warmup(self.lr, warmup, total_steps),
            ScheduleKind::Cosine => LrSchedule::cosine_with_warmup(self.lr, warmup, total_steps),
            ScheduleKind::Constant => LrSchedule::constant_with_warmup(self.lr, warmup),
        }
    }
}

//! The fine-tuning loop: LoRA (only the adapters train) or full fine-tuning of a
//! [`Decoder`] on an autodiff device, over batches from slm-data's batchers.
//!
//! Each optimizer step averages the gradients of `grad_accum` micro-batches (loss on target
//! tokens only), clips their global norm, and applies [`TensorAdamW`] at the schedule's rate.
//! Every step appends a line to `metrics.jsonl` (step, epoch, loss, lr, grad norm, tokens/s);
//! evaluation on a held-out set (loss, perplexity, and task metrics from a callback) runs every
//! `eval_every` steps with early stopping and best-checkpoint tracking. Checkpoints
//! ([`crate::checkpoint`]) hold the weights, the optimizer moments, the step and the data
//! position, are written atomically, and a run started again with `resume` continues the same
//! loss curve from the last one. A NaN or infinite loss stops the run with
//! [`Error::NonFiniteLoss`] naming the step, keeping the last good checkpoint.
//!
//! Phases go to a [`TrainObserver`] (an [`EnergyTracker`](slm_energy::EnergyTracker) charges
//! them): `training`, `training/epoch-N` and `evaluation`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use serde::{Deserialize, Serialize};
use slm_core::model::Decoder;
use slm_core::peft::LoraConfig;
use slm_core::tokenizer::Tokenizer;
use slm_data::inputs::{
    Batch, Batcher, BatcherConfig, BucketBatcher, PackedBatcher, TokenizedExample,
};
use slm_energy::{Lifecycle, NoopObserver, ObservedPhase, PhaseObserver};

use crate::checkpoint::{self, TrainerState};
use crate::config::TrainConfig;
use crate::distill::DistillConfig;
use crate::distill::TeacherRows;
use crate::error::{Error, Result};
use crate::forward::target_logits;
use crate::loss::target_loss;
use crate::optim::{Grads, TensorAdamW};
use crate::sparsity::SparsityMask;
use crate::teacher_cache::TeacherCache;

/// What is trained.
#[derive(Debug, Clone, PartialEq)]
pub enum TuneMode {
    /// Fresh LoRA adapters on a frozen base (saved as a PEFT adapter).
    Lora(LoraConfig),
    /// Every parameter (saved as a Hugging Face directory).
    Full,
}

/// One optimizer step, as `metrics.jsonl` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer step, from 1.
    pub step: u64,
    /// Epoch, from 0.
    pub epoch: u64,
    /// Mean loss over the step's target tokens.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real (non-padding) tokens processed by the step.
    pub tokens: usize,
    /// Tokens per second of the step (forward, backward and update).
    pub tokens_per_second: f64,
    /// Seconds since the run (or resume) started.
    pub elapsed_seconds: f64,
    /// Steps the run will take in all.
    pub total_steps: u64,
}

/// One evaluation, as `metrics.jsonl` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// The step after which it ran.
    pub step: u64,
    /// Mean loss over the eval set's target tokens.
    pub eval_loss: f64,
    /// `exp(eval_loss)`.
    pub eval_perplexity: f64,
    /// Task metrics from the callback (accuracy, macro-F1, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// What a training run tells the program running it: phases (energy), steps and
/// evaluations (progress bars, logs). Every method has a default that does nothing.
pub trait TrainObserver: PhaseObserver {
    /// An optimizer step finished.
    fn on_step(&self, _metrics: &StepMetrics) {}
    /// An evaluation finished.
    fn on_eval(&self, _metrics: &EvalMetrics) {}
}

impl TrainObserver for NoopObserver {}

impl TrainObserver for slm_energy::EnergyTracker {}

/// Task metrics on the model being trained (no autodiff graph), for evaluation.
pub type EvalCallback<'a> = dyn Fn(&Decoder) -> Result<BTreeMap<String, f64>> + 'a;

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Optimizer steps taken, resumed ones included.
    pub steps: u64,
    /// The step the run resumed from (0 for a fresh run).
    pub resumed_from: u64,
    /// The last step's loss.
    pub final_loss: Option<f64>,
    /// Every evaluation.
    pub evals: Vec<EvalMetrics>,
    /// The step with the lowest eval loss, if any evaluation ran.
    pub best_step: Option<u64>,
    /// The step whose weights are the output: the last one, or with
    /// [`TrainConfig::load_best_at_end`] the best evaluated one (0: the starting weights).
    #[serde(default)]
    pub output_step: u64,
    /// Whether early stopping ended the run.
    pub early_stopped: bool,
    /// The final weights: `OUT/adapter` (LoRA) or `OUT/model` (full).
    pub output: PathBuf,
    /// Pruned (zero) projection weights kept at zero through full tuning.
    #[serde(default)]
    pub kept_zeros: usize,
}

/// Where a distilled student's soft targets come from.
#[derive(Debug, Clone, Copy)]
pub enum Teacher<'a> {
    /// The teacher runs on every batch (without autodiff, on its own device).
    Online(&'a Decoder),
    /// Its top-k soft labels, computed once ([`TeacherCache::build`]) for the training set
    /// the run is given: the teacher need not be in memory.
    Cached(&'a TeacherCache),
}

/// A training run: settings, mode, output folder.
pub struct Trainer<'a> {
    config: TrainConfig,
    mode: TuneMode,
    out_dir: PathBuf,
    base_name: String,
    tokenizer: Option<&'a Tokenizer>,
    observer: &'a dyn TrainObserver,
    eval_callback: Option<&'a EvalCallback<'a>>,
    teacher: Option<(Teacher<'a>, DistillConfig)>,
}

impl<'a> Trainer<'a> {
    /// A run writing into `out_dir` (`metrics.jsonl`, `checkpoints/`, `adapter/` or `model/`).
    /// `base_name` is recorded in the adapter's config (`base_model_name_or_path`).
    pub fn new(
        config: TrainConfig,
        mode: TuneMode,
        out_dir: impl Into<PathBuf>,
        base_name: impl Into<String>,
    ) -> Self {
        Trainer {
            config,
            mode,
            out_dir: out_dir.into(),
            base_name: base_name.into(),
            tokenizer: None,
            observer: &NoopObserver,
            eval_callback: None,
            teacher: None,
        }
    }

    /// Distillation: the student learns from `teacher`'s logits (computed on its own device,
    /// without autodiff) as `distill` says, instead of the labels alone. Teacher and student
    /// must share the tokenizer (same vocabulary).
    pub fn with_teacher(mut self, teacher: &'a Decoder, distill: DistillConfig) -> Self {
        self.teacher = Some((Teacher::Online(teacher), distill));
        self
    }

    /// Distillation from a teacher's cached top-k soft labels (built from the same training
    /// examples, with `distill`'s `top_k` and temperature: [`run`](Self::run) checks).
    pub fn with_teacher_cache(mut self, cache: &'a TeacherCache, distill: DistillConfig) -> Self {
        self.teacher = Some((Teacher::Cached(cache), distill));
        self
    }

    /// The tokenizer saved beside full fine-tuned weights.
    pub fn with_tokenizer(mut self, tokenizer: &'a Tokenizer) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    /// Where phases, steps and evaluations are reported.
    pub fn with_observer(mut self, observer: &'a dyn TrainObserver) -> Self {
        self.observer = observer;
        self
    }

    /// Task metrics computed at each evaluation.
    pub fn with_eval_callback(mut self, callback: &'a EvalCallback<'a>) -> Self {
        self.eval_callback = Some(callback);
        self
    }

    fn batcher(
        &self,
        examples: &[TokenizedExample],
        pad: u32,
        epoch: u64,
        shuffle: bool,
    ) -> Result<Box<dyn Batcher>> {
        let config = BatcherConfig::new(self.config.batch_size, self.config.seq_len, pad)
            .with_seed(self.config.seed)
            .with_epoch(epoch)
            .with_shuffle(shuffle);
        let examples = examples.to_vec();
        Ok(if self.config.packing && shuffle {
            Box::new(PackedBatcher::new(examples, &config).map_err(data_error)?)
        } else {
            Box::new(BucketBatcher::new(examples, &config, 8).map_err(data_error)?)
        })
    }

    /// Trains `base` (on an autodiff device) on `train`, evaluating on `eval`; with `resume`
    /// it continues from the last checkpoint in the output folder (fresh when there is none).
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for empty data or examples longer than `seq_len`;
    /// [`Error::NonFiniteLoss`] when the loss diverges; I/O errors from checkpoints.
    pub fn run(
        &self,
        base: Decoder,
        train: &[TokenizedExample],
        eval: Option<&[TokenizedExample]>,
        resume: bool,
    ) -> Result<(Decoder, TrainReport)> {
        self.config.validate()?;
        match &self.teacher {
            Some((Teacher::Online(teacher), _))
                if teacher.config().vocab_size != base.config().vocab_size =>
            {
                return Err(Error::InvalidBatch(format!(
                    "teacher and student must share the tokenizer: the teacher's vocabulary \
                     has {} tokens, the student's {}",
                    teacher.config().vocab_size,
                    base.config().vocab_size
                )));
            }
            Some((Teacher::Cached(cache), distill)) => {
                cache.check(train, distill, base.config().vocab_size)?;
            }
            _ => {}
        }
        if train.is_empty() {
            return Err(Error::InvalidBatch("the training set is empty".into()));
        }
        let pad = base.config().pad_token_id.unwrap_or(0);
        let device = base.device();
        let per_epoch = {
            let mut b = self.batcher(train, pad, 0, true)?;
            let mut n = 0u64;
            while let Some(batch) = b.next_batch() {
                batch.map_err(data_error)?;
                n += 1;
            }
            n.div_ceil(self.config.grad_accum as u64)
        };
        let total_steps = self
            .config
            .max_steps
            .unwrap_or(per_epoch * self.config.epochs)
            .max(1);
        let schedule = self.config.schedule(total_steps)?;
        let mut optim = TensorAdamW::new(self.config.adamw())?;
        let ckpt_dir = self.out_dir.join("checkpoints");
        let metrics_path = self.out_dir.join("metrics.jsonl");
        std::fs::create_dir_all(&self.out_dir).map_err(|e| io(&self.out_dir, e))?;

        let latest = if resume {
            checkpoint::latest(&ckpt_dir)?
        } else {
            None
        };
        let (mut model, mut state) = match &latest {
            Some(dir) => {
                let (model, state, moments) = checkpoint::load(dir, base, &self.mode)?;
                optim.restore(moments, &device);
                (model, state)
            }
            None => {
                let model = match &self.mode {
                    TuneMode::Lora(lora) => lora.init(base, self.config.seed)?,
                    TuneMode::Full => base,
                };
                (model, TrainerState::default())
            }
        };
        // Full tuning of a pruned model keeps its pruned weights at zero.
        let sparsity = match &self.mode {
            TuneMode::Full => SparsityMask::of(&model)?,
            TuneMode::Lora(_) => None,
        };
        // The curve continues from the checkpoint: later lines of an interrupted run go.
        checkpoint::truncate_metrics(&metrics_path, state.step)?;
        let mut metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| io(&metrics_path, e))?;

        let _training = ObservedPhase::new(self.observer, Lifecycle::Training.to_string());
        let resumed_from = state.step;
        // The weights of the lowest eval loss this process saw (`load_best_at_end`).
        let mut best_model: Option<(u64, Decoder)> = None;
        if let Some(eval) = eval
            && self.config.load_best_at_end
            && state.step == 0
        {
            let e = self.evaluate(&model, eval, pad, 0)?;
            write_line(&mut metrics, &metrics_path, &e)?;
            self.observer.on_eval(&e);
            state.best = Some(checkpoint::Best {
                step: 0,
                eval_loss: e.eval_loss,
            });
            state.evals.push(e);
            best_model = Some((0, model.clone()));
        }
        let started = Instant::now();
        let mut final_loss = None;
        let mut early_stopped = false;
        // With max_steps the run goes on through as many epochs as those steps take.
        let epochs = match self.config.max_steps {
            Some(_) => u64::MAX,
            None => self.config.epochs,
        };
        'epochs: for epoch in state.epoch..epochs {
            if state.step >= total_steps {
                break;
            }
            let _phase = ObservedPhase::new(
                self.observer,
                format!("{}/epoch-{epoch}", Lifecycle::Training),
            );
            let mut batcher = self.batcher(train, pad, epoch, true)?;
            // Skip what the checkpoint already trained on in this epoch.
            for _ in 0..state.micro_batches_done {
                batcher.next_batch();
            }
            let mut pending: Vec<Batch> = Vec::with_capacity(self.config.grad_accum);
            loop {
                let next = batcher.next_batch().transpose().map_err(data_error)?;
                let end_of_epoch = next.is_none();
                if let Some(b) = next {
                    pending.push(b);
                }
                // A step takes grad_accum micro-batches; the end of an epoch flushes a partial one.
                if pending.len() < self.config.grad_accum && (!end_of_epoch || pending.is_empty()) {
                    if end_of_epoch {
                        break;
                    }
                    continue;
                }
                let step_started = Instant::now();
                let n_micro = pending.len();
                let (step_loss, tokens, mut grads) =
                    self.accumulate(&model, &pending, state.step + 1)?;
                pending.clear();
                if let Some(mask) = &sparsity {
                    mask.apply(&mut grads);
                }
                let grad_norm = match self.config.max_grad_norm {
                    Some(max) => grads.clip_global_norm(max)?,
                    None => grads.norm()?,
                };
                let lr = schedule.lr_at(state.step);
                model = optim.step(lr, model, grads);
                state.step += 1;
                state.micro_batches_done += n_micro as u64;
                final_loss = Some(step_loss);
                let secs = step_started.elapsed().as_secs_f64();
                let m = StepMetrics {
                    step: state.step,
                    epoch,
                    loss: step_loss,
                    lr,
                    grad_norm,
                    tokens,
                    tokens_per_second: tokens as f64 / secs.max(1e-9),
                    elapsed_seconds: started.elapsed().as_secs_f64(),
                    total_steps,
                };
                write_line(&mut metrics, &metrics_path, &m)?;
                self.observer.on_step(&m);
                let last = state.step >= total_steps;
                if let Some(eval) = eval
                    && (last || self.config.eval_every.is_some_and(|k| state.step % k == 0))
                {
                    let e = self.evaluate(&model, eval, pad, state.step)?;
                    write_line(&mut metrics, &metrics_path, &e)?;
                    self.observer.on_eval(&e);
                    if state
                        .best
                        .as_ref()
                        .is_none_or(|b| e.eval_loss < b.eval_loss)
                    {
                        state.best = Some(checkpoint::Best {
                            step: e.step,
                            eval_loss: e.eval_loss,
                        });
                        state.evals_without_improvement = 0;
                        if self.config.load_best_at_end {
                            best_model = Some((e.step, model.clone()));
                        }
                    } else {
                        state.evals_without_improvement += 1;
                    }
                    state.evals.push(e);
                    if self
                        .config
                        .early_stopping_patience
                        .is_some_and(|p| state.evals_without_improvement >= p)
                    {
                        early_stopped = true;
                    }
                }
                if last
                    || early_stopped
                    || self.config.save_every.is_some_and(|k| state.step % k == 0)
                {
                    state.epoch = epoch;
                    self.save(&ckpt_dir, &model, &state, &optim)?;
                }
                if last || early_stopped {
                    break 'epochs;
                }
                if end_of_epoch {
                    break;
                }
            }
            state.epoch = epoch + 1;
            state.micro_batches_done = 0;
        }
        if state.step == 0 {
            return Err(Error::InvalidBatch("no batch was trained on".into()));
        }
        // The final weights (or the best evaluated ones), beside the checkpoints.
        let mut output_step = state.step;
        if let Some((step, best)) = best_model
            && state.best.as_ref().is_some_and(|b| b.step == step)
        {
            (model, output_step) = (best, step);
        }
        let output = match &self.mode {
            TuneMode::Lora(_) => self.out_dir.join("adapter"),
            TuneMode::Full => self.out_dir.join("model"),
        };
        checkpoint::save_weights(&model, &self.mode, &self.base_name, self.tokenizer, &output)?;
        Ok((
            model,
            TrainReport {
                steps: state.step,
                resumed_from,
                final_loss,
                best_step: state.best.as_ref().map(|b| b.step),
                output_step,
                evals: state.evals,
                early_stopped,
                output,
                kept_zeros: sparsity.as_ref().map_or(0, SparsityMask::zeros),
            },
        ))
    }

    /// Forward and backward over the micro-batches of one step: the mean loss over all their
    /// target tokens (each micro-batch weighted by its targets), the real tokens, and the
    /// summed gradients.
    fn accumulate(
        &self,
        model: &Decoder,
        batches: &[Batch],
        step: u64,
    ) -> Result<(f64, usize, Grads)> {
        let targets: Vec<usize> = batches.iter().map(shifted_targets).collect();
        let all: usize = targets.iter().sum();
        if all == 0 {
            return Err(Error::InvalidBatch(format!(
                "step {step} has no target token (every label is -100)"
            )));
        }
        let mut grads = Grads::default();
        let (mut loss_sum, mut tokens) = (0f64, 0usize);
        for (batch, &n) in batches.iter().zip(&targets) {
            if n == 0 {
                continue;
            }
            // Logits at the target positions only: the LM head and its softmax skip the rest.
            let student = target_logits(model, batch)?;
            let loss = match &self.teacher {
                Some((Teacher::Online(teacher), distill)) => {
                    let t = target_logits(teacher, batch)?;
                    distill.loss_at_targets(&student, TeacherRows::Logits(t.logits))?
                }
                Some((Teacher::Cached(cache), distill)) => {
                    let device = student.logits.device();
                    let (ids, logprobs) = cache.target_rows(batch, &student.rows, &device)?;
                    distill.loss_at_targets(&student, TeacherRows::TopK { ids, logprobs })?
                }
                None => target_loss(&student)?,
            };
            let value = loss
                .clone()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("reading the loss: {e:?}")))?[0]
                as f64;
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss { step, loss: value });
            }
            loss_sum += value * n as f64;
            tokens += batch
                .attention_mask
                .iter()
                .flatten()
                .filter(|&&m| m)
                .count();
            let weighted = loss.mul_scalar(n as f64 / all as f64);
            let g = Grads::from_backward(&weighted, model);
            if g.is_empty() {
                return Err(Error::NothingToTrain);
            }
            grads.accumulate(g);
        }
        Ok((loss_sum / all as f64, tokens, grads))
    }

    /// Loss, perplexity and the callback's metrics on `eval`, without autodiff.
    fn evaluate(
        &self,
        model: &Decoder,
        eval: &[TokenizedExample],
        pad: u32,
        step: u64,
    ) -> Result<EvalMetrics> {
        let _phase = ObservedPhase::new(self.observer, Lifecycle::Evaluation.to_string());
        let inference = model.clone().valid();
        let mut batcher = self.batcher(eval, pad, 0, false)?;
        let (mut sum, mut n) = (0f64, 0usize);
        while let Some(batch) = batcher.next_batch() {
            let batch = batch.map_err(data_error)?;
            if shifted_targets(&batch) == 0 {
                continue;
            }
            let targets = target_logits(&inference, &batch)?;
            let k = targets.labels.len();
            let loss = target_loss(&targets)?;
            let v = loss
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("reading the eval loss: {e:?}")))?[0];
            sum += v as f64 * k as f64;
            n += k;
        }
        if n == 0 {
            return Err(Error::InvalidBatch(
                "the eval set has no target token".into(),
            ));
        }
        let eval_loss = sum / n as f64;
        let metrics = match self.eval_callback {
            Some(f) => f(&inference)?,
            None => BTreeMap::new(),
        };
        Ok(EvalMetrics {
            step,
            eval_loss,
            eval_perplexity: eval_loss.exp(),
            metrics,
        })
    }

    fn save(
        &self,
        dir: &Path,
        model: &Decoder,
        state: &TrainerState,
        optim: &TensorAdamW,
    ) -> Result<()> {
        checkpoint::save(
            dir,
            model,
            &self.mode,
            &self.base_name,
            self.tokenizer,
            state,
            optim,
            self.config.save_total_limit,
        )
    }
}

/// Targets of a batch after the shift (labels `[1..]` that are not -100).
fn shifted_targets(batch: &Batch) -> usize {
    batch
        .labels
        .iter()
        .map(|r| {
            r.iter()
                .skip(1)
                .filter(|&&l| l != slm_data::inputs::IGNORE_INDEX)
                .count()
        })
        .sum()
}

fn write_line<T: Serialize>(file: &mut std::fs::File, path: &Path, value: &T) -> Result<()> {
    let mut line = serde_json::to_string(value).map_err(|e| io(path, e.into()))?;
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(|e| io(path, e))
}

pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Core(slm_core::Error::io(path, source))
}

fn data_error(e: slm_data::Error) -> Error {
    Error::InvalidBatch(e.to_string())
}

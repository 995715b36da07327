//! `slm finetune` and `slm eval`: the task (labels or target field, prompt template, fields,
//! truncation) from flags or a recorded `task.json`, data from any file slm-data reads, the
//! training loop of slm-train and label-scoring evaluation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;
use slm_core::peft::{ALL_PROJECTIONS, LoraConfig};
use slm_core::prelude::*;
use slm_data::Example;
use slm_data::inputs::{TASK_FILE, TaskSpec, TemplateSpec, TokenizedExample, Truncation};
use slm_train::{
    DistillConfig, DistillLoss, ScheduleKind, TeacherCache, TrainConfig, Trainer, TuneMode,
    evaluate_classifier,
};

use crate::ModelArgs;

/// How the task is stated on the command line (`finetune` and `eval` share these).
#[derive(clap::Args, Debug, Clone)]
pub struct TaskArgs {
    /// Classification: the closed label set (comma-separated); the label is the only target.
    #[arg(long, value_delimiter = ',', conflicts_with = "target_field")]
    pub labels: Option<Vec<String>>,
    /// Generation: the field holding the target text.
    #[arg(long)]
    pub target_field: Option<String>,
    /// The field holding the input text.
    #[arg(long)]
    pub text_field: Option<String>,
    /// The field holding the label.
    #[arg(long)]
    pub label_field: Option<String>,
    /// The task instruction put before each input.
    #[arg(long, conflicts_with = "template")]
    pub instruction: Option<String>,
    /// A JSON prompt template: {"kind":"chat","instruction":...,"system":...} or
    /// {"kind":"instruction","instruction":...}.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Where an input too long for --seq-len is cut: `end` (keep its beginning), `start` or
    /// `middle`. Never the instruction or the target.
    #[arg(long, value_parser = ["end", "start", "middle"])]
    pub truncate: Option<String>,
}

impl TaskArgs {
    /// The task: the flags, on top of `recorded` (a `task.json`) when there is one.
    fn task(
        &self,
        tokenizer: &Tokenizer,
        seq_len: usize,
        recorded: Option<TaskSpec>,
    ) -> Result<TaskSpec> {
        let mut task = match (&self.labels, &self.target_field, recorded) {
            (Some(labels), _, _) => TaskSpec::classifier(labels.clone(), tokenizer, seq_len),
            (None, Some(field), _) => TaskSpec {
                labels: None,
                text_field: "input".into(),
                label_field: "label".into(),
                target_field: Some(field.clone()),
                template: TemplateSpec::default_for(tokenizer, "Respond to the input.".into()),
                truncation: Truncation::End,
                seq_len,
            },
            (None, None, Some(task)) => task,
            (None, None, None) => bail!(
                "say what to learn: --labels a,b (classification) or --target-field FIELD (generation)"
            ),
        };
        if let Some(f) = &self.text_field {
            task.text_field = f.clone();
        }
        if let Some(f) = &self.label_field {
            task.label_field = f.clone();
        }
        if let Some(path) = &self.template {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            task.template = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a prompt template", path.display()))?;
        }
        if let Some(instruction) = &self.instruction {
            task.template = match task.template {
                TemplateSpec::Chat { system, .. } => TemplateSpec::Chat {
                    instruction: instruction.clone(),
                    system,
                },
                TemplateSpec::Instruction { .. } => TemplateSpec::Instruction {
                    instruction: instruction.clone(),
                },
            };
        }
        if let Some(t) = &self.truncate {
            task.truncation = serde_json::from_value(json!(t))?;
        }
        if let Some(labels) = &task.labels
            && (labels.len() < 2 || labels.iter().any(String::is_empty))
        {
            bail!("--labels needs at least two non-empty labels");
        }
        Ok(task)
    }
}

/// The training-loop flags `slm finetune` and `slm distill` share.
#[derive(clap::Args, Debug)]
pub struct TrainFlags {
    /// The training data (any file slm-data reads: curated JSONL/Parquet splits, CSV, ...).
    #[arg(long)]
    data: PathBuf,
    /// Held-out data for evaluation during training.
    #[arg(long)]
    eval: Option<PathBuf>,
    #[command(flatten)]
    task: TaskArgs,
    /// Passes over the data.
    #[arg(long, default_value_t = 1, conflicts_with = "max_steps")]
    epochs: u64,
    /// Optimizer steps to take (instead of --epochs).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Rows per micro-batch.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Tokens per row; longer inputs are cut (--truncate).
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Warmup, as a fraction of the steps.
    #[arg(long, default_value_t = 0.05)]
    warmup: f64,
    /// The schedule after warmup.
    #[arg(long, default_value = "linear", value_parser = ["linear", "cosine", "constant"])]
    schedule: String,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Evaluate every N steps (and at the end).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Save a checkpoint every N steps (and at the end).
    #[arg(long)]
    save_every: Option<u64>,
    /// Pack several examples per row (block-diagonal attention).
    #[arg(long)]
    packing: bool,
    /// Seed of the data order and of fresh adapters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory: adapter/ (PEFT) or model/ (HF), metrics.jsonl, checkpoints/,
    /// energy.json, task.json.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the last checkpoint in --out.
    #[arg(long)]
    resume: bool,
}

impl TrainFlags {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            seq_len: self.seq_len,
            packing: self.packing,
            lr: self.lr,
            warmup: self.warmup,
            schedule: match self.schedule.as_str() {
                "cosine" => ScheduleKind::Cosine,
                "constant" => ScheduleKind::Constant,
                _ => ScheduleKind::Linear,
            },
            weight_decay: self.weight_decay,
            eval_every: self.eval_every,
            save_every: self.save_every,
            seed: self.seed,
            ..TrainConfig::default()
        }
    }
}

/// The flags of `slm finetune`.
#[derive(clap::Args, Debug)]
pub struct FinetuneArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    train: TrainFlags,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    lora_r: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// Projections that get adapters (q,k,v,o,gate,up,down or their *_proj names).
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down")]
    lora_targets: Vec<String>,
    /// Modules trained fully beside the adapters and saved in the adapter (peft's
    /// modules_to_save: lm_head, embed_tokens, norm, ...; peft's suffix matching).
    #[arg(long, value_delimiter = ',')]
    modules_to_save: Vec<String>,
    /// Full fine-tuning of every parameter instead of LoRA.
    #[arg(long, conflicts_with_all = ["lora_r", "lora_targets", "dora", "rslora", "modules_to_save"])]
    full: bool,
    /// DoRA (weight-decomposed LoRA: a trained magnitude per output, peft's use_dora).
    #[arg(long)]
    dora: bool,
    /// rsLoRA scaling (alpha / sqrt(r)).
    #[arg(long)]
    rslora: bool,
}

/// The flags of `slm distill`.
#[derive(clap::Args, Debug)]
pub struct DistillArgs {
    /// The teacher: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    teacher: PathBuf,
    /// A PEFT adapter merged into the teacher first (a fine-tuned teacher).
    #[arg(long)]
    teacher_adapter: Option<PathBuf>,
    /// The student is the teacher's first N layers.
    #[arg(
        long,
        required_unless_present = "student_config",
        conflicts_with = "student_config"
    )]
    student_layers: Option<usize>,
    /// With --student-layers: take every k-th layer of the teacher instead of the first N.
    #[arg(long, requires = "student_layers")]
    every: Option<usize>,
    /// With --student-layers: keep this many MLP neurons per layer (the most important by
    /// weight magnitude), initialised from the teacher's.
    #[arg(long, requires = "student_layers")]
    student_intermediate_size: Option<usize>,
    /// With --student-layers: keep this many query heads per layer (a multiple of the
    /// key/value heads; the best of each group).
    #[arg(long, requires = "student_layers")]
    student_heads: Option<usize>,
    /// The student is a fresh model of this config.json (same vocabulary as the teacher).
    #[arg(long)]
    student_config: Option<PathBuf>,
    /// Teacher tokens kept per position (the rest is one bucket); 0 keeps the whole vocabulary.
    #[arg(long, default_value_t = 64)]
    top_k: usize,
    /// Softening temperature.
    #[arg(long, default_value_t = 2.0)]
    temperature: f64,
    /// Weight of the teacher's soft targets against the hard labels.
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// The divergence.
    #[arg(long, default_value = "forward_kl", value_parser = ["forward_kl", "reverse_kl", "jsd"])]
    loss: String,
    /// The teacher's weight in the JSD mixture.
    #[arg(long, default_value_t = 0.5)]
    beta: f64,
    /// Run the teacher on every batch instead of caching its top-k soft labels once in
    /// OUT/teacher_topk.safetensors (the default; --top-k 0 needs --online).
    #[arg(long)]
    online: bool,
    /// Where to run: `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_parser = crate::parse_device)]
    device: crate::DeviceArg,
    #[command(flatten)]
    train: TrainFlags,
}

/// `slm eval`'s flags.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The labelled data.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    task: TaskArgs,
    /// Tokens per prompt (inputs are cut to fit) [default: the task's, else 512].
    #[arg(long)]
    seq_len: Option<usize>,
    /// Write each example's prediction here (JSON Lines) [default: predictions.jsonl beside
    /// the adapter's task.json, when there is one].
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn read_examples(path: &Path, task: &TaskSpec) -> Result<Vec<Example>> {
    let reader = slm_data::read_any(path, &task.fields())?;
    let examples = reader.collect::<Result<Vec<_>, _>>()?;
    if examples.is_empty() {
        bail!("{}: no examples", path.display());
    }
    Ok(examples)
}

fn tokenize(
    examples: &[Example],
    task: &TaskSpec,
    tok: &Tokenizer,
) -> Result<Vec<TokenizedExample>> {
    examples
        .iter()
        .map(|e| {
            if let (Some(labels), Some(l)) = (&task.labels, &e.label)
                && !labels.contains(l)
            {
                bail!(
                    "example {}: label `{l}` is not one of --labels {}",
                    e.id,
                    labels.join(",")
                );
            }
            Ok(task.tokenize(e, tok)?)
        })
        .collect()
}

fn lora_config(args: &FinetuneArgs) -> Result<LoraConfig> {
    let targets = args
        .lora_targets
        .iter()
        .map(|t| {
            let name = if t.ends_with("_proj") {
                t.clone()
            } else {
                format!("{t}_proj")
            };
            if !ALL_PROJECTIONS.contains(&name.as_str()) {
                bail!("--lora-targets: `{t}` is none of q, k, v, o, gate, up, down");
            }
            Ok(name)
        })
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<&str> = targets.iter().map(String::as_str).collect();
    let saved: Vec<&str> = args.modules_to_save.iter().map(String::as_str).collect();
    Ok(LoraConfig::new(args.lora_r, args.lora_alpha)
        .with_targets(&names)
        .with_rslora(args.rslora)
        .with_dora(args.dora)
        .with_modules_to_save(&saved)
        .with_dropout(args.lora_dropout))
}

/// Runs `slm finetune`.
pub fn finetune(args: FinetuneArgs) -> Result<()> {
    let ckpt = Checkpoint::open(&args.model.model)?;
    let device = args.model.device.device()?.autodiff();
    let mut base = ckpt.load_decoder(&device)?;
    if let Some(dir) = &args.model.adapter {
        // Continue training on top of a merged adapter.
        base = slm_core::peft::load_adapter(base, dir)?.0.merge_adapters();
    }
    let mode = if args.full {
        TuneMode::Full
    } else {
        TuneMode::Lora(lora_config(&args)?)
    };
    let name = args.model.model.display().to_string();
    train(&ckpt, base, mode, None, &args.train, &name)
}

/// Runs `slm distill`.
pub fn distill(args: DistillArgs) -> Result<()> {
    let ckpt = Checkpoint::open(&args.teacher)?;
    let plain = args.device.device()?;
    let tuned = |decoder: Decoder| -> Result<Decoder> {
        Ok(match &args.teacher_adapter {
            Some(dir) => slm_core::peft::load_adapter(decoder, dir)?
                .0
                .merge_adapters(),
            None => decoder,
        })
    };
    let teacher = tuned(ckpt.load_decoder(&plain)?)?;
    let device = plain.autodiff();
    let student = match (&args.student_layers, &args.student_config) {
        (Some(n), _) => {
            let layers = ckpt.config.num_hidden_layers;
            let keep: Vec<usize> = match args.every {
                Some(k) if k > 0 => (0..layers).step_by(k).take(*n).collect(),
                Some(_) => bail!("--every must be positive"),
                None => (0..(*n).min(layers)).collect(),
            };
            if keep.len() != *n {
                bail!(
                    "--student-layers {n}: the teacher has {layers} layers ({} kept)",
                    keep.len()
                );
            }
            // The (tuned) teacher's layers, every parameter trainable.
            let all = |_: &str| true;
            let layers = tuned(ckpt.load_decoder(&device)?)?
                .train_selected(&all, Default::default(), "the teacher")?
                .0
                .keep_layers(&keep)?;
            narrowed(layers, args.student_intermediate_size, args.student_heads)?
        }
        (None, Some(path)) => {
            let config = slm_core::config::hf::HfConfig::load(path)?;
            if config.vocab_size != ckpt.config.vocab_size {
                bail!(
                    "teacher and student must share the tokenizer: the teacher's vocabulary ({}) has \
                     {} tokens, the student config {} says {}",
                    args.teacher.display(),
                    ckpt.config.vocab_size,
                    path.display(),
                    config.vocab_size
                );
            }
            config.init(&device)
        }
        (None, None) => bail!("pass --student-layers N or --student-config FILE"),
    };
    let loss = match args.loss.as_str() {
        "reverse_kl" => DistillLoss::ReverseKl,
        "jsd" => DistillLoss::Jsd { beta: args.beta },
        _ => DistillLoss::ForwardKl,
    };
    let distill = DistillConfig {
        loss,
        temperature: args.temperature,
        alpha: args.alpha,
        top_k: (args.top_k > 0).then_some(args.top_k),
    };
    if distill.top_k.is_none() && !args.online {
        bail!("--top-k 0 (the whole vocabulary) cannot be cached: add --online");
    }
    let name = args.teacher.display().to_string();
    let teacher = TeacherArg {
        model: teacher,
        distill,
        online: args.online,
        name: name.clone(),
    };
    train(
        &ckpt,
        student,
        TuneMode::Full,
        Some(teacher),
        &args.train,
        &name,
    )
}

/// `student` narrowed to `intermediate_size` MLP neurons and `heads` query heads per layer
/// (weight-magnitude importance), or as it is when neither is given.
fn narrowed(
    student: Decoder,
    intermediate_size: Option<usize>,
    heads: Option<usize>,
) -> Result<Decoder> {
    if intermediate_size.is_none() && heads.is_none() {
        return Ok(student);
    }
    let kv = student.config().num_key_value_heads;
    let heads_per_group = match heads {
        Some(h) if h == 0 || h % kv != 0 => {
            bail!("--student-heads {h}: must be a positive multiple of the {kv} key/value heads")
        }
        Some(h) => Some(h / kv),
        None => None,
    };
    let to = slm_core::model::Narrowing {
        intermediate_size,
        heads_per_group,
    };
    let importance = slm_core::model::NarrowImportance::from_weights(&student)?;
    Ok(slm_core::model::narrow(&student, &to, &importance)?)
}

/// The teacher of `slm distill`, handed to [`train`] (which drops it once its soft labels are
/// cached, unless `online`).
struct TeacherArg {
    model: Decoder,
    distill: DistillConfig,
    online: bool,
    name: String,
}

/// The file `slm distill` caches the teacher's top-k soft labels in, under OUT.
pub const TEACHER_CACHE_FILE: &str = "teacher_topk.safetensors";

/// The shared run: task, data, trainer with energy and progress, outputs, summary line.
fn train(
    ckpt: &Checkpoint,
    base: Decoder,
    mode: TuneMode,
    teacher: Option<TeacherArg>,
    flags: &TrainFlags,
    base_name: &str,
) -> Result<()> {
    let tokenizer = ckpt
        .tokenizer
        .clone()
        .context("the model has no tokenizer")?;
    let recorded = if flags.resume {
        TaskSpec::load(&flags.out)?
    } else {
        None
    };
    let task = flags.task.task(&tokenizer, flags.seq_len, recorded)?;
    let train = read_examples(&flags.data, &task)?;
    let train_tokens = tokenize(&train, &task, &tokenizer)?;
    let eval = flags
        .eval
        .as_deref()
        .map(|p| read_examples(p, &task))
        .transpose()?;
    let eval_tokens = eval
        .as_deref()
        .map(|e| tokenize(e, &task, &tokenizer))
        .transpose()?;
    std::fs::create_dir_all(&flags.out).with_context(|| format!("{}", flags.out.display()))?;
    task.save(&flags.out)?;
    let tracker = slm_energy::EnergyTracker::new(
        slm_energy::meters::default_meters(),
        slm_energy::TrackerConfig::default(),
    )?;
    let callback = |model: &Decoder| -> slm_train::Result<std::collections::BTreeMap<String, f64>> {
        let Some(eval) = &eval else {
            return Ok(Default::default());
        };
        if task.labels.is_none() {
            return Ok(Default::default());
        }
        let r = evaluate_classifier(model, &tokenizer, &task, eval)?;
        Ok([
            ("accuracy".to_string(), r.report.accuracy),
            ("macro_f1".to_string(), r.report.macro_f1),
        ]
        .into())
    };
    // The teacher's soft labels: cached once under OUT (reused while the data and settings
    // match), then the teacher is dropped; or the teacher kept for every batch.
    let mut online = None;
    let mut cache = None;
    if let Some(t) = teacher {
        if t.online {
            online = Some((t.model, t.distill));
        } else {
            let path = flags.out.join(TEACHER_CACHE_FILE);
            let vocab = base.config().vocab_size;
            let reused = TeacherCache::load(&path)
                .ok()
                .filter(|c| c.check(&train_tokens, &t.distill, vocab).is_ok());
            let c = match reused {
                Some(c) => c,
                None => {
                    let _phase = slm_energy::ObservedPhase::new(
                        &tracker,
                        format!("{}/teacher-cache", slm_energy::Lifecycle::Distillation),
                    );
                    eprintln!(
                        "caching the teacher's top-{} soft labels over {} examples ...",
                        t.distill.top_k.unwrap_or(0),
                        train_tokens.len()
                    );
                    let c = TeacherCache::build(
                        &t.model,
                        &train_tokens,
                        &t.distill,
                        flags.batch_size,
                        flags.seq_len,
                        &t.name,
                    )?;
                    c.save(&path)?;
                    c
                }
            };
            cache = Some((c, t.distill));
            // t.model is dropped here: the student trains without the teacher in memory.
        }
    }
    let (_, report) = {
        let progress = crate::progress::TrainProgress::new(&tracker);
        let mut trainer = Trainer::new(flags.config(), mode, &flags.out, base_name)
            .with_tokenizer(&tokenizer)
            .with_observer(&progress)
            .with_eval_callback(&callback);
        if let Some((t, d)) = &online {
            trainer = trainer.with_teacher(t, *d);
        }
        if let Some((c, d)) = &cache {
            trainer = trainer.with_teacher_cache(c, *d);
        }
        trainer.run(base, &train_tokens, eval_tokens.as_deref(), flags.resume)?
    };
    task.save(&report.output)?;
    let energy = tracker.stop()?;
    let energy_path = flags.out.join("energy.json");
    slm_energy::report::write_json(&energy_path, &energy)?;
    println!(
        "{}",
        json!({
            "out": flags.out,
            "output": report.output,
            "steps": report.steps,
            "resumed_from": report.resumed_from,
            "final_loss": report.final_loss,
            "evals": report.evals,
            "best_step": report.best_step,
            "early_stopped": report.early_stopped,
            "energy_joules": energy.total_energy().map(|e| e.joules()),
            "energy": energy_path,
        })
    );
    Ok(())
}

/// Runs `slm eval`.
pub fn eval(args: EvalArgs) -> Result<()> {
    let ckpt = Checkpoint::open(&args.model.model)?;
    let tokenizer = ckpt
        .tokenizer
        .clone()
        .context("the model has no tokenizer")?;
    // A fine-tuned adapter or model directory carries its task.
    let task_dir = args
        .model
        .adapter
        .clone()
        .filter(|d| d.join(TASK_FILE).is_file())
        .or_else(|| Some(args.model.model.clone()).filter(|d| d.join(TASK_FILE).is_file()));
    let recorded = match &task_dir {
        Some(d) => TaskSpec::load(d)?,
        None => None,
    };
    let seq_len = args
        .seq_len
        .or(recorded.as_ref().map(|t| t.seq_len))
        .unwrap_or(512);
    let task = args.task.task(&tokenizer, seq_len, recorded)?;
    if task.labels.is_none() {
        bail!("slm eval scores labels: pass --labels a,b (or evaluate a classifier's output dir)");
    }
    let examples = read_examples(&args.data, &task)?;
    let (_, model) = crate::load(&args.model)?;
    let result = evaluate_classifier(&model, &tokenizer, &task, &examples)?;
    let predictions = args.predictions.clone().or_else(|| {
        task_dir
            .as_ref()
            .and_then(|d| d.parent())
            .map(|p| p.join("predictions.jsonl"))
    });
    if let Some(path) = &predictions {
        let mut text = String::new();
        for p in &result.predictions {
            text.push_str(&serde_json::to_string(p)?);
            text.push('\n');
        }
        slm_core::io::write_atomic(path, text.as_bytes())?;
    }
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        v["predictions"] = json!(predictions);
        println!("{v}");
        return Ok(());
    }
    let r = &result.report;
    println!(
        "{} examples: accuracy {:.4}, macro-F1 {:.4}, {:.1} predictions/s",
        r.examples, r.accuracy, r.macro_f1, result.predictions_per_second
    );
    let width = r.labels.iter().map(String::len).max().unwrap_or(5).max(5);
    println!("  {:<width$}  precision  recall  f1      support", "label");
    for label in &r.labels {
        let m = &r.per_label[label];
        println!(
            "  {label:<width$}  {:<9.4}  {:<6.4}  {:<6.4}  {}",
            m.precision, m.recall, m.f1, m.support
        );
    }
    println!(
        "confusion (rows: label, columns: predicted {}):",
        r.labels.join(", ")
    );
    for (label, row) in r.labels.iter().zip(&r.confusion) {
        println!("  {label:<width$}  {row:?}");
    }
    if let Some(p) = predictions {
        println!("predictions: {}", p.display());
    }
    Ok(())
}

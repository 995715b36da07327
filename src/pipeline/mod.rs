//! The whole lifecycle of a task model in one call, as `examples/pipeline.rs` and
//! `slm pipeline --config pipeline.toml` run it: curate the data, audit the tokenizer, measure
//! the general model zero- and few-shot, LoRA-tune a teacher, distil a student with half its
//! layers, prune and quantize the student, benchmark every stage's model on the CPU fast path
//! through the serving engine, export the chosen one (Hugging Face dir, GGUF + Modelfile), and
//! report it all with Energy-to-Solution (`report/index.html`, `report.json`,
//! `emissions.csv`).
//!
//! Each phase keeps its artifacts under `OUT/<phase>/` with a `phase.json` keyed by its inputs
//! and settings ([`store`]): a re-run resumes from the finished phases, a changed setting
//! re-runs that phase and those after it, [`PipelineConfig::fresh`] starts over. Every phase is
//! metered by its own [`EnergyTracker`](slm_energy::EnergyTracker) (measured where the machine
//! has counters, estimated otherwise, and said which), and the report puts the phases of every
//! run on one clock ([`TrackerReport::concat`](slm_energy::TrackerReport::concat)).
//!
//! ```no_run
//! use slm::pipeline::{PipelineConfig, run};
//!
//! # fn main() -> slm::pipeline::Result<()> {
//! let config = PipelineConfig {
//!     out: "target/pipeline".into(),
//!     ..PipelineConfig::default().quick()
//! };
//! let report = run(&config)?;
//! println!("chosen: {} ({:.3} accuracy)", report.chosen, report.stage(&report.chosen).unwrap().classification.accuracy);
//! # Ok(()) }
//! ```

pub mod bench;
mod config;
mod error;
mod progress;
pub mod report;
pub mod store;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slm_compress::{PruneMethod, QuantType, QuantizeConfig, prune, quantize_gguf};
use slm_core::fast::FastDecoderConfig;
use slm_core::peft::{ALL_PROJECTIONS, LoraConfig};
use slm_core::prelude::*;
use slm_data::inputs::{TaskSpec, TemplateSpec, TokenizedExample};
use slm_data::{CurateConfig, Example, InputConfig};
use slm_energy::{EnergyTracker, TrackerConfig};
use slm_train::{DistillConfig, DistillLoss, TeacherCache, TrainConfig, Trainer, TuneMode};

pub use bench::StageBench;
pub use config::{CompressConfig, PipelineConfig, StudentConfig, TeacherConfig};
pub use error::{Error, Result};
pub use progress::Progress;
pub use report::PipelineReport;
use store::{Finished, Store, file_key};

/// The curated splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curated {
    /// `train.jsonl`.
    pub train: PathBuf,
    /// `val.jsonl`.
    pub val: PathBuf,
    /// `test.jsonl`.
    pub test: PathBuf,
    /// Examples per split (train, val, test, ...).
    pub splits: Vec<(String, usize)>,
    /// Rows removed by the stages.
    pub dropped: usize,
    /// The dataset card (`README.md`).
    pub card: PathBuf,
}

/// The tokenizer audit: does a vocabulary of the domain pay?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerAudit {
    /// The base tokenizer's tokens per word on the validation split.
    pub base_tokens_per_word: f64,
    /// A BPE vocabulary of the same size trained on the train split, on the same text.
    pub domain_tokens_per_word: f64,
    /// `1 - domain / base`: the share of tokens a domain vocabulary would save.
    pub saving: f64,
    /// Whether the base tokenizer is kept.
    pub kept_base: bool,
    /// Why.
    pub reason: String,
}

/// A trained model: where it is and how training went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// The Hugging Face directory (f16, with its tokenizer and `task.json`).
    pub hf_dir: PathBuf,
    /// The same model as an F16 GGUF (what the benchmark runs).
    pub gguf: PathBuf,
    /// Decoder layers.
    pub layers: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// `(step, loss)` of every step.
    pub losses: Vec<(u64, f64)>,
    /// `(step, loss on the val split)` of every evaluation (none when not evaluated).
    #[serde(default)]
    pub evals: Vec<(u64, f64)>,
    /// The step whose weights were kept: the lowest val loss when evaluated (0: the weights
    /// training started from), the last step otherwise.
    #[serde(default)]
    pub kept_step: u64,
    /// Wall seconds of training.
    pub seconds: f64,
    /// The teacher's cached top-k soft labels it was distilled from (the student's, reused by
    /// the pruned model's recovery).
    #[serde(default)]
    pub teacher_cache: Option<PathBuf>,
}

/// The compressed student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compressed {
    /// The pruned and recovered model.
    pub pruned: Trained,
    /// The pruning method (`wanda-2:4`, `wanda`, `none`).
    pub method: String,
    /// Share of projection weights that are zero.
    pub sparsity: f64,
    /// `(file type, GGUF, bits per weight)` of each quantization.
    pub quantized: Vec<(String, PathBuf, f64)>,
}

/// What the run exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exported {
    /// The chosen stage.
    pub stage: String,
    /// Why it was chosen.
    pub reason: String,
    /// The GGUF (llama.cpp, Ollama, `slm serve`).
    pub gguf: PathBuf,
    /// Its Ollama Modelfile.
    pub modelfile: PathBuf,
    /// The Hugging Face directory (transformers, vLLM; unquantized: quantization is GGUF's).
    pub hf_dir: PathBuf,
    /// The task (labels, prompt template) beside them, as `task.json` (also in `hf_dir`).
    pub task: PathBuf,
}

/// The phases, in order: the folder names under `OUT`.
pub const PHASES: [&str; 7] = [
    "curate",
    "tokenizer",
    "teacher",
    "student",
    "compress",
    "bench",
    "export",
];

/// Runs the pipeline (see the module docs).
///
/// # Errors
/// [`Error::Invalid`] for bad settings or inputs; every phase's own errors, typed by crate.
pub fn run(config: &PipelineConfig) -> Result<PipelineReport> {
    config.validate()?;
    let progress = Progress::new();
    let out = &config.out;
    if config.fresh {
        for name in PHASES.iter().chain(&["report"]) {
            let dir = out.join(name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let energy = match &config.region {
        Some(code) => TrackerConfig::for_region(code)?,
        None => TrackerConfig::default(),
    };
    let store = Store::new(out, energy);
    let base_path = match &config.base {
        Some(p) => p.clone(),
        None => {
            let p = slm_core::cache::smollm2_gguf();
            if !p.is_file() {
                return Err(Error::Invalid(format!(
                    "no base model: pass one, or fetch SmolLM2-135M-Instruct into {} with \
                     scripts/fetch-smollm2.sh",
                    p.display()
                )));
            }
            p
        }
    };
    let base_key = file_key(&base_path)?;
    let base = Checkpoint::open(&base_path)?;
    let tokenizer = base
        .tokenizer
        .clone()
        .ok_or_else(|| Error::Invalid(format!("{}: no tokenizer", base_path.display())))?;
    let task = TaskSpec::classifier(config.labels.clone(), &tokenizer, config.seq_len);

    // 1. Curate: the task's data, deduplicated, cleaned and split, with its card.
    progress.header("1/9 curate", &config.data.display().to_string());
    let data_key = (file_key(&config.data)?, data_inputs_key(&config.data)?);
    let curated = store.phase("curate", &data_key, |dir, tracker| {
        curate(&config.data, dir, tracker)
    })?;
    progress.done(&curated, |c| {
        format!("splits {:?}, {} dropped", c.splits, c.dropped)
    });
    let train = read_split(&curated.value.train, &task, config.teacher.train_limit)?;
    let val = read_split(&curated.value.val, &task, None)?;
    let test = read_split(&curated.value.test, &task, config.test_limit)?;

    // 2. Tokenizer audit: would a vocabulary of the domain pay for itself?
    progress.header("2/9 tokenizer audit", "fertility of the base tokenizer");
    let audit = store.phase("tokenizer", &(&curated.key, &base_key), |_, tracker| {
        let _phase = tracker.phase("tokenizer/audit")?;
        audit_tokenizer(&tokenizer, &train, &val)
    })?;
    progress.done(&audit, |a| a.reason.clone());

    // 4. Teacher: LoRA on the base model (the merged result saved as HF dir and F16 GGUF).
    progress.header(
        "4/9 teacher",
        &format!(
            "LoRA r={} on {}",
            config.teacher.lora_r,
            base_path.display()
        ),
    );
    let teacher_key = (
        &curated.key,
        &base_key,
        &config.teacher,
        config.seq_len,
        &config.labels,
        // How training prompts are cut (a classifier's for its longest label, since the
        // artifacts this key names were made): older runs' phases are not reused.
        "prompts cut for the longest label",
    );
    let teacher = store.phase("teacher", &teacher_key, |dir, tracker| {
        tune_teacher(
            config, &base, &tokenizer, &task, &train, dir, tracker, &progress,
        )
    })?;
    progress.done(&teacher, |t| {
        format!("{} steps in {:.0} s", t.steps, t.seconds)
    });

    // 5. Student: every k-th layer of the tuned teacher, distilled from its cached top-k.
    progress.header(
        "5/9 student",
        &format!(
            "every {}-th layer of the teacher, distilled",
            config.student.every
        ),
    );
    let student_key = (&teacher.key, &config.student);
    let student = store.phase("student", &student_key, |dir, tracker| {
        distil_student(
            config,
            &teacher.value,
            &task,
            &train,
            &val,
            dir,
            tracker,
            &progress,
        )
    })?;
    progress.done(&student, |s| {
        format!(
            "{} layers, {} steps in {:.0} s{}",
            s.layers,
            s.steps,
            s.seconds,
            kept(s)
        )
    });

    // 6. Compress: prune with a recovery fine-tune, then quantize.
    progress.header("6/9 compress", &config.compress.prune);
    let compress_key = (&student.key, &config.compress);
    let compressed = store.phase("compress", &compress_key, |dir, tracker| {
        compress(
            config,
            &student.value,
            &task,
            &train,
            &val,
            dir,
            tracker,
            &progress,
        )
    })?;
    progress.done(&compressed, |c| {
        format!(
            "sparsity {:.3}, {} quantizations{}",
            c.sparsity,
            c.quantized.len(),
            kept(&c.pruned)
        )
    });

    // 3 and 7. Benchmark every stage's model the same way: fast path, engine, test split.
    progress.header("3+7/9 benchmark", &format!("{} test examples", test.len()));
    let few_shot = few_shot_task(config, &tokenizer, &train);
    let mut stages: Vec<(String, PathBuf, TaskSpec)> = vec![
        ("base-zero-shot".into(), base_path.clone(), task.clone()),
        ("base-few-shot".into(), base_path.clone(), few_shot),
    ];
    if let Some(b) = &config.baseline {
        stages.push(("baseline-zero-shot".into(), b.clone(), task.clone()));
    }
    stages.push(("teacher".into(), teacher.value.gguf.clone(), task.clone()));
    stages.push(("student".into(), student.value.gguf.clone(), task.clone()));
    if config.compress.prune != "none" {
        stages.push((
            "pruned".into(),
            compressed.value.pruned.gguf.clone(),
            task.clone(),
        ));
    }
    for (qtype, path, _) in &compressed.value.quantized {
        stages.push((format!("quantized-{qtype}"), path.clone(), task.clone()));
    }
    let mut benches: Vec<Finished<StageBench>> = Vec::new();
    for (name, path, stage_task) in &stages {
        let key = (
            file_key(path)?,
            &curated.key,
            stage_task,
            config.test_limit,
            config.latency_examples,
            config.threads,
        );
        let b = store.phase(&format!("bench/{name}"), &key, |_, tracker| {
            bench::bench_stage(
                &bench::StageModel {
                    stage: name,
                    model: path,
                    task: stage_task,
                },
                &test,
                config.latency_examples,
                config.threads,
                tracker,
                store.energy_config(),
            )
        })?;
        progress.done(&b, |b| {
            format!(
                "{name}: accuracy {:.3}, macro-F1 {:.3}, {:.1} predictions/s batched, p50 {:.0} ms",
                b.classification.accuracy,
                b.classification.macro_f1,
                b.batched_predictions_per_second,
                b.latency_p50_ms
            )
        });
        benches.push(b);
    }

    // 8. Export the chosen model for transformers/vLLM and llama.cpp/Ollama.
    let (chosen, reason) = choose(
        config,
        &benches.iter().map(|b| &b.value).collect::<Vec<_>>(),
    );
    progress.header("8/9 export", &format!("{chosen}: {reason}"));
    let chosen_bench = &benches
        .iter()
        .find(|b| b.value.stage == chosen)
        .expect("chosen")
        .value;
    let hf_source = match chosen.as_str() {
        "teacher" => teacher.value.hf_dir.clone(),
        "student" => student.value.hf_dir.clone(),
        _ => compressed.value.pruned.hf_dir.clone(),
    };
    let export_key = (file_key(&chosen_bench.model)?, &chosen, &reason);
    let exported = store.phase("export", &export_key, |dir, tracker| {
        let _phase = tracker.phase("compression/export")?;
        export(
            &chosen,
            &reason,
            &chosen_bench.model,
            &hf_source,
            &task,
            dir,
        )
    })?;
    progress.done(&exported, |e| format!("{}", e.gguf.display()));

    // 9. Report: HTML with plots, JSON, CodeCarbon-style emissions.csv.
    progress.header("9/9 report", &out.join("report").display().to_string());
    let mut energies = vec![
        &curated.energy,
        &audit.energy,
        &teacher.energy,
        &student.energy,
        &compressed.energy,
    ];
    energies.extend(benches.iter().map(|b| &b.energy));
    energies.push(&exported.energy);
    let report = report::PipelineReport::build(
        config,
        report::Inputs {
            base: &base_path,
            curated: &curated.value,
            audit: &audit.value,
            teacher: &teacher.value,
            student: &student.value,
            compressed: &compressed.value,
            benches: benches.iter().map(|b| b.value.clone()).collect(),
            exported: &exported.value,
            energies: energies.into_iter().cloned().collect(),
            resumed: [
                ("curate", curated.resumed),
                ("tokenizer", audit.resumed),
                ("teacher", teacher.resumed),
                ("student", student.resumed),
                ("compress", compressed.resumed),
                ("export", exported.resumed),
            ]
            .into_iter()
            .filter(|(_, r)| *r)
            .map(|(n, _)| n.to_string())
            .collect(),
        },
    )?;
    report.write(&out.join("report"))?;
    eprintln!("report: {}", out.join("report/index.html").display());
    Ok(report)
}

/// The key of the data a curate config reads (its inputs' bytes), so an edited corpus re-curates.
fn data_inputs_key(data: &Path) -> Result<Vec<String>> {
    if !is_curate_config(data) {
        return Ok(Vec::new());
    }
    let config = CurateConfig::from_path(data)?;
    config
        .inputs
        .iter()
        .map(|i| {
            if i.path.is_file() {
                file_key(&i.path)
            } else {
                Ok(i.path.display().to_string())
            }
        })
        .collect()
}

fn is_curate_config(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
}

/// Phase 1: `data` curated into `dir`.
fn curate(data: &Path, dir: &Path, tracker: &EnergyTracker) -> Result<Curated> {
    let mut config = if is_curate_config(data) {
        CurateConfig::from_path(data)?
    } else {
        // Any labelled file: the default stages (dedup, normalisation, length) and splits.
        let mut c = CurateConfig::new(
            vec![InputConfig {
                path: data.to_path_buf(),
                text_field: "text".into(),
                label_field: Some("label".into()),
                target_field: None,
                id_field: None,
            }],
            dir,
        );
        c.seed = 42;
        c
    };
    config.output_dir = dir.to_path_buf();
    let report = slm_data::curate_with(&config, &Default::default(), tracker)?;
    let split = |name: &str| dir.join(format!("{name}.jsonl"));
    for name in ["train", "val", "test"] {
        if !split(name).is_file() {
            return Err(Error::Invalid(format!(
                "curation wrote no {name} split (too few examples?): see {}",
                dir.join("README.md").display()
            )));
        }
    }
    Ok(Curated {
        train: split("train"),
        val: split("val"),
        test: split("test"),
        splits: report
            .card
            .splits
            .iter()
            .map(|(k, v)| (k.clone(), v.count))
            .collect(),
        dropped: report.dropped,
        card: dir.join("README.md"),
    })
}

/// A curated split as examples, the first `limit` when given.
fn read_split(path: &Path, task: &TaskSpec, limit: Option<usize>) -> Result<Vec<Example>> {
    let mut examples =
        slm_data::read_any(path, &task.fields())?.collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(n) = limit {
        // A slice of every label: curated splits may be grouped by label or source, so the
        // first n would not be a sample. Ordered by a hash of the id: the same slice each run.
        examples.sort_by_key(|e| xxhash_rust::xxh3::xxh3_64(e.id.as_bytes()));
        examples.truncate(n);
    }
    if examples.is_empty() {
        return Err(Error::Invalid(format!("{}: no examples", path.display())));
    }
    Ok(examples)
}

/// Phase 2: fertility of the base tokenizer against a domain BPE of the same size.
fn audit_tokenizer(
    tokenizer: &Tokenizer,
    train: &[Example],
    val: &[Example],
) -> Result<TokenizerAudit> {
    use slm_data::tokenizer::{BpeTrainingConfig, fertility, train_bpe_from_texts};
    let texts: Vec<&str> = val.iter().map(|e| e.input.as_str()).collect();
    let base = fertility(tokenizer, &texts)?;
    // A vocabulary of the base's size learnt from the train split alone (capped: a corpus
    // this small has fewer distinct merges).
    let size = tokenizer.vocab_size().min(8192);
    let domain = train_bpe_from_texts(
        train.iter().map(|e| e.input.as_str()),
        &BpeTrainingConfig::new(size),
    )?;
    let theirs = fertility(&domain, &texts)?;
    let saving = 1.0 - theirs.tokens_per_word / base.tokens_per_word.max(1e-9);
    let change = if saving >= 0.0 {
        format!("{:.0}% fewer", saving * 100.0)
    } else {
        format!("{:.0}% more", -saving * 100.0)
    };
    // A new vocabulary throws away the pretrained embeddings: it pays only when it saves a
    // large share of every prompt's tokens (compute and energy at every query).
    let threshold = 0.25;
    let (kept_base, reason) = if saving < threshold {
        (
            true,
            format!(
                "kept the base tokenizer: {:.2} tokens/word; a {size}-token domain BPE gives {:.2} \
                 ({change}), short of the {:.0}% saving that would pay for retraining the embeddings",
                base.tokens_per_word,
                theirs.tokens_per_word,
                threshold * 100.0
            ),
        )
    } else {
        (
            true,
            format!(
                "kept the base tokenizer although a {size}-token domain BPE saves {:.0}% of the \
                 tokens ({:.2} vs {:.2} per word): this pipeline does not retrain embeddings \
                 (slm tokenizer train --base extends a vocabulary)",
                saving * 100.0,
                theirs.tokens_per_word,
                base.tokens_per_word
            ),
        )
    };
    Ok(TokenizerAudit {
        base_tokens_per_word: base.tokens_per_word,
        domain_tokens_per_word: theirs.tokens_per_word,
        saving,
        kept_base,
        reason,
    })
}

/// `, kept step N (val loss L)` for a run evaluated on the val split.
fn kept(t: &Trained) -> String {
    match t.evals.iter().find(|e| e.0 == t.kept_step) {
        Some((step, loss)) => format!(", kept step {step} (val loss {loss:.4})"),
        None => String::new(),
    }
}

/// The examples tokenized as training sees them.
fn tokenize(
    task: &TaskSpec,
    tokenizer: &Tokenizer,
    examples: &[Example],
) -> Result<Vec<TokenizedExample>> {
    Ok(examples
        .iter()
        .map(|e| task.tokenize(e, tokenizer))
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// `eval_every`: evaluate on the val split that often (and before the first step) and keep
/// the weights of the lowest val loss.
fn train_config(
    steps: u64,
    batch_size: usize,
    lr: f64,
    seq_len: usize,
    eval_every: Option<u64>,
) -> TrainConfig {
    TrainConfig {
        max_steps: Some(steps),
        batch_size,
        seq_len,
        lr,
        warmup: 0.1,
        eval_every,
        load_best_at_end: eval_every.is_some(),
        save_every: None,
        seed: 42,
        ..TrainConfig::default()
    }
}

/// The val split's examples for a run evaluated every `eval_every` steps (`None`: not
/// evaluated).
fn eval_tokens(
    eval_every: Option<u64>,
    task: &TaskSpec,
    tokenizer: &Tokenizer,
    val: &[Example],
) -> Result<Option<Vec<TokenizedExample>>> {
    match eval_every {
        Some(_) if !val.is_empty() => Ok(Some(tokenize(task, tokenizer, val)?)),
        _ => Ok(None),
    }
}

/// What a run's report says about its evaluations and kept weights.
fn evals_of(report: &slm_train::TrainReport) -> (Vec<(u64, f64)>, u64) {
    let evals = report.evals.iter().map(|e| (e.step, e.eval_loss)).collect();
    (evals, report.output_step)
}

/// Saves `model` as an f16 HF dir under `dir/model` and an F16 GGUF beside it.
fn save_model(
    model: &Decoder,
    tokenizer: &Tokenizer,
    task: &TaskSpec,
    dir: &Path,
    name: &str,
) -> Result<(PathBuf, PathBuf)> {
    let hf = dir.join("model");
    save_hf_dir(model, Some(tokenizer), &hf, SaveDtype::F16)?;
    task.save(&hf)?;
    let gguf = dir.join(format!("{name}.F16.gguf"));
    let (writer, _) = quantize_gguf(
        &Checkpoint::open(&hf)?,
        &QuantizeConfig::new(QuantType::F16),
    )?;
    writer.write(&gguf)?;
    Ok((hf, gguf))
}

/// Phase 4: the LoRA teacher.
#[allow(clippy::too_many_arguments)]
fn tune_teacher(
    config: &PipelineConfig,
    base: &Checkpoint,
    tokenizer: &Tokenizer,
    task: &TaskSpec,
    train: &[Example],
    dir: &Path,
    tracker: &EnergyTracker,
    progress: &Progress,
) -> Result<Trained> {
    let t = &config.teacher;
    let tokens = tokenize(task, tokenizer, train)?;
    let phase = tracker.phase("training/teacher")?;
    let model = base.load_decoder(&Device::flex().autodiff())?;
    let lora = LoraConfig::new(t.lora_r, t.lora_alpha).with_targets(&ALL_PROJECTIONS);
    let observer = progress.training("teacher", t.steps);
    let started = std::time::Instant::now();
    let (tuned, report) = Trainer::new(
        train_config(t.steps, t.batch_size, t.lr, config.seq_len, None),
        TuneMode::Lora(lora),
        dir.join("train"),
        "base",
    )
    .with_tokenizer(tokenizer)
    .with_observer(&observer)
    .run(model, &tokens, None, false)?;
    let seconds = started.elapsed().as_secs_f64();
    phase.end()?;
    let _save = tracker.phase("training/teacher-export")?;
    let merged = tuned.merge_adapters();
    let (hf_dir, gguf) = save_model(&merged, tokenizer, task, dir, "teacher")?;
    Ok(Trained {
        hf_dir,
        gguf,
        layers: merged.config().num_hidden_layers,
        steps: report.steps,
        losses: observer.losses(),
        evals: Vec::new(),
        kept_step: report.output_step,
        seconds,
        teacher_cache: None,
    })
}

/// Phase 5: the distilled student.
#[allow(clippy::too_many_arguments)]
fn distil_student(
    config: &PipelineConfig,
    teacher: &Trained,
    task: &TaskSpec,
    train: &[Example],
    val: &[Example],
    dir: &Path,
    tracker: &EnergyTracker,
    progress: &Progress,
) -> Result<Trained> {
    let s = &config.student;
    let ckpt = Checkpoint::open(&teacher.hf_dir)?;
    let tokenizer = ckpt
        .tokenizer
        .clone()
        .ok_or_else(|| Error::Invalid("the teacher has no tokenizer".into()))?;
    let tokens = tokenize(task, &tokenizer, train)?;
    let distill = distill_config(s);
    let cache = {
        // The teacher's soft labels once, from its GGUF on the CPU fast path (several times
        // faster than the burn decoder; the teacher is not kept in memory while the student
        // trains).
        // Q8_0 (near-lossless, several times the F16 kernels' speed).
        let _phase = tracker.phase("distillation/teacher-cache")?;
        let q8 = dir.join("teacher.Q8_0.gguf");
        let (writer, _) = quantize_gguf(&ckpt, &QuantizeConfig::new(QuantType::Q8_0))?;
        writer.write(&q8)?;
        let gguf = Checkpoint::open(&q8)?;
        let fast = FastDecoderConfig {
            kv_budget_bytes: 256 << 20,
            threads: config.threads,
            ..Default::default()
        }
        .init(&gguf.config, gguf.weights.as_ref())?;
        let cache = TeacherCache::build_stepped(&fast, &tokens, &distill, 8, "teacher (Q8_0)")?;
        cache.save(&dir.join(TEACHER_CACHE))?;
        cache
    };
    let phase = tracker.phase("distillation/student")?;
    let layers = ckpt.config.num_hidden_layers;
    let keep: Vec<usize> = (0..layers).step_by(s.every).collect();
    let all = |_: &str| true;
    let student = ckpt
        .load_decoder(&Device::flex().autodiff())?
        .train_selected(&all, Default::default(), "the teacher")?
        .0
        .keep_layers(&keep)?;
    let eval = eval_tokens(s.eval_every, task, &tokenizer, val)?;
    let observer = progress.training("student", s.steps);
    let started = std::time::Instant::now();
    let (trained, report) = Trainer::new(
        train_config(s.steps, s.batch_size, s.lr, config.seq_len, s.eval_every),
        TuneMode::Full,
        dir.join("train"),
        "teacher",
    )
    .with_tokenizer(&tokenizer)
    .with_observer(&observer)
    .with_teacher_cache(&cache, distill)
    .run(student, &tokens, eval.as_deref(), false)?;
    let (evals, kept_step) = evals_of(&report);
    let seconds = started.elapsed().as_secs_f64();
    phase.end()?;
    let _save = tracker.phase("distillation/student-export")?;
    let (hf_dir, gguf) = save_model(&trained, &tokenizer, task, dir, "student")?;
    Ok(Trained {
        hf_dir,
        gguf,
        layers: trained.config().num_hidden_layers,
        steps: report.steps,
        losses: observer.losses(),
        evals,
        kept_step,
        seconds,
        teacher_cache: Some(dir.join(TEACHER_CACHE)),
    })
}

/// The student's cached teacher soft labels, under `OUT/student`.
const TEACHER_CACHE: &str = "teacher_topk.safetensors";

/// The distillation settings of the student (and of the pruned model's recovery).
fn distill_config(s: &StudentConfig) -> DistillConfig {
    DistillConfig {
        loss: DistillLoss::ForwardKl,
        temperature: s.temperature,
        alpha: s.alpha,
        top_k: Some(s.top_k),
    }
}

/// Phase 6: pruning with a recovery fine-tune (zeros kept), then quantization.
#[allow(clippy::too_many_arguments)]
fn compress(
    config: &PipelineConfig,
    student: &Trained,
    task: &TaskSpec,
    train: &[Example],
    val: &[Example],
    dir: &Path,
    tracker: &EnergyTracker,
    progress: &Progress,
) -> Result<Compressed> {
    let c = &config.compress;
    let ckpt = Checkpoint::open(&student.hf_dir)?;
    let tokenizer = ckpt
        .tokenizer
        .clone()
        .ok_or_else(|| Error::Invalid("the student has no tokenizer".into()))?;
    let tokens = tokenize(task, &tokenizer, train)?;
    let method = match c.prune.as_str() {
        "wanda-2:4" => Some((PruneMethod::WandaNofM { n: 2, m: 4 }, 0.5)),
        "wanda" => Some((PruneMethod::Wanda, c.sparsity)),
        _ => None,
    };
    let (pruned, sparsity) = match method {
        Some((method, sparsity)) => {
            let phase = tracker.phase("compression/prune")?;
            let calibration: Vec<Vec<u32>> = tokens
                .iter()
                .take(c.calibration_examples.max(1))
                .map(|t| t.input_ids.clone())
                .collect();
            let model = ckpt.load_decoder(&Device::flex().autodiff())?;
            let (pruned, report) = prune(&model, method, sparsity, &calibration)?;
            phase.end()?;
            // Recovery as the student was trained: the teacher's soft labels beside the hard
            // labels (hard labels alone let a short run drift towards one class).
            let _phase = tracker.phase("compression/recovery")?;
            let distill = distill_config(&config.student);
            let cache = match &student.teacher_cache {
                Some(path) => {
                    let cache = TeacherCache::load(path)?;
                    cache.check(&tokens, &distill, ckpt.config.vocab_size)?;
                    Some(cache)
                }
                None => None,
            };
            // Evaluated from step 0: where recovery does not lower the val loss, the pruned
            // weights themselves are kept.
            let eval = eval_tokens(c.recovery_eval_every, task, &tokenizer, val)?;
            let observer = progress.training("recovery", c.recovery_steps);
            let started = std::time::Instant::now();
            let mut trainer = Trainer::new(
                train_config(
                    c.recovery_steps.max(1),
                    config.student.batch_size,
                    c.recovery_lr,
                    config.seq_len,
                    c.recovery_eval_every,
                ),
                TuneMode::Full,
                dir.join("train"),
                "student",
            )
            .with_tokenizer(&tokenizer)
            .with_observer(&observer);
            if let Some(cache) = &cache {
                trainer = trainer.with_teacher_cache(cache, distill);
            }
            let (recovered, train_report) = trainer.run(pruned, &tokens, eval.as_deref(), false)?;
            let (evals, kept_step) = evals_of(&train_report);
            let seconds = started.elapsed().as_secs_f64();
            let (hf_dir, gguf) = save_model(&recovered, &tokenizer, task, dir, "pruned")?;
            (
                Trained {
                    hf_dir,
                    gguf,
                    layers: recovered.config().num_hidden_layers,
                    steps: train_report.steps,
                    losses: observer.losses(),
                    evals,
                    kept_step,
                    seconds,
                    teacher_cache: student.teacher_cache.clone(),
                },
                report.projection_sparsity,
            )
        }
        None => (student.clone(), 0.0),
    };
    let _phase = tracker.phase("compression/quantize")?;
    let source = Checkpoint::open(&pruned.hf_dir)?;
    let mut quantized = Vec::new();
    for name in &c.quantize {
        let qtype = QuantType::ALL
            .iter()
            .copied()
            .find(|q| q.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::Invalid(format!("compress.quantize: unknown file type {name}"))
            })?;
        let (writer, report) = quantize_gguf(&source, &QuantizeConfig::new(qtype))?;
        let path = dir.join(format!("pruned.{}.gguf", qtype.name()));
        writer.write(&path)?;
        quantized.push((qtype.name().to_string(), path, report.bits_per_weight));
    }
    Ok(Compressed {
        pruned,
        method: c.prune.clone(),
        sparsity,
        quantized,
    })
}

/// The few-shot prompt: `few_shot` train examples of each label (cut to 200 characters) before
/// the input.
fn few_shot_task(config: &PipelineConfig, tokenizer: &Tokenizer, train: &[Example]) -> TaskSpec {
    let zero_shot = TaskSpec::classifier(config.labels.clone(), tokenizer, config.seq_len);
    let mut shots = String::from("\n\nExamples:");
    for label in &config.labels {
        for e in train
            .iter()
            .filter(|e| e.label.as_deref() == Some(label))
            .take(config.few_shot)
        {
            let text: String = e.input.chars().take(200).collect();
            shots.push_str(&format!("\n\nText: {}\nLabel: {label}", text.trim()));
        }
    }
    // The zero-shot instruction, the examples after it.
    let template = match zero_shot.template.clone() {
        TemplateSpec::Chat {
            instruction,
            system,
        } => TemplateSpec::Chat {
            instruction: instruction + &shots,
            system,
        },
        TemplateSpec::Instruction { instruction } => TemplateSpec::Instruction {
            instruction: instruction + &shots,
        },
    };
    TaskSpec {
        template,
        seq_len: config.seq_len * 4,
        ..zero_shot
    }
}

/// The model to export: among the tuned stages whose accuracy is within `accept_margin` of the
/// best tuned one, the one with the least energy per prediction (the smallest file when no
/// meter read).
fn choose(config: &PipelineConfig, benches: &[&StageBench]) -> (String, String) {
    let tuned: Vec<&&StageBench> = benches
        .iter()
        // `base-*` and `baseline-*`: the untuned models.
        .filter(|b| !b.stage.starts_with("base"))
        .collect();
    let best = tuned
        .iter()
        .map(|b| b.classification.accuracy)
        .fold(f64::NEG_INFINITY, f64::max);
    let cost = |b: &StageBench| b.wh_per_1k.unwrap_or(b.model_bytes as f64);
    let pick = tuned
        .iter()
        .filter(|b| b.classification.accuracy >= best - config.accept_margin)
        .min_by(|a, b| {
            cost(a)
                .total_cmp(&cost(b))
                .then(a.model_bytes.cmp(&b.model_bytes))
        })
        .expect("the teacher is always benchmarked");
    (
        pick.stage.clone(),
        format!(
            "the least energy per prediction ({}) among the tuned models within {:.1} points of \
             the best accuracy ({:.3}); its accuracy {:.3}",
            pick.wh_per_1k
                .map_or("no meter".to_string(), |w| format!("{w:.4} Wh/1k")),
            config.accept_margin * 100.0,
            best,
            pick.classification.accuracy
        ),
    )
}

/// Phase 8: the chosen model as GGUF + Modelfile and as a Hugging Face dir.
fn export(
    stage: &str,
    reason: &str,
    gguf: &Path,
    hf_source: &Path,
    task: &TaskSpec,
    dir: &Path,
) -> Result<Exported> {
    let file = format!("{stage}.gguf");
    let out_gguf = dir.join(&file);
    std::fs::copy(gguf, &out_gguf).map_err(|e| Error::io(&out_gguf, e))?;
    let ckpt = Checkpoint::open(&out_gguf)?;
    let modelfile = dir.join("Modelfile");
    let text = slm_compress::Modelfile::new(&file, ckpt.tokenizer.as_ref()).render();
    slm_core::io::write_atomic(&modelfile, text.as_bytes())?;
    let hf_dir = dir.join("hf");
    std::fs::create_dir_all(&hf_dir).map_err(|e| Error::io(&hf_dir, e))?;
    for entry in std::fs::read_dir(hf_source).map_err(|e| Error::io(hf_source, e))? {
        let entry = entry.map_err(|e| Error::io(hf_source, e))?;
        if entry.path().is_file() {
            let to = hf_dir.join(entry.file_name());
            std::fs::copy(entry.path(), &to).map_err(|e| Error::io(&to, e))?;
        }
    }
    task.save(&hf_dir)?;
    task.save(dir)?;
    Ok(Exported {
        stage: stage.to_string(),
        reason: reason.to_string(),
        gguf: out_gguf,
        modelfile,
        hf_dir,
        task: dir.join(slm_data::inputs::TASK_FILE),
    })
}

//! `slm`: inspect, tokenize, run and convert small language models.
//!
//! Every subcommand prints JSON (or plain text) on stdout; on bad input it prints one line
//! starting with `error:` on stderr and exits with status 1.

mod backend;
mod bench;
mod bench_serve;
mod perplexity;
mod pipeline;
mod progress;
mod prune;
mod quantize;
mod serve;
mod summary;
mod tune;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use slm_core::prelude::*;
use slm_infer::{GenerationConfig, SamplingParams, generate, generate_text};

#[derive(Parser, Debug)]
#[command(
    name = "slm",
    version,
    about = "Task-specific small language models: inspect, tokenize, run, convert."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The model a command runs: a checkpoint, an optional PEFT adapter, and the device.
#[derive(clap::Args, Debug, Clone)]
struct ModelArgs {
    /// A Hugging Face model directory or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors),
    /// applied unmerged on top of --model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Where to run: `cpu` (burn's flex backend) or `cuda:N` (builds with the `cuda` feature).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: DeviceArg,
    /// Which implementation runs the model (generate, logits, perplexity): `auto` is the CPU
    /// fast path for a GGUF file on the CPU without an adapter, burn otherwise.
    #[arg(long, value_enum, default_value_t = backend::BackendArg::Auto)]
    backend: backend::BackendArg,
}

/// A parsed `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceArg {
    Cpu,
    Cuda(usize),
}

fn parse_device(s: &str) -> std::result::Result<DeviceArg, String> {
    match s {
        "cpu" => Ok(DeviceArg::Cpu),
        _ => match s.strip_prefix("cuda") {
            Some("") => Ok(DeviceArg::Cuda(0)),
            Some(n) => n
                .strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .map(DeviceArg::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device (cpu, cuda, cuda:N)")),
            None => Err(format!("`{s}` is not a device (cpu, cuda, cuda:N)")),
        },
    }
}

impl DeviceArg {
    fn device(self) -> Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceArg::Cuda(i) => Ok(Device::cuda(i)),
            #[cfg(not(feature = "cuda"))]
            DeviceArg::Cuda(_) => {
                bail!("this slm was built without CUDA; rebuild with `--features cuda`")
            }
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print what a model file or directory is, whether slm runs it (with the reason when
    /// not), and its architecture and sizes, as JSON.
    Info {
        /// A Hugging Face model directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
    },
    /// Encode text and print {"ids":[...]}.
    Tokenize {
        /// A tokenizer.json, a model directory or a .gguf file.
        #[arg(long)]
        tokenizer: PathBuf,
        /// The text to encode.
        #[arg(long)]
        text: String,
        /// Apply the tokenizer's post-processor (BOS/EOS tokens).
        #[arg(long)]
        add_special_tokens: bool,
    },
    /// Run the model over ids and write the logits of every position to a safetensors file.
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated token ids.
        #[arg(long, value_parser = parse_ids)]
        ids: Ids,
        /// Output .safetensors file (one f32 tensor `logits` of shape [ids, vocab]).
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate a continuation of a prompt.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// The prompt text.
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        prompt: Option<String>,
        /// The prompt as comma-separated token ids.
        #[arg(long, value_parser = parse_ids)]
        ids: Option<Ids>,
        /// Upper bound on new tokens (a chat answer ends earlier, at the end of its turn).
        #[arg(long, default_value_t = slm_infer::DEFAULT_MAX_NEW_TOKENS)]
        max_new_tokens: usize,
        /// Wrap the prompt as a user message in the model's chat template.
        #[arg(long, requires = "prompt")]
        chat: bool,
        /// Use the prompt as it is, even when the adapter or model directory records a task
        /// (task.json from `slm finetune`, whose template is applied by default).
        #[arg(long, conflicts_with = "chat")]
        raw: bool,
        /// Sampling temperature; 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Keep only the k most likely tokens when sampling (0 = all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Nucleus sampling threshold.
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Drop tokens less likely than this fraction of the best one (0 = off).
        #[arg(long, default_value_t = 0.0)]
        min_p: f32,
        /// Penalise tokens already in the prompt or output (1 = off; 1.1 is common).
        #[arg(long, default_value_t = 1.0)]
        repeat_penalty: f32,
        /// Stop before this text (repeatable); the text ends before it.
        #[arg(long = "stop")]
        stop: Vec<String>,
        /// Sampler seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Do not stop at the end-of-sequence token.
        #[arg(long)]
        ignore_eos: bool,
        /// Print {"ids":[new ids],"text":STR} instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Dataset curation.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Tokenizer training.
    Tokenizer {
        #[command(subcommand)]
        command: TokenizerCommand,
    },
    /// Energy accounting.
    Energy {
        #[command(subcommand)]
        command: EnergyCommand,
    },
    /// Fine-tune a model on a task (LoRA by default, or --full): a classifier with --labels,
    /// a generator with --target-field.
    Finetune(tune::FinetuneArgs),
    /// Distil a teacher into a smaller student (the teacher's first layers, or a config),
    /// written as a Hugging Face directory.
    Distill(tune::DistillArgs),
    /// Evaluate a classifier by label scoring: accuracy, macro-F1, per-label precision and
    /// recall, confusion matrix, predictions/s.
    Eval(tune::EvalArgs),
    /// Perplexity of a model on a text, by llama.cpp's llama-perplexity method (chunks of
    /// --ctx tokens, the second half of each scored).
    Perplexity(perplexity::PerplexityArgs),
    /// Measure prompt and decode speed (tokens/s, as llama-bench's pp and tg), peak memory and
    /// the memory-bandwidth roofline of decoding.
    Bench(bench::BenchArgs),
    /// Serve a model over HTTP with the OpenAI API (chat, completions, streaming), continuous
    /// batching, Prometheus metrics and per-request energy.
    Serve(serve::ServeArgs),
    /// Benchmark an OpenAI-compatible server (this one in-process, or any at --url) at
    /// 1-32 concurrent streaming clients: tokens/s, TTFT, inter-token latency, energy.
    BenchServe(bench_serve::BenchServeArgs),
    /// Prune a model's projections (magnitude, 2:4, or structured MLP neurons) and write it as
    /// a Hugging Face directory with prune_report.json.
    Prune(prune::PruneArgs),
    /// The end-to-end task pipeline (curate, tune, distil, compress, benchmark, export, report
    /// with Energy-to-Solution) from a pipeline.toml; resumes from finished phases.
    Pipeline(pipeline::PipelineArgs),
    /// Quantize a model to a GGUF file type (q8_0, q4_k_m, ...) as llama-quantize does,
    /// optionally weighted by an importance matrix, with an Ollama Modelfile beside it.
    Quantize(quantize::QuantizeArgs),
    /// LoRA adapters.
    Lora {
        #[command(subcommand)]
        command: LoraCommand,
    },
    /// Write any readable model as a Hugging Face directory (safetensors + config + tokenizer).
    Convert {
        #[command(flatten)]
        model: ModelArgs,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Tensor dtype of the output [default: the checkpoint's own for HF dirs, f32 for GGUF].
        #[arg(long, value_parser = ["f32", "f16", "bf16"])]
        dtype: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum LoraCommand {
    /// Fold a PEFT adapter into its base model and write a Hugging Face directory (peft's
    /// `merge_and_unload().save_pretrained(...)`).
    Merge {
        /// The base model: a Hugging Face directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// The PEFT adapter directory.
        #[arg(long)]
        adapter: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Tensor dtype of the output [default: the base checkpoint's, f32 for GGUF].
        #[arg(long, value_parser = ["f32", "f16", "bf16"])]
        dtype: Option<String>,
        /// Keep the base's zero weights zero (a pruned base stays sparse after the merge).
        #[arg(long)]
        keep_sparsity: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Run a curation config (TOML or JSON): read the inputs, run the stages, write the
    /// splits, the dataset card (card.json, README.md), dropped.jsonl and energy.json (each
    /// stage's energy, measured or estimated); print a summary.
    Curate {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// Print the whole report as one JSON object ({"files","dropped","card","energy"})
        /// instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on a domain corpus and write its tokenizer.json.
    Train {
        /// The domain corpus: text files (one text per line), or datasets (JSONL, CSV/TSV,
        /// Parquet, globs over shards) whose --text-field is the text.
        #[arg(long, num_args = 1.., required = true)]
        corpus: Vec<PathBuf>,
        /// The text field of dataset files (`input` for `slm data curate` output).
        #[arg(long, default_value = "text")]
        text_field: String,
        /// Vocabulary size, special tokens included.
        #[arg(long)]
        vocab_size: usize,
        /// Output tokenizer.json.
        #[arg(long)]
        out: PathBuf,
        /// Special tokens placed at the first ids (default: the Llama 3 style set).
        #[arg(long, num_args = 1..)]
        special_tokens: Vec<String>,
        /// A base tokenizer (tokenizer.json, model directory or .gguf) to compare fertility
        /// (tokens per word) with, on --eval or else the training corpus.
        #[arg(long)]
        base: Option<PathBuf>,
        /// Held-out texts for the fertility comparison (same formats as --corpus).
        #[arg(long, num_args = 1.., requires = "base")]
        eval: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum EnergyCommand {
    /// Print which power meters work here (RAPL, perf_event, NVML, estimates) and why not,
    /// as JSON: {"meters":[{"name","component","available","method","detail"}, ...]}.
    Probe,
}

#[derive(Debug, Clone)]
struct Ids(Vec<u32>);

fn parse_ids(s: &str) -> std::result::Result<Ids, String> {
    let ids: std::result::Result<Vec<u32>, _> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{}` is not a token id", p.trim()))
        })
        .collect();
    match ids {
        Ok(v) if !v.is_empty() => Ok(Ids(v)),
        Ok(_) => Err("no ids given".into()),
        Err(e) => Err(e),
    }
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("error: internal error: {}", msg.replace('\n', " "));
    }));
    let cli = Cli::parse();
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// An error and its causes on one line, each cause once: the library errors already name their
/// cause in their own message (`path: no such file or directory`), so a cause whose text is
/// already there is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    // A lying file can put megabytes into a name; one line stays readable.
    const MAX_CHARS: usize = 2000;
    let mut line = line.replace('\n', " ");
    if let Some((cut, _)) = line.char_indices().nth(MAX_CHARS) {
        let rest = line[cut..].chars().count();
        line.truncate(cut);
        line.push_str(&format!(" ... ({rest} more characters)"));
    }
    line
}

fn open(path: &Path) -> Result<Checkpoint> {
    Ok(Checkpoint::open(path)?)
}

fn load(args: &ModelArgs) -> Result<(Checkpoint, Decoder)> {
    let ckpt = open(&args.model)?;
    let model = load_decoder(&ckpt, args)?;
    Ok((ckpt, model))
}

/// The burn decoder of an opened checkpoint on `args`' device, with `args`' adapter.
fn load_decoder(ckpt: &Checkpoint, args: &ModelArgs) -> Result<Decoder> {
    let mut model = ckpt.load_decoder(&args.device.device()?)?;
    if let Some(dir) = &args.adapter {
        model = slm_core::peft::load_adapter(model, dir)?.0;
    }
    Ok(model)
}

/// Loads `args` (an adapter merged in) and writes it as a Hugging Face directory, printing
/// `{"out","dtype","architecture"}`: `slm convert` and `slm lora merge`.
fn write_hf_dir(
    args: &ModelArgs,
    out: &Path,
    dtype: Option<String>,
    keep_sparsity: bool,
) -> Result<()> {
    let (ckpt, decoder) = load(args)?;
    let dtype = save_dtype(&ckpt, dtype)?;
    let merged = if keep_sparsity {
        decoder.merge_adapters_keeping_zeros()
    } else {
        decoder.merge_adapters()
    };
    save_hf_dir(&merged, ckpt.tokenizer.as_ref(), out, dtype)?;
    println!(
        "{}",
        json!({ "out": out, "dtype": dtype.torch_name(), "architecture": ckpt.config.architecture.hf_class() })
    );
    Ok(())
}

/// The dtype to save `ckpt` in: `--dtype`, else the checkpoint's own (f32 for GGUF).
fn save_dtype(ckpt: &Checkpoint, dtype: Option<String>) -> Result<SaveDtype> {
    Ok(match dtype {
        Some(d) => SaveDtype::parse(&d)?,
        None => SaveDtype::parse(&ckpt.config.torch_dtype).unwrap_or_default(),
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { model } => {
            let report = Checkpoint::inspect(&model);
            println!("{}", serde_json::to_string(&report)?);
            if !report.runnable {
                bail!(
                    "{}: {}; slm cannot run it: {}",
                    model.display(),
                    report.describe(),
                    report.reason.as_deref().unwrap_or("unknown reason")
                );
            }
        }
        Command::Tokenize {
            tokenizer,
            text,
            add_special_tokens,
        } => {
            let tok = Tokenizer::from_path(&tokenizer)?;
            let ids = tok.encode(&text, add_special_tokens)?;
            println!("{}", json!({ "ids": ids }));
        }
        Command::Logits { model, ids, out } => {
            let (_, decoder) = backend::Runner::load(&model)?;
            let mut cache = decoder.new_cache();
            let logits =
                decoder.forward(&TokenBatch::single(ids.0, LogitsScope::All), &mut cache)?;
            let tensors = vec![(
                "logits".to_string(),
                vec![logits.positions, logits.vocab],
                logits.values,
            )];
            slm_core::checkpoint::write_safetensors(&out, &tensors, SaveDtype::F32)?;
        }
        Command::Generate {
            model,
            prompt,
            ids,
            max_new_tokens,
            chat,
            raw,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            stop,
            seed,
            ignore_eos,
            json,
        } => {
            let (ckpt, decoder) = backend::Runner::load(&model)?;
            let tokenizer = ckpt.tokenizer.as_ref();
            // A fine-tuned adapter or model directory records its task: the same prompt.
            let task = match (raw || chat, &model.adapter) {
                (true, _) => None,
                (false, Some(dir)) => slm_data::inputs::TaskSpec::load(dir)?,
                (false, None) => slm_data::inputs::TaskSpec::load(&model.model)?,
            };
            let templated_chat = matches!(
                task.as_ref().map(|t| &t.template),
                Some(slm_data::inputs::TemplateSpec::Chat { .. })
            );
            let chat = chat || templated_chat;
            let prompt_ids = match (prompt, ids) {
                (_, Some(ids)) => ids.0,
                (Some(text), None) => {
                    let tok = tokenizer.context("this model has no tokenizer; pass --ids")?;
                    let text = match &task {
                        Some(t) => t.prompt_template().render_prompt(&text, tok)?,
                        None if chat => {
                            tok.apply_chat_template(&[ChatMessage::user(text)], true)?
                        }
                        None => text,
                    };
                    // A rendered chat template already holds its special tokens.
                    tok.encode(&text, !chat)?
                }
                (None, None) => bail!("pass --prompt or --ids"),
            };
            let sampling = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                repetition_penalty: repeat_penalty,
                seed,
                ..Default::default()
            };
            let mut stop_tokens = if ignore_eos {
                Vec::new()
            } else {
                ckpt.config.eos_token_ids.clone()
            };
            if chat && !ignore_eos {
                // Chat models end a turn with their template's end token (`<|im_end|>`, ...).
                if let Some(id) = tokenizer
                    .and_then(|t| t.eos_token())
                    .and_then(|e| tokenizer?.token_to_id(e))
                {
                    stop_tokens.push(id);
                }
            }
            let config = GenerationConfig {
                max_new_tokens,
                sampling,
                stop_tokens,
                stop_strings: stop,
                ..Default::default()
            };
            let (out, text) = match tokenizer {
                Some(t) => {
                    let out = generate_text(&decoder, t, &prompt_ids, &config)?;
                    let text = out.text.clone();
                    (out, text)
                }
                None => (
                    generate(&decoder, &prompt_ids, &config, false)?,
                    String::new(),
                ),
            };
            if json {
                println!("{}", json!({ "ids": out.ids, "text": text }));
            } else {
                println!("{text}");
            }
        }
        Command::Data {
            command: DataCommand::Curate { config, json },
        } => {
            let config = slm_data::CurateConfig::from_path(&config)?;
            // Every stage is a phase of the Energy-to-Solution report, with this machine's
            // meters (measured where RAPL/NVML are readable, estimated otherwise, and said so).
            let tracker = slm_energy::EnergyTracker::new(
                slm_energy::meters::default_meters(),
                slm_energy::TrackerConfig::default(),
            )?;
            let report = {
                let progress = progress::CurateProgress::new(&tracker);
                slm_data::curate_with(&config, &slm_data::StageRegistry::default(), &progress)?
            };
            let energy = tracker.stop()?;
            let energy_path = config.output_dir.join("energy.json");
            slm_energy::report::write_json(&energy_path, &energy)?;
            let mut report = report;
            report.files.push(energy_path);
            if !json {
                print!("{}", summary::curate_summary(&report, &energy));
                return Ok(());
            }
            let files = report.files;
            // The power traces stay in energy.json; the summary keeps the totals and phases.
            let mut energy = serde_json::to_value(&energy)?;
            if let Some(meters) = energy["meters"].as_array_mut() {
                meters.iter_mut().for_each(|m| {
                    m.as_object_mut().map(|m| m.remove("power"));
                });
            }
            println!(
                "{}",
                json!({ "files": files, "dropped": report.dropped, "card": report.card, "energy": energy })
            );
        }
        Command::Tokenizer {
            command:
                TokenizerCommand::Train {
                    corpus,
                    text_field,
                    vocab_size,
                    out,
                    special_tokens,
                    base,
                    eval,
                },
        } => {
            let tokenizer =
                slm_data::tokenizer::train_bpe(&corpus, &text_field, vocab_size, &special_tokens)?;
            let json = tokenizer
                .inner()
                .to_string(true)
                .map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
            slm_core::io::write_atomic(&out, json.as_bytes())?;
            let fertility = match base {
                Some(base) => {
                    let base = Tokenizer::from_path(&base)?;
                    let texts = slm_data::tokenizer::read_corpus(
                        if eval.is_empty() { &corpus } else { &eval },
                        &text_field,
                    )?;
                    Some(slm_data::tokenizer::compare_fertility(
                        &base, &tokenizer, &texts,
                    )?)
                }
                None => None,
            };
            println!(
                "{}",
                json!({ "out": out, "vocab_size": tokenizer.vocab_size(), "fertility": fertility })
            );
        }
        Command::Energy {
            command: EnergyCommand::Probe,
        } => {
            let meters = slm_energy::meters::probe();
            println!("{}", json!({ "meters": meters }));
        }
        Command::Finetune(args) => tune::finetune(args)?,
        Command::Eval(args) => tune::eval(args)?,
        Command::Perplexity(args) => perplexity::run(args)?,
        Command::Bench(args) => bench::run(args)?,
        Command::Serve(args) => serve::run(args)?,
        Command::BenchServe(args) => bench_serve::run(args)?,
        Command::Prune(args) => prune::run(args)?,
        Command::Pipeline(args) => pipeline::run_pipeline(args)?,
        Command::Quantize(args) => quantize::run(args)?,
        Command::Distill(args) => tune::distill(args)?,
        Command::Lora {
            command:
                LoraCommand::Merge {
                    model,
                    adapter,
                    out,
                    dtype,
                    keep_sparsity,
                },
        } => {
            let args = ModelArgs {
                model,
                adapter: Some(adapter),
                device: DeviceArg::Cpu,
                backend: backend::BackendArg::Burn,
            };
            write_hf_dir(&args, &out, dtype, keep_sparsity)?;
        }
        // Quantized GGUF tensors are dequantized to f32; HF checkpoints keep their dtype. An
        // --adapter is merged in.
        Command::Convert { model, out, dtype } => write_hf_dir(&model, &out, dtype, false)?,
    }
    Ok(())
}

//! `slm bench`: prompt processing and decode speed the way `llama-bench` measures them (`pp`:
//! one step over a prompt of random tokens; `tg`: tokens generated one step at a time from an
//! empty context), over `--batch` sequences at once through the batched step API, with peak
//! resident memory and the roofline: the streaming-read bandwidth measured in the same run (over
//! a buffer the size of one step's weights) over the weight bytes one decode step reads.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use slm_core::fast::FastDecoderConfig;
use slm_core::prelude::*;
use slm_core::step::{AdapterId, BatchedLm, PerSequence, SeqChunk};

/// The flags of `slm bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A .gguf file or a Hugging Face model directory.
    #[arg(long)]
    model: PathBuf,
    /// Threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Tokens of the prompt-processing test (`pp`).
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    /// Tokens of the decode test (`tg`).
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Sequences run together in every step.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed repetitions of each test (after one warm-up).
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// `fast` (the CPU fast path) or `burn`.
    #[arg(long, default_value = "fast")]
    backend: String,
    /// A peft LoRA adapter directory (repeatable, fast path): the sequences of each step run
    /// with the adapters in turn, unmerged (the multi-LoRA serving cost).
    #[arg(long = "adapter", value_name = "DIR")]
    adapters: Vec<PathBuf>,
    /// Print one JSON object: {"pp","tg",...}.
    #[arg(long)]
    json: bool,
}

/// Runs `slm bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the thread pool")?;
    let ckpt = Checkpoint::open(&args.model)?;
    let (times, bytes_per_token) = pool.install(|| -> Result<_> {
        match args.backend.as_str() {
            "fast" => {
                let mut model = FastDecoderConfig {
                    threads: Some(threads),
                    ..Default::default()
                }
                .init(&ckpt.config, ckpt.weights.as_ref())?;
                for (i, dir) in args.adapters.iter().enumerate() {
                    model
                        .load_adapter(&format!("adapter{i}"), dir)
                        .with_context(|| format!("loading adapter {}", dir.display()))?;
                }
                let times = measure(&model, &args)?;
                if let Some(p) = model.take_profile() {
                    eprintln!("{}", p.table());
                }
                Ok((times, model.bytes_per_token()))
            }
            "burn" if !args.adapters.is_empty() => {
                anyhow::bail!("--adapter is measured on the fast path (--backend fast)")
            }
            "burn" => {
                let decoder = ckpt.load_decoder(&Device::flex())?;
                let model = PerSequence::new(decoder, 16, usize::MAX / 2);
                Ok((measure(&model, &args)?, ckpt.config.num_parameters() * 4))
            }
            other => anyhow::bail!("--backend `{other}`: choose fast or burn"),
        }
    })?;
    let peak_rss = peak_rss_bytes();
    // Over as many bytes as a decode step reads (at least 64 MiB), so the probe streams from
    // the same level of the memory hierarchy as the weights do (a server CPU's last-level
    // cache can hold a small model whole).
    let probe_bytes = bytes_per_token.max(64 << 20);
    let bandwidth = pool.install(|| slm::ggml::dot::read_bandwidth(probe_bytes, 5));
    let roofline = bandwidth / bytes_per_token as f64 * args.batch as f64;
    let (pp, pp_sd) = mean_sd(&times.pp);
    let (tg, tg_sd) = mean_sd(&times.tg);
    let out = json!({
        "model": args.model,
        "backend": args.backend,
        "threads": threads,
        "batch": args.batch,
        "adapters": args.adapters.len(),
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "repetitions": args.repetitions,
        "pp": pp,
        "pp_sd": pp_sd,
        "tg": tg,
        "tg_sd": tg_sd,
        "peak_rss_bytes": peak_rss,
        "weight_bytes_per_token": bytes_per_token,
        "read_bandwidth_gb_s": bandwidth / 1e9,
        "roofline_tg": roofline,
        "roofline_fraction": tg / roofline,
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "{} ({}, {threads} threads, batch {})\n  pp{:<5} {pp:>9.2} ± {pp_sd:.2} t/s\n  tg{:<5} {tg:>9.2} ± {tg_sd:.2} t/s  ({:.0}% of the {roofline:.1} t/s roofline: {:.1} GB/s over {:.1} MB per step)\n  peak RSS {:.1} MiB",
            args.model.display(),
            args.backend,
            args.batch,
            args.prompt_tokens,
            args.gen_tokens,
            100.0 * tg / roofline,
            bandwidth / 1e9,
            bytes_per_token as f64 / 1e6,
            peak_rss.unwrap_or(0) as f64 / (1 << 20) as f64,
        );
    }
    Ok(())
}

/// Tokens per second of each timed repetition.
struct Times {
    pp: Vec<f64>,
    tg: Vec<f64>,
}

fn measure<B: BatchedLm>(model: &B, args: &BenchArgs) -> Result<Times> {
    // Sequence i runs with adapter i mod n (none without adapters).
    let n = model.adapters().len();
    let add = |i: usize| model.add_sequence_with((n > 0).then(|| AdapterId(i % n)));
    let vocab = model.config().vocab_size as u64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut token = move || {
        // xorshift64: llama-bench feeds random tokens too.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % vocab) as u32
    };
    let b = args.batch.max(1);
    let mut times = Times {
        pp: Vec::new(),
        tg: Vec::new(),
    };
    for rep in 0..=args.repetitions {
        if args.prompt_tokens > 0 {
            let prompts: Vec<Vec<u32>> = (0..b)
                .map(|_| (0..args.prompt_tokens).map(|_| token()).collect())
                .collect();
            let seqs = (0..b).map(add).collect::<slm_core::Result<Vec<_>>>()?;
            let chunks: Vec<SeqChunk<'_>> = seqs
                .iter()
                .zip(&prompts)
                .map(|(&seq, p)| SeqChunk {
                    seq,
                    tokens: p,
                    logits: Some(LogitsScope::Last),
                })
                .collect();
            let t = Instant::now();
            model.step(&chunks)?;
            let secs = t.elapsed().as_secs_f64();
            seqs.into_iter().for_each(|s| model.release(s));
            if rep > 0 {
                times.pp.push((b * args.prompt_tokens) as f64 / secs);
            }
        }
        if args.gen_tokens > 0 {
            let seqs = (0..b).map(add).collect::<slm_core::Result<Vec<_>>>()?;
            let t = Instant::now();
            for _ in 0..args.gen_tokens {
                let next: Vec<[u32; 1]> = (0..b).map(|_| [token()]).collect();
                let chunks: Vec<SeqChunk<'_>> = seqs
                    .iter()
                    .zip(&next)
                    .map(|(&seq, tok)| SeqChunk {
                        seq,
                        tokens: tok,
                        logits: Some(LogitsScope::Last),
                    })
                    .collect();
                model.step(&chunks)?;
            }
            let secs = t.elapsed().as_secs_f64();
            seqs.into_iter().for_each(|s| model.release(s));
            if rep > 0 {
                times.tg.push((b * args.gen_tokens) as f64 / secs);
            }
        }
    }
    Ok(times)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var =
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len().saturating_sub(1).max(1) as f64;
    (mean, var.sqrt())
}

/// The process's peak resident set (`VmHWM`), where /proc has it.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

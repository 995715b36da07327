//! The whole lifecycle of a task model on one CPU box, with every claim measured: spam/ham
//! classification of real emails (the shipped SpamAssassin sample) from curation to an
//! exported, benchmarked, energy-accounted model.
//!
//! ```text
//! cargo run --release --example pipeline                 # ~20 minutes on 2 cores
//! cargo run --release --example pipeline -- --quick      # a slice of every phase, a few minutes
//! cargo run --release --example pipeline -- --data mail.csv --labels ham,spam --out run1
//! ```
//! Phases: curate → tokenizer audit → zero-/few-shot baseline → LoRA teacher → distilled
//! student (half the layers) → pruning (Wanda, 30%) + recovery → Q8_0/Q4_0 → benchmark of every
//! stage on the fast path through the serving engine → export (HF dir, GGUF + Modelfile) →
//! `OUT/report/index.html`, `report.json`, `emissions.csv`. A re-run resumes from the finished
//! phases; `--fresh` starts over. SmolLM2-135M-Instruct (98 MB) is fetched into `~/.cache/slm`
//! on first use.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use slm::pipeline::{PipelineConfig, run};

#[derive(Parser)]
struct Args {
    /// A slice of every phase: minutes instead of ~20 (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Where everything goes (the report under OUT/report).
    #[arg(long, default_value = "target/pipeline")]
    out: PathBuf,
    /// A `slm data curate` config, or any labelled file (fields `text`, `label`).
    #[arg(long, default_value = "data/spamassassin/curate.toml")]
    data: PathBuf,
    /// The label set.
    #[arg(long, value_delimiter = ',', default_value = "ham,spam")]
    labels: Vec<String>,
    /// A larger general model (GGUF) benchmarked zero-shot beside the others.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Start over instead of resuming.
    #[arg(long)]
    fresh: bool,
}

/// The cached SmolLM2 GGUF, fetched by the repository's script when absent.
fn smollm2() -> Result<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-smollm2.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "fetching SmolLM2 failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let defaults = if args.quick {
        PipelineConfig::default().quick()
    } else {
        PipelineConfig::default()
    };
    let config = PipelineConfig {
        out: args.out,
        data: args.data,
        labels: args.labels,
        base: Some(smollm2()?),
        baseline: args.baseline,
        fresh: args.fresh,
        ..defaults
    };
    let report = run(&config)?;

    println!(
        "{:<22} {:>8} {:>8} {:>7} {:>9} {:>9} {:>10}  energy",
        "stage", "accuracy", "macro-F1", "MB", "pred/s", "p50 ms", "Wh/1k"
    );
    for s in &report.stages {
        println!(
            "{:<22} {:>8.4} {:>8.4} {:>7.1} {:>9.2} {:>9.0} {:>10}  {}",
            s.stage,
            s.classification.accuracy,
            s.classification.macro_f1,
            s.model_bytes as f64 / 1e6,
            s.batched_predictions_per_second,
            s.latency_p50_ms,
            s.wh_per_1k.map_or("n/a".into(), |w| format!("{w:.4}")),
            s.energy_method.as_deref().unwrap_or("no meter"),
        );
    }
    println!(
        "chosen: {} ({}); exported {} and {}",
        report.chosen,
        report.exported.reason,
        report.exported.gguf.display(),
        report.exported.hf_dir.display()
    );
    println!(
        "energy to solution: {:.3e} Wh per query over {} queries ({})",
        report.e2s.wh_per_query.value, report.e2s.lifetime_queries, report.e2s.wh_per_query.method
    );
    println!("report: {}", config.out.join("report/index.html").display());
    Ok(())
}

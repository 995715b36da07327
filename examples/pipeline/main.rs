//! The whole lifecycle of a task model on one CPU box, with every claim measured: spam/ham
//! classification of real emails (the shipped SpamAssassin sample) from curation to an
//! exported, benchmarked, energy-accounted model.
//!
//! ```text
//! cargo run --example pipeline                 # the full run (dependencies are built optimised)
//! cargo run --example pipeline -- --quick      # a slice of every phase, ~14 minutes on 2 cores
//! cargo run --example pipeline -- --data mail.csv --labels ham,spam --out target/run1
//! ```
//! Phases: curate → tokenizer audit → zero-/few-shot baseline → LoRA teacher → distilled
//! student (half the layers) → pruning (Wanda, 30%) + recovery → Q8_0/Q4_K_M → benchmark of every
//! stage on the fast path through the serving engine → export (HF dir, GGUF + Modelfile) →
//! `OUT/report/index.html`, `report.json`, `emissions.csv`. A re-run resumes from the finished
//! phases; `--fresh` starts over. SmolLM2-135M-Instruct (98 MB) is fetched into `~/.cache/slm`
//! on first use.

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use slm::pipeline::{PipelineConfig, run};

#[derive(Parser)]
struct Args {
    /// A slice of every phase (what CI runs).
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
        base: Some(common::smollm2()?),
        baseline: args.baseline,
        fresh: args.fresh,
        ..defaults
    };
    let report = run(&config)?;
    println!("{}", report.table());
    println!("report: {}", config.out.join("report/index.html").display());
    Ok(())
}

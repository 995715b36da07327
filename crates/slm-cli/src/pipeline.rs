//! `slm pipeline`: the end-to-end task pipeline of `examples/pipeline.rs` from a TOML config
//! (the same library function, `slm::pipeline::run`), for users who do not write Rust.

use std::path::PathBuf;

use anyhow::Result;
use slm::pipeline::{PipelineConfig, run};

/// The flags of `slm pipeline`.
#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// A pipeline.toml (every key optional: data, labels, base, baseline, out, seq_len,
    /// [teacher], [student], [compress], ...; paths relative to the file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A slice of every phase (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Where everything goes (overrides the config's `out`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start over instead of resuming from the finished phases.
    #[arg(long)]
    fresh: bool,
    /// Print the whole report as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs `slm pipeline`.
pub fn run_pipeline(args: PipelineArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => PipelineConfig::from_toml_file(path)?,
        None => PipelineConfig::default(),
    };
    if args.quick {
        config = config.quick();
    }
    if let Some(out) = args.out {
        config.out = out;
    }
    config.fresh |= args.fresh;
    let report = run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("{}", report.table());
    println!("report: {}", config.out.join("report/index.html").display());
    Ok(())
}

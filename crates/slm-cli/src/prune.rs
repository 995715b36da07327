//! `slm prune`: slm-compress's [`prune`] on any model slm loads, written as a Hugging Face
//! directory with `prune_report.json` beside the weights.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::json;
use slm_compress::{PruneMethod, prune};
use slm_core::prelude::*;

use crate::ModelArgs;

/// The flags of `slm prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// magnitude (smallest weights per output row), magnitude-layer (per projection),
    /// magnitude-global (one threshold over all projections), wanda (smallest |weight| x input
    /// norm over --calib, per output row), 2:4 (two of every four inputs kept), wanda-2:4 (2:4
    /// by wanda's score), structured (whole MLP neurons removed: a smaller model) or
    /// structured-heads (whole query heads removed); the structured methods rank by activations
    /// over --calib when given, else by weight magnitude.
    #[arg(long, value_parser = [
        "magnitude", "magnitude-layer", "magnitude-global", "wanda", "2:4", "wanda-2:4",
        "structured", "structured-heads",
    ])]
    method: String,
    /// Calibration text for wanda and the structured methods (UTF-8; cut into
    /// --calib-ctx-token chunks).
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Tokens per calibration chunk.
    #[arg(long, default_value_t = 512)]
    calib_ctx: usize,
    /// Calibration chunks used at most.
    #[arg(long, default_value_t = 32)]
    calib_chunks: usize,
    /// The fraction pruned, in [0, 1) (2:4 is 0.5 by construction).
    #[arg(long, default_value_t = 0.5)]
    sparsity: f64,
    /// Text to score before and after pruning (llama-perplexity's method), reported in the
    /// output and in prune_report.json.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Tokens per chunk of --eval.
    #[arg(long, default_value_t = 512)]
    eval_ctx: usize,
    /// Chunks of --eval scored at most.
    #[arg(long)]
    eval_chunks: Option<usize>,
    /// Output directory (a Hugging Face model directory).
    #[arg(long)]
    out: PathBuf,
    /// Tensor dtype of the output [default: the checkpoint's own for HF dirs, f32 for GGUF].
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    dtype: Option<String>,
}

/// Runs `slm prune`, printing `{"out","method","requested","projection_sparsity",
/// "params_before","params_after","perplexity","report"}` (`perplexity`: `{"before","after"}`
/// with `--eval`, else null).
pub fn run(args: PruneArgs) -> Result<()> {
    let method = match args.method.as_str() {
        "magnitude" => PruneMethod::Magnitude,
        "2:4" => PruneMethod::NofM { n: 2, m: 4 },
        "structured" => PruneMethod::Structured,
        "structured-heads" => PruneMethod::StructuredHeads,
        "magnitude-layer" => PruneMethod::MagnitudeLayer,
        "magnitude-global" => PruneMethod::MagnitudeGlobal,
        "wanda" => PruneMethod::Wanda,
        "wanda-2:4" => PruneMethod::WandaNofM { n: 2, m: 4 },
        other => bail!("unknown pruning method `{other}`"),
    };
    let (ckpt, model) = crate::load(&args.model)?;
    let calibration = match (&args.calib, method) {
        (Some(path), _) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            let tokenizer = ckpt
                .tokenizer
                .as_ref()
                .context("the model has no tokenizer")?;
            slm_compress::calibration_chunks(tokenizer, &text, args.calib_ctx, args.calib_chunks)?
        }
        (None, PruneMethod::Wanda | PruneMethod::WandaNofM { .. }) => {
            bail!("--method {} needs --calib TEXT", args.method)
        }
        (None, _) => Vec::new(),
    };
    let model = model.merge_adapters();
    let eval = match &args.eval {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            let tokenizer = ckpt
                .tokenizer
                .as_ref()
                .context("--eval needs the model's tokenizer")?;
            let config = slm_infer::PerplexityConfig {
                ctx: args.eval_ctx,
                max_chunks: args.eval_chunks,
            };
            let before = crate::perplexity::score(&model, tokenizer, &text, &config)?;
            Some((text, config, before))
        }
        None => None,
    };
    let (pruned, report) = prune(&model, method, args.sparsity, &calibration)?;
    let perplexity = match (&eval, ckpt.tokenizer.as_ref()) {
        (Some((text, config, before)), Some(tokenizer)) => {
            let after = crate::perplexity::score(&pruned, tokenizer, text, config)?;
            Some(json!({"before": before, "after": after, "text": args.eval}))
        }
        _ => None,
    };
    let dtype = crate::save_dtype(&ckpt, args.dtype)?;
    save_hf_dir(&pruned, ckpt.tokenizer.as_ref(), &args.out, dtype)?;
    let report_path = args.out.join("prune_report.json");
    let mut report_json = serde_json::to_value(&report)?;
    report_json["perplexity"] = perplexity.clone().unwrap_or(serde_json::Value::Null);
    slm_core::io::write_atomic(
        &report_path,
        serde_json::to_string_pretty(&report_json)?.as_bytes(),
    )?;
    println!(
        "{}",
        json!({
            "out": args.out,
            "method": args.method,
            "requested": report.requested,
            "projection_sparsity": report.projection_sparsity,
            "params_before": report.params_before,
            "params_after": report.params_after,
            "perplexity": perplexity,
            "report": report_path,
        })
    );
    Ok(())
}

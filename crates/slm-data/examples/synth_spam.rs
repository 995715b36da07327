//! Synthetic spam from SmolLM2-135M-Instruct as the teacher: few-shot generation from the
//! shipped SpamAssassin sample, then `augment`'s filters (length, dedup against train and
//! eval, characters, and the teacher's own label check). Prints what was kept, why the rest
//! was dropped, and the time it took, as JSON.
//!
//! ```text
//! scripts/fetch-smollm2.sh
//! cargo run --example synth_spam -p slm-data -- [COUNT] [SEED]
//! ```
//! The model comes from `slm_core::cache::smollm2_gguf()` (`$SLM_SMOLLM2_GGUF`, else the cache
//! `scripts/fetch-smollm2.sh` fills).
//! It measures how useful a 135M teacher is, not a tuned recipe: the label check is the
//! teacher scoring `ham` and `spam` zero-shot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use slm_core::prelude::*;
use slm_data::synth::{
    AugmentConfig, GenerationRequest, QualityBounds, TeacherConfig, TeacherGenerator,
    TeacherScorer, augment,
};
use slm_data::{Example, FieldMap, read_jsonl};

const INSTRUCTION: &str = "Below are short e-mails with their label. Write one more e-mail with the same label, on one line.";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(12), |a| a.parse())?;
    let seed: u64 = args.next().map_or(Ok(0), |a| a.parse())?;
    let model = slm_core::cache::smollm2_gguf();
    let ck = Checkpoint::open(&model)
        .with_context(|| format!("{} (run scripts/fetch-smollm2.sh)", model.display()))?;
    let teacher = ck.load_decoder(&Device::flex())?;
    let tokenizer = ck.tokenizer.clone().context("the GGUF has no tokenizer")?;

    let sample =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/spamassassin/sample.jsonl");
    let rows = read_jsonl(
        &sample,
        FieldMap::new("text").with_label("label").with_id("id"),
    )?;
    // Short bodies make short prompts: the first 300 characters of each spam.
    let cut = |e: &Example| {
        let mut e = e.clone();
        e.input = e.input.chars().take(300).collect();
        e
    };
    let (eval, train): (Vec<Example>, Vec<Example>) =
        rows.iter().map(cut).partition(|e| e.id.ends_with('0'));
    let seeds: Vec<Example> = train
        .iter()
        .filter(|e| e.label.as_deref() == Some("spam"))
        .cloned()
        .collect();

    let config = TeacherConfig {
        max_new_tokens: 48,
        seed,
        ..TeacherConfig::new(INSTRUCTION)
    };
    let mut generator = TeacherGenerator::new(&teacher, &tokenizer, config)?;
    let scorer = TeacherScorer::new(&teacher, &tokenizer, "Is this e-mail spam or ham?");
    let request = GenerationRequest {
        label: "spam",
        seeds: &seeds,
        count,
    };
    let augment_config = AugmentConfig::new(QualityBounds {
        min_chars: 20,
        ..QualityBounds::default()
    })
    .with_labels(["ham", "spam"]);
    let start = Instant::now();
    let out = augment(
        &mut generator,
        &request,
        &train,
        &eval,
        &augment_config,
        Some(&scorer),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "teacher": model.display().to_string(),
            "requested": count,
            "kept": out.kept.iter().map(|e| &e.input).collect::<Vec<_>>(),
            "report": out.report,
            "seconds": seconds,
        }))?
    );
    Ok(())
}

//! SmolLM2-135M-Instruct prompt (prefill) and decode throughput on the CPU (flex backend).
//!
//! ```text
//! scripts/fetch-smollm2.sh && cargo bench --bench decode --profile dev
//! ```
//! `--profile dev` reuses the test build (dependencies are opt-level 3 there; a release build of
//! burn takes 20 minutes on 2 cores). Reports tokens/s via `Throughput::Elements`. Without the
//! cached model it prints how to get it and measures nothing.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slm::prelude::*;

fn model_path() -> Option<PathBuf> {
    let p = slm::core::cache::smollm2_gguf();
    p.is_file().then_some(p)
}

fn decode(c: &mut Criterion) {
    let Some(path) = model_path() else {
        eprintln!("SmolLM2 GGUF not found: run scripts/fetch-smollm2.sh first");
        return;
    };
    let ckpt = Checkpoint::open(&path).expect("open SmolLM2");
    let model = ckpt.load_decoder(&Device::flex()).expect("load SmolLM2");
    let tok = ckpt.tokenizer.as_ref().expect("tokenizer");
    let text = tok
        .apply_chat_template(
            &[ChatMessage::user(
                "Write one sentence about why small language models save energy.",
            )],
            true,
        )
        .expect("template");
    let prompt = tok.encode(&text, false).expect("encode");

    let mut group = c.benchmark_group("smollm2-135m/flex");
    group.sample_size(10);
    group.throughput(Throughput::Elements(prompt.len() as u64));
    group.bench_function(format!("prefill_{}_tokens", prompt.len()), |b| {
        b.iter(|| {
            let mut cache = model.new_cache();
            model
                .forward(
                    &TokenBatch::single(prompt.clone(), LogitsScope::Last),
                    &mut cache,
                )
                .unwrap()
        })
    });

    let mut prefilled = model.new_cache();
    model
        .forward(
            &TokenBatch::single(prompt.clone(), LogitsScope::Last),
            &mut prefilled,
        )
        .unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("decode_1_token_after_{}", prompt.len()), |b| {
        b.iter(|| {
            let mut cache = prefilled.clone();
            model
                .forward(&TokenBatch::single(vec![28], LogitsScope::Last), &mut cache)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);

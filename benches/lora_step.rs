//! One LoRA training step on SmolLM2-135M-Instruct (batch 4 x 128 tokens, r = 16 on all seven
//! projections of every layer, AdamW): tokens/s and the peak resident set size, the numbers to
//! put beside PyTorch + peft on the same batch and cores (the issue's anchor on this 2-core VM:
//! 194 tokens/s at 3.3 GiB).
//!
//! ```text
//! scripts/fetch-smollm2.sh && cargo bench --bench lora_step --profile dev
//! ```
//! Without the cached model it prints how to get it and measures nothing.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slm::core::peft::LoraConfig;
use slm::data::inputs::Batch;
use slm::prelude::*;
use slm::train::{AdamWConfig, Grads, TensorAdamW, batch_logits, causal_lm_loss};

fn model_path() -> Option<PathBuf> {
    let p = slm::core::cache::smollm2_gguf();
    p.is_file().then_some(p)
}

/// Peak resident set size of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn lora_step(c: &mut Criterion) {
    let Some(path) = model_path() else {
        eprintln!("SmolLM2 GGUF not found: run scripts/fetch-smollm2.sh first");
        return;
    };
    let device = Device::flex().autodiff();
    let ckpt = Checkpoint::open(&path).expect("open SmolLM2");
    let base = ckpt.load_decoder(&device).expect("load SmolLM2");
    let mut model = Some(LoraConfig::new(16, 32.0).init(base, 0).expect("LoRA"));
    let (rows, len) = (4usize, 128usize);
    let ids: Vec<Vec<u32>> = (0..rows)
        .map(|r| {
            (0..len)
                .map(|t| ((r * 7919 + t * 104_729) % 49_000) as u32 + 100)
                .collect()
        })
        .collect();
    let batch = Batch {
        labels: ids
            .iter()
            .map(|r| r.iter().map(|&i| i as i64).collect())
            .collect(),
        attention_mask: vec![vec![true; len]; rows],
        position_ids: vec![(0..len as u32).collect(); rows],
        segment_ids: vec![vec![1; len]; rows],
        example_indices: (0..rows).map(|r| vec![r]).collect(),
        input_ids: ids,
    };
    let mut optim = TensorAdamW::new(AdamWConfig {
        lr: 2e-4,
        weight_decay: 0.0,
        ..AdamWConfig::default()
    })
    .expect("AdamW");
    // Where a step's time goes: forward (to the loss value), backward, optimizer update.
    let (mut fwd, mut bwd, mut upd) = (0f64, 0f64, 0f64);
    let runs = 3;
    for _ in 0..runs {
        let m = model.take().expect("model");
        let t0 = std::time::Instant::now();
        let (loss, _) = causal_lm_loss(batch_logits(&m, &batch).unwrap(), &batch.labels).unwrap();
        let _ = loss.clone().into_scalar::<f32>();
        let t1 = std::time::Instant::now();
        let grads = Grads::from_backward(&loss, &m);
        let t2 = std::time::Instant::now();
        model = Some(optim.step(2e-4, m, grads));
        let t3 = std::time::Instant::now();
        fwd += (t1 - t0).as_secs_f64();
        bwd += (t2 - t1).as_secs_f64();
        upd += (t3 - t2).as_secs_f64();
    }
    let n = runs as f64;
    eprintln!(
        "step breakdown (mean of {runs}): forward {:.0} ms, backward {:.0} ms, update {:.0} ms",
        fwd / n * 1e3,
        bwd / n * 1e3,
        upd / n * 1e3
    );
    let mut group = c.benchmark_group("smollm2-135m/lora-r16-all/flex");
    group.sample_size(10);
    group.throughput(Throughput::Elements((rows * len) as u64));
    group.bench_function("step_4x128", |b| {
        b.iter(|| {
            let m = model.take().expect("model");
            let (loss, _) =
                causal_lm_loss(batch_logits(&m, &batch).unwrap(), &batch.labels).unwrap();
            let grads = Grads::from_backward(&loss, &m);
            model = Some(optim.step(2e-4, m, grads));
        })
    });
    group.finish();
    eprintln!(
        "peak RSS {:.2} GiB",
        peak_rss() as f64 / (1u64 << 30) as f64
    );
}

criterion_group!(benches, lora_step);
criterion_main!(benches);

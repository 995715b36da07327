//! Model coverage against transformers: the rope and attention variants of
//! `tests/data/coverage/models` (tiny checkpoints saved by transformers, see its `generate.py`)
//! through the burn decoder and the CPU fast path, on the fixtures' padded batch and greedy run.

mod common;

use common::*;
use slm_core::fast::{FastDecoderConfig, Precision};
use slm_core::prelude::*;

/// Every variant: linear, dynamic NTK, YaRN and LongRoPE frequencies, partial rotary, and
/// sliding windows on every layer (Mistral) or from `max_window_layers` on (Qwen2).
const VARIANTS: [&str; 7] = [
    "llama-linear-tiny",
    "llama-dynamic-tiny",
    "qwen2-yarn-tiny",
    "phi3-longrope-tiny",
    "phi3-partial-tiny",
    "mistral-swa-tiny",
    "qwen2-swa-tiny",
];

#[test]
fn rope_and_window_variants_match_transformers_on_both_decoders() {
    for name in VARIANTS {
        let ckpt = Checkpoint::open(&fixture(&format!("coverage/models/{name}"))).unwrap();
        let dir = format!("coverage/models/{name}");
        assert_matches_transformers(
            &ckpt.load_decoder(&Device::flex()).unwrap(),
            &dir,
            &format!("{name} (burn)"),
        );
        let fast = FastDecoderConfig {
            precision: Precision::Quantized,
            kv_budget_bytes: 16 << 20,
            ..Default::default()
        }
        .init(&ckpt.config, ckpt.weights.as_ref())
        .unwrap();
        assert_matches_transformers(&fast, &dir, &format!("{name} (fast)"));
        if ckpt.config.sliding_window.is_some() {
            // Blocks of 2 under a 4-token window: the pool gives blocks back every other token
            // (Mistral, every layer sliding) and the outputs stay transformers'.
            let small_blocks = FastDecoderConfig {
                precision: Precision::Quantized,
                kv_budget_bytes: 16 << 20,
                block_size: 2,
                ..Default::default()
            }
            .init(&ckpt.config, ckpt.weights.as_ref())
            .unwrap();
            assert_matches_transformers(
                &small_blocks,
                &dir,
                &format!("{name} (fast, 2-token blocks)"),
            );
        }
    }
}

#[test]
fn variants_round_trip_through_config_json() {
    // What slm writes as config.json (for transformers and vLLM) resolves to the same config.
    for name in VARIANTS {
        let ckpt = Checkpoint::open(&fixture(&format!("coverage/models/{name}"))).unwrap();
        let back = ckpt.config.to_hf_json("float32").unwrap().to_string();
        let again = slm_core::config::hf::HfConfig::from_json_str(&back, name).unwrap();
        assert_eq!(again, ckpt.config, "{name}");
    }
}

#[test]
fn mistral_sliding_window_bounds_the_kv_pool() {
    use slm_core::step::{BatchedLm, SeqChunk};
    // Every Mistral layer slides by 4 tokens: a sequence of 60 tokens in 2-token blocks holds
    // at most 4 / 2 + 2 blocks; Qwen2's first layer attends to everything, so it holds them all.
    for (name, bound) in [("mistral-swa-tiny", Some(4)), ("qwen2-swa-tiny", None)] {
        let ckpt = Checkpoint::open(&fixture(&format!("coverage/models/{name}"))).unwrap();
        let fast = FastDecoderConfig {
            kv_budget_bytes: 16 << 20,
            block_size: 2,
            ..Default::default()
        }
        .init(&ckpt.config, ckpt.weights.as_ref())
        .unwrap();
        let seq = fast.add_sequence();
        let total = fast.kv_usage().total_blocks;
        for t in 0..60u32 {
            let tokens = [3 + t % 700];
            fast.step(&[SeqChunk {
                seq,
                tokens: &tokens,
                logits: Some(LogitsScope::Last),
            }])
            .unwrap();
        }
        let held = total - fast.kv_usage().free_blocks;
        match bound {
            Some(b) => assert!(held <= b, "{name}: {held} blocks held"),
            None => assert_eq!(held, 30, "{name}"),
        }
        fast.release(seq);
        assert_eq!(fast.kv_usage().free_blocks, total, "{name}");
    }
}

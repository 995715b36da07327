//! Model coverage against transformers: the rope and attention variants of
//! `tests/data/coverage/models` (tiny checkpoints saved by transformers, see its `generate.py`)
//! through the burn decoder and the CPU fast path, on the fixtures' padded batch and greedy run.

mod common;

use common::*;
use slm_core::fast::{FastDecoder, FastDecoderConfig, Precision};
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

/// The CPU fast path over `ckpt` (quantized products, a 16 MiB pool of `block_size`-token
/// blocks).
fn fast_path(ckpt: &Checkpoint, block_size: usize) -> FastDecoder {
    FastDecoderConfig {
        precision: Precision::Quantized,
        kv_budget_bytes: 16 << 20,
        block_size,
        ..Default::default()
    }
    .init(&ckpt.config, ckpt.weights.as_ref())
    .unwrap()
}

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
        let fast = fast_path(&ckpt, 16);
        assert_matches_transformers(&fast, &dir, &format!("{name} (fast)"));
        if ckpt.config.sliding_window.is_some() {
            // Blocks of 2 under a 4-token window: the pool gives blocks back every other token
            // (Mistral, every layer sliding) and the outputs stay transformers'.
            let small_blocks = fast_path(&ckpt, 2);
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
        let fast = fast_path(&ckpt, 2);
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

#[test]
fn longrope_switch_reruns_the_sequence_on_the_step_api() {
    use slm_core::step::{BatchedLm, SeqChunk};
    // Phi-3.5's switch at 4 positions: a 4-token prompt (short factors), then 3 tokens with
    // every row's logits (long factors: the sequence re-runs) give what one 7-token call gives.
    let ckpt = Checkpoint::open(&fixture("coverage/models/phi3-longrope-tiny")).unwrap();
    let burn = ckpt.load_decoder(&Device::flex()).unwrap();
    let tokens: Vec<u32> = vec![5, 17, 101, 33, 250, 7, 64];
    let whole = burn
        .forward(
            &TokenBatch::single(tokens.clone(), LogitsScope::All),
            &mut burn.new_cache(),
        )
        .unwrap();
    let vocab = whole.vocab;
    let want = &whole.values[4 * vocab..];
    // The burn decoder's cache path.
    let mut cache = burn.new_cache();
    burn.forward(
        &TokenBatch::single(tokens[..4].to_vec(), LogitsScope::Last),
        &mut cache,
    )
    .unwrap();
    let got = burn
        .forward(
            &TokenBatch::single(tokens[4..].to_vec(), LogitsScope::All),
            &mut cache,
        )
        .unwrap();
    assert_eq!(got.positions, 3);
    assert!(max_abs_diff(&got.values, want) <= TINY_LOGITS_ATOL);
    // The fast path's step API, with a fork sharing the prompt that must keep its keys.
    let fast = fast_path(&ckpt, 2);
    let seq = fast.add_sequence();
    let step = |seq, t: &[u32], scope| {
        fast.step(&[SeqChunk {
            seq,
            tokens: t,
            logits: Some(scope),
        }])
        .unwrap()
    };
    step(seq, &tokens[..3], LogitsScope::Last);
    let sibling = fast.fork(seq, 2).unwrap();
    step(seq, &tokens[3..4], LogitsScope::Last);
    let out = step(seq, &tokens[4..], LogitsScope::All);
    assert_eq!(out.rows, vec![(0, 3)]);
    let d = max_abs_diff(out.chunk(0), want);
    assert!(d <= TINY_LOGITS_ATOL, "fast re-run diff {d}");
    // The sibling still holds its short-rope prompt: its next token is the one a 3-token call
    // of the same prefix gives.
    let alone = burn
        .forward(
            &TokenBatch::single(vec![tokens[0], tokens[1], 9], LogitsScope::Last),
            &mut burn.new_cache(),
        )
        .unwrap();
    let sib = step(sibling, &[9], LogitsScope::Last);
    assert!(max_abs_diff(sib.chunk(0), &alone.values) <= TINY_LOGITS_ATOL);
}

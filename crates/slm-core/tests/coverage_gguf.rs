//! GGUFs as llama.cpp's `convert_hf_to_gguf.py` writes them (`tests/data/coverage/gguf`, made
//! by its `generate.py` from the tiny transformers checkpoints) run as transformers runs the
//! checkpoints they came from: Phi-3's fused `attn_qkv` / `ffn_up`, its LongRoPE factor tensors
//! and partial rotary, Llama 3.x's `rope_freqs.weight`, linear `rope.scaling.*` keys; through
//! the burn decoder and the CPU fast path, on the padded batch and the greedy run.

mod common;

use common::*;
use slm_core::config::gguf::config_from_gguf;
use slm_core::config::{Architecture, RopeScaling};
use slm_core::fast::{FastDecoderConfig, Precision};
use slm_core::model::Decoder;
use slm_core::prelude::*;
use slm_core::weights::GgufWeights;

/// Each GGUF with the checkpoint (and its transformers outputs) it was converted from.
const CASES: [(&str, &str); 5] = [
    ("phi3-tiny", "models/phi3-tiny"),
    ("phi3-longrope-tiny", "coverage/models/phi3-longrope-tiny"),
    ("phi3-partial-tiny", "coverage/models/phi3-partial-tiny"),
    ("llama3-rope-tiny", "models/llama3-rope-tiny"),
    ("llama-linear-tiny", "coverage/models/llama-linear-tiny"),
];

fn open(name: &str) -> (ModelConfig, GgufWeights) {
    let path = fixture(&format!("coverage/gguf/{name}.f32.gguf"));
    let weights = GgufWeights::open(&path).unwrap();
    let config = config_from_gguf(&weights).unwrap_or_else(|e| panic!("{name}: {e}"));
    (config, weights)
}

#[test]
fn converted_ggufs_match_transformers_on_both_decoders() {
    for (name, dir) in CASES {
        let (config, weights) = open(name);
        let burn = Decoder::from_weights(&config, &weights, &Device::flex()).unwrap();
        assert_matches_transformers(&burn, dir, &format!("{name} (burn)"));
        let fast = FastDecoderConfig {
            precision: Precision::Quantized,
            kv_budget_bytes: 16 << 20,
            ..Default::default()
        }
        .init(&config, &weights)
        .unwrap();
        assert_matches_transformers(&fast, dir, &format!("{name} (fast)"));
    }
}

#[test]
fn gguf_configs_resolve_as_the_checkpoints_configs() {
    // What the GGUF metadata and rope tensors say equals what config.json says, field by field
    // that matters to the forward pass.
    for (name, dir) in CASES {
        let (gguf, _) = open(name);
        let hf = Checkpoint::open(&fixture(dir)).unwrap().config;
        assert_eq!(gguf.architecture, hf.architecture, "{name}");
        assert_eq!(gguf.head_dim, hf.head_dim, "{name}");
        assert_eq!(gguf.rotary_dim(), hf.rotary_dim(), "{name}");
        assert_eq!(gguf.sliding_window, hf.sliding_window, "{name}");
        assert_eq!(
            gguf.max_position_embeddings, hf.max_position_embeddings,
            "{name}"
        );
        match (&gguf.rope_scaling, &hf.rope_scaling) {
            (
                RopeScaling::LongRope {
                    short_factor: s1,
                    long_factor: l1,
                    original_max_position_embeddings: o1,
                    attention_factor: a1,
                },
                RopeScaling::LongRope {
                    short_factor: s2,
                    long_factor: l2,
                    original_max_position_embeddings: o2,
                    attention_factor: a2,
                },
            ) => {
                assert_eq!((s1, l1, o1), (s2, l2, o2), "{name}");
                // llama.cpp stores the attention factor as f32.
                assert!((a1 - a2).abs() < 1e-6, "{name}: {a1} vs {a2}");
            }
            (g, h) => assert_eq!(g, h, "{name}"),
        }
    }
    let (phi3, weights) = open("phi3-tiny");
    assert_eq!(phi3.architecture, Architecture::Phi3);
    assert!(
        weights
            .tensor_info("model.layers.0.self_attn.qkv_proj.weight")
            .is_some()
            && weights
                .tensor_info("model.layers.0.mlp.gate_up_proj.weight")
                .is_some()
    );
    let (_, weights) = open("phi3-longrope-tiny");
    assert_eq!(
        weights.unmapped(),
        ["rope_factors_long.weight", "rope_factors_short.weight"]
    );
}

//! The decoder against transformers: logits of every tiny fixture model on a padded batch, and
//! greedy generation with its per-step logits.

mod common;

use common::*;
use slm_core::prelude::*;

const MODELS: [&str; 7] = [
    "llama-tiny",
    "llama3-rope-tiny",
    "smollm-tiny",
    "phi3-tiny",
    "qwen2-tiny",
    "llama-tiny-bf16",
    "llama-tiny-sharded",
];

fn load(name: &str) -> (Checkpoint, Decoder) {
    let ckpt = Checkpoint::open(&fixture(&format!("models/{name}"))).unwrap();
    let model = ckpt.load_decoder(&Device::flex()).unwrap();
    (ckpt, model)
}

fn check_batch_logits(name: &str) -> f32 {
    let (_, model) = load(name);
    let worst = padded_batch_diff(&model, &format!("models/{name}"));
    assert!(worst <= TINY_LOGITS_ATOL, "{name}: max abs diff {worst}");
    worst
}

fn check_greedy(name: &str) {
    let (_, model) = load(name);
    let g = json(&format!("models/{name}/expected/generate.json"));
    let (new_ids, steps) = greedy(&model, &ids(&g["prompt_ids"]), ids(&g["new_ids"]).len());
    assert_eq!(new_ids, ids(&g["new_ids"]), "{name}: greedy ids");
    let (shape, expected) = read_tensor(
        &fixture(&format!(
            "models/{name}/expected/generate_logits.safetensors"
        )),
        "step_logits",
    );
    for (k, row) in steps.iter().enumerate() {
        let d = max_abs_diff(row, &expected[k * shape[1]..(k + 1) * shape[1]]);
        assert!(d <= TINY_LOGITS_ATOL, "{name}: step {k} diff {d}");
    }
}

#[test]
fn padded_batch_logits_match_transformers() {
    for name in MODELS {
        let d = check_batch_logits(name);
        eprintln!("{name}: max abs diff {d:.3e}");
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in MODELS {
        check_greedy(name);
    }
}

#[test]
fn llama3_rope_frequencies_match_transformers() {
    let ckpt = Checkpoint::open(&fixture("models/llama3-rope-tiny")).unwrap();
    let c = &ckpt.config;
    let got = c.rope_scaling.inv_freq(c.rope_theta, c.head_dim);
    let want: Vec<f32> = json("models/llama3-rope-tiny/expected/rope_inv_freq.json")["inv_freq"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 * w.abs(), "{got:?} vs {want:?}");
    }
}

#[test]
fn kv_cache_decoding_equals_full_recompute() {
    let (_, model) = load("qwen2-tiny");
    let prompt = [0u32, 17, 300, 42, 99, 5];
    let full = model
        .forward(
            &TokenBatch::single(prompt.to_vec(), LogitsScope::All),
            &mut model.new_cache(),
        )
        .unwrap();
    let mut cache = model.new_cache();
    model
        .forward(
            &TokenBatch::single(prompt[..3].to_vec(), LogitsScope::Last),
            &mut cache,
        )
        .unwrap();
    for (t, &id) in prompt.iter().enumerate().skip(3) {
        let step = model
            .forward(&TokenBatch::single(vec![id], LogitsScope::Last), &mut cache)
            .unwrap();
        assert!(
            max_abs_diff(step.last(0), full.at(0, t)) < 1e-5,
            "position {t}"
        );
    }
}

#[test]
fn bad_ids_and_ragged_batches_are_typed_errors() {
    let (_, model) = load("llama-tiny");
    let mut cache = model.new_cache();
    let err = model
        .forward(
            &TokenBatch::single(vec![0, 768], LogitsScope::All),
            &mut cache,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenOutOfVocab {
                id: 768,
                vocab_size: 768
            }
        ),
        "{err}"
    );
    let ragged = TokenBatch {
        ids: vec![vec![1, 2], vec![3]],
        ..Default::default()
    };
    assert!(matches!(
        model.forward(&ragged, &mut cache),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        model.forward(&TokenBatch::default(), &mut cache),
        Err(Error::InvalidInput(_))
    ));
}

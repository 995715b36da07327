//! Shared helpers of the slm-core integration tests: fixture paths and safetensors reading.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Tolerances from fixtures/README.md.
pub const TINY_LOGITS_ATOL: f32 = 1e-4;
/// SmolLM2-135M logits / top-20 values.
pub const SMOLLM2_LOGITS_ATOL: f32 = 2e-3;

/// `fixtures/` at the repository root (the project copy of the shared reference fixtures); panics naming the path if absent.
pub fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    assert!(p.is_dir(), "fixtures not found at {}", p.display());
    p.canonicalize().unwrap()
}

/// A fixture file or directory; panics naming it if absent. Paths under `coverage/` are the
/// model-coverage references of `tests/data/coverage` (made by its `generate.py`).
pub fn fixture(rel: &str) -> PathBuf {
    let p = match rel.strip_prefix("coverage/") {
        Some(rest) => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/coverage")
            .join(rest),
        None => fixtures().join(rel),
    };
    assert!(p.exists(), "fixture missing: {}", p.display());
    p
}

/// Reads one tensor of a safetensors file as f32 (F32 or BF16), with its shape.
pub fn read_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
    let data = t.data();
    let v = match t.dtype() {
        safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        safetensors::Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        safetensors::Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        d => panic!("unexpected dtype {d:?}"),
    };
    (t.shape().to_vec(), v)
}

/// Reads a JSON fixture.
pub fn json(rel: &str) -> serde_json::Value {
    let p = fixture(rel);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Max |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `[u32]` from a JSON array of integers.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The SmolLM2-135M-Instruct GGUF ([`slm_core::cache::smollm2_gguf`]), when present. With
/// `SLM_REQUIRE_SMOLLM2=1` (set by .ci/run) its absence fails the test instead of skipping it.
pub fn smollm2_gguf() -> Option<PathBuf> {
    let path = slm_core::cache::smollm2_gguf_if_present().unwrap_or_else(|e| panic!("{e}"));
    if path.is_none() {
        eprintln!("skipping: SmolLM2 GGUF not found (run scripts/fetch-smollm2.sh)");
    }
    path
}

/// The largest |diff| between `model`'s logits on `<dir>/expected/inputs.json` (a left-padded
/// batch with its attention mask) and `<dir>/expected/logits.safetensors`, over real tokens.
#[allow(dead_code)]
pub fn padded_batch_diff<M: slm_core::CausalLm>(model: &M, dir: &str) -> f32 {
    padded_batch_diff_against(model, dir, &format!("{dir}/expected/logits.safetensors"))
}

/// [`padded_batch_diff`] with the inputs of `dir` against the logits in `logits` (a fixture
/// path).
#[allow(dead_code)]
pub fn padded_batch_diff_against<M: slm_core::CausalLm>(model: &M, dir: &str, want: &str) -> f32 {
    use slm_core::prelude::*;
    let inputs = json(&format!("{dir}/expected/inputs.json"));
    let rows: Vec<Vec<u32>> = inputs["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let mask: Vec<Vec<bool>> = inputs["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ids(r).into_iter().map(|m| m == 1).collect())
        .collect();
    let batch = TokenBatch {
        ids: rows,
        attention_mask: Some(mask.clone()),
        scope: LogitsScope::All,
    };
    let logits = model.forward(&batch, &mut model.new_cache()).unwrap();
    let (shape, expected) = read_tensor(&fixture(want), "logits");
    assert_eq!(shape, vec![logits.batch, logits.positions, logits.vocab]);
    let mut worst = 0f32;
    for (b, m) in mask.iter().enumerate() {
        for (t, &real) in m.iter().enumerate() {
            if real {
                let start = (b * shape[1] + t) * shape[2];
                worst = worst.max(max_abs_diff(
                    logits.at(b, t),
                    &expected[start..start + shape[2]],
                ));
            }
        }
    }
    worst
}

/// The index of the largest value (the first on ties).
#[allow(dead_code)]
pub fn argmax(row: &[f32]) -> u32 {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32
}

/// `n` greedy tokens after `prompt` through `model`'s cache, with each step's logits (a tiny
/// loop of its own: slm-infer is a downstream crate).
#[allow(dead_code)]
pub fn greedy<M: slm_core::CausalLm>(
    model: &M,
    prompt: &[u32],
    n: usize,
) -> (Vec<u32>, Vec<Vec<f32>>) {
    use slm_core::{LogitsScope, TokenBatch};
    let mut cache = model.new_cache();
    let (mut ids, mut steps) = (Vec::new(), Vec::new());
    let mut input = prompt.to_vec();
    for _ in 0..n {
        let logits = model
            .forward(&TokenBatch::single(input, LogitsScope::Last), &mut cache)
            .unwrap();
        let row = logits.last(0).to_vec();
        ids.push(argmax(&row));
        input = vec![argmax(&row)];
        steps.push(row);
    }
    (ids, steps)
}

/// The rows of peft's LoRA training-step batch (`lora/train_step/train_step.json`).
#[allow(dead_code)]
pub fn train_step_rows() -> Vec<Vec<u32>> {
    json("lora/train_step/train_step.json")["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect()
}

/// Asserts `model` gives transformers' outputs for the checkpoint fixture `dir`: its padded
/// batch within [`TINY_LOGITS_ATOL`], and its greedy run (ids exact, each step's logits within
/// the tolerance); `what` names the model in messages. Returns the batch's max abs diff.
#[allow(dead_code)]
pub fn assert_matches_transformers<M: slm_core::CausalLm>(model: &M, dir: &str, what: &str) -> f32 {
    let worst = padded_batch_diff(model, dir);
    assert!(worst <= TINY_LOGITS_ATOL, "{what}: batch diff {worst}");
    let g = json(&format!("{dir}/expected/generate.json"));
    let want = ids(&g["new_ids"]);
    let (got, steps) = greedy(model, &ids(&g["prompt_ids"]), want.len());
    assert_eq!(got, want, "{what}: greedy ids");
    let (shape, expected) = read_tensor(
        &fixture(&format!("{dir}/expected/generate_logits.safetensors")),
        "step_logits",
    );
    for (k, row) in steps.iter().enumerate() {
        let d = max_abs_diff(row, &expected[k * shape[1]..(k + 1) * shape[1]]);
        assert!(d <= TINY_LOGITS_ATOL, "{what}: step {k} diff {d}");
    }
    eprintln!("{what}: batch max abs diff {worst:.3e}");
    worst
}

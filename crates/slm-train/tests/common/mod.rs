//! Shared helpers of the slm-train parity tests: fixture paths, JSON and safetensors reading,
//! and the tolerances of fixtures/README.md.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Learning rates: abs 1e-12.
pub const LR_ATOL: f64 = 1e-12;
/// AdamW, clipping: abs 1e-6.
pub const OPTIM_ATOL: f32 = 1e-6;

/// `fixtures/` at the repository root (the project copy of the shared reference fixtures); panics naming the path if absent.
pub fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    assert!(p.is_dir(), "fixtures not found at {}", p.display());
    p
}

/// A fixture file; panics naming it if absent.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures().join(rel);
    assert!(p.exists(), "fixture missing: {}", p.display());
    p
}

/// A JSON fixture.
pub fn json(rel: &str) -> serde_json::Value {
    let p = fixture(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A file under this crate's `tests/data/` (references made by the scripts kept there).
pub fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    assert!(p.exists(), "test data missing: {}", p.display());
    p
}

/// All F32 tensors of a safetensors fixture, by name: (shape, values).
pub fn tensors(rel: &str) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    tensors_at(&fixture(rel))
}

/// All F32 tensors of a safetensors file, by name: (shape, values).
pub fn tensors_at(p: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(
                t.dtype(),
                safetensors::Dtype::F32,
                "{}: {name}",
                p.display()
            );
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, (t.shape().to_vec(), v))
        })
        .collect()
}

/// max |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Rows of a JSON array of arrays, each element through `f`.
pub fn rows<T>(v: &serde_json::Value, f: impl Fn(&serde_json::Value) -> T) -> Vec<Vec<T>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(&f).collect())
        .collect()
}

/// A JSON array of numbers.
pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The unpadded batch of a reference spec's `input_ids` and `labels` (positions 0..T, one
/// example per row).
pub fn spec_batch(spec: &serde_json::Value) -> slm_data::inputs::Batch {
    let input_ids = rows(&spec["input_ids"], |x| x.as_u64().unwrap() as u32);
    let labels = rows(&spec["labels"], |x| x.as_i64().unwrap());
    let (b, t) = (input_ids.len(), input_ids[0].len());
    slm_data::inputs::Batch {
        attention_mask: vec![vec![true; t]; b],
        position_ids: vec![(0..t as u32).collect(); b],
        segment_ids: vec![vec![1; t]; b],
        example_indices: (0..b).map(|i| vec![i]).collect(),
        input_ids,
        labels,
    }
}

/// max |got - want| over max |want|.
pub fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    max_abs_diff(got, want) / scale
}

/// The optimizer of the peft + torch references: `torch.optim.AdamW(lr=1e-3, betas=(0.9,
/// 0.999), eps=1e-8, weight_decay=0)`.
pub fn torch_adamw() -> slm_train::TensorAdamW {
    slm_train::TensorAdamW::new(slm_train::AdamWConfig {
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.0,
    })
    .unwrap()
}

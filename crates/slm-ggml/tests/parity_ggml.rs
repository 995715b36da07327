//! Blocks against ggml itself (`ggml_quantize_chunk`, the call `llama-quantize` makes, from
//! llama.cpp's own build; `tests/data/kquants/make_kquants.py`): Q4_K, Q5_K and Q6_K bytes
//! identical to ggml's reference quantizers and their values to ggml's `dequantize_row_*`; the
//! legacy types identical to what `llama-quantize` writes without an importance matrix.

use std::path::{Path, PathBuf};

use slm_ggml::prelude::*;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kquants")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    let p = data(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One input case: its name and rows laid end to end.
struct Case {
    name: String,
    x: Vec<f32>,
}

/// `cases.json` and every case's values.
fn cases() -> (serde_json::Value, Vec<Case>) {
    let spec: serde_json::Value = serde_json::from_slice(&read("cases.json")).unwrap();
    let inputs = f32s(&read("inputs.f32"));
    let mut out = Vec::new();
    for (name, c) in spec["cases"].as_object().unwrap() {
        let n = (c["rows"].as_u64().unwrap() * c["cols"].as_u64().unwrap()) as usize;
        let at = c["offset"].as_u64().unwrap() as usize;
        out.push(Case {
            name: name.clone(),
            x: inputs[at..at + n].to_vec(),
        });
    }
    (spec, out)
}

/// The first differing block of two block streams, for a readable failure.
fn first_diff(ours: &[u8], theirs: &[u8], ts: usize) -> Option<usize> {
    (0..ours.len() / ts).find(|&b| ours[b * ts..(b + 1) * ts] != theirs[b * ts..(b + 1) * ts])
}

#[test]
fn k_quants_are_ggmls_bytes_and_values() {
    let (spec, cases) = cases();
    let mut checked = 0;
    for Case { name: case, x } in &cases {
        for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let t = &spec["cases"][case]["types"][ty.name()];
            let want = read(t["bin"].as_str().unwrap());
            let ours = quantize(ty, x).unwrap();
            assert_eq!(ours.len(), want.len(), "{case}.{ty}");
            if let Some(b) = first_diff(&ours, &want, ty.type_size()) {
                panic!("{case}.{ty}: super-block {b} differs from ggml's");
            }
            let deq = f32s(&read(t["dequantized"].as_str().unwrap()));
            let ours = dequantize(ty, &want, x.len()).unwrap();
            for (i, (a, b)) in ours.iter().zip(&deq).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{case}.{ty}[{i}]: {a} vs {b}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 3);
}

#[test]
fn legacy_types_are_llama_quantizes_bytes() {
    let (spec, cases) = cases();
    for Case { name: case, x } in &cases {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
        ] {
            let want = read(
                spec["cases"][case]["types"][ty.name()]["bin"]
                    .as_str()
                    .unwrap(),
            );
            let ours = quantize(ty, x).unwrap();
            if let Some(b) = first_diff(&ours, &want, ty.type_size()) {
                panic!("{case}.{ty}: block {b} differs from ggml's");
            }
        }
    }
}

/// With an importance matrix: bytes identical to `ggml_quantize_chunk(.., imatrix)`, the
/// `quantize_row_*_impl` path `llama-quantize --imatrix` runs, for every weighted type.
#[test]
fn importance_weighted_types_are_ggmls_bytes() {
    let (spec, cases) = cases();
    let imatrix = f32s(&read("imatrix.f32"));
    for Case { name: case, x } in &cases {
        let cols = spec["cases"][case]["cols"].as_u64().unwrap() as usize;
        let at = spec["cases"][case]["imatrix_offset"].as_u64().unwrap() as usize;
        let qw = &imatrix[at..at + cols];
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let key = format!("{}.imatrix", ty.name());
            let want = read(spec["cases"][case]["types"][&key]["bin"].as_str().unwrap());
            let ours = quantize_weighted(ty, x, cols, qw).unwrap();
            if let Some(b) = first_diff(&ours, &want, ty.type_size()) {
                panic!("{case}.{ty} with imatrix: block {b} differs from ggml's");
            }
        }
    }
}

#[test]
fn bad_importance_is_refused() {
    let x = vec![0.5f32; 512];
    let err = |r: Result<Vec<u8>>| match r {
        Err(Error::InvalidImportance(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(err(quantize_weighted(GgmlType::Q4_K, &x, 256, &[1.0; 255])).contains("255 weights"));
    assert!(err(quantize_weighted(GgmlType::Q4_K, &x, 300, &[1.0; 300])).contains("512 values"));
    let mut qw = vec![1.0f32; 256];
    qw[7] = f32::NAN;
    assert!(err(quantize_weighted(GgmlType::Q6_K, &x, 256, &qw)).contains("weight 7 is NaN"));
    assert!(matches!(
        quantize_weighted(GgmlType::Q4_K, &x[..320], 320, &[1.0; 320]),
        Err(Error::LengthNotMultiple { len: 320, .. })
    ));
    // Q8_0 has no weighted form: the plain bytes.
    assert_eq!(
        quantize_weighted(GgmlType::Q8_0, &x, 256, &[2.0; 256]).unwrap(),
        quantize(GgmlType::Q8_0, &x).unwrap()
    );
}

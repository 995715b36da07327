//! GGML blocks against gguf-py (gguf 0.19): for every fixture case and format, the
//! quantized bytes are identical to `gguf.quants.quantize` and the dequantized values are
//! bit-identical to `gguf.quants.dequantize` (fixtures/README.md, section 7).

use std::path::{Path, PathBuf};

use slm_ggml::prelude::*;

/// `fixtures/` at the repository root (the project copy of the shared reference fixtures); panics naming the path if absent.
fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    assert!(p.is_dir(), "fixtures not found at {}", p.display());
    p
}

/// A fixture file; panics naming it if absent.
fn fixture(rel: &str) -> PathBuf {
    let p = fixtures().join(rel);
    assert!(p.exists(), "fixture missing: {}", p.display());
    p
}

fn read(rel: &str) -> Vec<u8> {
    let p = fixture(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One F32 tensor of a safetensors file, with its shape.
fn tensor(file: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let st = safetensors::SafeTensors::deserialize(file).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bytes_and_dequantized_values_match_gguf_py() {
    let cases: serde_json::Value = serde_json::from_slice(&read("quant/cases.json")).unwrap();
    let inputs = read("quant/inputs.safetensors");
    let dequant = read("quant/dequant.safetensors");
    let mut checked = 0;
    for (case, spec) in cases["cases"].as_object().unwrap() {
        let (shape, x) = tensor(&inputs, case);
        let want_shape: Vec<usize> = spec["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, want_shape, "{case}");
        for (ty, t) in spec["types"].as_object().unwrap() {
            let format: GgmlType = ty.parse().unwrap();
            assert_eq!(
                format.type_size() as u64,
                t["type_size"].as_u64().unwrap(),
                "{ty}"
            );
            assert_eq!(
                format.block_size() as u64,
                t["block_size"].as_u64().unwrap(),
                "{ty}"
            );

            let bytes = quantize(format, &x).unwrap();
            let want = read(&format!("quant/{}", t["bin"].as_str().unwrap()));
            assert_eq!(
                bytes.len() as u64,
                t["bytes"].as_u64().unwrap(),
                "{case}.{ty}"
            );
            assert_eq!(
                hex(&bytes[..format.type_size()]),
                t["first_block_hex"].as_str().unwrap(),
                "{case}.{ty}"
            );
            if let Some(block) = (0..bytes.len() / format.type_size()).find(|&b| {
                let r = b * format.type_size()..(b + 1) * format.type_size();
                bytes[r.clone()] != want[r]
            }) {
                let r = block * format.type_size()..(block + 1) * format.type_size();
                panic!(
                    "{case}.{ty}: block {block} differs:\n ours {}\n want {}",
                    hex(&bytes[r.clone()]),
                    hex(&want[r])
                );
            }

            let (_, want_y) = tensor(&dequant, &format!("{case}.{ty}"));
            let y = dequantize(format, &bytes, x.len()).unwrap();
            for (i, (a, b)) in y.iter().zip(&want_y).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{case}.{ty}: value {i}: {a} vs {b}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7 * 5, "every case × format");
}

#[test]
fn reported_max_abs_error_matches() {
    let cases: serde_json::Value = serde_json::from_slice(&read("quant/cases.json")).unwrap();
    let inputs = read("quant/inputs.safetensors");
    for (case, spec) in cases["cases"].as_object().unwrap() {
        let (_, x) = tensor(&inputs, case);
        for (ty, t) in spec["types"].as_object().unwrap() {
            let format: GgmlType = ty.parse().unwrap();
            let y = dequantize(format, &quantize(format, &x).unwrap(), x.len()).unwrap();
            // The generator measured the error against its float64 inputs, before they were
            // stored as f32 (normal_odd.Q5_1: 0.0749949291 vs 0.0749949273 from the f32 values),
            // so allow one f32 rounding of the largest input.
            let worst = x
                .iter()
                .zip(&y)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
                .fold(0.0, f64::max);
            let want = t["max_abs_err"].as_f64().unwrap();
            let amax = x.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
            let tol = f64::from(f32::EPSILON) * amax;
            assert!(
                (worst - want).abs() <= tol,
                "{case}.{ty}: {worst} vs {want}"
            );
        }
    }
}

/// Real rows of the SmolLM2 GGUF (Q8_0 embeddings, Q4_1 attn_q / ffn_down).
#[test]
fn smollm2_rows_bit_exact() {
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("quant/smollm2_blocks/blocks.json")).unwrap(),
    )
    .unwrap();
    let expected = std::fs::read(fixture("quant/smollm2_blocks/dequant.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&expected).unwrap();
    for (name, t) in spec["tensors"].as_object().unwrap() {
        let ty = match t["type"].as_str().unwrap() {
            "Q8_0" => GgmlType::Q8_0,
            "Q4_1" => GgmlType::Q4_1,
            other => panic!("unexpected type {other}"),
        };
        let row_len = t["gguf_shape_ne"][0].as_u64().unwrap() as usize;
        let n_rows = t["rows"].as_array().unwrap().len();
        let raw = std::fs::read(fixture(&format!("quant/{}", t["bin"].as_str().unwrap()))).unwrap();
        assert_eq!(
            raw.len(),
            n_rows * t["row_bytes"].as_u64().unwrap() as usize
        );
        let got = dequantize(ty, &raw, n_rows * row_len).unwrap();
        assert_bits_eq(&got, &f32s(expected.tensor(name).unwrap().data()), name);
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Asserts bit equality (so -0.0 != 0.0 and NaN payloads count).
fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: got {g}, want {w}");
    }
}

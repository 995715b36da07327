//! [`WeightSource`] over a GGUF file: llama.cpp tensor names mapped to Hugging Face names,
//! dims reversed to Hugging Face order, and Llama's rotary-permuted Q/K rows restored.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::names::{Mapped, hf_name, rotary_heads, unpermute_rows};
use crate::gguf::{GgmlType, GgufFile};
use crate::weights::{RawTensor, RowOrder, StorageDtype, TensorInfo, WeightSource};

/// One exposed tensor.
#[derive(Debug, Clone)]
struct Entry {
    /// Its GGUF name.
    gguf_name: String,
    /// Hugging Face shape (GGUF dims reversed).
    shape: Vec<usize>,
    dtype: StorageDtype,
    /// `Some(n_head)` when its rows are in llama.cpp's rotary order and must be restored.
    unpermute: Option<usize>,
}

/// The tensors of a GGUF file (architectures `llama`, `mistral`, `qwen2`, `phi3`) under Hugging
/// Face names and in Hugging Face layout.
///
/// Mapping: `token_embd` -> `model.embed_tokens`, `output_norm` -> `model.norm`, `output` ->
/// `lm_head`, `blk.N.{attn_q,attn_k,attn_v,attn_output}` -> `model.layers.N.self_attn.
/// {q,k,v,o}_proj`, `blk.N.{ffn_gate,ffn_up,ffn_down}` -> `model.layers.N.mlp.{gate,up,down}_proj`,
/// `blk.N.attn_norm` -> `input_layernorm`, `blk.N.ffn_norm` -> `post_attention_layernorm`
/// (weights and biases). Tensors it does not know keep their GGUF name, so a loader can report
/// them; the rope tensors (`rope_freqs`, `rope_factors_long`/`_short`) are skipped (the config
/// reads them). Phi-3's fused `blk.N.attn_qkv` is `self_attn.qkv_proj` and its `blk.N.ffn_up`
/// (gate and up stacked) `mlp.gate_up_proj`, as in its Hugging Face checkpoints, split when the
/// decoder binds them. For `llama`, the rows of `attn_q`/`attn_k` (stored as
/// `hf.reshape(n_head, 2, head_dim / 2, in).swapaxes(1, 2)` by llama.cpp's converter) are put
/// back in Hugging Face order on read.
#[derive(Debug)]
pub struct GgufWeights {
    file: GgufFile,
    architecture: String,
    entries: BTreeMap<String, Entry>,
    unmapped: Vec<String>,
}

impl GgufWeights {
    /// Opens (memory-maps) a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(GgufFile::open(path)?)
    }

    /// Wraps a parsed GGUF file; fails with [`Error::UnsupportedArchitecture`] unless
    /// `general.architecture` is `llama` (or `mistral`), `qwen2` or `phi3`.
    pub fn new(file: GgufFile) -> Result<Self> {
        let architecture = file.architecture()?.to_owned();
        let permute = match architecture.as_str() {
            "llama" | "mistral" => true,
            "qwen2" | "phi3" => false,
            _ => {
                return Err(Error::UnsupportedArchitecture(format!(
                    "GGUF `{architecture}`"
                )));
            }
        };
        let head_count = |key: &str| file.get_usize(&format!("{architecture}.{key}"));
        let (n_head, n_kv_head) = if permute {
            let n_head = head_count("attention.head_count")?;
            let n_kv = match file.get(&format!("{architecture}.attention.head_count_kv")) {
                None => n_head,
                Some(_) => head_count("attention.head_count_kv")?,
            };
            (n_head, n_kv)
        } else {
            (0, 0)
        };

        let mut entries = BTreeMap::new();
        let mut unmapped = Vec::new();
        for t in file.tensors() {
            let hf = match hf_name(&t.name) {
                Mapped::Hf(hf) => hf,
                Mapped::Skip => {
                    unmapped.push(t.name.clone());
                    continue;
                }
                Mapped::Unknown => t.name.clone(),
            };
            // Phi-3's `ffn_up` is [gate; up] unless the layer also has its own `ffn_gate`.
            let hf = match hf.strip_suffix("mlp.up_proj.weight") {
                Some(prefix)
                    if architecture == "phi3"
                        && file
                            .tensor_info(&t.name.replace("ffn_up", "ffn_gate"))
                            .is_none() =>
                {
                    format!("{prefix}mlp.gate_up_proj.weight")
                }
                _ => hf,
            };
            let shape = t.shape();
            let rows = shape.first().copied().unwrap_or(1);
            let what = || format!("{}: tensor `{}`", file.source_name(), t.name);
            let heads = if permute {
                rotary_heads(&hf, rows, n_head, n_kv_head, &what)?
            } else {
                None
            };
            let entry = Entry {
                gguf_name: t.name.clone(),
                shape,
                dtype: storage_dtype(t.ggml_type),
                unpermute: heads,
            };
            if let Some(prev) = entries.insert(hf.clone(), entry) {
                return Err(Error::format(
                    file.path(),
                    format!(
                        "tensors `{}` and `{}` both map to `{hf}`",
                        prev.gguf_name, t.name
                    ),
                ));
            }
        }
        Ok(GgufWeights {
            file,
            architecture,
            entries,
            unmapped,
        })
    }

    /// The underlying GGUF file (metadata, tokenizer, raw tensors).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// `general.architecture` (`llama`, `mistral`, `qwen2` or `phi3`).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// GGUF tensors deliberately not exposed (such as `rope_freqs.weight`).
    pub fn unmapped(&self) -> &[String] {
        &self.unmapped
    }

    /// The GGUF name behind a Hugging Face name.
    pub fn gguf_name(&self, hf_name: &str) -> Option<&str> {
        self.entries.get(hf_name).map(|e| e.gguf_name.as_str())
    }
}

fn storage_dtype(t: GgmlType) -> StorageDtype {
    match t {
        GgmlType::F32 => StorageDtype::F32,
        GgmlType::F16 => StorageDtype::F16,
        GgmlType::BF16 => StorageDtype::BF16,
        other => StorageDtype::Ggml(other),
    }
}

impl WeightSource for GgufWeights {
    fn source_name(&self) -> String {
        self.file.source_name()
    }

    fn tensor_names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn tensor_info(&self, name: &str) -> Option<TensorInfo> {
        self.entries.get(name).map(|e| TensorInfo {
            shape: e.shape.clone(),
            dtype: e.dtype,
        })
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            source_name: self.source_name(),
            name: name.to_owned(),
        })?;
        let data = self.file.tensor_f32(&entry.gguf_name)?;
        Ok(match entry.unpermute {
            Some(n_head) => {
                let rows = entry.shape.first().copied().unwrap_or(1);
                let cols = entry.shape.iter().skip(1).product();
                unpermute_rows(&data, rows, cols, n_head)
            }
            None => data,
        })
    }

    fn read_raw(&self, name: &str) -> Result<RawTensor> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            source_name: self.source_name(),
            name: name.to_owned(),
        })?;
        let info = self
            .file
            .tensor_info(&entry.gguf_name)
            .ok_or_else(|| Error::MissingTensor {
                source_name: self.source_name(),
                name: entry.gguf_name.clone(),
            })?;
        Ok(RawTensor {
            ty: info.ggml_type,
            shape: entry.shape.clone(),
            row_order: match entry.unpermute {
                Some(heads) => RowOrder::RotaryInterleaved { heads },
                None => RowOrder::Hf,
            },
            data: self.file.tensor_shared(&entry.gguf_name)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufValue;
    use crate::gguf::names::gguf_name;
    use crate::gguf::test_support::{RawTensor, fixture, smollm2_gguf, write_gguf};

    fn f32s(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// `(name, shape, values)` of every tensor of a float32 safetensors fixture, sorted.
    fn safetensors(rel: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let bytes = std::fs::read(fixture(rel)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut out: Vec<_> = st
            .tensors()
            .into_iter()
            .map(|(name, t)| {
                assert_eq!(t.dtype(), safetensors::Dtype::F32);
                (name, t.shape().to_vec(), f32s(t.data()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn tiny(kind: &str) -> GgufWeights {
        GgufWeights::open(fixture(&format!("quant/gguf/llama-tiny.{kind}.gguf"))).unwrap()
    }

    /// llama.cpp's f32 conversion of llama-tiny reads back as the original checkpoint, bit
    /// for bit: names, shapes, values (so the name map and the Q/K un-permutation are right).
    #[test]
    fn llama_tiny_f32_equals_safetensors() {
        let w = tiny("f32");
        let want = safetensors("models/llama-tiny/model.safetensors");
        let names: Vec<String> = want.iter().map(|t| t.0.clone()).collect();
        assert_eq!(w.tensor_names(), names);
        for (name, shape, values) in want {
            let info = w.tensor_info(&name).unwrap();
            assert_eq!(
                (info.shape, info.dtype),
                (shape, StorageDtype::F32),
                "{name}"
            );
            let got = w.read_f32(&name).unwrap();
            assert!(
                got.iter()
                    .zip(&values)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}"
            );
        }
        assert!(w.unmapped().is_empty());
        assert_eq!(w.gguf_name("lm_head.weight"), Some("output.weight"));
    }

    /// The Q8_0 conversion: same names and shapes; norms exact, weights within Q8_0's error
    /// (half a step of each 32-block's scale `amax / 127`, plus the f16 rounding of the scale).
    #[test]
    fn llama_tiny_q8_0_within_quantization_error() {
        let w = tiny("q8_0");
        for (name, shape, values) in safetensors("models/llama-tiny/model.safetensors") {
            let info = w.tensor_info(&name).unwrap();
            assert_eq!(info.shape, shape, "{name}");
            let got = w.read_f32(&name).unwrap();
            if shape.len() == 1 {
                assert_eq!(info.dtype, StorageDtype::F32);
                assert_eq!(got, values, "{name}");
                continue;
            }
            assert_eq!(info.dtype, StorageDtype::Ggml(GgmlType::Q8_0));
            assert_eq!(info.dtype.name(), "Q8_0");
            for (g, v) in got.chunks_exact(32).zip(values.chunks_exact(32)) {
                let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let bound = 0.5 * amax / 127.0 * (1.0 + 127.0 / 1024.0) + 1e-7;
                for (a, b) in g.iter().zip(v) {
                    assert!((a - b).abs() <= bound, "{name}: {a} vs {b} (bound {bound})");
                }
            }
        }
    }

    /// A GGUF written the converter's way from a Hugging Face checkpoint (no permutation),
    /// plus a `rope_freqs.weight` and an unknown tensor.
    fn qwen2_gguf(extra: bool) -> Vec<u8> {
        let meta = vec![
            (
                "general.architecture".to_owned(),
                GgufValue::String("qwen2".into()),
            ),
            ("qwen2.attention.head_count".to_owned(), GgufValue::U32(4)),
        ];
        let mut tensors: Vec<RawTensor> = safetensors("models/qwen2-tiny/model.safetensors")
            .into_iter()
            .map(|(name, shape, values)| {
                let dims = shape.iter().rev().copied().collect();
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (gguf_name(&name).unwrap(), dims, GgmlType::F32, bytes)
            })
            .collect();
        if extra {
            let half = half::f16::from_f32(1.5).to_le_bytes().repeat(8);
            tensors.push((
                "rope_freqs.weight".into(),
                vec![8],
                GgmlType::F32,
                vec![0; 32],
            ));
            tensors.push((
                "blk.0.attn_q_norm.weight".into(),
                vec![8],
                GgmlType::F16,
                half,
            ));
        }
        write_gguf(&meta, &tensors)
    }

    /// qwen2 (biases, no rotary permutation) round-trips through the converter's naming.
    #[test]
    fn qwen2_round_trip_with_biases() {
        let file = GgufFile::from_bytes("qwen2-tiny.gguf", qwen2_gguf(true)).unwrap();
        let w = GgufWeights::new(file).unwrap();
        assert_eq!(w.architecture(), "qwen2");
        let want = safetensors("models/qwen2-tiny/model.safetensors");
        assert!(
            want.iter()
                .any(|t| t.0 == "model.layers.1.self_attn.k_proj.bias")
        );
        for (name, shape, values) in &want {
            assert_eq!(&w.tensor_info(name).unwrap().shape, shape, "{name}");
            assert_eq!(&w.read_f32(name).unwrap(), values, "{name}");
        }
        assert_eq!(w.unmapped(), ["rope_freqs.weight"]);
        // Unknown tensors stay visible under their GGUF name for the loader to report.
        let unknown = w.tensor_info("blk.0.attn_q_norm.weight").unwrap();
        assert_eq!((unknown.shape, unknown.dtype), (vec![8], StorageDtype::F16));
        assert_eq!(w.read_f32("blk.0.attn_q_norm.weight").unwrap(), [1.5; 8]);
        assert_eq!(w.tensor_names().len(), want.len() + 1);
        assert!(matches!(
            w.read_f32("nope"),
            Err(Error::MissingTensor { .. })
        ));
        assert!(w.tensor_info("rope_freqs.weight").is_none());
    }

    #[test]
    fn rejects_other_architectures_and_bad_heads() {
        let meta = |arch: &str, heads: u32| {
            vec![
                (
                    "general.architecture".to_owned(),
                    GgufValue::String(arch.into()),
                ),
                (
                    format!("{arch}.attention.head_count"),
                    GgufValue::U32(heads),
                ),
            ]
        };
        let q = vec![(
            "blk.0.attn_q.weight".into(),
            vec![4, 6],
            GgmlType::F32,
            vec![0; 96],
        )];
        let file = GgufFile::from_bytes("p", write_gguf(&meta("falcon", 4), &q)).unwrap();
        assert!(matches!(
            GgufWeights::new(file),
            Err(Error::UnsupportedArchitecture(_))
        ));
        // 6 rows cannot hold 4 heads of even size
        let file = GgufFile::from_bytes("l", write_gguf(&meta("llama", 4), &q)).unwrap();
        assert!(matches!(
            GgufWeights::new(file),
            Err(Error::InvalidConfig(_))
        ));
        let file = GgufFile::from_bytes("l", write_gguf(&meta("llama", 3), &q)).unwrap();
        assert!(GgufWeights::new(file).is_ok());
        let file = GgufFile::from_bytes("n", write_gguf(&[], &[])).unwrap();
        assert!(matches!(
            GgufWeights::new(file),
            Err(Error::MissingField { .. })
        ));
    }

    /// SmolLM2's dequantized, un-permuted weights match transformers' (weights.stats.json).
    #[test]
    fn smollm2_weights_match_transformers() {
        let Some(path) = smollm2_gguf() else {
            return;
        };
        let w = GgufWeights::open(path).unwrap();
        assert_eq!(w.tensor_names().len(), 2 + 30 * 9);
        assert!(w.tensor_info("lm_head.weight").is_none(), "tied embeddings");
        let dtype = |n: &str| w.tensor_info(n).unwrap().dtype;
        assert_eq!(
            dtype("model.embed_tokens.weight"),
            StorageDtype::Ggml(GgmlType::Q8_0)
        );
        assert_eq!(
            dtype("model.layers.7.mlp.up_proj.weight"),
            StorageDtype::Ggml(GgmlType::Q4_1)
        );
        assert_eq!(
            dtype("model.layers.7.input_layernorm.weight"),
            StorageDtype::F32
        );
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("smollm2/weights.stats.json")).unwrap())
                .unwrap();
        for (name, s) in stats["tensors"].as_object().unwrap() {
            let shape: Vec<usize> = serde_json::from_value(s["shape"].clone()).unwrap();
            assert_eq!(w.tensor_info(name).unwrap().shape, shape, "{name}");
            let v = w.read_f32(name).unwrap();
            let as_f32 =
                |key: &str| -> Vec<f32> { serde_json::from_value(s[key].clone()).unwrap() };
            assert_eq!(v[..16], as_f32("first16")[..], "{name} first16");
            assert_eq!(v[v.len() - 16..], as_f32("last16")[..], "{name} last16");
            let min = v.iter().copied().fold(f32::INFINITY, f32::min);
            let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(
                (f64::from(min), f64::from(max)),
                (s["min"].as_f64().unwrap(), s["max"].as_f64().unwrap())
            );
            let sums = [
                ("sum", v.iter().map(|&x| f64::from(x)).sum::<f64>()),
                ("sum_abs", v.iter().map(|&x| f64::from(x).abs()).sum()),
                (
                    "sum_sq",
                    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum(),
                ),
            ];
            for (key, got) in sums {
                let want = s[key].as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{name} {key}: {got} vs {want}"
                );
            }
        }
    }
}

//! [`WeightSource`] over a GGUF file: llama.cpp tensor names mapped to Hugging Face names,
//! dims reversed to Hugging Face order, and Llama's rotary-permuted Q/K rows restored.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufFile};
use crate::weights::{StorageDtype, TensorInfo, WeightSource};

/// GGUF tensors that are derived data, not weights: skipped and listed by
/// [`GgufWeights::unmapped`] (`rope_freqs.weight` holds llama3 rope factors the config also has).
const SKIPPED: &[&str] = &["rope_freqs.weight"];

/// Per-layer GGUF name stems and their Hugging Face module paths under `model.layers.N.`.
const LAYER_MAP: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// What a GGUF tensor becomes.
enum Mapped {
    /// A Hugging Face name.
    Hf(String),
    /// Not a weight: skipped.
    Skip,
    /// Unknown: kept under its GGUF name.
    Unknown,
}

/// The Hugging Face name of a GGUF tensor of a `llama`/`qwen2` model.
fn map_name(gguf: &str) -> Mapped {
    if SKIPPED.contains(&gguf) {
        return Mapped::Skip;
    }
    let global = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(hf) = global {
        return Mapped::Hf(hf.to_owned());
    }
    let Some(rest) = gguf.strip_prefix("blk.") else {
        return Mapped::Unknown;
    };
    let mut parts = rest.splitn(3, '.');
    let (Some(layer), Some(stem), Some(kind)) = (parts.next(), parts.next(), parts.next()) else {
        return Mapped::Unknown;
    };
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return Mapped::Unknown;
    }
    match LAYER_MAP.iter().find(|(s, _)| *s == stem) {
        Some((_, hf)) if kind == "weight" || kind == "bias" => {
            Mapped::Hf(format!("model.layers.{layer}.{hf}.{kind}"))
        }
        _ => Mapped::Unknown,
    }
}

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

/// The tensors of a GGUF file (architectures `llama` and `qwen2`) under Hugging Face names and
/// in Hugging Face layout.
///
/// Mapping: `token_embd` -> `model.embed_tokens`, `output_norm` -> `model.norm`, `output` ->
/// `lm_head`, `blk.N.{attn_q,attn_k,attn_v,attn_output}` -> `model.layers.N.self_attn.
/// {q,k,v,o}_proj`, `blk.N.{ffn_gate,ffn_up,ffn_down}` -> `model.layers.N.mlp.{gate,up,down}_proj`,
/// `blk.N.attn_norm` -> `input_layernorm`, `blk.N.ffn_norm` -> `post_attention_layernorm`
/// (weights and biases). Tensors it does not know keep their GGUF name, so a loader can report
/// them; `rope_freqs.weight` is skipped. For `llama`, the rows of `attn_q`/`attn_k` (stored as
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
    /// `general.architecture` is `llama` or `qwen2`.
    pub fn new(file: GgufFile) -> Result<Self> {
        let architecture = file.architecture()?.to_owned();
        let permute = match architecture.as_str() {
            "llama" => true,
            "qwen2" => false,
            _ => return Err(Error::UnsupportedArchitecture(format!("GGUF `{architecture}`"))),
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
            let hf = match map_name(&t.name) {
                Mapped::Hf(hf) => hf,
                Mapped::Skip => {
                    unmapped.push(t.name.clone());
                    continue;
                }
                Mapped::Unknown => t.name.clone(),
            };
            let heads = if !permute {
                None
            } else if hf.ends_with("self_attn.q_proj.weight") || hf.ends_with("self_attn.q_proj.bias") {
                Some(n_head)
            } else if hf.ends_with("self_attn.k_proj.weight") || hf.ends_with("self_attn.k_proj.bias") {
                Some(n_kv_head)
            } else {
                None
            };
            let shape = t.shape();
            if let Some(h) = heads {
                let rows = shape.first().copied().unwrap_or(1);
                if h == 0 || rows % (2 * h) != 0 {
                    return Err(Error::InvalidConfig(format!(
                        "{}: tensor `{}` has {rows} rows, not a multiple of 2 x {h} heads",
                        file.source_name(),
                        t.name
                    )));
                }
            }
            let entry = Entry {
                gguf_name: t.name.clone(),
                shape,
                dtype: storage_dtype(t.ggml_type),
                unpermute: heads,
            };
            if let Some(prev) = entries.insert(hf.clone(), entry) {
                return Err(Error::format(
                    file.path(),
                    format!("tensors `{}` and `{}` both map to `{hf}`", prev.gguf_name, t.name),
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

    /// `general.architecture` (`llama` or `qwen2`).
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

/// Undoes llama.cpp's rotary permutation of the rows of a `[rows, cols]` matrix:
/// GGUF row `h*hd + 2*j + i` holds Hugging Face row `h*hd + i*hd/2 + j`.
fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                let src = (h * head_dim + 2 * j + i) * cols;
                let dst = (h * head_dim + i * half + j) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
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
}

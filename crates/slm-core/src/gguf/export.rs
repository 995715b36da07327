//! Any model slm opens, written as a GGUF that llama.cpp and Ollama run: [`export_gguf`].
//!
//! From a Hugging Face directory the file is laid out as llama.cpp's `convert_hf_to_gguf.py`
//! lays it out, key for key and tensor for tensor (byte-identical for the converter's own output
//! types, see [`GgufOutType`]): `general.*` (`name` from the directory name, `size_label` from
//! the parameter count), the architecture's hyper-parameters, `general.file_type`,
//! `general.quantization_version`, then the tokenizer rebuilt from `tokenizer.json`
//! ([`tokenizer_metadata`](super::tokenizer_metadata)); tensors in the checkpoint's storage
//! order under llama.cpp's names, Q/K rows permuted to its rotary layout (Llama), dims reversed,
//! and `rope_freqs.weight` first for llama3 rope scaling.
//!
//! From a GGUF file (re-quantizing) the metadata is copied as `llama-quantize` copies it: every
//! key in order, `general.file_type` and `general.quantization_version` moved to the end with
//! the new values; tensors keep their order and layout.
//!
//! The storage type of each tensor is the caller's choice (an `encode` callback): slm-core
//! provides the converter's rule ([`GgufOutType::encode`]), slm-compress the quantization
//! mixtures of `llama-quantize`.

use super::names::{gguf_name, permute_rows, rotary_heads};
use super::{GgmlType, GgufFile, GgufValue, GgufWriter, tokenizer_metadata};
use crate::checkpoint::{Checkpoint, ModelFormat};
use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};

/// `GGML_QUANT_VERSION`: the version of the quantized block formats (`general.quantization_version`).
pub const QUANTIZATION_VERSION: u32 = 2;

/// One tensor on its way into the file: its GGUF name and dims (`ne` order, `dims[0]` the row
/// length); the values handed to the encoder are laid out accordingly (row-major, rows of
/// `dims[0]`). From a GGUF source, also the tensor as stored, so an encoder can copy it
/// unchanged (as `llama-quantize` does when the type stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportTensor<'a> {
    /// GGUF name (`blk.3.ffn_down.weight`).
    pub name: String,
    /// Dimensions, fastest first.
    pub dims: Vec<usize>,
    /// The source's type and bytes, when the source is a GGUF (same layout as the output).
    pub stored: Option<(GgmlType, &'a [u8])>,
}

impl ExportTensor<'_> {
    /// Number of values.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Whether llama.cpp keeps the tensor in F32 whatever the file's type: vectors (norms,
    /// biases, `rope_freqs`) and `*_norm.weight`.
    pub fn stays_f32(&self) -> bool {
        self.dims.len() <= 1 || self.name.ends_with("_norm.weight")
    }

    /// The layer index of a `blk.N.*` tensor.
    pub fn layer(&self) -> Option<usize> {
        self.name
            .strip_prefix("blk.")?
            .split('.')
            .next()?
            .parse()
            .ok()
    }
}

/// The output types of llama.cpp's converter (`--outtype`), with its rule for which tensors
/// keep F32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufOutType {
    /// Everything F32 (`general.file_type` 0).
    F32,
    /// Matrices F16 (file type 1).
    F16,
    /// Matrices BF16 (file type 32).
    BF16,
    /// Matrices Q8_0, F16 where a row is not whole blocks of 32 (file type 7).
    Q8_0,
}

impl GgufOutType {
    /// `general.file_type` (`LlamaFileType` of gguf-py).
    pub fn file_type(self) -> u32 {
        match self {
            GgufOutType::F32 => 0,
            GgufOutType::F16 => 1,
            GgufOutType::Q8_0 => 7,
            GgufOutType::BF16 => 32,
        }
    }

    /// The converter's choice for one tensor: F32 for vectors and norms, the output type for
    /// matrices, F16 for Q8_0 matrices whose rows are not whole blocks.
    pub fn ggml_type(self, tensor: &ExportTensor<'_>) -> GgmlType {
        if tensor.stays_f32() {
            return GgmlType::F32;
        }
        match self {
            GgufOutType::F32 => GgmlType::F32,
            GgufOutType::F16 => GgmlType::F16,
            GgufOutType::BF16 => GgmlType::BF16,
            GgufOutType::Q8_0 if tensor.dims[0].is_multiple_of(32) => GgmlType::Q8_0,
            GgufOutType::Q8_0 => GgmlType::F16,
        }
    }

    /// Encodes one tensor the converter's way (an `encode` callback for [`export_gguf`]).
    ///
    /// # Errors
    /// [`Error::Ggml`] for NaN, infinities or values beyond f16's range.
    pub fn encode(self, tensor: &ExportTensor<'_>, values: &[f32]) -> Result<Encoded> {
        let ty = self.ggml_type(tensor);
        Ok((ty, slm_ggml::quantize(ty, values)?))
    }
}

/// A tensor as stored: its type and bytes (what an `encode` callback returns).
pub type Encoded = (GgmlType, Vec<u8>);

/// Reads a tensor's values, in GGUF layout.
type Source<'a> = Box<dyn Fn() -> Result<Vec<f32>> + 'a>;

/// Writes `checkpoint` as GGUF (see the module docs for the layout); `encode` picks each
/// tensor's type and returns its bytes. `file_type` is `general.file_type` (for the converter's
/// types [`GgufOutType::file_type`]).
///
/// # Errors
/// [`Error::Unsupported`] for Phi-3 (fused tensors, not yet written), tensors llama.cpp has no
/// name for, or a tokenizer llama.cpp cannot be told how to split; [`Error::InvalidConfig`]
/// when heads do not divide the Q/K rows; errors of `encode` and of reading the weights.
pub fn export_gguf(
    checkpoint: &Checkpoint,
    file_type: u32,
    encode: &mut dyn FnMut(&ExportTensor<'_>, &[f32]) -> Result<Encoded>,
) -> Result<GgufWriter> {
    let mut writer = GgufWriter::new();
    let tensors = match checkpoint.format {
        ModelFormat::Gguf => {
            let file = GgufFile::open(&checkpoint.path)?;
            let tensors = gguf_tensors(&file)?;
            encode_all(&mut writer, tensors, encode)?;
            for (key, value) in file.metadata() {
                if !matches!(
                    key.as_str(),
                    "general.file_type" | "general.quantization_version" | "general.alignment"
                ) {
                    writer.set(key.clone(), value.clone());
                }
            }
            writer
                .set(
                    "general.quantization_version",
                    GgufValue::U32(QUANTIZATION_VERSION),
                )
                .set("general.file_type", GgufValue::U32(file_type));
            return Ok(writer);
        }
        ModelFormat::Hf => hf_tensors(checkpoint)?,
    };
    let params: usize = tensors.iter().map(|(t, _)| t.numel()).sum();
    encode_all(&mut writer, tensors, encode)?;
    let tokenizer = checkpoint
        .tokenizer
        .as_ref()
        .ok_or_else(|| Error::MissingField {
            source_name: checkpoint.path.display().to_string(),
            field: "tokenizer.json (a GGUF carries its tokenizer)".into(),
        })?;
    let config = &checkpoint.config;
    let arch = config.architecture.gguf_name();
    writer
        .set("general.architecture", GgufValue::String(arch.into()))
        .set("general.type", GgufValue::String("model".into()))
        .set(
            "general.name",
            GgufValue::String(title_case(&dir_name(&checkpoint.path))),
        )
        .set(
            "general.size_label",
            GgufValue::String(size_label(params as u64)),
        );
    for (key, value) in hyper_parameters(config, file_type)? {
        writer.set(key, value);
    }
    writer.set(
        "general.quantization_version",
        GgufValue::U32(QUANTIZATION_VERSION),
    );
    let config_ids = [
        config.bos_token_id,
        match config.eos_token_ids.as_slice() {
            [one] => Some(*one),
            _ => None,
        },
        config.pad_token_id,
    ];
    for (key, value) in tokenizer_metadata(tokenizer, config.vocab_size, config_ids)? {
        writer.set(key, value);
    }
    Ok(writer)
}

/// Encodes every tensor in order and adds it.
fn encode_all(
    writer: &mut GgufWriter,
    tensors: Vec<(ExportTensor<'_>, Source<'_>)>,
    encode: &mut dyn FnMut(&ExportTensor<'_>, &[f32]) -> Result<Encoded>,
) -> Result<()> {
    for (tensor, values) in tensors {
        let (ty, bytes) = encode(&tensor, &values()?)?;
        writer.add_tensor(tensor.name.clone(), &tensor.dims, ty, bytes)?;
    }
    Ok(())
}

/// A GGUF's tensors as stored (already in llama.cpp's layout).
fn gguf_tensors(file: &GgufFile) -> Result<Vec<(ExportTensor<'_>, Source<'_>)>> {
    file.tensors()
        .iter()
        .map(|t| {
            let tensor = ExportTensor {
                name: t.name.clone(),
                dims: t.dims.clone(),
                stored: Some((t.ggml_type, file.tensor_bytes(&t.name)?)),
            };
            let name = t.name.clone();
            let read: Source<'_> = Box::new(move || file.tensor_f32(&name));
            Ok((tensor, read))
        })
        .collect()
}

/// A Hugging Face checkpoint's tensors under llama.cpp's names and layout, in storage order,
/// after the generated `rope_freqs.weight` of llama3 scaling.
fn hf_tensors(checkpoint: &Checkpoint) -> Result<Vec<(ExportTensor<'_>, Source<'_>)>> {
    let config = &checkpoint.config;
    if config.architecture == Architecture::Phi3 {
        return Err(Error::Unsupported {
            what: "architecture for GGUF export",
            value: "Phi3ForCausalLM (fused attn_qkv / ffn_up are not written yet)".into(),
        });
    }
    let weights = checkpoint.weights.as_ref();
    let mut out: Vec<(ExportTensor<'_>, Source<'_>)> = Vec::new();
    if let Some(factors) = config
        .rope_scaling
        .llama3_rope_factors(config.rope_theta, config.head_dim)
    {
        let tensor = ExportTensor {
            name: "rope_freqs.weight".into(),
            dims: vec![factors.len()],
            stored: None,
        };
        out.push((tensor, Box::new(move || Ok(factors.clone()))));
    }
    let permute = config.architecture.gguf_permutes_qk();
    for hf in weights.storage_order() {
        if hf.ends_with(".rotary_emb.inv_freq") {
            continue;
        }
        let name = gguf_name(&hf).ok_or_else(|| Error::Unsupported {
            what: "tensor for GGUF export (llama.cpp has no name for it)",
            value: hf.clone(),
        })?;
        let info = weights
            .tensor_info(&hf)
            .ok_or_else(|| Error::MissingTensor {
                source_name: weights.source_name(),
                name: hf.clone(),
            })?;
        let rows = info.shape.first().copied().unwrap_or(1);
        let cols: usize = info.shape.iter().skip(1).product();
        let heads = if permute {
            let (q, kv) = (config.num_attention_heads, config.num_key_value_heads);
            rotary_heads(&hf, rows, q, kv, &|| format!("`{hf}`"))?
        } else {
            None
        };
        let tensor = ExportTensor {
            name,
            dims: info.shape.iter().rev().copied().collect(),
            stored: None,
        };
        let read: Source<'_> = Box::new(move || {
            let values = weights.read_f32(&hf)?;
            Ok(match heads {
                Some(h) => permute_rows(&values, rows, cols, h),
                None => values,
            })
        });
        out.push((tensor, read));
    }
    Ok(out)
}

/// The architecture keys of `TextModel.set_gguf_parameters` (plus Llama's `vocab_size` and
/// `rope.dimension_count`), in the converter's order, with `general.file_type` where it falls.
fn hyper_parameters(config: &ModelConfig, file_type: u32) -> Result<Vec<(String, GgufValue)>> {
    let arch = config.architecture.gguf_name();
    if !matches!(
        config.rope_scaling,
        crate::config::RopeScaling::Default | crate::config::RopeScaling::Llama3 { .. }
    ) {
        return Err(Error::Unsupported {
            what: "rope scaling for GGUF export",
            value: format!(
                "{:?} (only default and llama3 are written yet)",
                config.rope_scaling
            ),
        });
    }
    if let Some(w) = config.sliding_window {
        return Err(Error::Unsupported {
            what: "sliding window for GGUF export",
            value: format!(
                "{w} (llama.cpp's `llama` GGUFs have none: it would run full attention)"
            ),
        });
    }
    let u32_of = |what: &str, v: usize| {
        u32::try_from(v).map_err(|_| Error::InvalidConfig(format!("{what} {v} exceeds u32")))
    };
    let key = |k: &str| format!("{arch}.{k}");
    let mut out = vec![
        (
            key("block_count"),
            GgufValue::U32(u32_of("num_hidden_layers", config.num_hidden_layers)?),
        ),
        (
            key("context_length"),
            GgufValue::U32(u32_of(
                "max_position_embeddings",
                config.max_position_embeddings,
            )?),
        ),
        (
            key("embedding_length"),
            GgufValue::U32(u32_of("hidden_size", config.hidden_size)?),
        ),
        (
            key("feed_forward_length"),
            GgufValue::U32(u32_of("intermediate_size", config.intermediate_size)?),
        ),
        (
            key("attention.head_count"),
            GgufValue::U32(u32_of("num_attention_heads", config.num_attention_heads)?),
        ),
        (
            key("attention.head_count_kv"),
            GgufValue::U32(u32_of("num_key_value_heads", config.num_key_value_heads)?),
        ),
        (
            key("rope.freq_base"),
            GgufValue::F32(config.rope_theta as f32),
        ),
        (
            key("attention.layer_norm_rms_epsilon"),
            GgufValue::F32(config.rms_norm_eps as f32),
        ),
        (
            key("attention.key_length"),
            GgufValue::U32(u32_of("head_dim", config.head_dim)?),
        ),
        (
            key("attention.value_length"),
            GgufValue::U32(u32_of("head_dim", config.head_dim)?),
        ),
        ("general.file_type".into(), GgufValue::U32(file_type)),
    ];
    if arch == "llama" {
        out.push((
            key("vocab_size"),
            GgufValue::U32(u32_of("vocab_size", config.vocab_size)?),
        ));
        out.push((
            key("rope.dimension_count"),
            GgufValue::U32(u32_of("head_dim", config.head_dim)?),
        ));
    }
    Ok(out)
}

/// The last path component (`llama-tiny` of `models/llama-tiny/`).
fn dir_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// gguf-py's `Metadata.id_to_title`: dashes to spaces, lowercase words title-cased (Python's
/// `str.title`: a letter after a non-letter is uppercased) unless they are versions or start
/// with a digit.
fn title_case(id: &str) -> String {
    id.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let cased = w.chars().any(char::is_alphabetic);
            let lower = cased && !w.chars().any(char::is_uppercase);
            let version_or_digit = w.starts_with(|c: char| c.is_ascii_digit())
                || (w.starts_with('v')
                    && w.len() > 1
                    && w[1..]
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
            if lower && !version_or_digit {
                let mut out = String::with_capacity(w.len());
                let mut after_letter = false;
                for c in w.chars() {
                    if after_letter {
                        out.extend(c.to_lowercase());
                    } else {
                        out.extend(c.to_uppercase());
                    }
                    after_letter = c.is_alphabetic();
                }
                out
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// gguf-py's `model_weight_count_rounded_notation`: `172K`, `135M`, `1.2B` (at least two
/// significant digits).
pub fn size_label(params: u64) -> String {
    let n = params as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    let rounded = scaled.round_ties_even() as u64;
    let digits = if rounded == 0 {
        0
    } else {
        rounded.to_string().len()
    };
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels_round_as_gguf_py() {
        assert_eq!(size_label(172_352), "172K");
        assert_eq!(size_label(134_515_008), "135M");
        assert_eq!(size_label(1_235_814_400), "1.2B");
        assert_eq!(size_label(8_030_261_248), "8.0B");
        assert_eq!(size_label(999), "1.0K");
        assert_eq!(size_label(0), "0.00K");
    }

    #[test]
    fn titles_follow_python_str_title() {
        assert_eq!(title_case("llama-tiny"), "Llama Tiny");
        assert_eq!(title_case("llama3-rope-tiny"), "Llama3 Rope Tiny");
        assert_eq!(title_case("SmolLM2-135M-Instruct"), "SmolLM2 135M Instruct");
        assert_eq!(title_case("qwen2.5-v1.2-7b"), "Qwen2.5 v1.2 7b");
        assert_eq!(title_case("llama3b"), "Llama3B");
    }

    #[test]
    fn converter_keeps_vectors_and_norms_f32() {
        let t = |name: &str, dims: &[usize]| ExportTensor {
            name: name.into(),
            dims: dims.to_vec(),
            stored: None,
        };
        let q8 = GgufOutType::Q8_0;
        assert_eq!(
            q8.ggml_type(&t("blk.0.attn_norm.weight", &[64])),
            GgmlType::F32
        );
        assert_eq!(q8.ggml_type(&t("blk.0.attn_q.bias", &[64])), GgmlType::F32);
        assert_eq!(
            q8.ggml_type(&t("token_embd.weight", &[64, 768])),
            GgmlType::Q8_0
        );
        assert_eq!(
            q8.ggml_type(&t("blk.0.ffn_down.weight", &[48, 64])),
            GgmlType::F16
        );
        assert_eq!(
            GgufOutType::BF16.ggml_type(&t("output.weight", &[48, 64])),
            GgmlType::BF16
        );
        assert_eq!(t("blk.12.attn_v.weight", &[64, 64]).layer(), Some(12));
        assert_eq!(t("output.weight", &[64, 64]).layer(), None);
    }
}

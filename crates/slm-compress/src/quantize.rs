//! Quantizing a model to a GGUF that llama.cpp and Ollama run: [`quantize_gguf`] with a
//! [`QuantType`] (the names of `llama-quantize --type`) and, optionally, an [`ImportanceMatrix`].
//!
//! Which tensor gets which GGML type follows `llama_tensor_get_type` of llama.cpp's
//! `src/llama-quant.cpp` ([`TensorTypePlan`]): norms and other vectors stay F32; the output
//! matrix (or, with tied embeddings, `token_embd`) gets Q6_K (Q8_0 when its rows are not whole
//! blocks of the file type); the `_M` mixtures give `attn_v` and `ffn_down` of the first and last
//! eighth and every third layer between Q6_K; `Q4_K_S` gives the first `attn_v`s and `ffn_down`s
//! Q5_K; a K-quant whose rows are not whole 256-blocks falls back to Q5_0 / Q5_1 / Q8_0.
//! The blocks are slm-ggml's, bit-identical with ggml's (with and without the importance
//! matrix), and the file is laid out as `llama-quantize` lays it out (tensors sorted by layer
//! then name, `general.quantization_version` and `general.file_type` last), so for the same F32
//! input the bytes are `llama-quantize`'s. From a Hugging Face directory, `F32`, `F16`, `BF16`
//! and `Q8_0` are written as `convert_hf_to_gguf.py --outtype` writes them instead (the
//! converter's own layout).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use slm_core::checkpoint::{Checkpoint, ModelFormat};
use slm_core::gguf::{
    Encoded, ExportTensor, GgufFile, GgufOutType, GgufTensor, GgufValue, GgufWriter, export_gguf,
    gguf_tensor_name,
};
use slm_ggml::GgmlType;

use crate::calibration::InputStats;
use crate::error::{Error, Result};

macro_rules! quant_types {
    ($($(#[$doc:meta])* $variant:ident = $ftype:literal, $name:literal, $default:ident;)*) => {
        /// A GGUF file type as `llama-quantize` names it (`--type`; `general.file_type` is
        /// llama.cpp's `llama_ftype`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[allow(non_camel_case_types)]
        #[non_exhaustive]
        pub enum QuantType {
            $($(#[$doc])* $variant,)*
        }

        impl QuantType {
            /// Every file type, in `llama_ftype` order.
            pub const ALL: &'static [QuantType] = &[$(QuantType::$variant,)*];

            /// `llama-quantize`'s name (`Q4_K_M`).
            pub fn name(self) -> &'static str {
                match self { $(QuantType::$variant => $name,)* }
            }

            /// `general.file_type` (`llama_ftype`).
            pub fn file_type(self) -> u32 {
                match self { $(QuantType::$variant => $ftype,)* }
            }

            /// The GGML type most matrices get (`llama_ftype_get_default_type`).
            pub fn default_type(self) -> GgmlType {
                match self { $(QuantType::$variant => GgmlType::$default,)* }
            }
        }
    };
}

quant_types! {
    /// Everything F32.
    F32 = 0, "F32", F32;
    /// Matrices F16.
    F16 = 1, "F16", F16;
    /// 4-bit, one scale per 32.
    Q4_0 = 2, "Q4_0", Q4_0;
    /// 4-bit, scale and minimum per 32.
    Q4_1 = 3, "Q4_1", Q4_1;
    /// 8-bit, one scale per 32.
    Q8_0 = 7, "Q8_0", Q8_0;
    /// 5-bit, one scale per 32.
    Q5_0 = 8, "Q5_0", Q5_0;
    /// 5-bit, scale and minimum per 32.
    Q5_1 = 9, "Q5_1", Q5_1;
    /// Q4_K, the first `attn_v`s and `ffn_down`s Q5_K.
    Q4_K_S = 14, "Q4_K_S", Q4_K;
    /// Q4_K, `attn_v` and `ffn_down` of half the layers Q6_K (the usual 4-bit choice).
    Q4_K_M = 15, "Q4_K_M", Q4_K;
    /// Q5_K throughout.
    Q5_K_S = 16, "Q5_K_S", Q5_K;
    /// Q5_K, `attn_v` and `ffn_down` of half the layers Q6_K.
    Q5_K_M = 17, "Q5_K_M", Q5_K;
    /// Q6_K throughout.
    Q6_K = 18, "Q6_K", Q6_K;
    /// Matrices BF16.
    BF16 = 32, "BF16", BF16;
}

impl QuantType {
    /// The converter's output type for the same file type (`F32`, `F16`, `BF16`, `Q8_0`).
    pub fn converter_type(self) -> Option<GgufOutType> {
        match self {
            QuantType::F32 => Some(GgufOutType::F32),
            QuantType::F16 => Some(GgufOutType::F16),
            QuantType::BF16 => Some(GgufOutType::BF16),
            QuantType::Q8_0 => Some(GgufOutType::Q8_0),
            _ => None,
        }
    }

    /// Whether matrices are block-quantized (not a float type).
    pub fn is_quantized(self) -> bool {
        !matches!(self, QuantType::F32 | QuantType::F16 | QuantType::BF16)
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantType {
    type Err = Error;

    /// Parses `llama-quantize`'s name, case-insensitively (`q4_k_m`).
    fn from_str(s: &str) -> Result<Self> {
        QuantType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownQuantType(s.to_owned()))
    }
}

/// `llama_tensor_get_type` for dense Llama-family models: the GGML type of each tensor of a file
/// type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorTypePlan {
    /// The file type.
    pub qtype: QuantType,
    /// Decoder layers (`n_layer`; also the number of `attn_v` tensors).
    pub layers: usize,
    /// No `output.weight`: `token_embd` doubles as the output and is typed like it.
    pub tied_embeddings: bool,
    /// An importance matrix is given (Q4_0/Q5_0 then protect the first `ffn_down`s).
    pub imatrix: bool,
    /// `--pure`: every matrix the default type (the fallback for unfit rows still applies).
    pub pure: bool,
}

impl TensorTypePlan {
    /// The type of `tensor`; `None` when it is not quantized (vectors, norms, non-weights), so it
    /// keeps its type.
    pub fn ggml_type(&self, tensor: &ExportTensor<'_>) -> Option<GgmlType> {
        let name = tensor.name.as_str();
        if tensor.dims.len() < 2 || !name.ends_with("weight") || name.contains("_norm.weight") {
            return None;
        }
        let default = self.qtype.default_type();
        if !self.qtype.is_quantized() {
            return Some(default);
        }
        let new = if self.pure {
            default
        } else {
            self.mixture(tensor, default)
        };
        Some(fallback(tensor.dims[0], new))
    }

    /// `llama_tensor_get_type_impl`, for the file types and the dense architectures slm writes.
    fn mixture(&self, tensor: &ExportTensor<'_>, default: GgmlType) -> GgmlType {
        use QuantType::*;
        let name = tensor.name.as_str();
        let n = self.layers;
        let layer = tensor.layer().unwrap_or(0);
        let more_bits = |i: usize| i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
        if name == "output.weight" || (self.tied_embeddings && name == "token_embd.weight") {
            if !tensor.dims[0].is_multiple_of(default.block_size()) {
                GgmlType::Q8_0
            } else if default != GgmlType::Q8_0 {
                GgmlType::Q6_K
            } else {
                default
            }
        } else if name == "token_embd.weight" {
            default
        } else if name.contains("attn_v.weight") {
            match self.qtype {
                Q4_K_M | Q5_K_M if more_bits(layer) => GgmlType::Q6_K,
                Q4_K_S if layer < 4 => GgmlType::Q5_K,
                _ => default,
            }
        } else if name.contains("ffn_down") {
            match self.qtype {
                Q4_K_M | Q5_K_M if more_bits(layer) => GgmlType::Q6_K,
                Q4_K_S if layer < n / 8 => GgmlType::Q5_K,
                Q4_0 if self.imatrix && layer < n / 8 => GgmlType::Q4_1,
                Q5_0 if self.imatrix && layer < n / 8 => GgmlType::Q5_1,
                _ => default,
            }
        } else {
            default
        }
    }
}

/// `tensor_type_fallback`: a type whose blocks do not tile a row of `ncols` becomes the nearest
/// 32-block type, and F16 when even that does not fit.
fn fallback(ncols: usize, ty: GgmlType) -> GgmlType {
    if ncols.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let smaller = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        other => other,
    };
    if ncols.is_multiple_of(smaller.block_size()) {
        smaller
    } else {
        GgmlType::F16
    }
}

/// Per tensor (GGUF name), the mean squared activation of each input column over calibration
/// text: llama.cpp's importance matrix (`llama-imatrix`'s `in_sum2 / counts`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportanceMatrix {
    /// Mean squares by GGUF tensor name (`blk.0.attn_q.weight`), one per input column.
    pub entries: BTreeMap<String, Vec<f32>>,
    /// Calibration chunks behind it.
    pub chunks: usize,
    /// Where it came from (a calibration file's name), for `quantize.imatrix.dataset`.
    pub dataset: Option<String>,
}

impl ImportanceMatrix {
    /// From calibration statistics of the model being quantized ([`InputStats`], Hugging Face
    /// names mapped to llama.cpp's).
    ///
    /// # Errors
    /// [`Error::InvalidCalibration`] for a projection llama.cpp has no tensor name for.
    pub fn from_stats(stats: &InputStats, dataset: Option<String>) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (hf, values) in stats.mean_squares() {
            let name = gguf_tensor_name(&hf).ok_or_else(|| {
                Error::InvalidCalibration(format!("no GGUF name for projection `{hf}`"))
            })?;
            entries.insert(name, values);
        }
        Ok(Self {
            entries,
            chunks: stats.chunks,
            dataset,
        })
    }

    /// Reads an importance matrix written by llama.cpp's `llama-imatrix` (the GGUF format:
    /// `<tensor>.in_sum2` and `<tensor>.counts` per entry; means are `in_sum2 / counts`, 1
    /// where a column was never seen, as `llama-quantize` loads them).
    ///
    /// # Errors
    /// [`Error::InvalidCalibration`] for a file that is not an imatrix GGUF or has mismatched
    /// entries; read errors.
    pub fn from_llama_imatrix(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let bad = |why: String| Error::InvalidCalibration(format!("{}: {why}", path.display()));
        if file.get_str("general.type").ok() != Some("imatrix") {
            return Err(bad(
                "not a llama-imatrix GGUF (general.type != imatrix)".into()
            ));
        }
        let mut entries = BTreeMap::new();
        for t in file.tensors() {
            let Some(name) = t.name.strip_suffix(".in_sum2") else {
                continue;
            };
            let sums = file.tensor_f32(&t.name)?;
            let counts = file
                .tensor_f32(&format!("{name}.counts"))
                .map_err(|_| bad(format!("`{name}` has no counts")))?;
            let cols = t.dims[0];
            if counts.len() != 1 || sums.len() != cols {
                return Err(bad(format!(
                    "`{name}`: {} sums and {} counts (expert tensors are not supported)",
                    sums.len(),
                    counts.len()
                )));
            }
            let means = sums
                .iter()
                .map(|s| if counts[0] > 0.0 { s / counts[0] } else { 1.0 })
                .collect();
            entries.insert(name.to_owned(), means);
        }
        if entries.is_empty() {
            return Err(bad("no `.in_sum2` entries".into()));
        }
        let chunks = file.get_u32("imatrix.chunk_count").unwrap_or(0) as usize;
        let dataset = file
            .get_str_array("imatrix.datasets")
            .ok()
            .and_then(|d| d.first().map(|s| (*s).to_owned()));
        Ok(Self {
            entries,
            chunks,
            dataset,
        })
    }
}

/// How to quantize.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeConfig {
    /// The file type.
    pub qtype: QuantType,
    /// Importance weights for the 4-, 5- and 6-bit types.
    pub imatrix: Option<ImportanceMatrix>,
    /// What `quantize.imatrix.file` records (the path as given to `llama-quantize --imatrix`).
    pub imatrix_file: Option<String>,
    /// Every matrix the default type (`llama-quantize --pure`).
    pub pure: bool,
}

impl QuantizeConfig {
    /// `qtype` without an importance matrix.
    pub fn new(qtype: QuantType) -> Self {
        Self {
            qtype,
            imatrix: None,
            imatrix_file: None,
            pure: false,
        }
    }

    /// With an importance matrix (and the name `quantize.imatrix.file` records).
    pub fn with_imatrix(mut self, imatrix: ImportanceMatrix, file: impl Into<String>) -> Self {
        self.imatrix = Some(imatrix);
        self.imatrix_file = Some(file.into());
        self
    }
}

/// One tensor as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorQuant {
    /// GGUF name.
    pub name: String,
    /// GGML type.
    #[serde(serialize_with = "type_name")]
    pub ggml_type: GgmlType,
    /// Values.
    pub params: usize,
    /// Bytes of data.
    pub bytes: usize,
    /// Whether the importance matrix weighted it.
    pub weighted: bool,
}

fn type_name<S: serde::Serializer>(t: &GgmlType, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// What [`quantize_gguf`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantizeReport {
    /// The file type.
    pub qtype: QuantType,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorQuant>,
    /// Values in all tensors.
    pub params: usize,
    /// Bytes of tensor data.
    pub bytes: usize,
    /// `8 * bytes / params`.
    pub bits_per_weight: f64,
    /// Tensors quantized with importance weights.
    pub weighted_tensors: usize,
}

/// Quantizes `checkpoint` into a GGUF (see the module docs): returns the writer (call
/// [`GgufWriter::write`]) and a per-tensor report.
///
/// # Errors
/// [`Error::InvalidCalibration`] when the importance matrix has an entry of the wrong width;
/// export and quantization errors (unsupported architectures or tokenizers, NaN weights).
pub fn quantize_gguf(
    checkpoint: &Checkpoint,
    config: &QuantizeConfig,
) -> Result<(GgufWriter, QuantizeReport)> {
    let qtype = config.qtype;
    let converter = qtype.converter_type().filter(|_| {
        checkpoint.format == ModelFormat::Hf && config.imatrix.is_none() && !config.pure
    });
    let writer = match converter {
        Some(out) => export_gguf(checkpoint, qtype.file_type(), &mut |t, v| out.encode(t, v))?,
        None => {
            let plan = TensorTypePlan {
                qtype,
                layers: checkpoint.config.num_hidden_layers,
                tied_embeddings: !has_output(checkpoint),
                imatrix: config.imatrix.is_some(),
                pure: config.pure,
            };
            let mut writer = export_gguf(checkpoint, qtype.file_type(), &mut |t, v| {
                encode(&plan, config.imatrix.as_ref(), t, v)
            })?;
            writer.sort_tensors_by(llama_quantize_order);
            for key in ["general.quantization_version", "general.file_type"] {
                let value = writer.remove(key).ok_or_else(|| {
                    Error::InvalidCalibration(format!("the export wrote no `{key}`"))
                })?;
                writer.set(key, value);
            }
            if let Some(m) = &config.imatrix {
                if let Some(file) = &config.imatrix_file {
                    writer.set("quantize.imatrix.file", GgufValue::String(file.clone()));
                }
                if let Some(d) = &m.dataset {
                    writer.set("quantize.imatrix.dataset", GgufValue::String(d.clone()));
                }
                writer.set(
                    "quantize.imatrix.entries_count",
                    GgufValue::U32(m.entries.len() as u32),
                );
                if m.chunks > 0 {
                    writer.set(
                        "quantize.imatrix.chunks_count",
                        GgufValue::U32(m.chunks as u32),
                    );
                }
            }
            writer
        }
    };
    let report = report(qtype, writer.tensors(), config.imatrix.as_ref());
    Ok((writer, report))
}

/// Whether the model has its own output matrix (an untied LM head).
fn has_output(checkpoint: &Checkpoint) -> bool {
    match checkpoint.format {
        ModelFormat::Hf => checkpoint.weights.tensor_info("lm_head.weight").is_some(),
        ModelFormat::Gguf => !checkpoint.config.tie_word_embeddings,
    }
}

/// Encodes one tensor the way `llama-quantize` does: unquantized tensors keep their type (F32
/// from a Hugging Face source), a tensor already stored in its target type is copied, the rest
/// quantized (importance-weighted when the matrix has an entry for it).
fn encode(
    plan: &TensorTypePlan,
    imatrix: Option<&ImportanceMatrix>,
    tensor: &ExportTensor<'_>,
    values: &[f32],
) -> slm_core::Result<Encoded> {
    let target = match plan.ggml_type(tensor) {
        Some(t) => t,
        None => match tensor.stored {
            Some((ty, bytes)) => return Ok((ty, bytes.to_vec())),
            None => GgmlType::F32,
        },
    };
    if let Some((ty, bytes)) = tensor.stored
        && ty == target
    {
        return Ok((ty, bytes.to_vec()));
    }
    let weights = imatrix.and_then(|m| m.entries.get(&tensor.name));
    let bytes = match weights {
        Some(w) if w.len() == tensor.dims[0] => {
            slm_ggml::quantize_weighted(target, values, tensor.dims[0], w)
        }
        Some(w) => {
            return Err(slm_core::Error::InvalidInput(format!(
                "importance matrix entry `{}` has {} columns, the tensor {}",
                tensor.name,
                w.len(),
                tensor.dims[0]
            )));
        }
        None => slm_ggml::quantize(target, values),
    };
    Ok((target, bytes?))
}

/// `llama-quantize`'s tensor order (`ml.weights_map`): tensors outside blocks first, then
/// blocks by number, by name within each.
fn llama_quantize_order(a: &GgufTensor, b: &GgufTensor) -> Ordering {
    let layer = |name: &str| -> i64 {
        name.strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1)
    };
    layer(&a.name)
        .cmp(&layer(&b.name))
        .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
}

fn report(
    qtype: QuantType,
    tensors: &[GgufTensor],
    imatrix: Option<&ImportanceMatrix>,
) -> QuantizeReport {
    let tensors: Vec<TensorQuant> = tensors
        .iter()
        .map(|t| TensorQuant {
            name: t.name.clone(),
            ggml_type: t.ggml_type,
            params: t.dims.iter().product(),
            bytes: t.data.len(),
            weighted: imatrix.is_some_and(|m| m.entries.contains_key(&t.name))
                && t.ggml_type.has_weighted_quantizer(),
        })
        .collect();
    let params: usize = tensors.iter().map(|t| t.params).sum();
    let bytes: usize = tensors.iter().map(|t| t.bytes).sum();
    QuantizeReport {
        qtype,
        weighted_tensors: tensors.iter().filter(|t| t.weighted).count(),
        bits_per_weight: if params == 0 {
            0.0
        } else {
            8.0 * bytes as f64 / params as f64
        },
        tensors,
        params,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, dims: &[usize]) -> ExportTensor<'static> {
        ExportTensor {
            name: name.into(),
            dims: dims.to_vec(),
            stored: None,
        }
    }

    fn plan(qtype: QuantType) -> TensorTypePlan {
        TensorTypePlan {
            qtype,
            layers: 30,
            tied_embeddings: true,
            imatrix: false,
            pure: false,
        }
    }

    /// SmolLM2-135M's shapes (576 wide, ffn_down 1536 wide, 30 layers, tied), the table
    /// llama-quantize's rules give (checked against its files in tests/quantize_gguf.rs).
    #[test]
    fn smollm2_mixtures() {
        use GgmlType::*;
        let more_bits = [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29];
        let emb = t("token_embd.weight", &[576, 49152]);
        for q in [
            QuantType::Q4_0,
            QuantType::Q4_K_M,
            QuantType::Q6_K,
            QuantType::Q8_0,
        ] {
            assert_eq!(plan(q).ggml_type(&emb), Some(Q8_0), "{q}");
        }
        let p = plan(QuantType::Q4_K_M);
        for layer in 0..30 {
            let v = p.ggml_type(&t(&format!("blk.{layer}.attn_v.weight"), &[576, 192]));
            let d = p.ggml_type(&t(&format!("blk.{layer}.ffn_down.weight"), &[1536, 576]));
            let q = p.ggml_type(&t(&format!("blk.{layer}.attn_q.weight"), &[576, 576]));
            let more = more_bits.contains(&layer);
            assert_eq!(v, Some(if more { Q8_0 } else { Q5_0 }), "attn_v {layer}");
            assert_eq!(d, Some(if more { Q6_K } else { Q4_K }), "ffn_down {layer}");
            assert_eq!(q, Some(Q5_0), "attn_q {layer}");
        }
        let s = plan(QuantType::Q4_K_S);
        assert_eq!(
            s.ggml_type(&t("blk.3.attn_v.weight", &[576, 192])),
            Some(Q5_1)
        );
        assert_eq!(
            s.ggml_type(&t("blk.4.attn_v.weight", &[576, 192])),
            Some(Q5_0)
        );
        assert_eq!(
            s.ggml_type(&t("blk.2.ffn_down.weight", &[1536, 576])),
            Some(Q5_K)
        );
        assert_eq!(
            s.ggml_type(&t("blk.3.ffn_down.weight", &[1536, 576])),
            Some(Q4_K)
        );
        assert_eq!(
            plan(QuantType::Q4_0).ggml_type(&t("blk.0.attn_norm.weight", &[576])),
            None
        );
        let mut im = plan(QuantType::Q4_0);
        im.imatrix = true;
        assert_eq!(
            im.ggml_type(&t("blk.2.ffn_down.weight", &[1536, 576])),
            Some(Q4_1)
        );
        assert_eq!(
            im.ggml_type(&t("blk.3.ffn_down.weight", &[1536, 576])),
            Some(Q4_0)
        );
        let mut pure = plan(QuantType::Q4_0);
        pure.pure = true;
        assert_eq!(pure.ggml_type(&emb), Some(Q4_0));
        // Rows that fit no block: F16.
        assert_eq!(
            plan(QuantType::Q6_K).ggml_type(&t("x.weight", &[48, 8])),
            Some(F16)
        );
    }

    #[test]
    fn untied_output_and_names() {
        let mut p = plan(QuantType::Q4_K_M);
        p.tied_embeddings = false;
        let out = t("output.weight", &[1024, 32000]);
        assert_eq!(p.ggml_type(&out), Some(GgmlType::Q6_K));
        assert_eq!(
            p.ggml_type(&t("token_embd.weight", &[1024, 32000])),
            Some(GgmlType::Q4_K)
        );
        for q in QuantType::ALL {
            assert_eq!(q.name().to_lowercase().parse::<QuantType>().unwrap(), *q);
        }
        assert!(matches!(
            "q3_k_m".parse::<QuantType>(),
            Err(Error::UnknownQuantType(_))
        ));
    }
}

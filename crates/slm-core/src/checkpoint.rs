//! Opening a model from a path (Hugging Face directory or `.gguf` file) and saving one as a
//! Hugging Face directory that transformers and vLLM load like any checkpoint.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::Serialize;

use crate::config::ModelConfig;
use crate::config::gguf::config_from_gguf;
use crate::config::hf::HfConfig;
use crate::error::{Error, Result};
use crate::io::{write_atomic, write_atomic_with};
use crate::model::{Decoder, hf_names};
use crate::tokenizer::Tokenizer;
use crate::weights::{GgufWeights, SafetensorsWeights, StorageDtype, WeightSource};

/// The container a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// A Hugging Face directory (config.json + safetensors).
    Hf,
    /// A GGUF file.
    Gguf,
}

/// A model on disk: its config, its weights (not yet loaded), and its tokenizer if it has one.
pub struct Checkpoint {
    /// Where it was read from.
    pub path: PathBuf,
    /// The container format.
    pub format: ModelFormat,
    /// The resolved configuration.
    pub config: ModelConfig,
    /// The tensors, read lazily.
    pub weights: Box<dyn WeightSource>,
    /// The tokenizer, when the checkpoint ships one.
    pub tokenizer: Option<Tokenizer>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What `slm info` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// transformers class (`LlamaForCausalLM`, ...).
    pub architecture: String,
    /// Number of parameters.
    pub parameters: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Storage dtype holding most parameters (`float32`, `bfloat16`, `Q4_1`, ...).
    pub dtype: String,
    /// Bytes of weight files on disk.
    pub bytes: u64,
}

impl Checkpoint {
    /// Opens a Hugging Face model directory or a `.gguf` file.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        if path.is_file() {
            let weights = GgufWeights::open(path)?;
            let config = config_from_gguf(&weights)?;
            let tokenizer = Some(Tokenizer::from_gguf(weights.file())?);
            return Ok(Self {
                path: path.to_path_buf(),
                format: ModelFormat::Gguf,
                config,
                weights: Box::new(weights),
                tokenizer,
            });
        }
        let config = HfConfig::load(&path.join("config.json"))?;
        let weights = SafetensorsWeights::open(path)?;
        let tokenizer = if path.join("tokenizer.json").is_file() {
            Some(Tokenizer::from_model_dir(path)?)
        } else {
            None
        };
        Ok(Self {
            path: path.to_path_buf(),
            format: ModelFormat::Hf,
            config,
            weights: Box::new(weights),
            tokenizer,
        })
    }

    /// Builds the burn decoder on `device` (strict: names and shapes must match the config).
    pub fn load_decoder(&self, device: &Device) -> Result<Decoder> {
        Decoder::from_weights(&self.config, self.weights.as_ref(), device)
    }

    /// A summary of the model for humans and scripts.
    pub fn info(&self) -> Result<ModelInfo> {
        let mut by_dtype: BTreeMap<String, usize> = BTreeMap::new();
        for name in self.weights.tensor_names() {
            if let Some(t) = self.weights.tensor_info(&name) {
                *by_dtype.entry(t.dtype.name()).or_default() += t.numel();
            }
        }
        let dtype = by_dtype
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d)
            .unwrap_or_else(|| self.config.torch_dtype.clone());
        let bytes = if self.path.is_file() {
            file_len(&self.path)?
        } else {
            let mut total = 0;
            for entry in std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))? {
                let p = entry.map_err(|e| Error::io(&self.path, e))?.path();
                if p.extension().is_some_and(|e| e == "safetensors") {
                    total += file_len(&p)?;
                }
            }
            total
        };
        let c = &self.config;
        Ok(ModelInfo {
            architecture: c.architecture.hf_class().to_string(),
            parameters: c.num_parameters(),
            layers: c.num_hidden_layers,
            hidden_size: c.hidden_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            vocab_size: c.vocab_size,
            dtype,
            bytes,
        })
    }
}

/// What `slm info` says about a path: what it is, and whether slm can run it with the reason
/// when not (an unknown architecture or tokenizer, a rope setting, a GGML type without a
/// kernel, tensors the config does not explain).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelReport {
    /// `gguf` or `hf`; `None` for a path that is neither.
    pub format: Option<ModelFormat>,
    /// The architecture the file names (`general.architecture`, `architectures[0]`).
    pub declared_architecture: Option<String>,
    /// The tokenizer it carries: `gpt2` (byte-level BPE, with its `pre`) or `llama`
    /// (SentencePiece) for a GGUF, `tokenizer.json` for a model directory.
    pub tokenizer: Option<String>,
    /// The rope scaling (`default`, `llama3`, `longrope`, `yarn`, ...), when the config reads.
    pub rope_scaling: Option<String>,
    /// The sliding window, when the config has one.
    pub sliding_window: Option<usize>,
    /// Whether slm loads and runs it.
    pub runnable: bool,
    /// Why it cannot, when it cannot.
    pub reason: Option<String>,
    /// Sizes, when it opened.
    #[serde(flatten)]
    pub info: Option<ModelInfo>,
}

impl ModelReport {
    /// One line saying what the path is (`a GGUF (phi3, tokenizer llama)`).
    pub fn describe(&self) -> String {
        let kind = match self.format {
            Some(ModelFormat::Gguf) => "a GGUF",
            Some(ModelFormat::Hf) => "a Hugging Face model directory",
            None => return "not a GGUF file or a model directory".into(),
        };
        let mut parts = Vec::new();
        if let Some(a) = &self.declared_architecture {
            parts.push(a.clone());
        }
        if let Some(t) = &self.tokenizer {
            parts.push(format!("tokenizer {t}"));
        }
        if parts.is_empty() {
            kind.to_string()
        } else {
            format!("{kind} ({})", parts.join(", "))
        }
    }
}

impl Checkpoint {
    /// Reports what `path` is and whether slm runs it, reading headers and configs only (no
    /// weights): the checks [`Checkpoint::open`] and the decoders make before computing.
    pub fn inspect(path: &Path) -> ModelReport {
        let mut report = ModelReport::default();
        if path.is_file() {
            match crate::gguf::GgufFile::open(path) {
                Ok(file) => {
                    report.format = Some(ModelFormat::Gguf);
                    report.declared_architecture = file.architecture().ok().map(str::to_owned);
                    report.tokenizer =
                        file.get_str("tokenizer.ggml.model").ok().map(|m| {
                            match file.get_str("tokenizer.ggml.pre") {
                                Ok(pre) if m == "gpt2" => format!("gpt2 ({pre})"),
                                _ if m == "llama" => "llama (SentencePiece)".to_string(),
                                _ => m.to_string(),
                            }
                        });
                }
                Err(e) => {
                    report.reason = Some(e.to_string());
                    return report;
                }
            }
        } else if path.join("config.json").is_file() {
            report.format = Some(ModelFormat::Hf);
            report.declared_architecture = std::fs::read_to_string(path.join("config.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["architectures"][0].as_str().map(str::to_owned));
            report.tokenizer = path
                .join("tokenizer.json")
                .is_file()
                .then(|| "tokenizer.json".to_string());
        }
        let verdict = Self::open(path).and_then(|ckpt| {
            report.rope_scaling = serde_json::to_value(&ckpt.config.rope_scaling)
                .ok()
                .and_then(|v| v["rope_type"].as_str().map(str::to_owned));
            report.sliding_window = ckpt.config.sliding_window;
            report.info = Some(ckpt.info()?);
            hf_names::checked_layout(&ckpt.config, ckpt.weights.as_ref())?;
            for name in ckpt.weights.tensor_names() {
                if let Some(StorageDtype::Ggml(ty)) =
                    ckpt.weights.tensor_info(&name).map(|t| t.dtype)
                    && !ty.can_dequantize()
                {
                    return Err(Error::Unsupported {
                        what: "GGML tensor type",
                        value: format!("{ty:?} (tensor `{name}`)"),
                    });
                }
            }
            Ok(())
        });
        match verdict {
            Ok(()) => report.runnable = true,
            Err(e) => report.reason = Some(e.to_string()),
        }
        report
    }
}

fn file_len(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len())
}

/// The dtype tensors are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveDtype {
    /// float32.
    #[default]
    F32,
    /// float16.
    F16,
    /// bfloat16.
    BF16,
}

impl SaveDtype {
    /// Parses `f32|f16|bf16` (also `float32`, `float16`, `bfloat16`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            other => Err(Error::Unsupported {
                what: "dtype (expected f32, f16 or bf16)",
                value: other.to_string(),
            }),
        }
    }

    /// The `torch_dtype` name.
    pub fn torch_name(&self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        }
    }

    fn safetensors_name(&self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
        }
    }

    fn width(&self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    /// The storage dtype this writes.
    pub fn storage(&self) -> StorageDtype {
        match self {
            Self::F32 => StorageDtype::F32,
            Self::F16 => StorageDtype::F16,
            Self::BF16 => StorageDtype::BF16,
        }
    }
}

/// Writes tensors as one safetensors file (atomically), converting f32 values to `dtype`
/// with round-to-nearest-even as torch does. Tensors are stored in the order given.
pub fn write_safetensors(
    path: &Path,
    tensors: &[crate::model::hf_names::NamedTensor],
    dtype: SaveDtype,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        let expected: usize = shape.iter().product();
        if expected != values.len() {
            return Err(Error::InvalidInput(format!(
                "tensor `{name}` has {} values for shape {shape:?}",
                values.len()
            )));
        }
        let len = values.len() * dtype.width();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.safetensors_name(), "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut text =
        serde_json::to_string(&header).map_err(|e| Error::InvalidInput(e.to_string()))?;
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    write_atomic_with(path, |w| {
        w.write_all(&(text.len() as u64).to_le_bytes())?;
        w.write_all(text.as_bytes())?;
        for (_, _, values) in tensors {
            match dtype {
                SaveDtype::F32 => values
                    .iter()
                    .try_for_each(|v| w.write_all(&v.to_le_bytes()))?,
                SaveDtype::F16 => values
                    .iter()
                    .try_for_each(|v| w.write_all(&half::f16::from_f32(*v).to_le_bytes()))?,
                SaveDtype::BF16 => values
                    .iter()
                    .try_for_each(|v| w.write_all(&half::bf16::from_f32(*v).to_le_bytes()))?,
            }
        }
        Ok(())
    })
}

/// Saves `decoder` (and `tokenizer`) as a Hugging Face model directory: `model.safetensors`,
/// `config.json`, `generation_config.json` and the tokenizer files, each written atomically,
/// with the tensor names, shapes and fusions transformers uses for the architecture.
pub fn save_hf_dir(
    decoder: &Decoder,
    tokenizer: Option<&Tokenizer>,
    dir: &Path,
    dtype: SaveDtype,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config = decoder.config();
    let tensors = hf_names::to_checkpoint(config, decoder.named_parameters()?)?;
    write_safetensors(&dir.join("model.safetensors"), &tensors, dtype)?;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    write_atomic(
        &dir.join("config.json"),
        pretty(&config.to_hf_json(dtype.torch_name())?).as_bytes(),
    )?;
    write_atomic(
        &dir.join("generation_config.json"),
        pretty(&config.to_generation_config_json()).as_bytes(),
    )?;
    if let Some(t) = tokenizer {
        t.save(dir)?;
    }
    Ok(())
}

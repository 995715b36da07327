//! Weight sources: one way to ask for a tensor by its Hugging Face name, whether it lives in a
//! safetensors file, a sharded safetensors checkpoint or a GGUF file (quantized or not).
//!
//! Both the burn [`Decoder`](crate::model::Decoder) and future fast paths bind their weights
//! through [`WeightSource`], so the name mapping and layout fixes (GGUF's reversed dims and
//! rotary-permuted Q/K rows) live in exactly one place per format.

mod gguf;
mod raw;
mod safetensors;

pub use self::gguf::GgufWeights;
pub use self::raw::{RawTensor, RowOrder, SharedBytes};
pub use self::safetensors::SafetensorsWeights;

use crate::error::Result;

/// How a tensor is stored in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StorageDtype {
    /// IEEE float32.
    F32,
    /// IEEE float16.
    F16,
    /// bfloat16.
    BF16,
    /// A GGML quantized block type (Q8_0, Q4_K, ...), by its GGML name.
    Ggml(crate::gguf::GgmlType),
}

impl StorageDtype {
    /// The name used in `config.json` (`float32`, ...) or GGML's name for block types.
    pub fn name(&self) -> String {
        match self {
            StorageDtype::F32 => "float32".into(),
            StorageDtype::F16 => "float16".into(),
            StorageDtype::BF16 => "bfloat16".into(),
            StorageDtype::Ggml(t) => t.name().into(),
        }
    }
}

/// Shape and storage type of one tensor, in Hugging Face layout (`[out, in]` for linears).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Dimensions, outermost first, as transformers sees them.
    pub shape: Vec<usize>,
    /// How the bytes are stored.
    pub dtype: StorageDtype,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A read-only collection of named tensors, addressed by Hugging Face names
/// (`model.layers.0.self_attn.q_proj.weight`) and returned in Hugging Face layout.
///
/// It is a trait because checkpoints come in several containers (one safetensors file, shards,
/// GGUF) and because tests and converters want to feed weights from memory.
pub trait WeightSource: Send + Sync {
    /// A human-readable name of the source (its path), used in error messages.
    fn source_name(&self) -> String;
    /// All tensor names, in Hugging Face naming, sorted.
    fn tensor_names(&self) -> Vec<String>;
    /// All tensor names in the order the files store them (for safetensors: shard files by
    /// name, tensors by name within each, the order llama.cpp's converter writes them in).
    /// Sorted by default.
    fn storage_order(&self) -> Vec<String> {
        self.tensor_names()
    }
    /// Shape and dtype of a tensor, or `None` if it is absent.
    fn tensor_info(&self, name: &str) -> Option<TensorInfo>;
    /// The tensor's values as f32, row-major in Hugging Face layout; quantized and half
    /// precision tensors are converted. Fails with [`Error::MissingTensor`](crate::Error::MissingTensor)
    /// if absent.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>>;

    /// The tensor as stored, without conversion (GGML blocks stay blocks; a memory-mapped file
    /// is not copied), in Hugging Face shape; rows may be in llama.cpp's rotary order (see
    /// [`RowOrder`]). The default, for sources without stored bytes, converts
    /// [`WeightSource::read_f32`] into an f32 tensor of its own.
    fn read_raw(&self, name: &str) -> Result<RawTensor> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| crate::Error::MissingTensor {
                source_name: self.source_name(),
                name: name.to_owned(),
            })?;
        Ok(RawTensor::from_f32(info.shape, &self.read_f32(name)?))
    }
}

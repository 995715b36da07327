//! GGUF, the single-file container of llama.cpp: a pure Rust reader, GGML dequantization and the
//! tokenizer embedded in the metadata.
//!
//! - [`GgufFile`] parses a GGUF v2/v3 file (memory-mapped, or from bytes) into typed metadata
//!   ([`GgufValue`]) and tensor descriptions ([`GgufTensorInfo`]). Every count, length and offset
//!   of the header is checked against the file before anything is allocated or sliced, so a
//!   truncated or corrupted file is an [`Error::Format`](crate::Error::Format), never a panic.
//! - [`GgmlType`] names the GGML storage types; [`dequantize`] turns F32, F16, BF16, Q8_0, Q4_0,
//!   Q4_1, Q5_0, Q5_1, Q4_K and Q6_K blocks into `f32`, bit-exact with ggml and gguf-py.
//! - [`tokenizer_from_gguf`] rebuilds a Hugging Face `tokenizers::Tokenizer` from the
//!   `tokenizer.ggml.*` keys of byte-level BPE (`gpt2`) vocabularies.
//!
//! Tensors keep GGUF's conventions here (dims in `ne` order, `ne[0]` fastest, llama.cpp's rotary
//! row order for Llama Q/K); [`GgufWeights`](crate::weights::GgufWeights) maps them to Hugging
//! Face names and layout.
//!
//! ```no_run
//! # fn main() -> slm_core::Result<()> {
//! use slm_core::gguf::GgufFile;
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let layers = file.get_u32("llama.block_count")?;
//! let embed = file.tensor_f32("token_embd.weight")?;
//! let tokenizer = slm_core::gguf::tokenizer_from_gguf(&file)?;
//! # let _ = (layers, embed, tokenizer);
//! # Ok(())
//! # }
//! ```

mod quants;
mod read;
mod tokenizer;

pub use self::quants::{GgmlType, dequantize, dequantize_into};
pub use self::read::{
    GgufFile, GgufTensorInfo, GgufValue, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_METADATA_KV,
    MAX_N_DIMS, MAX_STRING_LEN, MAX_TENSORS,
};
pub use self::tokenizer::tokenizer_from_gguf;

//! The decoder, its cache, and how its parameters map onto checkpoint tensors.

mod decoder;
pub mod hf_names;
mod kv_cache;

pub use decoder::{Attention, Decoder, DecoderLayer, Mlp, Rope, repeat_kv};
pub use kv_cache::KvCache;

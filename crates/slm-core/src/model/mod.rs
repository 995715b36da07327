//! The decoder, its cache, and how its parameters map onto checkpoint tensors.

mod decoder;
pub mod hf_names;
mod kv_cache;
pub mod linear;

pub use decoder::{Attention, Decoder, DecoderLayer, Mlp, Rope, repeat_kv};
pub use kv_cache::KvCache;
pub use linear::{LoraAdapter, Projection};

//! The decoder, its cache, how its parameters map onto checkpoint tensors, and growing its
//! vocabulary ([`resize_vocab`]).

mod decoder;
pub mod hf_names;
mod kv_cache;
mod resize;

pub use decoder::{Attention, Decoder, DecoderLayer, Mlp, Rope, repeat_kv};
pub use kv_cache::KvCache;
pub use resize::{NewRow, resize_vocab};

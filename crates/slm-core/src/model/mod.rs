//! The decoder, its cache, how its parameters map onto checkpoint tensors, and growing its
//! vocabulary ([`resize_vocab`]).

mod decoder;
pub mod hf_names;
mod kv_cache;
pub mod linear;
mod resize;

pub use decoder::{Attention, Decoder, DecoderLayer, Mlp, Rope, repeat_kv};
pub use kv_cache::KvCache;
pub use linear::{LoraAdapter, Projection};
pub use resize::{NewRow, resize_vocab};

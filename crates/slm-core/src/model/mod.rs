//! The decoder, its cache, how its parameters map onto checkpoint tensors, growing its
//! vocabulary ([`resize_vocab`]) and narrowing its layers ([`narrow`]).

pub(crate) mod decoder;
pub mod hf_names;
mod kv_cache;
pub mod linear;
mod narrow;
mod resize;

pub use decoder::{Attention, Decoder, DecoderLayer, Mlp, Rope, repeat_kv};
pub use kv_cache::KvCache;
pub use linear::{LoraAdapter, Projection, capture_input_sq_norms};
pub use narrow::{NarrowImportance, Narrowing, narrow};
pub use resize::{NewRow, resize_vocab};

//! The CPU fast path: [`FastDecoder`] runs the one decoder of slm (the same [`ModelConfig`],
//! weight names and checks as the burn [`Decoder`](crate::model::Decoder)) on weights kept in
//! their stored form, GGUF blocks straight from the file's memory map, with slm-ggml's SIMD
//! kernels, over a paged key/value pool ([`KvPool`]). It implements [`CausalLm`] (drop-in for
//! generation, scoring, perplexity) and the batched step API [`BatchedLm`] that a serving engine
//! drives: many sequences per step, each weight row read once per step.
//!
//! Burn stays the training and any-device path; this is the path for running GGUF models on a
//! CPU. The two are tested against each other on every fixture model.
//!
//! [`ModelConfig`]: crate::config::ModelConfig
//! [`CausalLm`]: crate::causal_lm::CausalLm
//! [`BatchedLm`]: crate::step::BatchedLm

pub mod adapter;
mod decoder;
mod kv_pool;

pub use decoder::{FastCache, FastDecoder, FastDecoderConfig, Profile};
pub use kv_pool::{DEFAULT_BLOCK_SIZE, KvPool};
pub use slm_ggml::dot::Precision;

//! # slm-core
//!
//! The foundation of `slm`: model configuration, one Llama-family [`Decoder`](model::Decoder)
//! (Llama 2/3, SmolLM, Qwen2, Phi-3 by config), Hugging Face safetensors and GGUF I/O, the
//! tokenizer with chat templates, and the [`CausalLm`] trait every other slm crate programs
//! against.
//!
//! Reading a model is two steps: [`Checkpoint::open`] parses the config and maps the weights
//! (a Hugging Face directory or a `.gguf` file), [`Checkpoint::load_decoder`] builds the burn
//! module on a device. Writing goes the other way with [`save_hf_dir`].
//!
//! On the CPU, [`fast::FastDecoder`] runs the same model (same config, names and checks) on the
//! weights as stored, GGUF blocks straight from the memory map, over a paged key/value pool; it
//! and every [`CausalLm`] serve the batched step API of [`step::BatchedLm`] that an engine drives.
//!
//! ```
//! use slm_core::prelude::*;
//! use slm_core::config::{RopeScaling};
//!
//! # fn main() -> slm_core::Result<()> {
//! // A tiny random model, built in memory.
//! let config = ModelConfig {
//!     architecture: Architecture::Llama,
//!     vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2,
//!     num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4, rms_norm_eps: 1e-5,
//!     rope_theta: 10_000.0, rope_scaling: RopeScaling::Default, partial_rotary_factor: 1.0, max_position_embeddings: 64,
//!     sliding_window: None, max_window_layers: None, tie_word_embeddings: true, attention_bias: false,
//!     o_proj_bias: false, mlp_bias: false, bos_token_id: Some(0), eos_token_ids: vec![1],
//!     pad_token_id: None, torch_dtype: "float32".into(),
//! };
//! config.validate()?;
//! let model = config.init(&Device::flex());
//!
//! // Prefill three tokens, then decode one more through the KV cache.
//! let mut cache = model.new_cache();
//! let logits = model.forward(&TokenBatch::single(vec![0, 5, 7], LogitsScope::All), &mut cache)?;
//! assert_eq!((logits.positions, logits.vocab), (3, 32));
//! let next = model.forward(&TokenBatch::single(vec![9], LogitsScope::Last), &mut cache)?;
//! assert_eq!(next.last(0).len(), 32);
//! # Ok(()) }
//! ```
//!
//! # Features
//! | feature | default | what it enables |
//! |---|---|---|
//! | `flex` | yes | burn's flex CPU backend (`Device::flex()`) |
//! | `ndarray` | no | burn's (deprecated) ndarray backend, for comparisons |
//! | `cuda` | no | burn's CUDA backend (`Device::cuda(0)`); needs burn's LLVM bundle to build |
//!
//! The `slm` command line (`slm info`, `tokenize`, `logits`, `generate`, `convert`) is a thin
//! layer over this crate.

pub mod cache;
pub mod causal_lm;
pub mod checkpoint;
pub mod config;
mod error;
pub mod fast;
pub mod gguf;
pub mod io;
pub mod model;
pub mod peft;
pub mod prelude;
pub mod step;
pub mod tokenizer;
pub mod weights;

pub use burn;
pub use causal_lm::{CausalLm, Logits, LogitsScope, TokenBatch};
pub use checkpoint::{Checkpoint, ModelFormat, ModelInfo, SaveDtype, save_hf_dir};
pub use config::{Architecture, ModelConfig};
pub use error::{Error, Result};

//! # slm-infer
//!
//! Generation and serving of small language models.
//!
//! - [`sampling`]: the one sampler (temperature, top-k, top-p, min-p, repetition / presence /
//!   frequency penalties, logit bias, seeds, logprobs); [`stop`] strings over streamed text and
//!   [`detokenize`]d deltas that never split a character; [`decoding`]: one sequence's state,
//!   shared by every loop.
//! - [`constraint`]: outputs that always match a choice, regex, JSON schema or grammar
//!   (llguidance masks over the vocabulary, compiled once per distinct constraint).
//! - [`generate`] / [`generate_text`]: one sequence over any [`slm_core::CausalLm`].
//! - [`engine`]: continuous batching over any [`slm_core::step::BatchedLm`] (the CPU fast path,
//!   or the burn decoder through `PerSequence`): iteration-level scheduling, chunked prefill,
//!   preemption, prefix sharing, cancellation and per-request metrics, as a handle usable from
//!   threads and async code.
//! - Label scoring ([`score_labels`]) and llama.cpp-compatible [`perplexity`].
//!
//! ```
//! use slm_core::prelude::*;
//! use slm_core::config::RopeScaling;
//! use slm_infer::prelude::*;
//!
//! # fn main() -> slm_infer::Result<()> {
//! let config = ModelConfig {
//!     architecture: Architecture::Llama,
//!     vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
//!     num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, rms_norm_eps: 1e-5,
//!     rope_theta: 10_000.0, rope_scaling: RopeScaling::Default, partial_rotary_factor: 1.0, max_position_embeddings: 64,
//!     sliding_window: None, max_window_layers: None, tie_word_embeddings: false, attention_bias: false,
//!     o_proj_bias: false, mlp_bias: false, bos_token_id: Some(0), eos_token_ids: vec![1],
//!     pad_token_id: None, torch_dtype: "float32".into(),
//! };
//! let model = config.init(&Device::flex());
//! let settings = GenerationConfig { max_new_tokens: 5, ..Default::default() };
//! let out = generate(&model, &[0, 3, 4], &settings, false)?;
//! assert!(out.ids.len() <= 5);
//! # Ok(()) }
//! ```

pub mod classify;
pub mod constraint;
pub mod decoding;
pub mod detokenize;
pub mod engine;
mod error;
mod generate;
pub mod perplexity;
pub mod sampling;
#[cfg(feature = "server")]
pub mod server;
pub mod stop;

pub use classify::{ClassificationReport, LabelMetrics, LabelScores, score_labels};
pub use decoding::{DEFAULT_MAX_NEW_TOKENS, Decoding, FinishReason, GenerationConfig};
pub use error::{Error, Result};
pub use generate::{Generation, generate, generate_text};
pub use perplexity::{Perplexity, PerplexityConfig, perplexity};
pub use sampling::{Sampler, SamplingParams, TokenLogprob};

/// A tiny random Llama config for unit tests (vocabulary 40, 2 layers, 4 heads over 2 KV heads).
#[cfg(test)]
pub(crate) mod test_support {
    use slm_core::config::RopeScaling;
    use slm_core::{Architecture, ModelConfig};

    pub(crate) fn tiny_config() -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: 40,
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 4,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::Default,
            partial_rotary_factor: 1.0,
            max_position_embeddings: 64,
            sliding_window: None,
            max_window_layers: None,
            tie_word_embeddings: false,
            attention_bias: false,
            o_proj_bias: false,
            mlp_bias: false,
            bos_token_id: Some(0),
            eos_token_ids: vec![1],
            pad_token_id: None,
            torch_dtype: "float32".into(),
        }
    }
}

/// The names most programs need.
pub mod prelude {
    pub use crate::decoding::{FinishReason, GenerationConfig};
    pub use crate::engine::{Engine, EngineConfig, Request};
    pub use crate::error::{Error, Result};
    pub use crate::generate::{Generation, generate, generate_text};
    pub use crate::sampling::{Sampler, SamplingParams};
}

//! # slm-infer
//!
//! Generation over any [`slm_core::CausalLm`]: greedy or seeded temperature / top-k / top-p
//! sampling, prefill once and decode through the model's KV cache; label scoring
//! ([`score_labels`]) and llama.cpp-compatible [`perplexity`]. Continuous batching and the
//! OpenAI-compatible server come later in this crate.
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
//!     rope_theta: 10_000.0, rope_scaling: RopeScaling::Default, max_position_embeddings: 64,
//!     sliding_window: None, tie_word_embeddings: false, attention_bias: false,
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
mod error;
mod generate;
pub mod perplexity;
pub mod sampling;

pub use classify::{ClassificationReport, LabelMetrics, LabelScores, score_labels};
pub use error::{Error, Result};
pub use generate::{DEFAULT_MAX_NEW_TOKENS, Generation, GenerationConfig, generate};
pub use perplexity::{Perplexity, PerplexityConfig, perplexity};
pub use sampling::{Sampler, Sampling};

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
            max_position_embeddings: 64,
            sliding_window: None,
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
    pub use crate::error::{Error, Result};
    pub use crate::generate::{Generation, GenerationConfig, generate};
    pub use crate::sampling::{Sampler, Sampling};
}

//! Model configuration: [`ModelConfig`] is the resolved, validated description of a decoder,
//! read from a Hugging Face `config.json` ([`hf`]) or from GGUF metadata ([`gguf`]).

pub mod gguf;
pub mod hf;
mod rope;

pub use rope::{RopeScaling, Rotary};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The model families the one [`Decoder`](crate::model::Decoder) implements. They differ only in
/// config fields and in how tensors are named on disk, never in code paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// `LlamaForCausalLM`: Llama 2/3, SmolLM, Mistral-style dense decoders.
    Llama,
    /// `Qwen2ForCausalLM`: Llama plus biases on the q/k/v projections.
    Qwen2,
    /// `Phi3ForCausalLM`: Llama with fused `qkv_proj` and `gate_up_proj` on disk.
    Phi3,
    /// `MistralForCausalLM`: Llama's layout with an optional sliding window (llama.cpp converts
    /// it to `llama`).
    Mistral,
}

impl Architecture {
    /// The transformers class name (`architectures[0]` in config.json).
    pub fn hf_class(&self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Phi3 => "Phi3ForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
        }
    }

    /// The transformers `model_type`.
    pub fn model_type(&self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Phi3 => "phi3",
            Architecture::Mistral => "mistral",
        }
    }

    /// The `general.architecture` llama.cpp writes for it (Mistral is `llama`).
    pub fn gguf_name(&self) -> &'static str {
        match self {
            Architecture::Mistral => "llama",
            other => other.model_type(),
        }
    }

    /// Whether llama.cpp stores its q/k rows permuted for interleaved rotary pairs (it does
    /// for its `llama` architecture).
    pub fn gguf_permutes_qk(&self) -> bool {
        self.gguf_name() == "llama"
    }

    /// Parses a transformers class name.
    pub fn from_hf_class(name: &str) -> Result<Self> {
        match name {
            "LlamaForCausalLM" => Ok(Architecture::Llama),
            "Qwen2ForCausalLM" => Ok(Architecture::Qwen2),
            "Phi3ForCausalLM" => Ok(Architecture::Phi3),
            "MistralForCausalLM" => Ok(Architecture::Mistral),
            other => Err(Error::UnsupportedArchitecture(format!("`{other}`"))),
        }
    }
}

/// A resolved decoder configuration. Field names follow transformers' `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which model family.
    pub architecture: Architecture,
    /// Vocabulary size (rows of the embedding and of the LM head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// The fraction of each head's dimensions that rotate (Phi-4-mini: 0.75); the rest pass
    /// through unrotated.
    #[serde(default = "full_rotary")]
    pub partial_rotary_factor: f64,
    /// Longest supported sequence.
    pub max_position_embeddings: usize,
    /// Sliding-window attention span (Mistral, Phi-3, Qwen2 with `use_sliding_window`): a query
    /// sees itself and the `sliding_window - 1` keys before it; `None` for full attention.
    pub sliding_window: Option<usize>,
    /// The first layer the window applies to (Qwen2's `max_window_layers`: layers below it
    /// attend fully); `None` when every layer slides.
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections have biases (Qwen2).
    pub attention_bias: bool,
    /// Whether the o_proj has a bias (Llama's `attention_bias` covers o_proj too).
    pub o_proj_bias: bool,
    /// Whether the MLP projections have biases.
    pub mlp_bias: bool,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (generation stops at any of them).
    pub eos_token_ids: Vec<u32>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
    /// The dtype the checkpoint was saved in (`float32`, `bfloat16`, ...), informational.
    pub torch_dtype: String,
}

fn full_rotary() -> f64 {
    1.0
}

impl ModelConfig {
    /// How many leading dimensions of each head rotate: `int(head_dim * partial_rotary_factor)`,
    /// as transformers computes it.
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.partial_rotary_factor) as usize
    }

    /// The sliding window of layer `layer` (`None`: it attends to every earlier token).
    pub fn sliding_window_at(&self, layer: usize) -> Option<usize> {
        match self.max_window_layers {
            Some(first) if layer < first => None,
            _ => self.sliding_window,
        }
    }

    /// Checks the invariants the decoder relies on, so that burn's `init` never panics on a
    /// config read from a file, and bounds every size a config or GGUF header states.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        // Upper bounds are generous (several times the largest open models' values) and keep a
        // lying file from making the loader allocate petabytes before the weights are compared
        // with it.
        for (name, v, limit) in [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("hidden_size", self.hidden_size, 1 << 18),
            ("intermediate_size", self.intermediate_size, 1 << 20),
            ("num_hidden_layers", self.num_hidden_layers, 1 << 12),
            ("num_attention_heads", self.num_attention_heads, 1 << 12),
            ("num_key_value_heads", self.num_key_value_heads, 1 << 12),
            ("head_dim", self.head_dim, 1 << 12),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 27,
            ),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
            if v > limit {
                return bad(format!(
                    "{name} = {v} is beyond any real model (at most {limit})"
                ));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return bad(format!(
                "rms_norm_eps ({}) must be positive",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return bad(format!("rope_theta ({}) must be positive", self.rope_theta));
        }
        let rotary = self.rotary_dim();
        if !(self.partial_rotary_factor > 0.0
            && self.partial_rotary_factor <= 1.0
            && rotary >= 2
            && rotary.is_multiple_of(2))
        {
            return bad(format!(
                "partial_rotary_factor {} gives {rotary} rotated dimensions of {}; it must be in (0, 1] and give an even number of at least 2",
                self.partial_rotary_factor, self.head_dim
            ));
        }
        self.rope_scaling.validate(rotary)?;
        if self.sliding_window == Some(0) {
            return bad("sliding_window must be positive".into());
        }
        for id in self
            .bos_token_id
            .iter()
            .chain(&self.eos_token_ids)
            .chain(&self.pad_token_id)
        {
            if *id as usize >= self.vocab_size {
                return bad(format!(
                    "special token id {id} is outside the vocabulary ({})",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// How many positions a sequence may hold: `max_position_embeddings`, extended by the
    /// rope scaling's factor where the scaling exists to run longer than the config states
    /// (`linear` and `dynamic` multiply it; YaRN runs `factor` times its original context), as
    /// vLLM derives `max_model_len`. LongRoPE and llama3 configs already state the long context.
    pub fn context_length(&self) -> usize {
        let extended = match &self.rope_scaling {
            RopeScaling::Linear { factor } | RopeScaling::Dynamic { factor } => {
                (self.max_position_embeddings as f64 * factor) as usize
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                ..
            } => (*original_max_position_embeddings as f64 * factor) as usize,
            _ => 0,
        };
        self.max_position_embeddings.max(extended)
    }

    /// Number of query groups sharing one key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Total number of parameters of the decoder (tied embeddings counted once).
    pub fn num_parameters(&self) -> usize {
        let (d, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let attn = d * q
            + 2 * d * kv
            + q * d
            + if self.attention_bias { q + 2 * kv } else { 0 }
            + if self.o_proj_bias { d } else { 0 };
        let mlp = 3 * d * f + if self.mlp_bias { 2 * f + d } else { 0 };
        let layer = attn + mlp + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.num_hidden_layers * layer + d + head
    }
}

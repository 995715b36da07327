//! [`ModelConfig`] from GGUF metadata (`general.architecture` = `llama` or `qwen2`).

use super::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::weights::{GgufWeights, WeightSource};

/// Reads the decoder configuration from a GGUF file's metadata and tensor shapes.
pub fn config_from_gguf(weights: &GgufWeights) -> Result<ModelConfig> {
    let file: &GgufFile = weights.file();
    let arch_name = file.get_str("general.architecture")?.to_string();
    let architecture = match arch_name.as_str() {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        other => return Err(Error::UnsupportedArchitecture(format!("GGUF `{other}`"))),
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let u = |k: &str| file.get_u32(&key(k)).map(|v| v as usize);
    let hidden_size = u("embedding_length")?;
    let num_attention_heads = u("attention.head_count")?;
    if num_attention_heads == 0 {
        return Err(Error::InvalidConfig(
            "attention.head_count must be positive".into(),
        ));
    }
    let head_dim = u("attention.key_length")
        .or_else(|_| u("rope.dimension_count"))
        .unwrap_or(hidden_size / num_attention_heads);
    if let Ok(kind) = file.get_str(&key("rope.scaling.type"))
        && kind != "none"
    {
        return Err(Error::Unsupported {
            what: "GGUF rope scaling",
            value: kind.to_string(),
        });
    }
    if file.tensor_info("rope_freqs.weight").is_some() {
        return Err(Error::Unsupported {
            what: "GGUF rope_freqs tensor (llama3 rope scaling)",
            value: "rope_freqs.weight".into(),
        });
    }
    let vocab_size = match weights.tensor_info("model.embed_tokens.weight") {
        Some(t) if t.shape.len() == 2 => t.shape[0],
        _ => {
            return Err(Error::MissingTensor {
                source_name: weights.source_name(),
                name: "token_embd.weight".into(),
            });
        }
    };
    let id = |k: &str| file.get_u32(k).ok();
    let cfg = ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size: u("feed_forward_length")?,
        num_hidden_layers: u("block_count")?,
        num_attention_heads,
        num_key_value_heads: u("attention.head_count_kv").unwrap_or(num_attention_heads),
        head_dim,
        rms_norm_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
        rope_theta: file
            .get_f32(&key("rope.freq_base"))
            .map(f64::from)
            .unwrap_or(10_000.0),
        rope_scaling: RopeScaling::Default,
        partial_rotary_factor: 1.0,
        max_position_embeddings: u("context_length")?,
        sliding_window: None,
        max_window_layers: None,
        tie_word_embeddings: weights.tensor_info("lm_head.weight").is_none(),
        attention_bias: architecture == Architecture::Qwen2,
        o_proj_bias: false,
        mlp_bias: false,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_ids: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
        pad_token_id: id("tokenizer.ggml.padding_token_id"),
        torch_dtype: "float32".into(),
    };
    cfg.validate()?;
    Ok(cfg)
}

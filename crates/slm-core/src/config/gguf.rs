//! [`ModelConfig`] from GGUF metadata: `general.architecture` `llama` (and `mistral`, which
//! llama.cpp's converter writes as `llama`), `qwen2` and `phi3`, with every rope setting
//! `convert_hf_to_gguf.py` writes: `rope.scaling.type` `linear` / `yarn` (factor, original
//! context, YaRN betas and attention factor), the older `rope.scale_linear`, Llama 3.x's
//! `rope_freqs.weight` factors, Phi-3's LongRoPE (`rope_factors_long` / `rope_factors_short`
//! tensors, `rope.scaling.attn_factor`, `rope.scaling.original_context_length`), partial rotary
//! (`rope.dimension_count` below the head size), and `attention.sliding_window`.

use super::rope::{longrope_attention_factor, yarn_mscale};
use super::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::weights::{GgufWeights, WeightSource};

/// Reads the decoder configuration from a GGUF file's metadata and tensor shapes.
///
/// # Errors
/// [`Error::UnsupportedArchitecture`] for other architectures, [`Error::MissingField`] for an
/// absent required key, [`Error::Unsupported`] for a rope scaling slm does not run (such as
/// partial rotary on llama.cpp's interleaved q/k rows), [`Error::InvalidConfig`] for values
/// that break the decoder's invariants.
pub fn config_from_gguf(weights: &GgufWeights) -> Result<ModelConfig> {
    let file: &GgufFile = weights.file();
    let arch_name = file.get_str("general.architecture")?.to_string();
    let architecture = match arch_name.as_str() {
        "llama" | "mistral" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "phi3" => Architecture::Phi3,
        other => return Err(Error::UnsupportedArchitecture(format!("GGUF `{other}`"))),
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let u = |k: &str| file.get_u32(&key(k)).map(|v| v as usize);
    let opt_u = |k: &str| file.get(&key(k)).map(|_| u(k)).transpose();
    let opt_f = |k: &str| file.get(&key(k)).map(|_| file.get_f64(&key(k))).transpose();
    let hidden_size = u("embedding_length")?;
    let num_attention_heads = u("attention.head_count")?;
    if num_attention_heads == 0 {
        return Err(Error::InvalidConfig(
            "attention.head_count must be positive".into(),
        ));
    }
    let rope_dims = opt_u("rope.dimension_count")?;
    // Phi-3's `rope.dimension_count` is the rotated part of a head (Phi-4-mini rotates 3/4),
    // Llama's has always been the head size.
    let head_dim = match (opt_u("attention.key_length")?, architecture) {
        (Some(k), _) => k,
        (None, Architecture::Phi3) => hidden_size / num_attention_heads,
        (None, _) => rope_dims.unwrap_or(hidden_size / num_attention_heads),
    };
    let rotary_dim = rope_dims.unwrap_or(head_dim);
    let partial_rotary_factor = partial_factor(rotary_dim, head_dim);
    if rotary_dim != head_dim && architecture == Architecture::Llama {
        return Err(Error::Unsupported {
            what: "partial rotary in a GGUF with llama.cpp's interleaved q/k rows",
            value: format!("rope.dimension_count {rotary_dim} of head size {head_dim}"),
        });
    }
    let rope_theta = opt_f("rope.freq_base")?.unwrap_or(10_000.0);
    let max_position_embeddings = u("context_length")?;
    let original = || {
        u("rope.scaling.original_context_length").or_else(|_| {
            if arch_name == "phi3" {
                Ok(max_position_embeddings)
            } else {
                Err(file_missing(
                    file,
                    &key("rope.scaling.original_context_length"),
                ))
            }
        })
    };
    let factor = || -> Result<f64> {
        opt_f("rope.scaling.factor")?.ok_or_else(|| file_missing(file, &key("rope.scaling.factor")))
    };
    let kind = match file.get(&key("rope.scaling.type")) {
        Some(_) => file.get_str(&key("rope.scaling.type"))?.to_string(),
        None => "none".to_string(),
    };
    let mut rope_scaling = match kind.as_str() {
        "none" => match opt_f("rope.scale_linear")? {
            Some(f) if f != 1.0 => RopeScaling::Linear { factor: f },
            _ => RopeScaling::Default,
        },
        "linear" => RopeScaling::Linear { factor: factor()? },
        "yarn" => {
            let factor = factor()?;
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original()?,
                beta_fast: opt_f("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                beta_slow: opt_f("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                attention_factor: opt_f("rope.scaling.yarn_attn_factor")?
                    .unwrap_or_else(|| yarn_mscale(factor, 1.0)),
                truncate: true,
            }
        }
        // Phi-3 writes no type: its LongRoPE is the factor tensors below.
        "longrope" => RopeScaling::Default,
        other => {
            return Err(Error::Unsupported {
                what: "GGUF rope scaling",
                value: other.to_string(),
            });
        }
    };
    let factors = |name: &str| -> Result<Option<Vec<f32>>> {
        if file.tensor_info(name).is_none() {
            return Ok(None);
        }
        let v = file.tensor_f32(name)?;
        if v.len() != rotary_dim / 2 {
            return Err(Error::InvalidConfig(format!(
                "{name} holds {} factors; {rotary_dim} rotated dimensions need {}",
                v.len(),
                rotary_dim / 2
            )));
        }
        Ok(Some(v))
    };
    match (
        factors("rope_factors_long.weight")?,
        factors("rope_factors_short.weight")?,
    ) {
        (Some(long_factor), Some(short_factor)) => {
            let original = original()?;
            let scale = max_position_embeddings as f64 / original as f64;
            rope_scaling = RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings: original,
                attention_factor: opt_f("rope.scaling.attn_factor")?
                    .unwrap_or_else(|| longrope_attention_factor(scale, original)),
            };
        }
        (None, None) => {}
        _ => {
            return Err(Error::InvalidConfig(
                "a GGUF needs both rope_factors_long.weight and rope_factors_short.weight, or neither".into(),
            ));
        }
    }
    if let Some(freqs) = factors("rope_freqs.weight")? {
        if rope_scaling != RopeScaling::Default {
            return Err(Error::InvalidConfig(format!(
                "rope_freqs.weight alongside rope scaling `{kind}`"
            )));
        }
        // Llama 3.x: recover the llama3 parameters the factors were made from (so config.json
        // and GGUF export write them back), else apply the factors as stored.
        rope_scaling = RopeScaling::llama3_from_factors(&freqs, rope_theta, rotary_dim)
            .unwrap_or(RopeScaling::Factors { factors: freqs });
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
        num_key_value_heads: opt_u("attention.head_count_kv")?.unwrap_or(num_attention_heads),
        head_dim,
        rms_norm_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
        rope_theta,
        rope_scaling,
        partial_rotary_factor,
        max_position_embeddings,
        // 0 is llama.cpp's "no window" (Phi-4-mini).
        sliding_window: opt_u("attention.sliding_window")?.filter(|&w| w > 0),
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

/// The `partial_rotary_factor` whose `int(head_dim * factor)` is `rotary_dim` (the plain
/// quotient can fall an ulp short of it).
fn partial_factor(rotary_dim: usize, head_dim: usize) -> f64 {
    if head_dim == 0 || rotary_dim == head_dim {
        return 1.0;
    }
    let mut factor = rotary_dim as f64 / head_dim as f64;
    for _ in 0..4 {
        if (head_dim as f64 * factor) as usize >= rotary_dim {
            break;
        }
        factor = f64::from_bits(factor.to_bits() + 1);
    }
    factor
}

fn file_missing(file: &GgufFile, key: &str) -> Error {
    Error::MissingField {
        source_name: file.source_name(),
        field: key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::partial_factor;

    #[test]
    fn partial_factor_gives_back_the_rotated_dimensions() {
        for (rd, hd) in [(12, 16), (96, 128), (24, 80), (29, 100), (32, 96), (64, 64)] {
            let f = partial_factor(rd, hd);
            assert_eq!((hd as f64 * f) as usize, rd, "{rd}/{hd}");
        }
    }
}

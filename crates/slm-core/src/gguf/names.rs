//! llama.cpp's tensor names and layouts for Llama-family models, both ways: GGUF names to
//! Hugging Face names (the loader, [`GgufWeights`](crate::weights::GgufWeights)) and back (the
//! writer), and the rotary row permutation `convert_hf_to_gguf.py` applies to Llama's Q/K.

use crate::error::{Error, Result};

/// GGUF tensors that are rope settings, not weights: skipped and listed by
/// [`GgufWeights::unmapped`], read into the config instead (`rope_freqs.weight`: Llama 3.x's
/// llama3 factors; `rope_factors_long` / `rope_factors_short`: Phi-3's LongRoPE).
pub(crate) const SKIPPED: &[&str] = &[
    "rope_freqs.weight",
    "rope_factors_long.weight",
    "rope_factors_short.weight",
];

/// Per-layer GGUF name stems and their Hugging Face module paths under `model.layers.N.`.
pub(crate) const LAYER_MAP: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    // Phi-3's fused [q; k; v] (its `ffn_up` holds [gate; up], see `GgufWeights`).
    ("attn_qkv", "self_attn.qkv_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// What a GGUF tensor becomes.
pub(crate) enum Mapped {
    /// A Hugging Face name.
    Hf(String),
    /// Not a weight: skipped.
    Skip,
    /// Unknown: kept under its GGUF name.
    Unknown,
}

/// The Hugging Face name of a GGUF tensor of a `llama`/`qwen2`/`phi3` model.
pub(crate) fn hf_name(gguf: &str) -> Mapped {
    if SKIPPED.contains(&gguf) {
        return Mapped::Skip;
    }
    let global = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(hf) = global {
        return Mapped::Hf(hf.to_owned());
    }
    let Some(rest) = gguf.strip_prefix("blk.") else {
        return Mapped::Unknown;
    };
    let mut parts = rest.splitn(3, '.');
    let (Some(layer), Some(stem), Some(kind)) = (parts.next(), parts.next(), parts.next()) else {
        return Mapped::Unknown;
    };
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return Mapped::Unknown;
    }
    match LAYER_MAP.iter().find(|(s, _)| *s == stem) {
        Some((_, hf)) if kind == "weight" || kind == "bias" => {
            Mapped::Hf(format!("model.layers.{layer}.{hf}.{kind}"))
        }
        _ => Mapped::Unknown,
    }
}

/// The GGUF name of a Hugging Face tensor (`model.layers.0.mlp.down_proj.weight` ->
/// `blk.0.ffn_down.weight`; the inverse of the loader's mapping), or `None` for names llama.cpp
/// has no tensor for.
pub fn gguf_name(hf: &str) -> Option<String> {
    let global = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(g) = global {
        return Some(g.to_owned());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (module, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let stem = LAYER_MAP.iter().find(|(_, m)| *m == module)?.0;
    Some(format!("blk.{layer}.{stem}.{kind}"))
}

/// The heads a Llama tensor's rows are permuted by (llama.cpp's rotary layout): the query heads
/// for `q_proj` (weight and bias), the KV heads for `k_proj`, `None` for every other tensor.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `what` when the rows are not a multiple of twice the heads.
pub(crate) fn rotary_heads(
    hf: &str,
    rows: usize,
    n_head: usize,
    n_kv_head: usize,
    what: &dyn Fn() -> String,
) -> Result<Option<usize>> {
    let heads = if hf.ends_with("self_attn.q_proj.weight") || hf.ends_with("self_attn.q_proj.bias")
    {
        n_head
    } else if hf.ends_with("self_attn.k_proj.weight") || hf.ends_with("self_attn.k_proj.bias") {
        n_kv_head
    } else {
        return Ok(None);
    };
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(Error::InvalidConfig(format!(
            "{} has {rows} rows, not a multiple of 2 x {heads} heads",
            what()
        )));
    }
    Ok(Some(heads))
}

/// llama.cpp's rotary permutation of a `[rows, cols]` matrix (`LlamaModel.permute` of the
/// converter: `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2)`): GGUF row
/// `h*hd + 2*j + i` takes Hugging Face row `h*hd + i*hd/2 + j`.
pub(crate) fn permute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let half = rows / n_head / 2;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..n_head {
        for j in 0..half {
            for i in 0..2 {
                let src = ((h * 2 + i) * half + j) * cols;
                out.extend_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

/// Undoes llama.cpp's rotary permutation of the rows of a `[rows, cols]` matrix:
/// GGUF row `h*hd + 2*j + i` holds Hugging Face row `h*hd + i*hd/2 + j`.
pub(crate) fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                let src = (h * head_dim + 2 * j + i) * cols;
                let dst = (h * head_dim + i * half + j) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        for (rows, cols, n_head) in [(64, 3, 4), (32, 1, 2), (48, 5, 3), (8, 2, 1)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let p = permute_rows(&w, rows, cols, n_head);
            assert_ne!(p, w);
            assert_eq!(
                unpermute_rows(&p, rows, cols, n_head),
                w,
                "{rows}x{cols}/{n_head}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for hf in [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.12.self_attn.k_proj.bias",
            "model.layers.3.mlp.down_proj.weight",
            "model.layers.29.post_attention_layernorm.weight",
        ] {
            let g = gguf_name(hf).unwrap_or_else(|| panic!("{hf}"));
            assert!(
                matches!(hf_name(&g), Mapped::Hf(back) if back == hf),
                "{hf} -> {g}"
            );
        }
        for odd in [
            "model.layers.x.mlp.up_proj.weight",
            "model.layers.0.mlp.up_proj.scales",
            "model.layers.0.self_attn.rotary_emb.inv_freq",
            "transformer.wte.weight",
        ] {
            assert_eq!(gguf_name(odd), None, "{odd}");
        }
    }
}

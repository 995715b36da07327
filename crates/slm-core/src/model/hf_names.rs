//! Where each decoder parameter lives in a Hugging Face checkpoint.
//!
//! The decoder always sees the unfused Llama layout (`q_proj`, `k_proj`, `v_proj`, `gate_proj`,
//! `up_proj`). Phi-3 checkpoints store `qkv_proj` and `gate_up_proj` fused along the output
//! rows; [`disk_layout`] describes that, [`bind`] splits on load and [`to_checkpoint`] fuses on
//! save, so the names, shapes and order transformers expects round-trip exactly.

use std::collections::{BTreeSet, HashMap};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::weights::WeightSource;

/// A named f32 tensor on the host: name, shape, row-major values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// One tensor as stored on disk, made of one or more canonical parameters stacked by rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskTensor {
    /// The on-disk name (`model.layers.0.self_attn.qkv_proj.weight`).
    pub name: String,
    /// The on-disk shape, `[out, in]` for matrices.
    pub shape: Vec<usize>,
    /// The canonical parameters it holds, in row order, with their row counts.
    pub parts: Vec<(String, usize)>,
}

impl DiskTensor {
    fn single(name: String, shape: Vec<usize>) -> Self {
        let rows = shape[0];
        Self {
            parts: vec![(name.clone(), rows)],
            name,
            shape,
        }
    }
}

/// The tensors a checkpoint of `config` holds, in transformers' naming and layout.
pub fn disk_layout(config: &ModelConfig) -> Vec<DiskTensor> {
    let c = config;
    let (d, f) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
    );
    let fused = c.architecture == Architecture::Phi3;
    let mut out = vec![DiskTensor::single(
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, d],
    )];
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let a = format!("{p}.self_attn");
        let m = format!("{p}.mlp");
        if fused {
            out.push(DiskTensor {
                name: format!("{a}.qkv_proj.weight"),
                shape: vec![q + 2 * kv, d],
                parts: vec![
                    (format!("{a}.q_proj.weight"), q),
                    (format!("{a}.k_proj.weight"), kv),
                    (format!("{a}.v_proj.weight"), kv),
                ],
            });
        } else {
            for (proj, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                out.push(DiskTensor::single(
                    format!("{a}.{proj}.weight"),
                    vec![rows, d],
                ));
                if c.attention_bias {
                    out.push(DiskTensor::single(format!("{a}.{proj}.bias"), vec![rows]));
                }
            }
        }
        out.push(DiskTensor::single(format!("{a}.o_proj.weight"), vec![d, q]));
        if c.o_proj_bias {
            out.push(DiskTensor::single(format!("{a}.o_proj.bias"), vec![d]));
        }
        if fused {
            out.push(DiskTensor {
                name: format!("{m}.gate_up_proj.weight"),
                shape: vec![2 * f, d],
                parts: vec![
                    (format!("{m}.gate_proj.weight"), f),
                    (format!("{m}.up_proj.weight"), f),
                ],
            });
        } else {
            for proj in ["gate_proj", "up_proj"] {
                out.push(DiskTensor::single(format!("{m}.{proj}.weight"), vec![f, d]));
                if c.mlp_bias {
                    out.push(DiskTensor::single(format!("{m}.{proj}.bias"), vec![f]));
                }
            }
        }
        out.push(DiskTensor::single(
            format!("{m}.down_proj.weight"),
            vec![d, f],
        ));
        if c.mlp_bias {
            out.push(DiskTensor::single(format!("{m}.down_proj.bias"), vec![d]));
        }
        out.push(DiskTensor::single(
            format!("{p}.input_layernorm.weight"),
            vec![d],
        ));
        out.push(DiskTensor::single(
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
        ));
    }
    out.push(DiskTensor::single("model.norm.weight".into(), vec![d]));
    if !c.tie_word_embeddings {
        out.push(DiskTensor::single(
            "lm_head.weight".into(),
            vec![c.vocab_size, d],
        ));
    }
    out
}

/// Tensors some checkpoints carry that hold nothing the model needs.
fn ignorable(name: &str, config: &ModelConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq")
        || (config.tie_word_embeddings && name == "lm_head.weight")
}

/// Canonical parameters read from a checkpoint: name -> (f32 values, HF shape).
#[derive(Debug, Default)]
pub struct BoundWeights {
    source_name: String,
    map: HashMap<String, (Vec<f32>, Vec<usize>)>,
}

impl BoundWeights {
    /// Canonical parameters held in memory (as [`crate::model::Decoder::named_parameters`]
    /// returns them); `source_name` names them in errors.
    pub(crate) fn from_parameters(
        source_name: impl Into<String>,
        params: Vec<NamedTensor>,
    ) -> Self {
        BoundWeights {
            source_name: source_name.into(),
            map: params
                .into_iter()
                .map(|(name, shape, values)| (name, (values, shape)))
                .collect(),
        }
    }

    /// Removes and returns one canonical parameter.
    pub fn take(&mut self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        self.map.remove(name).ok_or_else(|| Error::MissingTensor {
            source_name: self.source_name.clone(),
            name: name.to_string(),
        })
    }
}

/// Reads every tensor of `config`'s layout from `weights`, checking names and shapes strictly,
/// and splits fused tensors into canonical parameters.
pub fn bind(config: &ModelConfig, weights: &dyn WeightSource) -> Result<BoundWeights> {
    let source_name = weights.source_name();
    // The layer count first: the layout below has a dozen entries per layer the config claims.
    let layers = weights
        .tensor_names()
        .iter()
        .filter_map(|n| {
            n.strip_prefix("model.layers.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |last| last.saturating_add(1));
    if layers != config.num_hidden_layers {
        return Err(Error::ConfigMismatch {
            source_name,
            field: "num_hidden_layers",
            config: config.num_hidden_layers,
            weights: layers,
        });
    }
    let layout = disk_layout(config);
    let known: BTreeSet<&str> = layout.iter().map(|t| t.name.as_str()).collect();
    let unexpected: Vec<String> = weights
        .tensor_names()
        .into_iter()
        .filter(|n| !known.contains(n.as_str()) && !ignorable(n, config))
        .collect();
    if !unexpected.is_empty() {
        return Err(Error::UnexpectedTensors {
            source_name,
            names: unexpected.into_iter().take(8).collect(),
        });
    }
    // Check every shape before reading anything, so a mismatch costs no dequantization.
    for t in &layout {
        let info = weights
            .tensor_info(&t.name)
            .ok_or_else(|| Error::MissingTensor {
                source_name: source_name.clone(),
                name: t.name.clone(),
            })?;
        if info.shape != t.shape {
            return Err(Error::ShapeMismatch {
                source_name: source_name.clone(),
                name: t.name.clone(),
                got: info.shape,
                expected: t.shape.clone(),
            });
        }
    }
    let mut map = HashMap::new();
    for t in layout {
        let values = weights.read_f32(&t.name)?;
        let cols: usize = t.shape[1..].iter().product();
        if values.len() != t.shape[0] * cols {
            return Err(Error::format(
                &source_name,
                format!(
                    "tensor `{}` yielded {} values, its shape {:?} needs {}",
                    t.name,
                    values.len(),
                    t.shape,
                    t.shape[0] * cols
                ),
            ));
        }
        if t.parts.len() == 1 {
            map.insert(t.name.clone(), (values, t.shape.clone()));
            continue;
        }
        let mut start = 0;
        for (part, rows) in &t.parts {
            let mut shape = t.shape.clone();
            shape[0] = *rows;
            map.insert(
                part.clone(),
                (values[start * cols..(start + rows) * cols].to_vec(), shape),
            );
            start += rows;
        }
    }
    Ok(BoundWeights { source_name, map })
}

/// Turns canonical parameters (as [`crate::model::Decoder::named_parameters`] returns them) into
/// the on-disk tensors of `config`'s architecture, fusing where the architecture fuses.
pub fn to_checkpoint(config: &ModelConfig, params: Vec<NamedTensor>) -> Result<Vec<NamedTensor>> {
    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> =
        params.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    let mut out = Vec::new();
    for t in disk_layout(config) {
        let mut data = Vec::with_capacity(t.shape.iter().product());
        for (part, _) in &t.parts {
            let (_, v) = by_name.remove(part).ok_or_else(|| Error::MissingTensor {
                source_name: "model parameters".into(),
                name: part.clone(),
            })?;
            data.extend_from_slice(&v);
        }
        out.push((t.name, t.shape, data));
    }
    Ok(out)
}

//! Model surgery on the width: [`narrow`] keeps the most important MLP neurons and attention
//! heads of every layer (structured pruning, the "narrowed student" of distillation, as in
//! NVIDIA's Minitron), initialised from the original weights.
//!
//! Importance is per layer: a score for each MLP neuron (`intermediate_size` of them) and each
//! query head. [`NarrowImportance::from_weights`] scores by weight magnitude (neuron `j`:
//! `(|gate_j| + |up_j|) * |down_:,j|`; head `h`: `|q_h| * |o_:,h|`, Frobenius norms of its rows
//! and columns); an activation-based score from calibration data plugs in through the same type.
//! Heads are kept per key/value group so grouped-query attention stays valid: every group keeps
//! its `heads_per_group` best query heads, the key/value heads are all kept, and the residual
//! width (`hidden_size`) and `head_dim` do not change. Kept neurons and heads stay in their
//! original order.

use super::decoder::Decoder;
use crate::error::{Error, Result};

/// The target width of [`narrow`]; `None` keeps a dimension as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Narrowing {
    /// MLP neurons kept per layer (the new `intermediate_size`).
    pub intermediate_size: Option<usize>,
    /// Query heads kept per key/value group (the new `num_attention_heads` is this times
    /// `num_key_value_heads`).
    pub heads_per_group: Option<usize>,
}

/// Per-layer importance scores: `mlp[layer][neuron]` and `heads[layer][query head]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NarrowImportance {
    /// One score per MLP neuron of each layer.
    pub mlp: Vec<Vec<f32>>,
    /// One score per query head of each layer.
    pub heads: Vec<Vec<f32>>,
}

fn param<'a>(params: &'a [(String, Vec<usize>, Vec<f32>)], name: &str) -> Result<&'a [f32]> {
    params
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, _, v)| v.as_slice())
        .ok_or_else(|| Error::MissingTensor {
            source_name: "the decoder".into(),
            name: name.to_string(),
        })
}

/// Squared norm of row `r` of a row-major `[_, cols]` matrix.
fn row_sq(m: &[f32], cols: usize, r: usize) -> f32 {
    m[r * cols..(r + 1) * cols].iter().map(|x| x * x).sum()
}

/// Squared norm of column `c` of a row-major `[rows, cols]` matrix.
fn col_sq(m: &[f32], cols: usize, c: usize) -> f32 {
    m.iter().skip(c).step_by(cols).map(|x| x * x).sum()
}

impl NarrowImportance {
    /// Weight-magnitude scores of every neuron and query head of `decoder`.
    ///
    /// # Errors
    /// [`Error::Backend`] when the parameters cannot be read.
    pub fn from_weights(decoder: &Decoder) -> Result<Self> {
        let c = decoder.config();
        let params = decoder.named_parameters()?;
        let (hidden, inter, hd) = (c.hidden_size, c.intermediate_size, c.head_dim);
        let mut out = NarrowImportance {
            mlp: Vec::new(),
            heads: Vec::new(),
        };
        for l in 0..c.num_hidden_layers {
            let p = |s: &str| param(&params, &format!("model.layers.{l}.{s}.weight"));
            let (gate, up, down) = (p("mlp.gate_proj")?, p("mlp.up_proj")?, p("mlp.down_proj")?);
            out.mlp.push(
                (0..inter)
                    .map(|j| {
                        (row_sq(gate, hidden, j).sqrt() + row_sq(up, hidden, j).sqrt())
                            * col_sq(down, inter, j).sqrt()
                    })
                    .collect(),
            );
            let (q, o) = (p("self_attn.q_proj")?, p("self_attn.o_proj")?);
            let q_width = c.num_attention_heads * hd;
            out.heads.push(
                (0..c.num_attention_heads)
                    .map(|h| {
                        let qn: f32 = (h * hd..(h + 1) * hd).map(|r| row_sq(q, hidden, r)).sum();
                        let on: f32 = (h * hd..(h + 1) * hd).map(|k| col_sq(o, q_width, k)).sum();
                        qn.sqrt() * on.sqrt()
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}

impl NarrowImportance {
    /// Activation-aware scores from calibration statistics of `decoder`: `sq_sums` holds, by
    /// Hugging Face weight name, each projection input channel's sum of squares over the
    /// calibration tokens (what [`capture_input_sq_norms`](crate::model::capture_input_sq_norms)
    /// records). A neuron's score is the norm of its activation (its `down_proj` input channel)
    /// times the norm of its `down_proj` column, what it adds to the residual stream; a head's is
    /// the norm of its slice of the `o_proj` input times the norm of its `o_proj` columns (the
    /// activation x weight criterion of Wanda, per structure as in FLAP and LLM-Pruner).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `sq_sums` lacks a layer's `down_proj`/`o_proj` statistics
    /// of the right width; [`Error::Backend`] when the parameters cannot be read.
    pub fn from_activations(
        decoder: &Decoder,
        sq_sums: &std::collections::HashMap<String, Vec<f32>>,
    ) -> Result<Self> {
        let c = decoder.config();
        let (inter, hd, heads) = (c.intermediate_size, c.head_dim, c.num_attention_heads);
        let params = decoder.named_parameters()?;
        let stats = |name: &str, len: usize| {
            sq_sums.get(name).filter(|s| s.len() == len).ok_or_else(|| {
                Error::InvalidInput(format!("no input statistics of width {len} for `{name}`"))
            })
        };
        let mut out = NarrowImportance {
            mlp: Vec::with_capacity(c.num_hidden_layers),
            heads: Vec::with_capacity(c.num_hidden_layers),
        };
        for l in 0..c.num_hidden_layers {
            let down = format!("model.layers.{l}.mlp.down_proj.weight");
            let (x, w) = (stats(&down, inter)?, param(&params, &down)?);
            out.mlp.push(
                (0..inter)
                    .map(|j| x[j].sqrt() * col_sq(w, inter, j).sqrt())
                    .collect(),
            );
            let o = format!("model.layers.{l}.self_attn.o_proj.weight");
            let (x, w) = (stats(&o, heads * hd)?, param(&params, &o)?);
            out.heads.push(
                (0..heads)
                    .map(|h| {
                        let range = h * hd..(h + 1) * hd;
                        let act: f32 = x[range.clone()].iter().sum();
                        let wn: f32 = range.map(|k| col_sq(w, heads * hd, k)).sum();
                        act.sqrt() * wn.sqrt()
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// The `k` highest-scoring of `ids`, in their original order (ties keep the earlier one).
fn top(ids: impl Iterator<Item = usize>, scores: &[f32], k: usize) -> Vec<usize> {
    let mut ids: Vec<usize> = ids.collect();
    ids.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    ids.truncate(k);
    ids.sort_unstable();
    ids
}

/// Rows `keep` (each `width` long) of a row-major matrix.
fn rows(m: &[f32], width: usize, keep: &[usize]) -> Vec<f32> {
    keep.iter()
        .flat_map(|&r| m[r * width..(r + 1) * width].iter().copied())
        .collect()
}

/// Columns `keep` of a row-major `[_, cols]` matrix.
fn cols(m: &[f32], cols: usize, keep: &[usize]) -> Vec<f32> {
    m.chunks_exact(cols)
        .flat_map(|row| keep.iter().map(move |&c| row[c]))
        .collect()
}

/// `decoder` narrowed to `to` by `importance` (see the [module docs](self)), on the same
/// device, every parameter trainable; adapters are not carried over (merge them first).
///
/// # Errors
/// [`Error::InvalidConfig`] for a width of 0 or above the model's, or importance scores that
/// do not match the model's layers, neurons or heads; [`Error::Backend`] when the parameters
/// cannot be read.
pub fn narrow(decoder: &Decoder, to: &Narrowing, importance: &NarrowImportance) -> Result<Decoder> {
    let c = decoder.config().clone();
    let (hidden, hd, n_kv) = (c.hidden_size, c.head_dim, c.num_key_value_heads);
    let group = c.num_attention_heads / n_kv;
    let inter = to.intermediate_size.unwrap_or(c.intermediate_size);
    let per_group = to.heads_per_group.unwrap_or(group);
    if inter == 0 || inter > c.intermediate_size {
        return Err(Error::InvalidConfig(format!(
            "narrowing to {inter} MLP neurons: the model has {}",
            c.intermediate_size
        )));
    }
    if per_group == 0 || per_group > group {
        return Err(Error::InvalidConfig(format!(
            "narrowing to {per_group} query heads per key/value group: the model has {group} \
             ({} heads over {n_kv} groups)",
            c.num_attention_heads
        )));
    }
    let layers = c.num_hidden_layers;
    let fits = importance.mlp.len() == layers
        && importance.heads.len() == layers
        && importance
            .mlp
            .iter()
            .all(|s| s.len() == c.intermediate_size)
        && importance
            .heads
            .iter()
            .all(|s| s.len() == c.num_attention_heads);
    if !fits {
        return Err(Error::InvalidConfig(format!(
            "importance scores do not fit {layers} layers of {} neurons and {} heads",
            c.intermediate_size, c.num_attention_heads
        )));
    }
    let mut params = decoder.named_parameters()?;
    for l in 0..layers {
        let neurons = top(0..c.intermediate_size, &importance.mlp[l], inter);
        let heads: Vec<usize> = (0..n_kv)
            .flat_map(|g| top(g * group..(g + 1) * group, &importance.heads[l], per_group))
            .collect();
        let q_rows: Vec<usize> = heads.iter().flat_map(|&h| h * hd..(h + 1) * hd).collect();
        let prefix = format!("model.layers.{l}.");
        for (name, shape, values) in params.iter_mut() {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let (new, new_shape) = match rest {
                "mlp.gate_proj.weight" | "mlp.up_proj.weight" => {
                    (rows(values, hidden, &neurons), vec![inter, hidden])
                }
                "mlp.gate_proj.bias" | "mlp.up_proj.bias" => {
                    (rows(values, 1, &neurons), vec![inter])
                }
                "mlp.down_proj.weight" => (
                    cols(values, c.intermediate_size, &neurons),
                    vec![hidden, inter],
                ),
                "self_attn.q_proj.weight" => {
                    (rows(values, hidden, &q_rows), vec![q_rows.len(), hidden])
                }
                "self_attn.q_proj.bias" => (rows(values, 1, &q_rows), vec![q_rows.len()]),
                "self_attn.o_proj.weight" => (
                    cols(values, c.num_attention_heads * hd, &q_rows),
                    vec![hidden, q_rows.len()],
                ),
                _ => continue,
            };
            *values = new;
            *shape = new_shape;
        }
    }
    let mut config = c.clone();
    config.intermediate_size = inter;
    config.num_attention_heads = per_group * n_kv;
    Decoder::from_named_parameters(
        &config,
        params,
        "narrowed weights (in memory)",
        &decoder.device(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_keeps_the_best_in_order() {
        let s = [0.5, 3.0, 1.0, 3.0, 0.1];
        assert_eq!(top(0..5, &s, 2), vec![1, 3]);
        assert_eq!(top(2..5, &s, 2), vec![2, 3]);
        assert_eq!(
            rows(&[1., 2., 3., 4., 5., 6.], 2, &[2, 0]),
            vec![5., 6., 1., 2.]
        );
        assert_eq!(
            cols(&[1., 2., 3., 4., 5., 6.], 3, &[0, 2]),
            vec![1., 3., 4., 6.]
        );
    }

    fn tiny() -> Decoder {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/models/llama-tiny");
        crate::checkpoint::Checkpoint::open(&dir)
            .unwrap()
            .load_decoder(&burn::prelude::Device::flex())
            .unwrap()
    }

    fn logits(d: &Decoder) -> Vec<f32> {
        use crate::causal_lm::{CausalLm, LogitsScope, TokenBatch};
        let batch = TokenBatch {
            ids: vec![vec![0, 592, 366, 328, 672, 262, 260, 432]],
            attention_mask: None,
            scope: LogitsScope::All,
        };
        d.forward(&batch, &mut d.new_cache()).unwrap().values
    }

    #[test]
    fn dropping_neurons_and_heads_that_contribute_nothing_keeps_the_logits() {
        let base = tiny();
        let c = base.config().clone();
        assert_eq!(
            (
                c.num_attention_heads,
                c.num_key_value_heads,
                c.intermediate_size
            ),
            (4, 2, 128)
        );
        let same = narrow(
            &base,
            &Narrowing::default(),
            &NarrowImportance::from_weights(&base).unwrap(),
        )
        .unwrap();
        assert_eq!(logits(&same), logits(&base));
        // Neuron 5's output column and heads 1 and 2's o_proj columns set to zero in every
        // layer: they add nothing to the residual stream.
        let hd = c.head_dim;
        let mut params = base.named_parameters().unwrap();
        for (name, _, v) in params.iter_mut() {
            if name.ends_with("mlp.down_proj.weight") {
                for r in 0..c.hidden_size {
                    v[r * c.intermediate_size + 5] = 0.0;
                }
            }
            if name.ends_with("self_attn.o_proj.weight") {
                let w = c.num_attention_heads * hd;
                for r in 0..c.hidden_size {
                    for k in (hd..2 * hd).chain(2 * hd..3 * hd) {
                        v[r * w + k] = 0.0;
                    }
                }
            }
        }
        let model =
            Decoder::from_named_parameters(&c, params, "test", &burn::prelude::Device::flex())
                .unwrap();
        let scores = NarrowImportance::from_weights(&model).unwrap();
        assert!(scores.mlp.iter().all(|l| l[5] == 0.0));
        assert!(scores.heads.iter().all(|l| l[1] == 0.0 && l[2] == 0.0));
        let to = Narrowing {
            intermediate_size: Some(127),
            heads_per_group: Some(1),
        };
        let narrowed = narrow(&model, &to, &scores).unwrap();
        let n = narrowed.config();
        assert_eq!(
            (
                n.num_attention_heads,
                n.num_key_value_heads,
                n.intermediate_size
            ),
            (2, 2, 127)
        );
        let (a, b) = (logits(&narrowed), logits(&model));
        let d = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d <= 1e-5, "max abs diff {d}");
        // Narrowing further drops neurons that matter.
        let smaller = Narrowing {
            intermediate_size: Some(64),
            ..to
        };
        let cut = logits(&narrow(&model, &smaller, &scores).unwrap());
        assert!(cut.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3));
        let too_wide = Narrowing {
            intermediate_size: Some(129),
            heads_per_group: None,
        };
        assert!(narrow(&model, &too_wide, &scores).is_err());
        let no_heads = Narrowing {
            intermediate_size: None,
            heads_per_group: Some(0),
        };
        assert!(narrow(&model, &no_heads, &scores).is_err());
    }
}

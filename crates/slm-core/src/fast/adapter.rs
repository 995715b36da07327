//! LoRA adapters on the fast path, unmerged and per sequence (multi-LoRA serving).
//!
//! A [`FastDecoder`](super::FastDecoder) holds any number of peft adapters beside its base
//! weights ([`FastDecoder::load_adapter`](super::FastDecoder::load_adapter)); each sequence
//! runs with the adapter it was created with
//! ([`BatchedLm::add_sequence_with`](crate::step::BatchedLm::add_sequence_with)), forks keep it.
//! A step groups its tokens by adapter: every base product runs over all tokens at once (each
//! weight row read once per step, as without adapters), then each adapter present adds its
//! change to its own tokens' rows, so sequences of different adapters (and of none) share every
//! step. What the change is, is peft's (see [`crate::model::linear`]):
//! - LoRA: `y = W x + s B (A x)`, two small f32 products per projection and adapter (`s` is
//!   folded into `B` at load);
//! - DoRA: `y = g * (W x + s B (A x))` per output, with the gain `g = m / |W + s B A|` computed
//!   once at load from the stored (dequantized) weight;
//! - `modules_to_save`: the adapter's saved embedding rows, norm weights, projections and LM
//!   head replace the base's for its tokens (a tied head follows a saved embedding).
//!
//! Rows of llama.cpp's rotary order (q/k of Llama GGUFs) get `B`, the gain and saved q/k
//! weights permuted the same way at load.

use slm_ggml::dot::{Activations, Matrix, matmul};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gguf::names::permute_rows;
use crate::peft::{AdapterWeights, LoraFactors};
use crate::weights::{RawTensor, RowOrder};

/// The seven projections of a layer, in [`Layer`](super::decoder)'s order.
pub(crate) const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// What an adapter changes in one projection.
#[derive(Debug, Clone)]
pub(crate) enum Delta {
    /// `y += B (A x)` (`a`: `[r, in]`, `b`: `[out, r]` times the scaling), then, for DoRA,
    /// `y *= gain` per output.
    Lora {
        a: RawTensor,
        b: RawTensor,
        gain: Option<Vec<f32>>,
    },
    /// A saved copy of the whole projection (`[out, in]`, f32, stored row order); `bias_shift`
    /// is its bias minus the base's (the base bias is added after the adapters).
    Replace {
        weight: RawTensor,
        bias_shift: Option<Vec<f32>>,
    },
}

impl Delta {
    fn outputs(&self) -> usize {
        match self {
            Delta::Lora { b, .. } => b.rows(),
            Delta::Replace { weight, .. } => weight.rows(),
        }
    }
}

/// One layer's changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerDelta {
    /// Per projection, in [`PROJECTIONS`] order.
    pub(crate) linears: [Option<Delta>; 7],
    pub(crate) input_norm: Option<Vec<f32>>,
    pub(crate) post_norm: Option<Vec<f32>>,
}

/// One adapter, ready for the fast path's steps.
#[derive(Debug, Clone)]
pub(crate) struct Adapter {
    pub(crate) name: String,
    pub(crate) layers: Vec<LayerDelta>,
    /// The LM head's change (LoRA on an untied head, or a saved / tied-to-saved-embedding head).
    pub(crate) head: Option<Delta>,
    /// Saved embedding rows, `[vocab, hidden]`.
    pub(crate) embed: Option<Vec<f32>>,
    /// Saved final norm.
    pub(crate) norm: Option<Vec<f32>>,
}

/// A base projection as the adapter builder sees it: its stored weight and f32 bias.
pub(crate) type BaseLinear<'a> = (&'a RawTensor, Option<&'a [f32]>);

/// The stored-row-order permutation of projection `slot`'s outputs, as heads to permute by.
fn rotary_heads(config: &ModelConfig, slot: usize, order: RowOrder) -> Option<usize> {
    match (slot, order) {
        (0, RowOrder::RotaryInterleaved { .. }) => Some(config.num_attention_heads),
        (1, RowOrder::RotaryInterleaved { .. }) => Some(config.num_key_value_heads),
        _ => None,
    }
}

fn permuted(values: Vec<f32>, rows: usize, heads: Option<usize>) -> Vec<f32> {
    match heads {
        Some(h) => permute_rows(&values, rows, values.len() / rows.max(1), h),
        None => values,
    }
}

/// `|w_o + delta_o|` per output row `o`: DoRA's norm over the stored (dequantized) weight.
fn dora_gain(
    weight: &RawTensor,
    a: &[f32],
    b: &[f32],
    r: usize,
    magnitude: &[f32],
) -> Result<Vec<f32>> {
    let (rows, cols) = (weight.rows(), weight.cols());
    let row_bytes = weight
        .row_bytes()
        .ok_or_else(|| Error::InvalidInput("DoRA needs a weight stored in whole rows".into()))?;
    let bytes = weight.data.bytes();
    let mut w = vec![0f32; cols];
    let mut gain = Vec::with_capacity(rows);
    for o in 0..rows {
        slm_ggml::dequantize_into(
            weight.ty,
            &bytes[o * row_bytes..(o + 1) * row_bytes],
            &mut w,
        )?;
        let bo = &b[o * r..(o + 1) * r];
        let mut sq = 0f64;
        for (c, wc) in w.iter().enumerate() {
            let delta: f32 = bo
                .iter()
                .enumerate()
                .map(|(k, bk)| bk * a[k * cols + c])
                .sum();
            let v = (wc + delta) as f64;
            sq += v * v;
        }
        gain.push(magnitude[o] / sq.sqrt() as f32);
    }
    Ok(gain)
}

/// A LoRA delta over `base`, with `B` scaled and rows in `base`'s order.
fn lora_delta(
    f: LoraFactors,
    r: usize,
    scaling: f32,
    base: &RawTensor,
    heads: Option<usize>,
) -> Result<Delta> {
    let [d_in, d_out] = f.dims;
    let b: Vec<f32> = permuted(f.b, d_out, heads)
        .into_iter()
        .map(|v| v * scaling)
        .collect();
    let gain = match f.magnitude {
        Some(m) => Some(dora_gain(base, &f.a, &b, r, &permuted(m, d_out, heads))?),
        None => None,
    };
    Ok(Delta::Lora {
        a: RawTensor::from_f32(vec![r, d_in], &f.a),
        b: RawTensor::from_f32(vec![d_out, r], &b),
        gain,
    })
}

/// Builds `weights` for a fast decoder of `config`; `base(name)` gives the stored projection
/// `name` (`model.layers.0.self_attn.q_proj`, `lm_head`), `None` for a tied head.
pub(crate) fn build<'a>(
    name: &str,
    weights: AdapterWeights,
    config: &ModelConfig,
    base: &dyn Fn(&str) -> Option<BaseLinear<'a>>,
) -> Result<Adapter> {
    let AdapterWeights {
        config: lora,
        mut factors,
        mut saved,
        source,
    } = weights;
    let scaling = lora.scaling() as f32;
    let (d, vocab) = (config.hidden_size, config.vocab_size);
    let mut take = |key: &str, shape: &[usize]| -> Result<Option<Vec<f32>>> {
        match saved.remove(key) {
            None => Ok(None),
            Some((got, _)) if got != shape => Err(Error::ShapeMismatch {
                source_name: source.clone(),
                name: key.to_string(),
                got,
                expected: shape.to_vec(),
            }),
            Some((_, values)) => Ok(Some(values)),
        }
    };
    let missing = |module: &str| Error::MissingTensor {
        source_name: source.clone(),
        name: format!("{module}.weight (base)"),
    };
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let mut layer = LayerDelta {
            input_norm: take(&format!("model.layers.{i}.input_layernorm.weight"), &[d])?,
            post_norm: take(
                &format!("model.layers.{i}.post_attention_layernorm.weight"),
                &[d],
            )?,
            ..Default::default()
        };
        for (slot, proj) in PROJECTIONS.iter().enumerate() {
            let module = format!("model.layers.{i}.{proj}");
            let (weight, bias) = base(&module).ok_or_else(|| missing(&module))?;
            let heads = rotary_heads(config, slot, weight.row_order);
            let (rows, cols) = (weight.rows(), weight.cols());
            layer.linears[slot] = if let Some(f) = factors.remove(&module) {
                Some(lora_delta(f, lora.r, scaling, weight, heads)?)
            } else if let Some(w) = take(&format!("{module}.weight"), &[rows, cols])? {
                let new_bias = take(&format!("{module}.bias"), &[rows])?;
                let bias_shift = match (new_bias, bias) {
                    (None, None) => None,
                    (new, old) => {
                        let new = permuted(new.unwrap_or_else(|| vec![0.0; rows]), rows, heads);
                        let old = old.map_or_else(|| vec![0.0; rows], <[f32]>::to_vec);
                        Some(new.iter().zip(&old).map(|(n, o)| n - o).collect())
                    }
                };
                Some(Delta::Replace {
                    weight: RawTensor::from_f32(vec![rows, cols], &permuted(w, rows, heads)),
                    bias_shift,
                })
            } else {
                None
            };
        }
        layers.push(layer);
    }
    let embed = take("model.embed_tokens.weight", &[vocab, d])?;
    let norm = take("model.norm.weight", &[d])?;
    let head = match base("lm_head") {
        Some((weight, _)) => match factors.remove("lm_head") {
            Some(f) => Some(lora_delta(f, lora.r, scaling, weight, None)?),
            None => take("lm_head.weight", &[vocab, d])?.map(|w| Delta::Replace {
                weight: RawTensor::from_f32(vec![vocab, d], &w),
                bias_shift: None,
            }),
        },
        // A tied head: a saved head of its own, else the saved embedding it is tied to.
        None => take("lm_head.weight", &[vocab, d])?
            .or_else(|| embed.clone())
            .map(|w| Delta::Replace {
                weight: RawTensor::from_f32(vec![vocab, d], &w),
                bias_shift: None,
            }),
    };
    if let Some(module) = factors.keys().next() {
        return Err(Error::InvalidConfig(format!(
            "LoRA adapter `{name}`: the fast path has no projection `{module}`"
        )));
    }
    if !saved.is_empty() {
        let mut names: Vec<String> = saved.into_keys().collect();
        names.sort();
        return Err(Error::UnexpectedTensors {
            source_name: source,
            names,
        });
    }
    Ok(Adapter {
        name: name.to_string(),
        layers,
        head,
        embed,
        norm,
    })
}

/// The deltas of projections `slots` (in [`PROJECTIONS`] order) of layer `layer`.
pub(crate) fn layer_deltas<const K: usize>(
    a: &Adapter,
    layer: usize,
    slots: [usize; K],
) -> [Option<&Delta>; K] {
    slots.map(|s| a.layers[layer].linears[s].as_ref())
}

/// Buffers of the adapters' products, reused from step to step.
#[derive(Debug, Default)]
pub(crate) struct AdapterScratch {
    /// Per adapter in the step: the adapter and its token rows.
    pub(crate) groups: Vec<(usize, Vec<usize>)>,
    /// The same over the LM head's rows (the tokens that asked for logits).
    pub(crate) head_groups: Vec<(usize, Vec<usize>)>,
    x: Vec<f32>,
    u: Vec<f32>,
    d: Vec<f32>,
    acts: Activations,
}

impl AdapterScratch {
    /// Groups `(row, adapter)` pairs by adapter, rows in the order given.
    pub(crate) fn group(
        groups: &mut Vec<(usize, Vec<usize>)>,
        rows: impl Iterator<Item = (usize, usize)>,
    ) {
        groups.iter_mut().for_each(|(_, rows)| rows.clear());
        for (row, a) in rows {
            match groups.iter_mut().find(|(g, _)| *g == a) {
                Some((_, rows)) => rows.push(row),
                None => groups.push((a, vec![row])),
            }
        }
        groups.retain(|(_, rows)| !rows.is_empty());
    }
}

fn f32_matrix(t: &RawTensor) -> Result<Matrix<'_>> {
    Ok(Matrix::new(t.ty, t.rows(), t.cols(), t.data.bytes())?)
}

/// Adds each adapter's change to the outputs of one product call over input rows `x`
/// (`din` values each): `pick` chooses the adapter's delta for each output of `outs` (rows of
/// the same tokens as `x`). `head` selects the head's row groups instead of the tokens'.
pub(crate) fn apply<const K: usize>(
    adapters: &[Adapter],
    scratch: &mut AdapterScratch,
    head: bool,
    pick: impl Fn(&Adapter) -> [Option<&Delta>; K],
    x: &[f32],
    din: usize,
    mut outs: [&mut [f32]; K],
) -> Result<()> {
    let AdapterScratch {
        groups,
        head_groups,
        x: xg,
        u,
        d,
        acts,
    } = scratch;
    for (a, rows) in if head { &*head_groups } else { &*groups } {
        let deltas = pick(&adapters[*a]);
        if deltas.iter().all(Option::is_none) {
            continue;
        }
        let n = rows.len();
        xg.clear();
        for &r in rows {
            xg.extend_from_slice(&x[r * din..(r + 1) * din]);
        }
        for (delta, y) in deltas.iter().zip(outs.iter_mut()) {
            let Some(delta) = delta else { continue };
            let dout = delta.outputs();
            d.resize(n * dout, 0.0);
            match delta {
                Delta::Lora { a, b, .. } => {
                    u.resize(n * a.rows(), 0.0);
                    matmul(&mut [(f32_matrix(a)?, &mut u[..])], xg, acts)?;
                    matmul(&mut [(f32_matrix(b)?, &mut d[..])], u, acts)?;
                }
                Delta::Replace { weight, .. } => {
                    matmul(&mut [(f32_matrix(weight)?, &mut d[..])], xg, acts)?;
                }
            }
            for (&r, dr) in rows.iter().zip(d.chunks_exact(dout)) {
                let yr = &mut y[r * dout..(r + 1) * dout];
                match delta {
                    Delta::Lora { gain: None, .. } => {
                        yr.iter_mut().zip(dr).for_each(|(y, d)| *y += d);
                    }
                    Delta::Lora { gain: Some(g), .. } => {
                        for ((y, d), g) in yr.iter_mut().zip(dr).zip(g) {
                            *y = (*y + d) * g;
                        }
                    }
                    Delta::Replace { bias_shift, .. } => {
                        yr.copy_from_slice(dr);
                        if let Some(b) = bias_shift {
                            yr.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

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

use slm_ggml::dot::{Activations, Matrix, f32_dot, matmul};
use slm_ggml::pool::for_each_chunks_mut;

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
    /// `y += B (A x)` (`a`: `[r, in]`; `bt`: `B` times the scaling, transposed to
    /// `[r, out]` so each rank's contribution is one contiguous axpy), then, for DoRA,
    /// `y *= gain` per output.
    Lora {
        r: usize,
        a: Vec<f32>,
        bt: Vec<f32>,
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
            Delta::Lora { r, bt, .. } => bt.len() / (*r).max(1),
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
    debug_assert_eq!(f.a.len(), r * d_in);
    let mut bt = vec![0f32; r * d_out];
    for (o, row) in b.chunks_exact(r).enumerate() {
        for (k, v) in row.iter().enumerate() {
            bt[k * d_out + o] = *v;
        }
    }
    Ok(Delta::Lora {
        r,
        a: f.a,
        bt,
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
    /// Groups `(row, adapter)` pairs by adapter, rows in the order given (ascending, as
    /// [`apply`] relies on).
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
///
/// A LoRA change is `r` dot products over the token's input and `r` axpys into its output row,
/// a few microseconds per token: decode tokens run it on the calling thread (dispatching it to
/// the pool cost more than it computes), groups of [`PARALLEL_ROWS`] tokens or more split it
/// across the pool by token.
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
        for (delta, y) in deltas.iter().zip(outs.iter_mut()) {
            let Some(delta) = delta else { continue };
            let dout = delta.outputs();
            match delta {
                Delta::Lora { r, a, bt, gain } => {
                    let lora = |u: &mut Vec<f32>, xr: &[f32], yr: &mut [f32]| {
                        lora_row(*r, a, bt, gain.as_deref(), u, xr, yr)
                    };
                    if rows.len() >= PARALLEL_ROWS {
                        // A group's rows ascend (see `AdapterScratch::group`).
                        for_each_chunks_mut(y, dout, |first, part| {
                            let mut u = Vec::new();
                            for (k, yr) in part.chunks_exact_mut(dout).enumerate() {
                                let row = first + k;
                                if rows.binary_search(&row).is_ok() {
                                    lora(&mut u, &x[row * din..(row + 1) * din], yr);
                                }
                            }
                        });
                    } else {
                        for &row in rows {
                            let yr = &mut y[row * dout..(row + 1) * dout];
                            lora(u, &x[row * din..(row + 1) * din], yr);
                        }
                    }
                }
                Delta::Replace { weight, bias_shift } => {
                    xg.clear();
                    for &row in rows {
                        xg.extend_from_slice(&x[row * din..(row + 1) * din]);
                    }
                    d.resize(rows.len() * dout, 0.0);
                    matmul(&mut [(f32_matrix(weight)?, &mut d[..])], xg, acts)?;
                    for (&row, dr) in rows.iter().zip(d.chunks_exact(dout)) {
                        let yr = &mut y[row * dout..(row + 1) * dout];
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

/// Tokens of one adapter from which [`apply`] splits a LoRA change across the pool.
const PARALLEL_ROWS: usize = 8;

/// One token's LoRA change: `u = A x` (`r` dots), then `y += sum_k u_k Bt_k`, or for DoRA
/// `y = (y + that) * gain` (the change summed apart in `u`'s tail first).
fn lora_row(
    r: usize,
    a: &[f32],
    bt: &[f32],
    gain: Option<&[f32]>,
    u: &mut Vec<f32>,
    x: &[f32],
    y: &mut [f32],
) {
    let dout = y.len();
    u.clear();
    u.extend(a.chunks_exact(x.len()).map(|ak| f32_dot(ak, x)));
    if gain.is_some() {
        u.resize(r + dout, 0.0);
    }
    let (uk, sum) = u.split_at_mut(r);
    let add_change = |acc: &mut [f32]| {
        for (uk, bk) in uk.iter().zip(bt.chunks_exact(dout)) {
            acc.iter_mut().zip(bk).for_each(|(a, b)| *a += uk * b);
        }
    };
    match gain {
        None => add_change(y),
        Some(g) => {
            add_change(sum);
            for ((y, s), g) in y.iter_mut().zip(sum.iter()).zip(g) {
                *y = (*y + s) * g;
            }
        }
    }
}

//! The one decoder of slm: Llama, SmolLM, Qwen2 and Phi-3 by configuration.
//!
//! It follows transformers' `modeling_llama.py` (eager attention) top to bottom: token
//! embedding, then per layer `h + o_proj(attn(rms(h)))` and `h + down(silu(gate(x)) * up(x))`,
//! a final RMSNorm and the LM head (or the transposed embedding when tied). Variants differ only
//! through [`ModelConfig`] fields: `attention_bias` (Qwen2), `tie_word_embeddings` (SmolLM),
//! `rope_scaling` and `partial_rotary_factor` (Llama 3.x, Qwen2.5 YaRN, Phi-3.5 LongRoPE,
//! Phi-4-mini; see [`Rotary`]), `sliding_window` and `max_window_layers` (Mistral, Qwen2,
//! Phi-3). Phi-3's fused `qkv_proj` and
//! `gate_up_proj` are split when weights are bound (see [`super::hf_names`]), so the code below
//! sees one layout.
//!
//! Attention supports batches with left padding and a [`KvCache`] for incremental decoding.

use burn::nn::{Embedding, EmbeddingConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};

use super::hf_names;
use super::kv_cache::KvCache;
use super::linear::Projection;
use crate::causal_lm::{CausalLm, Logits, LogitsScope, TokenBatch};
use crate::config::{ModelConfig, Rotary};
use crate::error::{Error, Result};
use crate::weights::WeightSource;

/// Rotary position embedding on tensors: `x * cos + rotate_half(x) * sin` over the first
/// [`Rotary::rotary_dim`] dimensions of each head (the rest pass through), frequencies and
/// cos/sin scale from [`Rotary`], the one rope object both decoders share.
#[derive(Debug, Clone)]
pub struct Rope {
    rotary: Rotary,
}

impl Rope {
    /// The rotary embedding of `config` (every scaling of [`crate::config::RopeScaling`],
    /// partial rotary).
    pub fn new(config: &ModelConfig) -> Self {
        Self {
            rotary: Rotary::new(config),
        }
    }

    /// `cos` and `sin` for `positions` `[B, T]`, shaped `[B, 1, T, rotary_dim]` and scaled by
    /// the attention factor. Length-dependent scalings (`dynamic`, `longrope`) take each row's
    /// frequencies from that row's largest position (see [`Rotary`]).
    pub fn tables(&self, positions: Tensor<2, Int>) -> (Tensor<4>, Tensor<4>) {
        let device = positions.device();
        let [b, _] = positions.dims();
        let half = self.rotary.rotary_dim() / 2;
        let inv: Vec<f32> = if self.rotary.depends_on_length() {
            // Positions are small host-made ints; an unreadable tensor falls back to the
            // frequencies of position 0 for every row.
            let pos = positions.clone().try_to_vec_as::<i64>().unwrap_or_default();
            let t = pos.len() / b.max(1);
            (0..b)
                .flat_map(|r| {
                    let max = pos[r * t..(r + 1) * t].iter().copied().max().unwrap_or(0);
                    self.rotary.inv_freq(max.max(0) as usize).into_owned()
                })
                .collect()
        } else {
            let one = self.rotary.inv_freq(0);
            (0..b).flat_map(|_| one.iter().copied()).collect()
        };
        let inv = Tensor::<3>::from_data(TensorData::new(inv, [b, 1, half]), &device);
        let freqs = positions.float().unsqueeze_dim::<3>(2) * inv; // [B,T,half]
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).unsqueeze_dim::<4>(1);
        let (cos, sin) = (emb.clone().cos(), emb.sin());
        let f = self.rotary.attention_factor();
        if f == 1.0 {
            (cos, sin)
        } else {
            (cos.mul_scalar(f), sin.mul_scalar(f))
        }
    }

    /// Applies the rotation to `x` `[B, H, T, head_dim]` with tables from
    /// [`tables`](Self::tables): the first `rotary_dim` dimensions rotate, the rest pass.
    pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [_, _, _, dh] = x.dims();
        let rd = cos.dims()[3];
        if rd < dh {
            let pass = x.clone().narrow(3, rd, dh - rd);
            let rotated = Self::apply(x.narrow(3, 0, rd), cos, sin);
            return Tensor::cat(vec![rotated, pass], 3);
        }
        let x1 = x.clone().narrow(3, 0, dh / 2);
        let x2 = x.clone().narrow(3, dh / 2, dh / 2);
        x * cos.clone() + Tensor::cat(vec![x2.neg(), x1], 3) * sin.clone()
    }
}

/// Grouped-query self-attention with optional q/k/v biases.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection `[hidden, heads*head_dim]`.
    q_proj: Projection,
    /// Key projection `[hidden, kv_heads*head_dim]`.
    k_proj: Projection,
    /// Value projection `[hidden, kv_heads*head_dim]`.
    v_proj: Projection,
    /// Output projection `[heads*head_dim, hidden]`.
    o_proj: Projection,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// # Shapes
    /// `x` `[B, T, hidden]`, `cos`/`sin` `[B, 1, T, head_dim]`, `mask` `[B, 1, T, T_past + T]`
    /// (`true` = masked) -> `[B, T, hidden]`.
    fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        mask: &Tensor<4, Bool>,
        cache: Option<&mut (Option<Tensor<4>>, Option<Tensor<4>>)>,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, hkv, dh) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, dh]).swap_dims(1, 2);
        let q = Rope::apply(heads(self.q_proj.forward(x.clone()), h), cos, sin);
        let mut k = Rope::apply(heads(self.k_proj.forward(x.clone()), hkv), cos, sin);
        let mut v = heads(self.v_proj.forward(x), hkv);
        if let Some((ck, cv)) = cache {
            if let (Some(pk), Some(pv)) = (ck.take(), cv.take()) {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *ck = Some(k.clone());
            *cv = Some(v.clone());
        }
        let tk = k.dims()[2];
        let (k, v) = (repeat_kv(k, h / hkv), repeat_kv(v, h / hkv));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (dh as f64).sqrt());
        // A finite minimum (as transformers uses) keeps fully masked rows, such as left-padding
        // queries, finite instead of NaN.
        let scores = scores.mask_fill(mask.clone().expand([b, h, t, tk]), f32::MIN);
        let out = softmax(scores, 3).matmul(v); // [B,H,T,Dh]
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, t, h * dh]))
    }
}

/// transformers' `repeat_kv`: each key/value head serves `n_rep` consecutive query heads.
pub fn repeat_kv(x: Tensor<4>, n_rep: usize) -> Tensor<4> {
    if n_rep == 1 {
        return x;
    }
    let [b, hkv, t, dh] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, hkv, n_rep, t, dh])
        .reshape([b, hkv * n_rep, t, dh])
}

/// The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Gate projection `[hidden, intermediate]`.
    gate_proj: Projection,
    /// Up projection `[hidden, intermediate]`.
    up_proj: Projection,
    /// Down projection `[intermediate, hidden]`.
    down_proj: Projection,
}

impl Mlp {
    /// # Shapes
    /// `[B, T, hidden]` -> `[B, T, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Self-attention.
    self_attn: Attention,
    /// Feed-forward block.
    mlp: Mlp,
    /// Norm before attention.
    input_layernorm: RmsNorm,
    /// Norm before the MLP.
    post_attention_layernorm: RmsNorm,
}

/// The decoder-only language model.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Token embedding `[vocab, hidden]`.
    embed_tokens: Embedding,
    /// The layers.
    layers: Vec<DecoderLayer>,
    /// Final norm.
    norm: RmsNorm,
    /// LM head `[hidden, vocab]`; `None` when tied to the embedding.
    lm_head: Option<Projection>,
    #[module(skip)]
    config: ModelConfig,
    #[module(skip)]
    rope: Rope,
}

impl ModelConfig {
    /// A decoder with freshly initialised (random) weights on `device`. Parameters are lazy:
    /// nothing is allocated until a value is used, so the structure alone (names and shapes,
    /// [`Decoder::parameter_shapes`]) costs nothing.
    ///
    /// Call [`ModelConfig::validate`] first on configs read from files (the readers in
    /// [`crate::config`] do): burn's initialisers panic on zero sizes.
    pub fn init(&self, device: &Device) -> Decoder {
        let c = self;
        let lin = |i, o, bias| Projection::new(i, o, bias, device);
        let norm = || {
            RmsNormConfig::new(c.hidden_size)
                .with_epsilon(c.rms_norm_eps)
                .init(device)
        };
        let (q, kv) = (
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        Decoder {
            embed_tokens: EmbeddingConfig::new(c.vocab_size, c.hidden_size).init(device),
            layers: (0..c.num_hidden_layers)
                .map(|_| DecoderLayer {
                    self_attn: Attention {
                        q_proj: lin(c.hidden_size, q, c.attention_bias),
                        k_proj: lin(c.hidden_size, kv, c.attention_bias),
                        v_proj: lin(c.hidden_size, kv, c.attention_bias),
                        o_proj: lin(q, c.hidden_size, c.o_proj_bias),
                        num_heads: c.num_attention_heads,
                        num_kv_heads: c.num_key_value_heads,
                        head_dim: c.head_dim,
                    },
                    mlp: Mlp {
                        gate_proj: lin(c.hidden_size, c.intermediate_size, c.mlp_bias),
                        up_proj: lin(c.hidden_size, c.intermediate_size, c.mlp_bias),
                        down_proj: lin(c.intermediate_size, c.hidden_size, c.mlp_bias),
                    },
                    input_layernorm: norm(),
                    post_attention_layernorm: norm(),
                })
                .collect(),
            norm: norm(),
            lm_head: (!c.tie_word_embeddings).then(|| lin(c.hidden_size, c.vocab_size, false)),
            config: c.clone(),
            rope: Rope::new(c),
        }
    }
}

impl Decoder {
    /// Builds the decoder from a checkpoint, strictly: every tensor the config implies must be
    /// present with the right shape, and every tensor present must be used.
    pub fn from_weights(
        config: &ModelConfig,
        weights: &dyn WeightSource,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut bound = hf_names::bind(config, weights)?;
        Decoder::from_bound(config, &mut bound, device)
    }

    /// Builds the decoder from canonical parameters held in memory (as
    /// [`named_parameters`](Self::named_parameters) returns them, edited by a caller: pruning,
    /// surgery), strictly as [`from_weights`](Self::from_weights) does; `source_name` names
    /// them in errors.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] and [`Error::ShapeMismatch`]-style errors for parameters that
    /// do not fit `config`.
    pub fn from_named_parameters(
        config: &ModelConfig,
        params: Vec<hf_names::NamedTensor>,
        source_name: &str,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        for (name, shape, values) in &params {
            if shape.iter().product::<usize>() != values.len() {
                return Err(Error::InvalidInput(format!(
                    "{source_name}: `{name}` has shape {shape:?} but {} values",
                    values.len()
                )));
            }
        }
        let expected: std::collections::HashMap<String, Vec<usize>> =
            config.init(device).parameter_shapes().into_iter().collect();
        for (name, shape, _) in &params {
            match expected.get(name) {
                Some(want) if want == shape => {}
                Some(want) => {
                    return Err(Error::ShapeMismatch {
                        source_name: source_name.to_string(),
                        name: name.clone(),
                        got: shape.clone(),
                        expected: want.clone(),
                    });
                }
                None => {
                    return Err(Error::UnexpectedTensors {
                        source_name: source_name.to_string(),
                        names: vec![name.clone()],
                    });
                }
            }
        }
        let mut bound = hf_names::BoundWeights::from_parameters(source_name, params);
        Decoder::from_bound(config, &mut bound, device)
    }

    /// Builds the decoder from canonical parameters whose names and shapes fit `config` (as
    /// [`hf_names::bind`] checks them, or as [`Decoder::named_parameters`] returns them),
    /// taking them out of `bound`.
    pub(crate) fn from_bound(
        config: &ModelConfig,
        bound: &mut hf_names::BoundWeights,
        device: &Device,
    ) -> Result<Self> {
        // The structure is lazy: binding replaces every parameter before any is allocated.
        let mut binder = hf_names::Binder::new(std::mem::take(bound), device.clone());
        let model = config.init(device).map(&mut binder);
        binder.finish()?;
        Ok(model)
    }

    /// Every parameter in Hugging Face canonical naming (unfused), `[out, in]` layout, f32,
    /// without adapters (see [`crate::peft`] for those).
    /// [`hf_names::to_checkpoint`] turns this into the on-disk tensors of the architecture.
    pub fn named_parameters(&self) -> Result<Vec<hf_names::NamedTensor>> {
        let mut collect = hf_names::Collect::values();
        self.visit(&mut collect);
        collect.finish()
    }

    /// [`named_parameters`](Self::named_parameters) of the parameters `select` picks by name,
    /// without reading the others' values (a few saved modules of a large model).
    pub fn named_parameters_where(
        &self,
        select: impl Fn(&str) -> bool,
    ) -> Result<Vec<hf_names::NamedTensor>> {
        let names = self
            .parameter_shapes()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| select(n))
            .collect();
        let mut collect = hf_names::Collect::values_of(names);
        self.visit(&mut collect);
        collect.finish()
    }

    /// The name and Hugging Face shape of every parameter, as [`named_parameters`]
    /// (Self::named_parameters) would return them, without reading (or allocating) any value.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut collect = hf_names::Collect::shapes();
        self.visit(&mut collect);
        // Shapes are read lazily, never from the backend, so nothing can fail.
        collect
            .finish()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, shape, _)| (name, shape))
            .collect()
    }

    /// Every projection with its canonical Hugging Face module name
    /// (`model.layers.0.self_attn.q_proj`, `lm_head`), in parameter order.
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let (a, m) = (&layer.self_attn, &layer.mlp);
            for (name, proj) in [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.o_proj", &a.o_proj),
                ("mlp.gate_proj", &m.gate_proj),
                ("mlp.up_proj", &m.up_proj),
                ("mlp.down_proj", &m.down_proj),
            ] {
                out.push((format!("model.layers.{i}.{name}"), proj));
            }
        }
        if let Some(head) = &self.lm_head {
            out.push(("lm_head".to_string(), head));
        }
        out
    }

    /// Freezes every base parameter (embeddings, norms, dense weights), leaving only adapters
    /// trainable: what peft does when it wraps a model.
    pub fn freeze_base(mut self) -> Self {
        self.embed_tokens = self.embed_tokens.no_grad();
        self.norm = self.norm.no_grad();
        self.layers = std::mem::take(&mut self.layers)
            .into_iter()
            .map(|mut layer| {
                layer.input_layernorm = layer.input_layernorm.no_grad();
                layer.post_attention_layernorm = layer.post_attention_layernorm.no_grad();
                layer
            })
            .collect();
        infallible(self.map_projections(|_, p| Ok(p.freeze_base())))
    }

    /// Gives a model whose LM head is tied to the embedding a head of its own, initialised to
    /// the embedding (the config then says `tie_word_embeddings: false`), so the two can train
    /// apart; a model with its own head is returned as is. peft does this when `modules_to_save`
    /// names a tied `lm_head`.
    pub fn untie_lm_head(mut self) -> Self {
        if self.lm_head.is_none() {
            let weight = self.embed_tokens.weight.val();
            self.lm_head = Some(Projection::from_hf(weight, None));
            self.config.tie_word_embeddings = false;
        }
        self
    }

    /// Makes the base parameters `select` picks (by Hugging Face name) trainable, replacing the
    /// values of those `values` holds (Hugging Face name, layout and shape; read from
    /// `source_name`); the names made trainable come back with the model. peft's
    /// `modules_to_save`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a value of the wrong shape, [`Error::UnexpectedTensors`]
    /// for values no selected parameter takes.
    pub fn train_selected(
        self,
        select: &dyn Fn(&str) -> bool,
        values: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
        source_name: &str,
    ) -> Result<(Self, Vec<String>)> {
        let device = self.device();
        let mut mapper = hf_names::TrainSelected::new(select, values, source_name, device);
        let model = self.map(&mut mapper);
        Ok((model, mapper.finish()?))
    }

    /// Folds every adapter into its dense weight and drops it (peft's `merge_and_unload`).
    pub fn merge_adapters(self) -> Self {
        infallible(self.map_projections(|_, p| Ok(p.merge())))
    }

    /// [`merge_adapters`](Self::merge_adapters) keeping every zero of the base weights zero
    /// (see [`Projection::merge_keeping_zeros`]): a pruned model stays pruned.
    pub fn merge_adapters_keeping_zeros(self) -> Self {
        infallible(self.map_projections(|_, p| Ok(p.merge_keeping_zeros())))
    }

    /// Replaces every projection with `f(name, projection)` (names as [`projections`]
    /// (Self::projections)): how adapters are attached, merged or taken out.
    pub fn map_projections<E>(
        mut self,
        mut f: impl FnMut(&str, Projection) -> std::result::Result<Projection, E>,
    ) -> std::result::Result<Self, E> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, mut layer) in std::mem::take(&mut self.layers).into_iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = layer.self_attn;
            let m = layer.mlp;
            layer.self_attn = Attention {
                q_proj: f(&format!("{p}.self_attn.q_proj"), a.q_proj)?,
                k_proj: f(&format!("{p}.self_attn.k_proj"), a.k_proj)?,
                v_proj: f(&format!("{p}.self_attn.v_proj"), a.v_proj)?,
                o_proj: f(&format!("{p}.self_attn.o_proj"), a.o_proj)?,
                ..a
            };
            layer.mlp = Mlp {
                gate_proj: f(&format!("{p}.mlp.gate_proj"), m.gate_proj)?,
                up_proj: f(&format!("{p}.mlp.up_proj"), m.up_proj)?,
                down_proj: f(&format!("{p}.mlp.down_proj"), m.down_proj)?,
            };
            layers.push(layer);
        }
        self.layers = layers;
        if let Some(head) = self.lm_head.take() {
            self.lm_head = Some(f("lm_head", head)?);
        }
        Ok(self)
    }

    /// A smaller decoder made of the layers at `keep` (in that order, each once), sharing
    /// everything else: a distillation student initialised from its teacher (`0..n` for the
    /// first n layers, `(0..L).step_by(k)` for every k-th).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no layers, an index out of range or one given twice.
    pub fn keep_layers(mut self, keep: &[usize]) -> Result<Self> {
        let n = self.layers.len();
        let mut seen = vec![false; n];
        for &i in keep {
            if i >= n || std::mem::replace(&mut seen[i], true) {
                return Err(Error::InvalidConfig(format!(
                    "layer {i} is out of range (0..{n}) or kept twice"
                )));
            }
        }
        if keep.is_empty() {
            return Err(Error::InvalidConfig(
                "a decoder needs at least one layer".into(),
            ));
        }
        let mut slots: Vec<Option<DecoderLayer>> = std::mem::take(&mut self.layers)
            .into_iter()
            .map(Some)
            .collect();
        self.layers = keep.iter().filter_map(|&i| slots[i].take()).collect();
        self.config.num_hidden_layers = keep.len();
        Ok(self)
    }

    /// The configuration this decoder was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// The tensor-level forward pass (differentiable on an autodiff device).
    ///
    /// # Shapes
    /// - `ids` `[B, T]`, `positions` `[B, T]` (RoPE positions),
    /// - `mask` `[B, 1, T, T_past + T]`, `true` where a query must not see a key,
    /// - returns logits `[B, T, vocab]`, or `[B, 1, vocab]` with [`LogitsScope::Last`].
    pub fn forward_tensors(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: Tensor<4, Bool>,
        cache: Option<&mut KvCache>,
        scope: LogitsScope,
    ) -> Tensor<3> {
        let mut h = self.hidden_states(ids, positions, mask, cache);
        if scope == LogitsScope::Last {
            let t = h.dims()[1];
            h = h.narrow(1, t - 1, 1);
        }
        let [b, t, d] = h.dims();
        let logits = self.lm_head(h.reshape([b * t, d]));
        let vocab = logits.dims()[1];
        logits.reshape([b, t, vocab])
    }

    /// The final hidden states `[B, T, hidden]` (after the last norm, before the LM head) of
    /// [`forward_tensors`](Self::forward_tensors): what the head maps to logits, for callers
    /// that need logits at a few positions only (training on sparse targets).
    pub fn hidden_states(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: Tensor<4, Bool>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let (cos, sin) = self.rope.tables(positions);
        let mut h = self.embed_tokens.forward(ids);
        // Sliding windows by layer (Mistral: all, Qwen2: from `max_window_layers` on), each
        // mask made once.
        let mut windowed: Vec<(usize, Tensor<4, Bool>)> = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer_mut(i));
            let layer_mask = match self.config.sliding_window_at(i) {
                None => &mask,
                Some(w) => {
                    let at = match windowed.iter().position(|(ww, _)| *ww == w) {
                        Some(at) => at,
                        None => {
                            windowed.push((w, window_mask(&mask, w)));
                            windowed.len() - 1
                        }
                    };
                    &windowed[at].1
                }
            };
            let x = layer.input_layernorm.forward(h.clone());
            h = h + layer.self_attn.forward(x, &cos, &sin, layer_mask, slot);
            let x = layer.post_attention_layernorm.forward(h.clone());
            h = h + layer.mlp.forward(x);
        }
        self.norm.forward(h)
    }

    /// The LM head on rows of final hidden states: `[N, hidden]` to `[N, vocab]` logits (the
    /// transposed embedding when tied).
    pub fn lm_head(&self, h: Tensor<2>) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => {
                let [n, d] = h.dims();
                let out = head.forward(h.reshape([1, n, d]));
                let vocab = out.dims()[2];
                out.reshape([n, vocab])
            }
            // A 2-D matmul against the transposed embedding view (a batched 3-D matmul copies
            // the whole matrix).
            None => h.matmul(self.embed_tokens.weight.val().transpose()),
        }
    }
}

/// `mask` `[B, 1, T, T_past + T]` with the keys outside a `window`-token sliding window also
/// masked: the query in slot `T_past + i` sees key slots `j` with `T_past + i - j < window`, as
/// transformers' `sliding_window_overlay` does on cache positions.
fn window_mask(mask: &Tensor<4, Bool>, window: usize) -> Tensor<4, Bool> {
    let [b, _, t, tk] = mask.dims();
    let past = tk - t;
    let outside: Vec<bool> = (0..t)
        .flat_map(|i| (0..tk).map(move |j| past + i >= j + window))
        .collect();
    let outside =
        Tensor::<4, Bool>::from_data(TensorData::new(outside, [1, 1, t, tk]), &mask.device());
    mask.clone().bool_or(outside.expand([b, 1, t, tk]))
}

/// The value of a result that cannot be an error.
pub(crate) fn infallible<T>(r: std::result::Result<T, std::convert::Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

impl Decoder {
    /// [`CausalLm::forward`] for a call after which the rope of the cached keys no longer holds
    /// ([`Rotary::recomputes`]): the cached tokens and the new ones run again from an empty
    /// cache, which replaces `cache`; the logits are those of the new tokens.
    fn recompute(
        &self,
        batch: &TokenBatch,
        cache: &mut KvCache,
        mask_rows: &[Vec<bool>],
    ) -> Result<Logits> {
        fn join<T: Clone>(a: &[Vec<T>], b: &[Vec<T>]) -> Vec<Vec<T>> {
            a.iter().zip(b).map(|(x, y)| [&x[..], y].concat()).collect()
        }
        let past = cache.len();
        let full = TokenBatch {
            ids: join(cache.ids(), &batch.ids),
            attention_mask: Some(join(cache.key_valid(), mask_rows)),
            scope: batch.scope,
        };
        let mut fresh = self.new_cache();
        let all = self.forward(&full, &mut fresh)?;
        *cache = fresh;
        if batch.scope == LogitsScope::Last {
            return Ok(all);
        }
        let (b, vocab) = (all.batch, all.vocab);
        let t = all.positions - past;
        let mut values = Vec::with_capacity(b * t * vocab);
        for row in 0..b {
            let start = (row * all.positions + past) * vocab;
            values.extend_from_slice(&all.values[start..start + t * vocab]);
        }
        Ok(Logits {
            values,
            batch: b,
            positions: t,
            vocab,
        })
    }
}

impl CausalLm for Decoder {
    type Cache = KvCache;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_hidden_layers)
    }

    fn forward(&self, batch: &TokenBatch, cache: &mut KvCache) -> Result<Logits> {
        let (b, t) = batch.validate(self.config.vocab_size)?;
        if !cache.is_empty() && cache.batch_size() != b {
            return Err(Error::InvalidInput(format!(
                "batch of {b} rows does not match the cache's {} rows",
                cache.batch_size()
            )));
        }
        let mask_rows = batch
            .attention_mask
            .clone()
            .unwrap_or_else(|| vec![vec![true; t]; b]);
        let past = cache.len();
        if self.rope.rotary.recomputes(past, t) {
            return self.recompute(batch, cache, &mask_rows);
        }
        // RoPE positions continue from the real tokens already cached; padded slots get 1, as
        // transformers' generate() does (they are masked anyway).
        let mut positions = Vec::with_capacity(b * t);
        for (row, m) in mask_rows.iter().enumerate() {
            let mut next = cache
                .key_valid()
                .get(row)
                .map(|k| k.iter().filter(|&&v| v).count())
                .unwrap_or(0);
            for &real in m {
                positions.push(if real { next as i32 } else { 1 });
                next += real as usize;
            }
        }
        cache.push_tokens(&mask_rows, &batch.ids);
        let tk = past + t;
        let mut masked = Vec::with_capacity(b * t * tk);
        for valid in cache.key_valid() {
            for i in 0..t {
                let q = past + i;
                for (j, &real) in valid.iter().enumerate() {
                    masked.push(j > q || !real);
                }
            }
        }
        let device = self.device();
        let ids: Vec<i32> = batch.ids.iter().flatten().map(|&id| id as i32).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [b, t]), &device);
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(masked, [b, 1, t, tk]), &device);
        let logits = self.forward_tensors(ids, positions, mask, Some(cache), batch.scope);
        let [_, positions, vocab] = logits.dims();
        let values = logits
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Backend(format!("reading logits: {e:?}")))?;
        Ok(Logits {
            values,
            batch: b,
            positions,
            vocab,
        })
    }
}

//! [`FastDecoder`]: the decoder of [`crate::model::Decoder`] again, over weights kept as stored,
//! top to bottom in one pass per step: embedding rows dequantized as looked up, then per layer
//! RMSNorm, q/k/v in one matrix product, RoPE, keys and values written into the paged pool,
//! attention read from the blocks in place (online softmax, one pass over the keys), o_proj and
//! the residual, RMSNorm, gate/up in one product, SwiGLU, down_proj and the residual; the final
//! norm and the LM head only for the tokens that asked for logits.
//!
//! Every token of a step (any mix of sequences, prefill chunks and decode tokens) goes through
//! each matrix product together, so each weight row is read once per step.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slm_ggml::dot::{
    Activations, Matrix, PackedMatrix, Precision, exp_minus, f32_axpy, f32_dot, matmul,
};
use slm_ggml::pool::{ThreadPool, for_each_chunks_mut};

use super::adapter::{self, Adapter, AdapterScratch, layer_deltas};
use super::kv_pool::{DEFAULT_BLOCK_SIZE, KvPool};
use crate::causal_lm::{CausalLm, Logits, LogitsScope, TokenBatch};
use crate::config::{ModelConfig, Rotary};
use crate::error::{Error, Result};
use crate::model::hf_names::checked_layout;
use crate::peft::{AdapterWeights, read_adapter};
use crate::step::{AdapterId, BatchedLm, KvUsage, SeqChunk, SeqId, StepLogits, validate_chunks};
use crate::weights::{RawTensor, RowOrder, WeightSource};

/// How a [`FastDecoder`] is built: key/value budget, threads, precision.
#[derive(Debug, Clone, PartialEq)]
pub struct FastDecoderConfig {
    /// Bytes of the key/value pool (f32 keys and values of every layer). The pool is allocated
    /// zeroed and only touched as sequences grow. Default: 1 GiB.
    pub kv_budget_bytes: usize,
    /// Tokens per key/value block. Default: 16.
    pub block_size: usize,
    /// Threads of the decoder's own pool (`slm_ggml::pool::ThreadPool`: persistent threads
    /// that spin between the kernels of a step); `None`: one per core.
    pub threads: Option<usize>,
    /// How quantized weights meet the activations (default: quantized, as llama.cpp).
    pub precision: Precision,
    /// Repack Q8_0, Q4_0, Q4_1 and Q5_0 matrices at load into 8-row groups where the CPU runs
    /// them packed (`PackedMatrix::runs`: all four with AVX-512 VNNI, the 4- and 5-bit ones with
    /// AVX2), releasing the stored pages as it goes, as llama.cpp's repacking does. Default: on.
    pub repack: bool,
    /// Collect a per-op timing breakdown ([`FastDecoder::take_profile`]); also switched on by
    /// the `SLM_PROFILE` environment variable.
    pub profile: bool,
}

impl Default for FastDecoderConfig {
    fn default() -> Self {
        Self {
            kv_budget_bytes: 1 << 30,
            block_size: DEFAULT_BLOCK_SIZE,
            threads: None,
            precision: Precision::Quantized,
            repack: true,
            profile: std::env::var_os("SLM_PROFILE").is_some_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

impl FastDecoderConfig {
    /// Binds `weights` (checked against `config` exactly as the burn decoder checks them) and
    /// allocates the key/value pool.
    ///
    /// # Errors
    /// As [`checked_layout`]; [`Error::UnsupportedDtype`] for a storage type without a kernel;
    /// [`Error::InvalidInput`] for a budget that holds no block; [`Error::Backend`] when the
    /// thread pool cannot start.
    pub fn init(&self, config: &ModelConfig, weights: &dyn WeightSource) -> Result<FastDecoder> {
        FastDecoder::load(config, weights, self)
    }
}

/// Lets the stored pages of rows `rows` of `t` go (see [`crate::weights::SharedBytes::release_pages`]).
fn release_rows(t: &RawTensor, rows: std::ops::Range<usize>) {
    if let Some(part) = t.rows_slice(rows) {
        part.data.release_pages();
    }
}

/// The stored tensors of a checkpoint by canonical name, taken one by one as the decoder is
/// assembled.
struct Bound {
    raw: BTreeMap<String, RawTensor>,
    source: String,
}

impl Bound {
    fn take(&mut self, name: &str) -> Result<RawTensor> {
        self.raw.remove(name).ok_or_else(|| Error::MissingTensor {
            source_name: self.source.clone(),
            name: name.to_owned(),
        })
    }

    fn unsupported(&self, name: &str, t: &RawTensor) -> Error {
        Error::UnsupportedDtype {
            source_name: self.source.clone(),
            name: name.to_owned(),
            dtype: t.ty.name().to_owned(),
        }
    }

    /// A norm weight or bias, as f32 in stored row order.
    fn vector(&mut self, name: &str) -> Result<Vec<f32>> {
        let t = self.take(name)?;
        self.values(name, &t)
    }

    fn values(&self, name: &str, t: &RawTensor) -> Result<Vec<f32>> {
        slm_ggml::dequantize(t.ty, t.data.bytes(), t.shape.iter().product())
            .map_err(|_| self.unsupported(name, t))
    }

    /// `{prefix}.weight` as stored, and `{prefix}.bias` in the same row order.
    fn linear(&mut self, prefix: &str, bias: bool) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let weight = self.take(&name)?;
        if !Matrix::supports(weight.ty) || weight.shape.len() != 2 {
            return Err(self.unsupported(&name, &weight));
        }
        let bias = if bias {
            let bname = format!("{prefix}.bias");
            let b = self.take(&bname)?;
            if b.row_order != weight.row_order {
                return Err(Error::format(
                    &self.source,
                    format!("`{bname}` and `{name}` are stored in different row orders"),
                ));
            }
            Some(self.values(&bname, &b)?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            packed: None,
        })
    }
}

/// A projection over stored weights, with its bias in f32 and, where the CPU has the kernels
/// for its type, a repacked copy the products read instead.
#[derive(Debug, Clone)]
struct Linear {
    weight: RawTensor,
    bias: Option<Vec<f32>>,
    packed: Option<PackedMatrix>,
}

impl Linear {
    fn stored(&self) -> Matrix<'_> {
        Matrix::new(
            self.weight.ty,
            self.weight.rows(),
            self.weight.cols(),
            self.weight.data.bytes(),
        )
        .expect("checked when the weights were bound")
    }

    fn matrix(&self) -> Matrix<'_> {
        match &self.packed {
            Some(p) => self.stored().with_packed(p),
            None => self.stored(),
        }
    }

    /// Repacks the weight for the VNNI kernels where they apply, and lets the stored copy's
    /// pages go (the products read only the packed one).
    fn repack(&mut self) {
        self.packed =
            PackedMatrix::pack_with(&self.stored(), |rows| release_rows(&self.weight, rows));
    }

    /// Adds the bias to `out`, `tokens` rows of this projection's outputs.
    fn add_bias(&self, out: &mut [f32]) {
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    input_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Layer {
    /// The seven projections.
    fn linears(&self) -> [&Linear; 7] {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
    }

    /// The seven projections, writable.
    fn linears_mut(&mut self) -> [&mut Linear; 7] {
        [
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.o,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }
}

/// Time spent per operation since the last [`FastDecoder::take_profile`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Operation name -> (total time, calls).
    pub ops: BTreeMap<&'static str, (Duration, u64)>,
}

impl Profile {
    fn add(&mut self, op: &'static str, since: Instant) {
        let e = self.ops.entry(op).or_default();
        e.0 += since.elapsed();
        e.1 += 1;
    }

    /// One line per operation, largest first, with its share of the total.
    pub fn table(&self) -> String {
        let total: Duration = self.ops.values().map(|(d, _)| *d).sum();
        let mut rows: Vec<_> = self.ops.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
        rows.iter()
            .map(|(op, (d, n))| {
                format!(
                    "{op:<12} {:>9.3} ms {:>5.1}% {n:>8} calls",
                    d.as_secs_f64() * 1e3,
                    100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Buffers of one step, reused from step to step.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    head_in: Vec<f32>,
    logits: Vec<f32>,
    acts: Activations,
    /// Per token: (chunk index, position).
    tokens: Vec<(usize, usize)>,
    /// Per token: where its key and value go in a layer's pool arrays.
    offsets: Vec<usize>,
    /// Per chunk: its sequence.
    seqs: Vec<SeqId>,
    /// Per token: its id.
    ids: Vec<u32>,
    /// One embedding row in its stored form, unpacked from the tied head's packed copy.
    embed_row: Vec<u8>,
    /// Per token: its cos and sin tables, `rotary_dim / 2` each (scaled by the attention
    /// factor).
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The adapters' row groups and products.
    adapt: AdapterScratch,
}

#[derive(Debug)]
struct State {
    kv: KvPool,
    scratch: Scratch,
    profile: Option<Profile>,
    /// The adapter of every sequence that runs with one (index into `FastDecoder::adapters`).
    adapter_of: BTreeMap<SeqId, usize>,
    /// The tokens of every sequence, kept only for ropes whose switch re-runs a sequence
    /// ([`Rotary::recomputes`]: LongRoPE).
    history: BTreeMap<SeqId, Vec<u32>>,
}

/// The CPU fast path: the same model as [`crate::model::Decoder`] (one [`ModelConfig`], the
/// same [`WeightSource`] names and checks), computing on the weights as stored (GGUF blocks
/// straight from the memory map, or safetensors' floats) with slm-ggml's kernels, over a paged
/// key/value pool. It implements [`CausalLm`] for one-off use and [`BatchedLm`] for engines.
///
/// ```no_run
/// use slm_core::fast::FastDecoderConfig;
/// use slm_core::prelude::*;
///
/// # fn main() -> slm_core::Result<()> {
/// let ckpt = Checkpoint::open("SmolLM2-135M-Instruct.Q8_0.gguf".as_ref())?;
/// let model = FastDecoderConfig::default().init(&ckpt.config, ckpt.weights.as_ref())?;
/// let mut cache = model.new_cache();
/// let logits = model.forward(&TokenBatch::single(vec![1, 2, 3], LogitsScope::Last), &mut cache)?;
/// assert_eq!(logits.vocab, ckpt.config.vocab_size);
/// # Ok(()) }
/// ```
pub struct FastDecoder {
    config: ModelConfig,
    embed: RawTensor,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None` when tied to the embedding.
    lm_head: Option<Linear>,
    /// The embedding as the tied LM head's matrix, repacked (`None` when untied or unpacked).
    tied_head: Option<PackedMatrix>,
    /// The rope: frequencies (per sequence for length-dependent scalings), rotated dimensions,
    /// cos/sin scale.
    rotary: Rotary,
    /// Whether q/k rows are in llama.cpp's rotary order (pairs `2j, 2j + 1`).
    interleaved: bool,
    precision: Precision,
    threads: Arc<ThreadPool>,
    /// LoRA adapters sequences may run with ([`AdapterId`] `i` is the `i`-th).
    adapters: Vec<Adapter>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FastDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastDecoder")
            .field("config", &self.config)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl FastDecoder {
    fn load(
        config: &ModelConfig,
        weights: &dyn WeightSource,
        opts: &FastDecoderConfig,
    ) -> Result<Self> {
        config.validate()?;
        let source = weights.source_name();
        let mut raw: BTreeMap<String, RawTensor> = BTreeMap::new();
        for t in checked_layout(config, weights)? {
            let whole = weights.read_raw(&t.name)?;
            if t.parts.len() == 1 {
                raw.insert(t.name, whole);
                continue;
            }
            let mut start = 0;
            for (part, rows) in &t.parts {
                let slice = whole.rows_slice(start..start + rows).ok_or_else(|| {
                    Error::format(&source, format!("cannot split `{}` by rows", t.name))
                })?;
                raw.insert(part.clone(), slice);
                start += rows;
            }
        }
        let mut tensors = Bound {
            raw,
            source: source.clone(),
        };
        let c = config;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        let mut orders = Vec::new();
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let q = tensors.linear(&format!("{p}.self_attn.q_proj"), c.attention_bias)?;
            let k = tensors.linear(&format!("{p}.self_attn.k_proj"), c.attention_bias)?;
            let v = tensors.linear(&format!("{p}.self_attn.v_proj"), c.attention_bias)?;
            let o = tensors.linear(&format!("{p}.self_attn.o_proj"), c.o_proj_bias)?;
            let gate = tensors.linear(&format!("{p}.mlp.gate_proj"), c.mlp_bias)?;
            let up = tensors.linear(&format!("{p}.mlp.up_proj"), c.mlp_bias)?;
            let down = tensors.linear(&format!("{p}.mlp.down_proj"), c.mlp_bias)?;
            orders.push((q.weight.row_order, k.weight.row_order));
            for l in [&v, &o, &gate, &up, &down] {
                if l.weight.row_order != RowOrder::Hf {
                    return Err(Error::format(
                        &source,
                        "only q/k rows may be in rotary order",
                    ));
                }
            }
            layers.push(Layer {
                input_norm: tensors.vector(&format!("{p}.input_layernorm.weight"))?,
                q,
                k,
                v,
                o,
                post_norm: tensors.vector(&format!("{p}.post_attention_layernorm.weight"))?,
                gate,
                up,
                down,
            });
        }
        let interleaved = matches!(
            orders.first(),
            Some((
                RowOrder::RotaryInterleaved { .. },
                RowOrder::RotaryInterleaved { .. }
            ))
        );
        let expected = |heads| {
            if interleaved {
                RowOrder::RotaryInterleaved { heads }
            } else {
                RowOrder::Hf
            }
        };
        if orders.iter().any(|&(q, k)| {
            q != expected(c.num_attention_heads) || k != expected(c.num_key_value_heads)
        }) {
            return Err(Error::format(
                &source,
                "q_proj and k_proj rows must share one rotary order in every layer",
            ));
        }
        if interleaved && c.rotary_dim() != c.head_dim {
            return Err(Error::Unsupported {
                what: "partial rotary on q/k rows in llama.cpp's interleaved order",
                value: format!("{} of {} dimensions", c.rotary_dim(), c.head_dim),
            });
        }
        let embed = tensors.take("model.embed_tokens.weight")?;
        if !embed.ty.can_dequantize() || embed.shape.len() != 2 || embed.row_bytes().is_none() {
            return Err(tensors.unsupported("model.embed_tokens.weight", &embed));
        }
        let norm = tensors.vector("model.norm.weight")?;
        let lm_head = if c.tie_word_embeddings {
            if !Matrix::supports(embed.ty) {
                return Err(tensors.unsupported("model.embed_tokens.weight", &embed));
            }
            None
        } else {
            Some(tensors.linear("lm_head", false)?)
        };
        let n = opts.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let threads = Arc::new(
            ThreadPool::new(n).map_err(|e| Error::Backend(format!("starting {n} threads: {e}")))?,
        );
        let kv_dim = c.num_key_value_heads * c.head_dim;
        let mut lm_head = lm_head;
        let mut tied_head = None;
        if opts.repack && opts.precision == Precision::Quantized {
            for l in &mut layers {
                l.linears_mut().into_iter().for_each(Linear::repack);
            }
            match &mut lm_head {
                Some(h) => h.repack(),
                None => {
                    let m = Matrix::new(embed.ty, c.vocab_size, c.hidden_size, embed.data.bytes())?;
                    // Lookups fault in only the rows of the tokens seen.
                    tied_head = PackedMatrix::pack_with(&m, |rows| release_rows(&embed, rows));
                }
            }
        }
        let rotary = Rotary::new(c);
        let reruns = rotary.may_recompute();
        Ok(Self {
            config: c.clone(),
            embed,
            layers,
            norm,
            lm_head,
            tied_head,
            rotary,
            interleaved,
            precision: opts.precision,
            threads,
            adapters: Vec::new(),
            state: Arc::new(Mutex::new(State {
                kv: {
                    let pool = KvPool::new(
                        c.num_hidden_layers,
                        kv_dim,
                        opts.block_size,
                        opts.kv_budget_bytes,
                    )?;
                    // Every layer sliding by one window (Mistral): keys that left it are given
                    // back. Not for ropes that re-run a sequence from its first token.
                    let windows: Vec<Option<usize>> = (0..c.num_hidden_layers)
                        .map(|l| c.sliding_window_at(l))
                        .collect();
                    match windows.first() {
                        Some(&Some(w)) if windows.iter().all(|&x| x == Some(w)) && !reruns => {
                            pool.with_sliding_window(w)
                        }
                        _ => pool,
                    }
                },
                scratch: Scratch::default(),
                profile: opts.profile.then(Profile::default),
                adapter_of: BTreeMap::new(),
                history: BTreeMap::new(),
            })),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Loads the peft LoRA adapter in `dir` ([`read_adapter`]: LoRA, rsLoRA, DoRA,
    /// `modules_to_save`) under `name`, to be applied unmerged to the sequences made with its
    /// id ([`BatchedLm::add_sequence_with`]); see [`super::adapter`] for how.
    ///
    /// # Errors
    /// As [`read_adapter`]; [`Error::InvalidInput`] for a name already taken.
    pub fn load_adapter(&mut self, name: &str, dir: &std::path::Path) -> Result<AdapterId> {
        let weights = read_adapter(dir, &self.config)?;
        self.add_adapter(name, weights)
    }

    /// The stored projection `module` (`model.layers.0.self_attn.q_proj`, `lm_head`; `None`
    /// for a tied head or an unknown name).
    fn base_linear(&self, module: &str) -> Option<adapter::BaseLinear<'_>> {
        let linear = match module.strip_prefix("model.layers.") {
            Some(rest) => {
                let (i, proj) = rest.split_once('.')?;
                let slot = adapter::PROJECTIONS.iter().position(|p| *p == proj)?;
                self.layers.get(i.parse::<usize>().ok()?)?.linears()[slot]
            }
            None if module == "lm_head" => self.lm_head.as_ref()?,
            None => return None,
        };
        Some((&linear.weight, linear.bias.as_deref()))
    }

    /// [`load_adapter`](Self::load_adapter) for an adapter already read.
    ///
    /// # Errors
    /// As [`load_adapter`](Self::load_adapter).
    pub fn add_adapter(&mut self, name: &str, weights: AdapterWeights) -> Result<AdapterId> {
        if self.adapters.iter().any(|a| a.name == name) {
            return Err(Error::InvalidInput(format!(
                "an adapter named `{name}` is already loaded"
            )));
        }
        let built = adapter::build(name, weights, &self.config, &|m| self.base_linear(m))?;
        self.adapters.push(built);
        Ok(AdapterId(self.adapters.len() - 1))
    }

    /// Bytes of the weights as held (the stored blocks, memory-mapped where the file allows).
    pub fn weight_bytes(&self) -> usize {
        self.layer_bytes()
            + self.embed.data.len()
            + self.lm_head.as_ref().map_or(0, |l| l.weight.data.len())
    }

    /// Bytes of weights one decode step reads (every matrix once, one embedding row).
    pub fn bytes_per_token(&self) -> usize {
        let head = self.lm_head.as_ref().map_or(&self.embed, |l| &l.weight);
        self.layer_bytes() + head.data.len() + self.embed_row_bytes()
    }

    /// Bytes of the layers' projections.
    fn layer_bytes(&self) -> usize {
        let layers = self.layers.iter().flat_map(Layer::linears);
        layers.map(|l| l.weight.data.len()).sum()
    }

    /// Bytes of one embedding row (whole blocks: checked at load).
    fn embed_row_bytes(&self) -> usize {
        self.embed
            .row_bytes()
            .expect("checked when the weights were bound")
    }

    /// The timing breakdown since the last call (`None` unless profiling is on).
    pub fn take_profile(&self) -> Option<Profile> {
        self.lock().profile.as_mut().map(std::mem::take)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_pool<T>(&self, f: impl FnOnce() -> T) -> T {
        self.threads.install(f)
    }

    /// Validates, reserves blocks, runs and commits one step; on error no sequence changes.
    fn step_locked(&self, st: &mut State, chunks: &[SeqChunk<'_>]) -> Result<StepLogits> {
        validate_chunks(&self.config, chunks, |id| st.kv.len(id))?;
        let needed: usize = chunks
            .iter()
            .map(|c| st.kv.blocks_needed(c.seq, c.tokens.len()))
            .sum();
        let free = st.kv.usage().free_blocks;
        if needed > free {
            return Err(Error::KvCacheFull { needed, free });
        }
        let starts: Vec<usize> = chunks
            .iter()
            .map(|c| st.kv.len(c.seq).unwrap_or(0))
            .collect();
        for c in chunks {
            st.kv.reserve(c.seq, c.tokens.len())?;
        }
        // A sequence whose rope switches in this step runs again from its first token, over
        // blocks it owns alone (a fork's shared keys keep their rotation).
        let rerun: Vec<Option<Vec<u32>>> = chunks
            .iter()
            .zip(&starts)
            .map(|(c, &start)| {
                if !self.rotary.recomputes(start, c.tokens.len()) {
                    return None;
                }
                let past = st.history.get(&c.seq)?.get(..start)?;
                Some([past, c.tokens].concat())
            })
            .collect();
        let owned = chunks
            .iter()
            .zip(&rerun)
            .filter(|(_, r)| r.is_some())
            .try_for_each(|(c, _)| st.kv.own_all(c.seq));
        let result = if let Err(e) = owned {
            Err(e)
        } else if rerun.iter().all(Option::is_none) {
            self.in_pool(|| self.run(st, chunks, &starts))
        } else {
            let expanded: Vec<SeqChunk<'_>> = chunks
                .iter()
                .zip(&rerun)
                .map(|(c, r)| SeqChunk {
                    tokens: r.as_deref().unwrap_or(c.tokens),
                    ..*c
                })
                .collect();
            let from: Vec<usize> = starts
                .iter()
                .zip(&rerun)
                .map(|(&s, r)| if r.is_some() { 0 } else { s })
                .collect();
            self.in_pool(|| self.run(st, &expanded, &from))
                .map(|out| drop_rerun_rows(out, chunks, &starts, &rerun))
        };
        for (c, &start) in chunks.iter().zip(&starts) {
            match &result {
                Ok(_) => {
                    st.kv.set_len(c.seq, start + c.tokens.len());
                    if self.rotary.may_recompute() {
                        let h = st.history.entry(c.seq).or_default();
                        h.truncate(start);
                        h.extend_from_slice(c.tokens);
                    }
                }
                // Give back the blocks reserved for this step.
                Err(_) => st.kv.truncate(c.seq, start)?,
            }
        }
        result
    }

    /// The forward pass of one step (blocks reserved, positions from `starts`).
    fn run(&self, st: &mut State, chunks: &[SeqChunk<'_>], starts: &[usize]) -> Result<StepLogits> {
        let c = &self.config;
        let (d, dh) = (c.hidden_size, c.head_dim);
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let (qdim, kvdim, ff) = (nh * dh, nkv * dh, c.intermediate_size);
        let State {
            kv,
            scratch: s,
            profile,
            adapter_of,
            ..
        } = st;
        let mut prof = |op: &'static str, t: Instant| {
            if let Some(p) = profile.as_mut() {
                p.add(op, t);
            }
        };

        // Flatten the ragged batch: every token with its chunk and position.
        s.tokens.clear();
        for (i, (ch, &start)) in chunks.iter().zip(starts).enumerate() {
            s.tokens
                .extend((0..ch.tokens.len()).map(|k| (i, start + k)));
        }
        let n = s.tokens.len();
        s.ids.clear();
        s.ids
            .extend(chunks.iter().flat_map(|ch| ch.tokens.iter().copied()));
        // Tokens grouped by the adapter their sequence runs with.
        let adapter_of_chunk = |i: usize| adapter_of.get(&chunks[i].seq).copied();
        AdapterScratch::group(
            &mut s.adapt.groups,
            s.tokens
                .iter()
                .enumerate()
                .filter_map(|(row, &(ch, _))| Some((row, adapter_of_chunk(ch)?))),
        );

        let t = Instant::now();
        s.x.resize(n * d, 0.0);
        let row_bytes = self.embed_row_bytes();
        let embed = self.embed.data.bytes();
        for (&id, x) in s.ids.iter().zip(s.x.chunks_exact_mut(d)) {
            let id = id as usize;
            // A tied head's packed copy holds the embedding too: reading it keeps the stored
            // pages released (a page faulted in per lookup brings its neighbours with it).
            let row = match &self.tied_head {
                Some(p) => {
                    s.embed_row.resize(row_bytes, 0);
                    p.unpack_row(id, &mut s.embed_row);
                    &s.embed_row[..]
                }
                None => &embed[id * row_bytes..(id + 1) * row_bytes],
            };
            slm_ggml::dequantize_into(self.embed.ty, row, x)?;
        }
        for (a, rows) in &s.adapt.groups {
            if let Some(e) = &self.adapters[*a].embed {
                for &r in rows {
                    let id = s.ids[r] as usize;
                    s.x[r * d..(r + 1) * d].copy_from_slice(&e[id * d..(id + 1) * d]);
                }
            }
        }
        // RoPE tables per token, each sequence's frequencies from its furthest position in
        // this step (see `Rotary`).
        let rd = self.rotary.rotary_dim();
        let half = rd / 2;
        let scale = self.rotary.attention_factor();
        s.cos.resize(n * half, 0.0);
        s.sin.resize(n * half, 0.0);
        let mut i = 0;
        for (ch, &start) in chunks.iter().zip(starts) {
            let len = ch.tokens.len();
            let inv_freq = self.rotary.inv_freq((start + len).saturating_sub(1));
            for pos in start..start + len {
                for (j, f) in inv_freq.iter().enumerate() {
                    let a = pos as f32 * f;
                    s.cos[i * half + j] = a.cos() * scale;
                    s.sin[i * half + j] = a.sin() * scale;
                }
                i += 1;
            }
        }
        prof("embed", t);

        let eps = c.rms_norm_eps as f32;
        s.seqs.clear();
        s.seqs.extend(chunks.iter().map(|ch| ch.seq));
        // Where each token's key and value go, the same in every layer.
        s.offsets.clear();
        for &(ch, pos) in &s.tokens {
            s.offsets.push(kv.offset(kv.blocks(s.seqs[ch]), pos));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let t = Instant::now();
            rms_norm(&s.x, &layer.input_norm, eps, &mut s.h);
            self.adapted_norms(
                &s.adapt.groups,
                |a| a.layers[l].input_norm.as_ref(),
                &s.x,
                eps,
                &mut s.h,
            );
            prof("norm", t);

            let t = Instant::now();
            s.q.resize(n * qdim, 0.0);
            s.k.resize(n * kvdim, 0.0);
            s.v.resize(n * kvdim, 0.0);
            self.matmul(
                &mut [
                    (layer.q.matrix(), &mut s.q[..]),
                    (layer.k.matrix(), &mut s.k[..]),
                    (layer.v.matrix(), &mut s.v[..]),
                ],
                &s.h,
                &mut s.acts,
            )?;
            adapter::apply(
                &self.adapters,
                &mut s.adapt,
                false,
                |a| layer_deltas(a, l, [0, 1, 2]),
                &s.h,
                d,
                [&mut s.q[..], &mut s.k[..], &mut s.v[..]],
            )?;
            layer.q.add_bias(&mut s.q);
            layer.k.add_bias(&mut s.k);
            layer.v.add_bias(&mut s.v);
            prof("qkv", t);

            let t = Instant::now();
            for i in 0..n {
                let (cos, sin) = (
                    &s.cos[i * half..(i + 1) * half],
                    &s.sin[i * half..(i + 1) * half],
                );
                for head in s.q[i * qdim..(i + 1) * qdim].chunks_exact_mut(dh) {
                    rope(&mut head[..rd], cos, sin, self.interleaved);
                }
                for head in s.k[i * kvdim..(i + 1) * kvdim].chunks_exact_mut(dh) {
                    rope(&mut head[..rd], cos, sin, self.interleaved);
                }
            }
            {
                let (keys, values) = kv.layer_mut(l);
                for (i, &off) in s.offsets.iter().enumerate() {
                    keys[off..off + kvdim].copy_from_slice(&s.k[i * kvdim..(i + 1) * kvdim]);
                    values[off..off + kvdim].copy_from_slice(&s.v[i * kvdim..(i + 1) * kvdim]);
                }
            }
            prof("rope+kv", t);

            let t = Instant::now();
            s.att.resize(n * qdim, 0.0);
            self.attention(kv, l, &s.seqs, &s.tokens, &s.q, &mut s.att);
            prof("attention", t);

            let t = Instant::now();
            s.o.resize(n * d, 0.0);
            self.matmul(&mut [(layer.o.matrix(), &mut s.o[..])], &s.att, &mut s.acts)?;
            adapter::apply(
                &self.adapters,
                &mut s.adapt,
                false,
                |a| layer_deltas(a, l, [3]),
                &s.att,
                qdim,
                [&mut s.o[..]],
            )?;
            layer.o.add_bias(&mut s.o);
            s.x.iter_mut().zip(&s.o).for_each(|(x, o)| *x += o);
            prof("o_proj", t);

            let t = Instant::now();
            rms_norm(&s.x, &layer.post_norm, eps, &mut s.h);
            self.adapted_norms(
                &s.adapt.groups,
                |a| a.layers[l].post_norm.as_ref(),
                &s.x,
                eps,
                &mut s.h,
            );
            s.gate.resize(n * ff, 0.0);
            s.up.resize(n * ff, 0.0);
            self.matmul(
                &mut [
                    (layer.gate.matrix(), &mut s.gate[..]),
                    (layer.up.matrix(), &mut s.up[..]),
                ],
                &s.h,
                &mut s.acts,
            )?;
            adapter::apply(
                &self.adapters,
                &mut s.adapt,
                false,
                |a| layer_deltas(a, l, [4, 5]),
                &s.h,
                d,
                [&mut s.gate[..], &mut s.up[..]],
            )?;
            layer.gate.add_bias(&mut s.gate);
            layer.up.add_bias(&mut s.up);
            let up = &s.up;
            for_each_chunks_mut(&mut s.gate, ff, |first, part| {
                slm_ggml::dot::silu_mul(part, &up[first * ff..first * ff + part.len()]);
            });
            prof("gate_up", t);

            let t = Instant::now();
            self.matmul(
                &mut [(layer.down.matrix(), &mut s.o[..])],
                &s.gate,
                &mut s.acts,
            )?;
            adapter::apply(
                &self.adapters,
                &mut s.adapt,
                false,
                |a| layer_deltas(a, l, [6]),
                &s.gate,
                ff,
                [&mut s.o[..]],
            )?;
            layer.down.add_bias(&mut s.o);
            s.x.iter_mut().zip(&s.o).for_each(|(x, o)| *x += o);
            prof("down", t);
        }

        // The final norm and the LM head, only where logits are wanted.
        let t = Instant::now();
        let mut rows = Vec::with_capacity(chunks.len());
        s.head_in.clear();
        let mut first_token = 0;
        for ch in chunks {
            let k = ch.tokens.len();
            let wanted = match ch.logits {
                None => 0..0,
                Some(LogitsScope::Last) => k - 1..k,
                Some(LogitsScope::All) => 0..k,
            };
            rows.push((s.head_in.len() / d, wanted.len()));
            for t in wanted {
                let i = first_token + t;
                s.head_in.extend_from_slice(&s.x[i * d..(i + 1) * d]);
            }
            first_token += k;
        }
        let r = s.head_in.len() / d;
        let vocab = c.vocab_size;
        AdapterScratch::group(
            &mut s.adapt.head_groups,
            rows.iter().enumerate().flat_map(|(i, &(start, k))| {
                adapter_of_chunk(i)
                    .into_iter()
                    .flat_map(move |a| (start..start + k).map(move |row| (row, a)))
            }),
        );
        let mut normed = std::mem::take(&mut s.h);
        rms_norm(&s.head_in, &self.norm, eps, &mut normed);
        self.adapted_norms(
            &s.adapt.head_groups,
            |a| a.norm.as_ref(),
            &s.head_in,
            eps,
            &mut normed,
        );
        s.logits.resize(r * vocab, 0.0);
        if r > 0 {
            let head = match &self.lm_head {
                Some(l) => l.matrix(),
                None => {
                    let m = Matrix::new(self.embed.ty, vocab, d, self.embed.data.bytes())?;
                    match &self.tied_head {
                        Some(p) => m.with_packed(p),
                        None => m,
                    }
                }
            };
            self.matmul(&mut [(head, &mut s.logits[..])], &normed, &mut s.acts)?;
            adapter::apply(
                &self.adapters,
                &mut s.adapt,
                true,
                |a| [a.head.as_ref()],
                &normed,
                d,
                [&mut s.logits[..]],
            )?;
        }
        s.h = normed;
        prof("lm_head", t);
        Ok(StepLogits {
            values: s.logits.clone(),
            vocab,
            rows,
        })
    }

    /// Re-normalises the rows of each adapter group whose adapter saved its own weight for
    /// this norm (`pick`).
    fn adapted_norms(
        &self,
        groups: &[(usize, Vec<usize>)],
        pick: impl Fn(&Adapter) -> Option<&Vec<f32>>,
        x: &[f32],
        eps: f32,
        out: &mut [f32],
    ) {
        let d = self.config.hidden_size;
        for (a, rows) in groups {
            if let Some(w) = pick(&self.adapters[*a]) {
                for &r in rows {
                    rms_norm_row(&x[r * d..(r + 1) * d], w, eps, &mut out[r * d..(r + 1) * d]);
                }
            }
        }
    }

    fn matmul(
        &self,
        products: &mut [(Matrix<'_>, &mut [f32])],
        x: &[f32],
        acts: &mut Activations,
    ) -> Result<()> {
        match self.precision {
            Precision::Quantized => matmul(products, x, acts)?,
            p => slm_ggml::dot::matmul_with(slm_ggml::dot::Kernel::detect(), p, products, x, acts)?,
        }
        Ok(())
    }

    /// Causal (and sliding-window) attention of every new token over its sequence's keys, read
    /// from the pool's blocks in place, one (token, head) per job, with an online softmax.
    fn attention(
        &self,
        kv: &KvPool,
        layer: usize,
        seqs: &[SeqId],
        tokens: &[(usize, usize)],
        q: &[f32],
        out: &mut [f32],
    ) {
        let c = &self.config;
        let (nh, dh) = (c.num_attention_heads, c.head_dim);
        let groups = c.kv_groups();
        let scale = (1.0 / (dh as f64).sqrt()) as f32;
        let window = c.sliding_window_at(layer);
        let (keys, values) = kv.layer(layer);
        const TILE: usize = 16;
        // One (token, head) per chunk of `dh` outputs.
        for_each_chunks_mut(out, dh, |first, part| {
            for (k, out) in part.chunks_exact_mut(dh).enumerate() {
                let job = first + k;
                let (i, h) = (job / nh, job % nh);
                let (ch, pos) = tokens[i];
                let blocks = kv.blocks(seqs[ch]);
                let q = &q[i * nh * dh + h * dh..][..dh];
                let kv_off = (h / groups) * dh;
                let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                out.fill(0.0);
                let (mut max, mut sum) = (f32::NEG_INFINITY, 0.0f32);
                let mut scores = [0.0f32; TILE];
                let mut offs = [0usize; TILE];
                // Position `j`'s block and place in it, advanced without a division per key.
                let bs = kv.block_size();
                let (mut block, mut slot) = (first / bs, first % bs);
                let mut j = first;
                while j <= pos {
                    let m = TILE.min(pos + 1 - j);
                    let mut tile_max = f32::NEG_INFINITY;
                    for t in 0..m {
                        let off = kv.slot_offset(blocks, block, slot) + kv_off;
                        slot += 1;
                        if slot == bs {
                            (block, slot) = (block + 1, 0);
                        }
                        offs[t] = off;
                        let s = f32_dot(q, &keys[off..off + dh]) * scale;
                        scores[t] = s;
                        tile_max = tile_max.max(s);
                    }
                    let new_max = max.max(tile_max);
                    let correction = (max - new_max).exp();
                    if correction != 1.0 {
                        sum *= correction;
                        out.iter_mut().for_each(|o| *o *= correction);
                    }
                    exp_minus(&mut scores[..m], new_max);
                    for t in 0..m {
                        sum += scores[t];
                        f32_axpy(scores[t], &values[offs[t]..offs[t] + dh], out);
                    }
                    max = new_max;
                    j += m;
                }
                let inv = 1.0 / sum;
                out.iter_mut().for_each(|o| *o *= inv);
            }
        });
    }
}

/// The logits of a step some of whose chunks re-ran from their first token: those chunks'
/// rows for the tokens they already held are dropped, so each chunk has the rows it asked for.
fn drop_rerun_rows(
    out: StepLogits,
    chunks: &[SeqChunk<'_>],
    starts: &[usize],
    rerun: &[Option<Vec<u32>>],
) -> StepLogits {
    let vocab = out.vocab;
    let mut values = Vec::with_capacity(out.values.len());
    let mut rows = Vec::with_capacity(out.rows.len());
    for (i, (&(first, n), r)) in out.rows.iter().zip(rerun).enumerate() {
        // A re-run chunk asking for every row got one per token it re-ran; keep the new ones.
        let skip = match r {
            Some(_) if chunks[i].logits == Some(LogitsScope::All) => starts[i],
            _ => 0,
        };
        let keep = n.saturating_sub(skip);
        rows.push((values.len() / vocab.max(1), keep));
        values.extend_from_slice(&out.values[(first + skip) * vocab..(first + n) * vocab]);
    }
    StepLogits {
        values,
        vocab,
        rows,
    }
}

/// `out = x / sqrt(mean(x^2) + eps) * weight`, row by row (rows of `weight.len()` values).
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    let d = weight.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        rms_norm_row(row, weight, eps, o);
    }
}

/// [`rms_norm`] of one row.
fn rms_norm_row(row: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(row).zip(weight) {
        *o = v * inv * w;
    }
}

/// Rotates the rotary part of one head (`d` values): pairs `(j, j + d/2)` (transformers'
/// `rotate_half`) or, for rows in llama.cpp's order, `(2j, 2j + 1)`; pair `j` by the angle
/// whose (scaled) cosine and sine are `cos[j]`, `sin[j]`.
fn rope(head: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = head.len() / 2;
    for j in 0..half {
        let (a, b) = if interleaved {
            (2 * j, 2 * j + 1)
        } else {
            (j, j + half)
        };
        let (x1, x2) = (head[a], head[b]);
        head[a] = x1 * cos[j] - x2 * sin[j];
        head[b] = x2 * cos[j] + x1 * sin[j];
    }
}

/// The per-row sequences of a [`CausalLm`] batch on a [`FastDecoder`]; released when dropped.
pub struct FastCache {
    state: Arc<Mutex<State>>,
    rows: Vec<SeqId>,
}

impl std::fmt::Debug for FastCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastCache")
            .field("rows", &self.rows)
            .finish()
    }
}

impl Drop for FastCache {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &seq in &self.rows {
            st.kv.release(seq);
            st.history.remove(&seq);
        }
    }
}

impl CausalLm for FastDecoder {
    type Cache = FastCache;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn new_cache(&self) -> FastCache {
        FastCache {
            state: self.state.clone(),
            rows: Vec::new(),
        }
    }

    /// Padded positions are skipped (their logits are zeros); with [`LogitsScope::Last`] each
    /// row gets the logits of its last real token.
    fn forward(&self, batch: &TokenBatch, cache: &mut FastCache) -> Result<Logits> {
        let (b, t) = batch.validate(self.config.vocab_size)?;
        if !Arc::ptr_eq(&cache.state, &self.state) {
            return Err(Error::InvalidInput(
                "the cache belongs to another model".into(),
            ));
        }
        let mut st = self.lock();
        if cache.rows.is_empty() {
            cache.rows = (0..b).map(|_| st.kv.add()).collect();
        } else if cache.rows.len() != b {
            return Err(Error::InvalidInput(format!(
                "batch of {b} rows does not match the cache's {} rows",
                cache.rows.len()
            )));
        }
        let real: Vec<Vec<u32>> = (0..b)
            .map(|r| {
                batch.ids[r]
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| batch.attention_mask.as_ref().is_none_or(|m| m[r][j]))
                    .map(|(_, &id)| id)
                    .collect()
            })
            .collect();
        let scope = batch.scope;
        let chunks: Vec<SeqChunk<'_>> = cache
            .rows
            .iter()
            .zip(&real)
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(&seq, ids)| SeqChunk {
                seq,
                tokens: ids,
                logits: Some(scope),
            })
            .collect();
        let out = if chunks.is_empty() {
            StepLogits::default()
        } else {
            self.step_locked(&mut st, &chunks)?
        };
        let vocab = self.config.vocab_size;
        let positions = match scope {
            LogitsScope::All => t,
            LogitsScope::Last => 1,
        };
        let mut values = vec![0.0f32; b * positions * vocab];
        let mut k = 0;
        for r in 0..b {
            if real[r].is_empty() {
                continue;
            }
            let got = out.chunk(k);
            k += 1;
            match scope {
                LogitsScope::Last => values[r * vocab..(r + 1) * vocab].copy_from_slice(got),
                LogitsScope::All => {
                    let mut next = 0;
                    for j in 0..t {
                        if batch.attention_mask.as_ref().is_none_or(|m| m[r][j]) {
                            let dst = (r * t + j) * vocab;
                            values[dst..dst + vocab]
                                .copy_from_slice(&got[next * vocab..(next + 1) * vocab]);
                            next += 1;
                        }
                    }
                }
            }
        }
        Ok(Logits {
            values,
            batch: b,
            positions,
            vocab,
        })
    }
}

impl BatchedLm for FastDecoder {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn add_sequence(&self) -> SeqId {
        self.lock().kv.add()
    }

    fn adapters(&self) -> Vec<String> {
        self.adapters.iter().map(|a| a.name.clone()).collect()
    }

    fn add_sequence_with(&self, adapter: Option<AdapterId>) -> Result<SeqId> {
        let mut st = self.lock();
        let Some(AdapterId(a)) = adapter else {
            return Ok(st.kv.add());
        };
        if a >= self.adapters.len() {
            return Err(Error::InvalidInput(format!(
                "no adapter {a}: this model holds {}",
                self.adapters.len()
            )));
        }
        let seq = st.kv.add();
        st.adapter_of.insert(seq, a);
        Ok(seq)
    }

    /// The fork runs with the adapter of `seq`.
    fn fork(&self, seq: SeqId, len: usize) -> Result<SeqId> {
        let mut st = self.lock();
        let child = st.kv.fork(seq, len)?;
        if let Some(&a) = st.adapter_of.get(&seq) {
            st.adapter_of.insert(child, a);
        }
        if let Some(h) = st.history.get(&seq) {
            let kept = h[..len.min(h.len())].to_vec();
            st.history.insert(child, kept);
        }
        Ok(child)
    }

    fn release(&self, seq: SeqId) {
        let mut st = self.lock();
        st.kv.release(seq);
        st.adapter_of.remove(&seq);
        st.history.remove(&seq);
    }

    fn seq_len(&self, seq: SeqId) -> Option<usize> {
        self.lock().kv.len(seq)
    }

    fn truncate(&self, seq: SeqId, len: usize) -> Result<()> {
        let mut st = self.lock();
        st.kv.truncate(seq, len)?;
        if let Some(h) = st.history.get_mut(&seq) {
            h.truncate(len);
        }
        Ok(())
    }

    fn kv_usage(&self) -> KvUsage {
        self.lock().kv.usage()
    }

    fn step(&self, chunks: &[SeqChunk<'_>]) -> Result<StepLogits> {
        let mut st = self.lock();
        self.step_locked(&mut st, chunks)
    }
}

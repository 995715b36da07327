//! The batched step API a serving engine drives: one call advances many sequences at once, each
//! with its own position and its own key/value state, each with any number of new tokens
//! (prefill chunks and single decode tokens mixed in one ragged batch, flattened as vLLM does),
//! and returns logits only where asked.
//!
//! Sequences live in the model's key/value pool, addressed by [`SeqId`]; the pool is counted in
//! fixed-size blocks ([`KvUsage`]) so a scheduler can admit, defer or preempt work before a step
//! fails. [`BatchedLm`] is implemented by the CPU fast path
//! ([`FastDecoder`](crate::fast::FastDecoder): a paged pool, weights read once per step) and, for
//! every other [`CausalLm`] such as the burn [`Decoder`](crate::model::Decoder) on any device,
//! by [`PerSequence`], which runs each sequence on its own cache.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::causal_lm::{CausalLm, LogitsScope, TokenBatch};
use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// A sequence in a model's key/value pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// A LoRA adapter a [`BatchedLm`] holds: the `i`-th of [`BatchedLm::adapters`]. A sequence
/// made with one ([`BatchedLm::add_sequence_with`]) runs every step with it applied, unmerged,
/// beside sequences of other adapters and of none (multi-LoRA serving).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdapterId(pub usize);

/// One sequence's part of a step.
#[derive(Debug, Clone, Copy)]
pub struct SeqChunk<'a> {
    /// The sequence; its new tokens continue from the positions it already holds.
    pub seq: SeqId,
    /// The new tokens (at least one).
    pub tokens: &'a [u32],
    /// Which of them get logits: `None` for none (a prefill chunk that is not the prompt's
    /// last), [`LogitsScope::Last`] for the last, [`LogitsScope::All`] for every one (scoring).
    pub logits: Option<LogitsScope>,
}

/// The logits of a step, per chunk in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepLogits {
    /// Rows of `vocab` values, the chunks' rows one after another.
    pub values: Vec<f32>,
    /// Vocabulary size.
    pub vocab: usize,
    /// For each chunk, its first row in `values` and its number of rows (0, 1 or its tokens).
    pub rows: Vec<(usize, usize)>,
}

impl StepLogits {
    /// The logits of chunk `i`, `rows × vocab` (empty when it asked for none).
    pub fn chunk(&self, i: usize) -> &[f32] {
        let (start, n) = self.rows[i];
        &self.values[start * self.vocab..(start + n) * self.vocab]
    }

    /// The logits of chunk `i`'s last token, `None` when it asked for none.
    pub fn last(&self, i: usize) -> Option<&[f32]> {
        let (start, n) = self.rows[i];
        (n > 0).then(|| &self.values[(start + n - 1) * self.vocab..(start + n) * self.vocab])
    }
}

/// Occupancy of a key/value pool, in blocks of `block_size` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvUsage {
    /// Tokens per block.
    pub block_size: usize,
    /// Blocks the memory budget holds.
    pub total_blocks: usize,
    /// Blocks not held by any sequence.
    pub free_blocks: usize,
}

impl KvUsage {
    /// Blocks a sequence of `len` tokens holds.
    pub fn blocks_for(&self, len: usize) -> usize {
        len.div_ceil(self.block_size)
    }
}

/// A model a serving engine drives step by step (see the module docs). Methods take `&self`:
/// implementations lock their own state, so one model serves a whole engine.
pub trait BatchedLm: Send + Sync {
    /// The model's configuration.
    fn config(&self) -> &ModelConfig;

    /// A new, empty sequence.
    fn add_sequence(&self) -> SeqId;

    /// The names of the adapters the model holds, in [`AdapterId`] order (none by default).
    fn adapters(&self) -> Vec<String> {
        Vec::new()
    }

    /// A new, empty sequence that runs with `adapter` (`None`: the base model). Forks of it
    /// run with the same adapter.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an adapter the model does not hold.
    fn add_sequence_with(&self, adapter: Option<AdapterId>) -> Result<SeqId> {
        match adapter {
            None => Ok(self.add_sequence()),
            Some(AdapterId(a)) => Err(Error::InvalidInput(format!(
                "no adapter {a}: this model holds none"
            ))),
        }
    }

    /// A new sequence holding the first `len` tokens of `seq` (a shared prompt prefix: full
    /// blocks are shared, not copied, where the implementation pages its cache).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown sequence or `len` beyond its length;
    /// [`Error::KvCacheFull`] when no block is left for the copy of a partial block.
    fn fork(&self, seq: SeqId, len: usize) -> Result<SeqId>;

    /// Drops a sequence and returns its blocks to the pool (unknown ids are ignored).
    fn release(&self, seq: SeqId);

    /// Tokens the sequence holds, `None` for an unknown id.
    fn seq_len(&self, seq: SeqId) -> Option<usize>;

    /// Keeps only the first `len` tokens of a sequence (to roll back after preemption or a
    /// rejected draft).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown sequence or `len` beyond its length.
    fn truncate(&self, seq: SeqId, len: usize) -> Result<()>;

    /// The pool's occupancy.
    fn kv_usage(&self) -> KvUsage;

    /// Runs one step over `chunks` (each sequence at most once): appends every chunk's tokens
    /// to its sequence and returns the logits asked for. On error no sequence has changed.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for unknown or repeated sequences and empty chunks;
    /// [`Error::TokenOutOfVocab`]; [`Error::KvCacheFull`] when the new tokens need more blocks
    /// than are free; [`Error::ContextOverflow`] past `max_position_embeddings`.
    fn step(&self, chunks: &[SeqChunk<'_>]) -> Result<StepLogits>;
}

/// Checks what every implementation checks before a step: known, distinct sequences, non-empty
/// chunks, ids in the vocabulary, positions within the context. `len_of` gives a sequence's
/// length, `None` when unknown.
pub(crate) fn validate_chunks(
    config: &ModelConfig,
    chunks: &[SeqChunk<'_>],
    len_of: impl Fn(SeqId) -> Option<usize>,
) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for c in chunks {
        if !seen.insert(c.seq) {
            return Err(Error::InvalidInput(format!(
                "sequence {} appears twice in one step",
                c.seq.0
            )));
        }
        let len = len_of(c.seq)
            .ok_or_else(|| Error::InvalidInput(format!("unknown sequence {}", c.seq.0)))?;
        if c.tokens.is_empty() {
            return Err(Error::InvalidInput(format!(
                "sequence {}: a chunk needs at least one token",
                c.seq.0
            )));
        }
        if let Some(&id) = c.tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
            return Err(Error::TokenOutOfVocab {
                id,
                vocab_size: config.vocab_size,
            });
        }
        if len + c.tokens.len() > config.context_length() {
            return Err(Error::ContextOverflow {
                tokens: len + c.tokens.len(),
                max: config.context_length(),
            });
        }
    }
    Ok(())
}

/// [`BatchedLm`] for any [`CausalLm`] (the burn decoder on any device): each sequence keeps its
/// own cache and runs alone, one forward per chunk. Blocks are counted as a paged pool would
/// count them, so a scheduler behaves the same on either; a fork or truncation replays the kept
/// tokens on the next step.
pub struct PerSequence<M: CausalLm> {
    model: M,
    block_size: usize,
    total_blocks: usize,
    state: Mutex<PerSequenceState<M::Cache>>,
}

struct PerSequenceState<C> {
    next: u64,
    seqs: BTreeMap<SeqId, SeqState<C>>,
}

struct SeqState<C> {
    /// Every token the sequence holds.
    tokens: Vec<u32>,
    /// The cache and how many of `tokens` it holds (a fork or truncation empties it).
    cache: C,
    cached: usize,
}

impl<M: CausalLm> PerSequence<M> {
    /// Wraps `model` with a budget of `total_blocks` blocks of `block_size` tokens.
    pub fn new(model: M, block_size: usize, total_blocks: usize) -> Self {
        Self {
            model,
            block_size: block_size.max(1),
            total_blocks,
            state: Mutex::new(PerSequenceState {
                next: 0,
                seqs: BTreeMap::new(),
            }),
        }
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.model
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PerSequenceState<M::Cache>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn used_blocks(&self, st: &PerSequenceState<M::Cache>) -> usize {
        st.seqs
            .values()
            .map(|s| s.tokens.len().div_ceil(self.block_size))
            .sum()
    }
}

impl<M> BatchedLm for PerSequence<M>
where
    M: CausalLm + Send + Sync,
    M::Cache: Send,
{
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn add_sequence(&self) -> SeqId {
        let mut st = self.lock();
        let id = SeqId(st.next);
        st.next += 1;
        st.seqs.insert(
            id,
            SeqState {
                tokens: Vec::new(),
                cache: self.model.new_cache(),
                cached: 0,
            },
        );
        id
    }

    fn fork(&self, seq: SeqId, len: usize) -> Result<SeqId> {
        let mut st = self.lock();
        let tokens = match st.seqs.get(&seq) {
            Some(s) if len <= s.tokens.len() => s.tokens[..len].to_vec(),
            _ => return Err(bad_seq(seq, len)),
        };
        let (needed, free) = (
            len.div_ceil(self.block_size),
            self.total_blocks.saturating_sub(self.used_blocks(&st)),
        );
        if needed > free {
            return Err(Error::KvCacheFull { needed, free });
        }
        let id = SeqId(st.next);
        st.next += 1;
        st.seqs.insert(
            id,
            SeqState {
                tokens,
                cache: self.model.new_cache(),
                cached: 0,
            },
        );
        Ok(id)
    }

    fn release(&self, seq: SeqId) {
        self.lock().seqs.remove(&seq);
    }

    fn seq_len(&self, seq: SeqId) -> Option<usize> {
        self.lock().seqs.get(&seq).map(|s| s.tokens.len())
    }

    fn truncate(&self, seq: SeqId, len: usize) -> Result<()> {
        let mut st = self.lock();
        let s = st
            .seqs
            .get_mut(&seq)
            .filter(|s| len <= s.tokens.len())
            .ok_or_else(|| bad_seq(seq, len))?;
        if len < s.tokens.len() {
            s.tokens.truncate(len);
            s.cache = self.model.new_cache();
            s.cached = 0;
        }
        Ok(())
    }

    fn kv_usage(&self) -> KvUsage {
        let st = self.lock();
        KvUsage {
            block_size: self.block_size,
            total_blocks: self.total_blocks,
            free_blocks: self.total_blocks.saturating_sub(self.used_blocks(&st)),
        }
    }

    fn step(&self, chunks: &[SeqChunk<'_>]) -> Result<StepLogits> {
        let mut st = self.lock();
        validate_chunks(self.model.config(), chunks, |id| {
            st.seqs.get(&id).map(|s| s.tokens.len())
        })?;
        let bs = self.block_size;
        let needed: usize = chunks
            .iter()
            .map(|c| {
                let len = st.seqs[&c.seq].tokens.len();
                (len + c.tokens.len()).div_ceil(bs) - len.div_ceil(bs)
            })
            .sum();
        let free = self.total_blocks.saturating_sub(self.used_blocks(&st));
        if needed > free {
            return Err(Error::KvCacheFull { needed, free });
        }
        // Run every chunk, then commit; a failure sends the chunks' sequences back to replaying
        // their (unchanged) tokens, so no sequence changes.
        let mut staged = Vec::with_capacity(chunks.len());
        for c in chunks {
            let s = st.seqs.get_mut(&c.seq).expect("validated");
            let mut input = s.tokens[s.cached..].to_vec();
            input.extend_from_slice(c.tokens);
            let scope = match c.logits {
                Some(LogitsScope::All) => LogitsScope::All,
                _ => LogitsScope::Last,
            };
            match self
                .model
                .forward(&TokenBatch::single(input, scope), &mut s.cache)
            {
                Ok(logits) => staged.push(logits),
                Err(e) => {
                    for c in chunks {
                        if let Some(s) = st.seqs.get_mut(&c.seq) {
                            s.cache = self.model.new_cache();
                            s.cached = 0;
                        }
                    }
                    return Err(e);
                }
            }
        }
        let mut out = StepLogits {
            vocab: self.model.config().vocab_size,
            ..Default::default()
        };
        for (c, logits) in chunks.iter().zip(staged) {
            let s = st.seqs.get_mut(&c.seq).expect("validated");
            s.tokens.extend_from_slice(c.tokens);
            s.cached = s.tokens.len();
            let n = match c.logits {
                None => 0,
                Some(LogitsScope::Last) => 1,
                Some(LogitsScope::All) => c.tokens.len(),
            };
            out.rows.push((out.values.len() / out.vocab.max(1), n));
            for t in logits.positions - n..logits.positions {
                out.values.extend_from_slice(logits.at(0, t));
            }
        }
        Ok(out)
    }
}

fn bad_seq(seq: SeqId, len: usize) -> Error {
    Error::InvalidInput(format!(
        "sequence {} is unknown or shorter than {len} tokens",
        seq.0
    ))
}

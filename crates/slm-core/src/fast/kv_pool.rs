//! The paged key/value cache: one preallocated pool of fixed-size blocks (16 tokens by default)
//! per layer, sized by a memory budget, and per sequence a block table. Attention reads the
//! blocks in place; nothing is concatenated or copied as a sequence grows. Blocks are
//! reference-counted so forks share a prompt's full blocks (a partial last block is copied, and
//! a shared block is copied before it is written: copy on write).
//!
//! The pool is allocated zeroed (`calloc`): pages the sequences never reach are never touched,
//! so a large budget costs address space, not resident memory.
//!
//! For a model whose every layer attends over a sliding window (Mistral), a pool made
//! [`with_sliding_window`](KvPool::with_sliding_window) gives back each block once all its
//! positions are older than the window the sequence's next token sees, as vLLM does: a
//! sequence holds at most `window / block_size + 2` blocks however long it grows.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::step::{KvUsage, SeqId};

/// Tokens per block unless configured otherwise.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// The block-table entry of a block given back because it left the sliding window.
const EVICTED: u32 = u32::MAX;

/// A sequence's blocks and length.
#[derive(Debug, Clone, Default)]
struct Table {
    blocks: Vec<u32>,
    len: usize,
}

/// Keys and values of every sequence, in blocks.
#[derive(Debug)]
pub struct KvPool {
    block_size: usize,
    kv_dim: usize,
    /// Per layer, `[blocks, block_size, kv_dim]` keys and the same for values.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    refs: Vec<u32>,
    free: Vec<u32>,
    seqs: BTreeMap<SeqId, Table>,
    next: u64,
    /// The sliding window of every layer, when the model has one everywhere.
    window: Option<usize>,
}

impl KvPool {
    /// Bytes one token takes over all layers (keys and values, f32).
    pub fn bytes_per_token(layers: usize, kv_dim: usize) -> usize {
        layers * kv_dim * 2 * std::mem::size_of::<f32>()
    }

    /// A pool of as many `block_size`-token blocks as `budget_bytes` holds.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the budget holds no block.
    pub fn new(
        layers: usize,
        kv_dim: usize,
        block_size: usize,
        budget_bytes: usize,
    ) -> Result<Self> {
        let block_bytes = Self::bytes_per_token(layers, kv_dim) * block_size.max(1);
        let blocks = budget_bytes / block_bytes.max(1);
        if blocks == 0 || block_size == 0 {
            return Err(Error::InvalidInput(format!(
                "a key/value budget of {budget_bytes} bytes holds no block of {block_size} tokens ({block_bytes} bytes)"
            )));
        }
        let per_layer = blocks * block_size * kv_dim;
        Ok(Self {
            block_size,
            kv_dim,
            keys: (0..layers).map(|_| vec![0.0; per_layer]).collect(),
            values: (0..layers).map(|_| vec![0.0; per_layer]).collect(),
            refs: vec![0; blocks],
            free: (0..blocks as u32).rev().collect(),
            seqs: BTreeMap::new(),
            next: 0,
            window: None,
        })
    }

    /// Gives back blocks that left a `window`-token sliding window (every layer must slide by
    /// it: keys older than the window are never read again). Truncating or forking a sequence
    /// to a length whose window reaches into given-back blocks is then an error.
    pub fn with_sliding_window(mut self, window: usize) -> Self {
        self.window = Some(window.max(1));
        self
    }

    /// Fails when the window of a sequence cut to `len` tokens reaches a given-back block.
    fn check_kept(&self, seq: SeqId, t: &Table, len: usize) -> Result<()> {
        let Some(w) = self.window else {
            return Ok(());
        };
        let first = (len + 1).saturating_sub(w) / self.block_size;
        let last = len.div_ceil(self.block_size).min(t.blocks.len());
        if t.blocks[first.min(last)..last].contains(&EVICTED) {
            return Err(Error::InvalidInput(format!(
                "sequence {} cannot go back to {len} tokens: the keys its {w}-token sliding window needs were given back",
                seq.0
            )));
        }
        Ok(())
    }

    /// Occupancy.
    pub fn usage(&self) -> KvUsage {
        KvUsage {
            block_size: self.block_size,
            total_blocks: self.refs.len(),
            free_blocks: self.free.len(),
        }
    }

    /// A new empty sequence.
    pub fn add(&mut self) -> SeqId {
        let id = SeqId(self.next);
        self.next += 1;
        self.seqs.insert(id, Table::default());
        id
    }

    /// Tokens `seq` holds.
    pub fn len(&self, seq: SeqId) -> Option<usize> {
        self.seqs.get(&seq).map(|t| t.len)
    }

    /// Whether no sequence exists.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Blocks `seq` needs beyond those it holds to grow by `extra` tokens (counting the copy of
    /// a shared partial last block).
    pub fn blocks_needed(&self, seq: SeqId, extra: usize) -> usize {
        self.seqs.get(&seq).map_or(0, |t| {
            let grow = (t.len + extra)
                .div_ceil(self.block_size)
                .saturating_sub(t.blocks.len());
            let shared_tail = !t.len.is_multiple_of(self.block_size)
                && t.blocks
                    .get(t.len / self.block_size)
                    .is_some_and(|&b| self.refs[b as usize] > 1);
            grow + usize::from(shared_tail && extra > 0)
        })
    }

    /// Gives `seq` blocks for `extra` more tokens (check [`KvPool::blocks_needed`] against the
    /// free blocks first) and makes its partial last block its own.
    pub fn reserve(&mut self, seq: SeqId, extra: usize) -> Result<()> {
        let needed = self.blocks_needed(seq, extra);
        if needed > self.free.len() {
            return Err(Error::KvCacheFull {
                needed,
                free: self.free.len(),
            });
        }
        let len = self.len(seq).ok_or_else(|| unknown(seq))?;
        if !len.is_multiple_of(self.block_size) {
            self.own_block(seq, len / self.block_size)?;
        }
        let have = self.seqs[&seq].blocks.len();
        for _ in have..(len + extra).div_ceil(self.block_size) {
            let b = self.take_block()?;
            self.seqs.get_mut(&seq).expect("checked").blocks.push(b);
        }
        Ok(())
    }

    /// Sets the length of `seq` (after a step wrote its new tokens into reserved blocks), and
    /// with a sliding window gives back the blocks its next token can no longer see.
    pub fn set_len(&mut self, seq: SeqId, len: usize) {
        let Some(t) = self.seqs.get_mut(&seq) else {
            return;
        };
        debug_assert!(len <= t.blocks.len() * self.block_size);
        t.len = len;
        let Some(w) = self.window else {
            return;
        };
        // The next token sits at `len`; it sees keys from `len + 1 - w` on.
        let whole = (len + 1).saturating_sub(w) / self.block_size;
        let mut gone = Vec::new();
        for b in t.blocks.iter_mut().take(whole) {
            if *b != EVICTED {
                gone.push(*b);
                *b = EVICTED;
            }
        }
        for b in gone {
            self.unref(b);
        }
    }

    /// Keeps the first `len` tokens of `seq`, returning the blocks past them.
    pub fn truncate(&mut self, seq: SeqId, len: usize) -> Result<()> {
        let t = self.seqs.get_mut(&seq).ok_or_else(|| unknown(seq))?;
        if len > t.len {
            return Err(Error::InvalidInput(format!(
                "sequence {} holds {} tokens, cannot keep {len}",
                seq.0, t.len
            )));
        }
        let t = self.seqs.get(&seq).expect("checked");
        self.check_kept(seq, t, len)?;
        let t = self.seqs.get_mut(&seq).expect("checked");
        let keep = len.div_ceil(self.block_size);
        let dropped: Vec<u32> = t.blocks.drain(keep..).collect();
        t.len = len;
        for b in dropped {
            self.unref(b);
        }
        Ok(())
    }

    /// A new sequence with the first `len` tokens of `seq`: full blocks shared, a partial last
    /// block copied.
    pub fn fork(&mut self, seq: SeqId, len: usize) -> Result<SeqId> {
        let t = self.seqs.get(&seq).ok_or_else(|| unknown(seq))?;
        if len > t.len {
            return Err(Error::InvalidInput(format!(
                "sequence {} holds {} tokens, cannot fork {len}",
                seq.0, t.len
            )));
        }
        self.check_kept(seq, t, len)?;
        let full = len / self.block_size;
        let partial = !len.is_multiple_of(self.block_size);
        if partial && self.free.is_empty() {
            return Err(Error::KvCacheFull { needed: 1, free: 0 });
        }
        let mut blocks: Vec<u32> = t.blocks[..full].to_vec();
        let source = partial.then(|| t.blocks[full]);
        for &b in blocks.iter().filter(|&&b| b != EVICTED) {
            self.refs[b as usize] += 1;
        }
        if let Some(src) = source {
            let b = self.take_block()?;
            self.copy_block(src, b);
            blocks.push(b);
        }
        let id = SeqId(self.next);
        self.next += 1;
        self.seqs.insert(id, Table { blocks, len });
        Ok(id)
    }

    /// Drops `seq` and returns its blocks.
    pub fn release(&mut self, seq: SeqId) {
        if let Some(t) = self.seqs.remove(&seq) {
            for b in t.blocks {
                self.unref(b);
            }
        }
    }

    /// The block table of `seq` (empty for an unknown id).
    pub fn blocks(&self, seq: SeqId) -> &[u32] {
        self.seqs.get(&seq).map_or(&[], |t| &t.blocks)
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Where position `pos` of a sequence with block table `blocks` lives in a layer's
    /// key or value array (the start of its `kv_dim` values).
    pub fn offset(&self, blocks: &[u32], pos: usize) -> usize {
        self.slot_offset(blocks, pos / self.block_size, pos % self.block_size)
    }

    /// [`KvPool::offset`] of slot `slot` of the sequence's `block`-th block (for a reader that
    /// walks positions in order without dividing by the block size at each).
    pub fn slot_offset(&self, blocks: &[u32], block: usize, slot: usize) -> usize {
        (blocks[block] as usize * self.block_size + slot) * self.kv_dim
    }

    /// Layer `layer`'s keys and values, `[blocks, block_size, kv_dim]` each.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Layer `layer`'s keys and values, writable.
    pub fn layer_mut(&mut self, layer: usize) -> (&mut [f32], &mut [f32]) {
        (&mut self.keys[layer], &mut self.values[layer])
    }

    fn take_block(&mut self) -> Result<u32> {
        let b = self
            .free
            .pop()
            .ok_or(Error::KvCacheFull { needed: 1, free: 0 })?;
        self.refs[b as usize] = 1;
        Ok(b)
    }

    fn unref(&mut self, b: u32) {
        if b == EVICTED {
            return;
        }
        let r = &mut self.refs[b as usize];
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.free.push(b);
        }
    }

    /// Makes every block of `seq` its own (copies the shared ones), before it rewrites keys it
    /// already holds.
    ///
    /// # Errors
    /// [`Error::KvCacheFull`] when there are not enough free blocks for the copies.
    pub fn own_all(&mut self, seq: SeqId) -> Result<()> {
        let n = self
            .seqs
            .get(&seq)
            .ok_or_else(|| unknown(seq))?
            .blocks
            .len();
        for i in 0..n {
            if self.seqs[&seq].blocks[i] != EVICTED {
                self.own_block(seq, i)?;
            }
        }
        Ok(())
    }

    /// Makes block `index` of `seq` unshared (copy on write).
    fn own_block(&mut self, seq: SeqId, index: usize) -> Result<()> {
        let b = self.seqs[&seq].blocks[index];
        if self.refs[b as usize] <= 1 {
            return Ok(());
        }
        let fresh = self.take_block()?;
        self.copy_block(b, fresh);
        self.unref(b);
        self.seqs.get_mut(&seq).expect("checked").blocks[index] = fresh;
        Ok(())
    }

    fn copy_block(&mut self, from: u32, to: u32) {
        let n = self.block_size * self.kv_dim;
        let (from, to) = (from as usize * n, to as usize * n);
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.copy_within(from..from + n, to);
        }
    }
}

fn unknown(seq: SeqId) -> Error {
    Error::InvalidInput(format!("unknown sequence {}", seq.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(blocks: usize) -> KvPool {
        KvPool::new(2, 4, 2, blocks * KvPool::bytes_per_token(2, 4) * 2).unwrap()
    }

    #[test]
    fn blocks_come_and_go_with_sequences() {
        let mut p = pool(4);
        let a = p.add();
        assert_eq!(p.blocks_needed(a, 3), 2);
        p.reserve(a, 3).unwrap();
        p.set_len(a, 3);
        assert_eq!(p.usage().free_blocks, 2);
        assert_eq!(p.blocks_needed(a, 1), 0, "position 3 fits the second block");
        assert!(matches!(
            p.reserve(a, 10),
            Err(Error::KvCacheFull { needed: 5, free: 2 })
        ));
        p.truncate(a, 1).unwrap();
        assert_eq!(p.usage().free_blocks, 3);
        p.release(a);
        assert_eq!(p.usage().free_blocks, 4);
        assert!(KvPool::new(2, 4, 2, 10).is_err());
    }

    #[test]
    fn a_sliding_window_gives_back_blocks_it_left() {
        // Window 5, blocks of 4: after 14 tokens the next sees positions 10.. (blocks 2, 3).
        let mut p = KvPool::new(1, 2, 4, 4 * 2 * 2 * 4 * 8)
            .unwrap()
            .with_sliding_window(5);
        let s = p.add();
        for len in 1..=14 {
            p.reserve(s, 1).unwrap();
            p.set_len(s, len);
        }
        assert_eq!(p.usage().free_blocks, 8 - 2);
        assert_eq!(&p.blocks(s)[..2], &[EVICTED, EVICTED]);
        // Its window at 14 is kept, and a fork there shares it.
        let f = p.fork(s, 14).unwrap();
        assert_eq!(p.len(f), Some(14));
        // Owning everything copies the one shared live block (block 2).
        let free = p.usage().free_blocks;
        p.own_all(f).unwrap();
        assert_eq!(p.usage().free_blocks, free - 1);
        assert_ne!(p.blocks(f)[2], p.blocks(s)[2]);
        // Going back to 9 tokens would need position 5 (block 1), given back.
        assert!(matches!(p.truncate(s, 9), Err(Error::InvalidInput(_))));
        assert!(p.fork(s, 9).is_err());
        p.truncate(s, 12).unwrap();
        p.release(s);
        p.release(f);
        assert_eq!(p.usage().free_blocks, 8);
        // Growing forever holds at most window / block + 2 blocks.
        let s = p.add();
        for len in 1..=200 {
            p.reserve(s, 1).unwrap();
            p.set_len(s, len);
            assert!(8 - p.usage().free_blocks <= 3, "{len}");
        }
    }

    #[test]
    fn forks_share_full_blocks_and_copy_partial_ones() {
        let mut p = pool(6);
        let a = p.add();
        p.reserve(a, 5).unwrap();
        for pos in 0..5 {
            let off = p.offset(p.blocks(a), pos);
            p.layer_mut(1).0[off] = pos as f32 + 1.0;
        }
        p.set_len(a, 5);
        let b = p.fork(a, 5).unwrap();
        // Two shared full blocks, the partial third copied: 3 + 1 held.
        assert_eq!(p.usage().free_blocks, 2);
        assert_eq!(p.blocks(a)[..2], p.blocks(b)[..2]);
        assert_ne!(p.blocks(a)[2], p.blocks(b)[2]);
        let read = |p: &KvPool, s, pos| p.layer(1).0[p.offset(p.blocks(s), pos)];
        assert_eq!(read(&p, b, 4), 5.0);
        // Truncating into a shared block and writing copies it first.
        p.truncate(a, 3).unwrap();
        p.reserve(a, 1).unwrap();
        assert_ne!(p.blocks(a)[1], p.blocks(b)[1]);
        let off = p.offset(p.blocks(a), 3);
        p.layer_mut(1).0[off] = -1.0;
        assert_eq!(read(&p, b, 3), 4.0, "the fork keeps its value");
        assert_eq!(read(&p, a, 2), 3.0, "the copy kept the first half");
        p.release(a);
        p.release(b);
        assert_eq!(p.usage().free_blocks, 6);
    }
}

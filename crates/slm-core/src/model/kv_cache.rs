//! The key/value cache of the burn decoder.

use burn::prelude::*;

/// Keys and values of every layer for the tokens seen so far, plus which cached positions are
/// real tokens (left padding stays masked for the whole generation).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<(Option<Tensor<4>>, Option<Tensor<4>>)>,
    /// `[B][T_cached]`: `true` where the cached key is a real token.
    key_valid: Vec<Vec<bool>>,
    /// `[B][T_cached]`: the token id in each cached slot (to recompute a sequence whose rope
    /// changes, see [`crate::config::Rotary::recomputes`]).
    ids: Vec<Vec<u32>>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![(None, None); num_layers],
            key_valid: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.key_valid.first().map(Vec::len).unwrap_or(0)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows of the batch the cache was started with (0 when empty).
    pub fn batch_size(&self) -> usize {
        self.key_valid.len()
    }

    /// Which cached positions of each row are real tokens.
    pub fn key_valid(&self) -> &[Vec<bool>] {
        &self.key_valid
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = (None, None);
        }
        self.key_valid.clear();
        self.ids.clear();
    }

    /// The token ids of each row's cached slots.
    pub fn ids(&self) -> &[Vec<u32>] {
        &self.ids
    }

    pub(crate) fn layer_mut(&mut self, i: usize) -> &mut (Option<Tensor<4>>, Option<Tensor<4>>) {
        &mut self.layers[i]
    }

    /// Records the slots of a call: its attention mask and token ids, row by row.
    pub(crate) fn push_tokens(&mut self, mask: &[Vec<bool>], ids: &[Vec<u32>]) {
        if self.key_valid.is_empty() {
            self.key_valid = vec![Vec::new(); mask.len()];
            self.ids = vec![Vec::new(); mask.len()];
        }
        for (row, m) in self.key_valid.iter_mut().zip(mask) {
            row.extend_from_slice(m);
        }
        for (row, t) in self.ids.iter_mut().zip(ids) {
            row.extend_from_slice(t);
        }
    }
}

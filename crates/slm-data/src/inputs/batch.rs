//! Batches of tokenized examples: packed rows, or length-bucketed padded rows.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::template::{IGNORE_INDEX, TokenizedExample};
use crate::error::{Error, Result};

/// One training batch, as plain row-major vectors (`[rows][seq_len]`), so it carries no
/// backend type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Token ids, padded with the batcher's pad id.
    pub input_ids: Vec<Vec<u32>>,
    /// `true` on real tokens, `false` on padding.
    pub attention_mask: Vec<Vec<bool>>,
    /// Token id where the loss applies, [`IGNORE_INDEX`] elsewhere (padding, prompts, and the
    /// first token of every packed example).
    pub labels: Vec<Vec<i64>>,
    /// RoPE positions, restarting at 0 for each packed example (0 on padding).
    pub position_ids: Vec<Vec<u32>>,
    /// Which example of the row a token belongs to, from 1; 0 on padding. A token may only
    /// attend to earlier tokens with the same segment id.
    pub segment_ids: Vec<Vec<u32>>,
    /// For each row, the indices (into the batcher's examples) of its segments, in order:
    /// segment `k + 1` is example `example_indices[row][k]`.
    pub example_indices: Vec<Vec<usize>>,
}

impl Batch {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.input_ids.len()
    }

    /// Length of every row.
    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map(Vec::len).unwrap_or(0)
    }

    /// Positions with a label (tokens the loss is computed on).
    pub fn target_tokens(&self) -> usize {
        self.labels
            .iter()
            .flatten()
            .filter(|&&l| l != IGNORE_INDEX)
            .count()
    }

    /// Builds a batch from rows of examples, padding every row to the longest.
    fn from_rows(rows: &[Vec<usize>], examples: &[TokenizedExample], pad_id: u32) -> Self {
        let len = rows
            .iter()
            .map(|r| r.iter().map(|&i| examples[i].len()).sum::<usize>())
            .max()
            .unwrap_or(0);
        let mut b = Batch::default();
        for row in rows {
            let mut ids = Vec::with_capacity(len);
            let mut labels = Vec::with_capacity(len);
            let mut pos = Vec::with_capacity(len);
            let mut seg = Vec::with_capacity(len);
            for (k, &i) in row.iter().enumerate() {
                let ex = &examples[i];
                ids.extend_from_slice(&ex.input_ids);
                let mut l = ex.labels();
                // Nothing in this segment predicts its first token (the logit before it
                // belongs to the previous example), as transformers'
                // DataCollatorWithFlattening does.
                if let Some(first) = l.first_mut() {
                    *first = IGNORE_INDEX;
                }
                labels.extend(l);
                pos.extend(0..ex.len() as u32);
                seg.extend(std::iter::repeat_n(k as u32 + 1, ex.len()));
            }
            let real = ids.len();
            b.attention_mask
                .push((0..len).map(|t| t < real).collect::<Vec<_>>());
            ids.resize(len, pad_id);
            labels.resize(len, IGNORE_INDEX);
            pos.resize(len, 0);
            seg.resize(len, 0);
            b.input_ids.push(ids);
            b.labels.push(labels);
            b.position_ids.push(pos);
            b.segment_ids.push(seg);
            b.example_indices.push(row.clone());
        }
        b
    }
}

/// A source of training batches: what slm-train consumes.
///
/// It is a trait so the trainer does not care how batches are made: packed or padded, from
/// memory or streamed from disk, or a fixed list in a test. One call yields one batch; `None`
/// ends the epoch. Errors are per batch, so a streaming implementation can report a bad
/// record without ending the run.
pub trait Batcher {
    /// The next batch, or `None` at the end of the epoch.
    fn next_batch(&mut self) -> Option<Result<Batch>>;
}

/// How a batcher groups examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatcherConfig {
    /// Rows per batch.
    pub batch_size: usize,
    /// Longest row in tokens; a longer example is [`Error::ExampleTooLong`].
    pub max_seq_len: usize,
    /// The id padding positions hold (masked and without labels, so any id works).
    pub pad_token_id: u32,
    /// Seed of the shuffles; the same seed and epoch give the same batches.
    pub seed: u64,
    /// The epoch, mixed into the seed so epochs see different orders.
    pub epoch: u64,
    /// Whether to shuffle at all (off: examples keep their order).
    pub shuffle: bool,
}

impl BatcherConfig {
    /// `batch_size` rows of at most `max_seq_len` tokens, seed 0, epoch 0, shuffled.
    pub fn new(batch_size: usize, max_seq_len: usize, pad_token_id: u32) -> Self {
        Self {
            batch_size,
            max_seq_len,
            pad_token_id,
            seed: 0,
            epoch: 0,
            shuffle: true,
        }
    }

    /// With this seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// For this epoch.
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// With shuffling on or off.
    pub fn with_shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    fn validate(&self, examples: &[TokenizedExample]) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::InvalidOption {
                name: "batch_size",
                reason: "must be positive".into(),
            });
        }
        if self.max_seq_len == 0 {
            return Err(Error::InvalidOption {
                name: "max_seq_len",
                reason: "must be positive".into(),
            });
        }
        if let Some(ex) = examples.iter().find(|e| e.len() > self.max_seq_len) {
            return Err(Error::ExampleTooLong {
                id: ex.id.clone(),
                tokens: ex.len(),
                max: self.max_seq_len,
            });
        }
        Ok(())
    }

    fn rng(&self) -> StdRng {
        // SplitMix-style mixing so nearby (seed, epoch) pairs give unrelated streams.
        let mixed = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.epoch.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        StdRng::seed_from_u64(mixed)
    }

    /// Example indices in epoch order (shuffled or not); empty examples are skipped.
    fn order(&self, examples: &[TokenizedExample], rng: &mut StdRng) -> Vec<usize> {
        let mut order: Vec<usize> = (0..examples.len())
            .filter(|&i| !examples[i].is_empty())
            .collect();
        if self.shuffle {
            order.shuffle(rng);
        }
        order
    }
}

/// Precomputed rows, emitted `batch_size` at a time.
#[derive(Debug, Clone)]
struct Plan {
    examples: Vec<TokenizedExample>,
    batches: std::vec::IntoIter<Vec<Vec<usize>>>,
    pad_token_id: u32,
}

impl Plan {
    fn next(&mut self) -> Option<Result<Batch>> {
        let rows = self.batches.next()?;
        Some(Ok(Batch::from_rows(
            &rows,
            &self.examples,
            self.pad_token_id,
        )))
    }
}

/// Packs several examples into each row, up to `max_seq_len` tokens, in (shuffled) order:
/// an example that does not fit in the current row starts the next one. Position ids restart
/// at 0 and segment ids change at every example boundary, so attention and the loss never
/// cross from one example into another (given an attention that honours `segment_ids`).
#[derive(Debug, Clone)]
pub struct PackedBatcher(Plan);

impl PackedBatcher {
    /// Plans one epoch over `examples`.
    pub fn new(examples: Vec<TokenizedExample>, config: &BatcherConfig) -> Result<Self> {
        config.validate(&examples)?;
        let mut rng = config.rng();
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let (mut row, mut used) = (Vec::new(), 0usize);
        for i in config.order(&examples, &mut rng) {
            let n = examples[i].len();
            if used + n > config.max_seq_len && !row.is_empty() {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            row.push(i);
            used += n;
        }
        if !row.is_empty() {
            rows.push(row);
        }
        let batches: Vec<Vec<Vec<usize>>> =
            rows.chunks(config.batch_size).map(<[_]>::to_vec).collect();
        Ok(Self(Plan {
            examples,
            batches: batches.into_iter(),
            pad_token_id: config.pad_token_id,
        }))
    }
}

impl Batcher for PackedBatcher {
    fn next_batch(&mut self) -> Option<Result<Batch>> {
        self.0.next()
    }
}

/// One example per row, padded to the longest row of its batch. Examples are shuffled, then
/// sorted by length within buckets of `bucket_batches` batches so rows of a batch have similar
/// lengths (little padding), then the batches are shuffled again so lengths do not trend over
/// the epoch.
#[derive(Debug, Clone)]
pub struct BucketBatcher(Plan);

impl BucketBatcher {
    /// Plans one epoch over `examples` with buckets of `bucket_batches` batches (at least 1).
    pub fn new(
        examples: Vec<TokenizedExample>,
        config: &BatcherConfig,
        bucket_batches: usize,
    ) -> Result<Self> {
        config.validate(&examples)?;
        let mut rng = config.rng();
        let order = config.order(&examples, &mut rng);
        let bucket = config.batch_size * bucket_batches.max(1);
        let mut batches: Vec<Vec<Vec<usize>>> = Vec::new();
        for chunk in order.chunks(bucket) {
            let mut chunk = chunk.to_vec();
            chunk.sort_by_key(|&i| examples[i].len());
            for rows in chunk.chunks(config.batch_size) {
                batches.push(rows.iter().map(|&i| vec![i]).collect());
            }
        }
        if config.shuffle {
            batches.shuffle(&mut rng);
        }
        Ok(Self(Plan {
            examples,
            batches: batches.into_iter(),
            pad_token_id: config.pad_token_id,
        }))
    }
}

impl Batcher for BucketBatcher {
    fn next_batch(&mut self) -> Option<Result<Batch>> {
        self.0.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(i: usize, prompt: usize, target: usize) -> TokenizedExample {
        let ids = (0..prompt + target).map(|j| (i * 100 + j) as u32).collect();
        let mask = (0..prompt + target).map(|j| j >= prompt).collect();
        TokenizedExample::new(format!("e{i}"), ids, mask).unwrap()
    }

    #[test]
    fn packs_with_restarting_positions_and_segments() {
        let examples = vec![ex(0, 2, 2), ex(1, 1, 2), ex(2, 3, 3)];
        let cfg = BatcherConfig::new(4, 8, 9).with_shuffle(false);
        let mut b = PackedBatcher::new(examples, &cfg).unwrap();
        let batch = b.next_batch().unwrap().unwrap();
        assert!(b.next_batch().is_none());
        assert_eq!(batch.example_indices, vec![vec![0, 1], vec![2]]);
        assert_eq!(batch.position_ids[0], vec![0, 1, 2, 3, 0, 1, 2]);
        assert_eq!(batch.segment_ids[0], vec![1, 1, 1, 1, 2, 2, 2]);
        assert_eq!(batch.labels[0], vec![-100, -100, 2, 3, -100, 101, 102]);
        assert_eq!(batch.input_ids[1], vec![200, 201, 202, 203, 204, 205, 9]);
        assert_eq!(batch.attention_mask[1].iter().filter(|&&m| m).count(), 6);
    }

    #[test]
    fn buckets_pad_to_the_longest_row_and_are_deterministic() {
        let examples: Vec<_> = (0..10).map(|i| ex(i, 1 + i % 4, 1 + i % 3)).collect();
        let cfg = BatcherConfig::new(3, 16, 0).with_seed(7);
        let run = |cfg: &BatcherConfig| {
            let mut b = BucketBatcher::new(examples.clone(), cfg, 2).unwrap();
            std::iter::from_fn(|| b.next_batch())
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        };
        let a = run(&cfg);
        assert_eq!(a, run(&cfg));
        assert_ne!(a, run(&cfg.clone().with_epoch(1)));
        assert_eq!(a.iter().map(Batch::rows).sum::<usize>(), 10);
        for batch in &a {
            let longest = batch
                .attention_mask
                .iter()
                .map(|m| m.iter().filter(|&&x| x).count())
                .max();
            assert_eq!(Some(batch.seq_len()), longest);
        }
    }

    #[test]
    fn rejects_long_examples_and_zero_sizes() {
        let err = PackedBatcher::new(vec![ex(0, 5, 5)], &BatcherConfig::new(1, 8, 0)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ExampleTooLong {
                    tokens: 10,
                    max: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert!(BucketBatcher::new(vec![], &BatcherConfig::new(0, 8, 0), 1).is_err());
    }
}

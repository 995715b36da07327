//! Model inputs: examples rendered through a [`PromptTemplate`] (plain instruction text or the
//! tokenizer's chat template), tokenized with a loss mask on the completion only
//! ([`TokenizedExample`]), then grouped into [`Batch`]es by a [`Batcher`]: either
//! [`PackedBatcher`] (several examples per row, with position and segment ids that restart at
//! every boundary) or [`BucketBatcher`] (one example per row, length-bucketed, padded).
//! Shuffles are seeded, so the same seed and epoch give the same batches.
//!
//! ```
//! use slm_data::inputs::{Batcher, BatcherConfig, PackedBatcher, TokenizedExample};
//!
//! # fn main() -> slm_data::Result<()> {
//! // Two examples: 2 prompt + 2 target tokens, and 1 prompt + 1 target token.
//! let a = TokenizedExample::new("a", vec![10, 11, 12, 13], vec![false, false, true, true])?;
//! let b = TokenizedExample::new("b", vec![20, 21], vec![false, true])?;
//! let config = BatcherConfig::new(8, 16, 0).with_shuffle(false);
//! let mut batcher = PackedBatcher::new(vec![a, b], &config)?;
//! let batch = batcher.next_batch().unwrap()?;
//! assert_eq!(batch.input_ids, vec![vec![10, 11, 12, 13, 20, 21]]);
//! assert_eq!(batch.labels, vec![vec![-100, -100, 12, 13, -100, 21]]);
//! assert_eq!(batch.position_ids, vec![vec![0, 1, 2, 3, 0, 1]]);
//! assert_eq!(batch.segment_ids, vec![vec![1, 1, 1, 1, 2, 2]]);
//! assert!(batcher.next_batch().is_none());
//! # Ok(()) }
//! ```

mod batch;
mod task;
mod template;

pub use batch::{Batch, Batcher, BatcherConfig, BucketBatcher, PackedBatcher};
pub use task::{TASK_FILE, TaskSpec, TemplateSpec};
pub use template::{IGNORE_INDEX, PromptTemplate, TokenizedExample, Truncation, tokenize_all};

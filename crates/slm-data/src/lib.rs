//! # slm-data
//!
//! Datasets for `slm`'s narrow-domain models: the [`Example`] record every stage works on (an
//! input, an optional target or label, and the source's other fields as metadata), readers
//! that map a file's columns onto it through a [`FieldMap`] and report every bad line with its
//! file and line number, curation into clean splits, tokenizer training, model inputs and
//! synthetic augmentation.
//!
//! ```
//! use std::io::Cursor;
//! use slm_data::prelude::*;
//!
//! # fn main() -> slm_data::Result<()> {
//! // A tiny support-ticket dataset, in memory: the input is `text`, the class is `team`.
//! let jsonl = r#"{"text": "Printer on floor 3 is jammed", "team": "facilities", "prio": 2}
//!
//! {"text": "VPN drops every hour", "team": "it"}
//! {"text": "Coffee machine empty"}
//! "#;
//! let fields = FieldMap::new("text").with_label("team");
//! let mut rows = JsonlReader::from_reader(Cursor::new(jsonl), "tickets.jsonl", fields)?;
//!
//! let first = rows.next().unwrap()?;
//! assert_eq!(first.label.as_deref(), Some("facilities"));
//! assert_eq!(first.meta["prio"], 2);
//! assert_eq!(first.id, "tickets.jsonl:1");
//! assert_eq!(rows.next().unwrap()?.id, "tickets.jsonl:3"); // the blank line is skipped
//!
//! // A record without the label column is an error naming file and line, not a silent None.
//! let err = rows.next().unwrap().unwrap_err();
//! assert_eq!(err.to_string(), "tickets.jsonl:4: no field `team`");
//! # Ok(()) }
//! ```
//!
//! Files: [`JsonlReader::open`], [`read_jsonl`] and [`write_jsonl`]; an empty file is
//! [`Error::EmptyDataset`], never an empty `Vec`.
//!
//! Other formats: [`read_any`] picks by extension among CSV/TSV ([`CsvReader`]), Parquet
//! ([`ParquetReader`]), folders of text files or emails labelled by sub-folder
//! ([`TextDirReader`]) and raw RFC 822 email ([`EmailReader`], [`readers::parse_email`]), and reads a
//! glob pattern over shards (`data/train-*.parquet`) as one dataset ([`ShardedReader`]), all behind the
//! [`Reader`] trait with the same contract (errors name file and line or row, empty input is
//! [`Error::EmptyDataset`], a missing column is [`Error::UnknownColumn`]). [`ParquetWriter`]
//! writes a split as Parquet, atomically, for `datasets` and pandas. The repository's
//! `data/spamassassin/sample.jsonl` (604 emails of the SpamAssassin corpus, made by
//! `scripts/import-spamassassin.sh`) reads with `FieldMap::new("text").with_label("label")`.
//!
//! Curation: [`curate()`] runs a [`CurateConfig`] (TOML or JSON; `slm data curate --config`)
//! through the built-in [`Stage`]s ([`stages`]: normalise, length, Gopher-style quality, PII scrubbing,
//! exact and MinHash-LSH dedup, 13-gram decontamination) and any custom stages a
//! [`StageRegistry`] builds from `[[stages.custom]]` tables ([`curate_with`] for your own),
//! audits labels, splits stratified by label plus a live-like holdout by time or source, and
//! writes each split as JSONL and/or Parquet with a [`curation::DatasetCard`] and `dropped.jsonl` (every
//! removed row with its stage and reason). [`Pipeline`] runs stages without the files.
//!
//! Model inputs: [`inputs`] renders examples through a prompt or chat template, tokenizes
//! them with a loss mask on the target only, and packs or buckets them into [`inputs::Batch`]es
//! behind the [`inputs::Batcher`] trait that slm-train consumes. [`tokenizer`] trains a
//! byte-level BPE tokenizer on a domain corpus, reports fertility, and extends a base tokenizer
//! with the matching embedding resize. [`synth`] writes synthetic examples for rare classes
//! with a teacher model and filters them.
//!
//! # Modules
//! The crate root holds what a pipeline is composed from; everything else is by module path:
//!
//! | module | what it holds |
//! |---|---|
//! | [`readers`] | the [`Reader`] trait, [`read_any`], one reader per format, format detection, size limits |
//! | [`writers`] | [`JsonlWriter`], [`ParquetWriter`] and its [`writers::ParquetSchema`] |
//! | [`curation`] | [`curate()`], its config, the [`Stage`] trait, [`Pipeline`], splits, label audit, dataset card |
//! | [`stages`] | the built-in stages and their configs; each file's helpers (`stages::pii::EMAIL`, `stages::minhash::estimate_jaccard`, ...) |
//! | [`inputs`] | prompt/chat templates, tokenization with loss masks, batchers |
//! | [`tokenizer`] | BPE training, fertility, extending a tokenizer with domain tokens |
//! | [`synth`] | teacher-driven synthetic examples |
//!
//! # Features
//! | feature | default | what it enables |
//! |---|---|---|
//! | `flex` | yes | burn's flex CPU backend in slm-core (teacher models, embedding resize) |

mod curate;
mod error;
mod example;
mod fields;
pub mod inputs;
mod limits;
pub mod readers;
pub mod stages;
pub mod synth;
pub mod tokenizer;
pub mod writers;

pub use curate::{
    CurateConfig, CurateObserver, CurateReport, CustomStageConfig, Dropped, EvalConfig,
    HoldoutConfig, InputConfig, OutputFormat, Pipeline, SplitConfig, Stage, StageOutput,
    StageRegistry, StageReport, StageSlot, StagesConfig, Verdict, curate, curate_with,
    filter_map_examples,
};
pub use error::{Error, Result};
pub use example::Example;
pub use fields::FieldMap;
pub use readers::{
    CsvReader, EmailReader, JsonArrayReader, JsonlReader, ParquetReader, Reader, ShardedReader,
    TextDirReader, read_any, read_jsonl,
};
pub use writers::{JsonlWriter, ParquetWriter, write_jsonl};

/// Curation by module path: everything of [`curate()`] (the root holds what a pipeline is
/// composed from: the config types, [`Stage`], [`Pipeline`], ...) plus splitting
/// ([`stratified_split`](curation::stratified_split), [`holdout`](curation::holdout),
/// [`parse_timestamp`](curation::parse_timestamp)), the label audit
/// ([`LabelAudit`](curation::LabelAudit)), the dataset card
/// ([`DatasetCard`](curation::DatasetCard)) and the pieces of a run
/// ([`read_inputs`](curation::read_inputs), [`READ_STAGE`](curation::READ_STAGE),
/// [`PipelineOutput`](curation::PipelineOutput)).
///
/// The code is in `src/curate/`; the module is named `curation` so that `slm_data::curate`
/// stays the function alone.
pub mod curation {
    pub use crate::curate::*;
}

/// The names most programs need: `use slm_data::prelude::*;`.
pub mod prelude {
    pub use crate::inputs::{Batcher, PromptTemplate};
    pub use crate::{CurateConfig, Stage, StageRegistry, curate, curate_with};
    pub use crate::{
        Error, Example, FieldMap, JsonlReader, JsonlWriter, Result, read_jsonl, write_jsonl,
    };
    pub use crate::{Reader, read_any};
}

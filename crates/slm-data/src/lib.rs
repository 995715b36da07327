//! # slm-data
//!
//! Datasets for `slm`'s narrow-domain models. Today: the [`Example`] record every later stage
//! works on (an input, an optional target or label, and the source's other fields as
//! metadata), a streaming [`JsonlReader`] that maps a file's columns onto it through a
//! [`FieldMap`] and reports every bad line with its file and line number, and an atomic
//! [`JsonlWriter`] (temporary file + rename) whose output reads back unchanged.
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
//! ## Later
//! Later issues add more readers (CSV, Parquet, Hugging Face dataset folders), the curation
//! `Stage` trait with normalise/dedup/filter/scrub/decontaminate stages, splits with a dataset
//! card, chat templates and tokenization, and the `Batcher` that packs tokenized examples.
//!
//! This crate has no features.

mod error;
mod example;
mod fields;
mod reader;
mod writer;

pub use error::{Error, Result};
pub use example::{Example, RESERVED_KEYS};
pub use fields::FieldMap;
pub use reader::{JsonlReader, MAX_LINE_BYTES, read_jsonl};
pub use writer::{JsonlWriter, write_jsonl};

/// The names most programs need: `use slm_data::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Error, Example, FieldMap, JsonlReader, JsonlWriter, Result, read_jsonl, write_jsonl,
    };
}

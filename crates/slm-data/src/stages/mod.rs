//! The built-in curation stages, one per file; each implements [`Stage`](crate::Stage) and is
//! built from its config ([`NormalizeConfig`] makes a [`Normalize`], ...), in code or from a
//! [`StagesConfig`](crate::StagesConfig) table.
//!
//! The stage types and their configs are re-exported here; each file's helpers are by its
//! module path: the PII placeholders ([`pii::EMAIL`], ...) and [`pii::luhn_valid`], MinHash
//! arithmetic ([`minhash::estimate_jaccard`], [`minhash::shingles`], ...), the HTML-to-text
//! pass ([`html::strip_html`]), [`normalize::collapse_whitespace`], [`quality::STOP_WORDS`].

pub mod decontaminate;
pub mod dedup;
pub mod html;
pub mod label_filter;
pub mod language;
pub mod length;
pub mod minhash;
pub mod normalize;
pub mod pii;
pub mod quality;
pub mod regex_filter;

pub use decontaminate::{Decontaminate, DecontaminateConfig};
pub use dedup::{DuplicateGroup, ExactDedup, NearDedup};
pub use label_filter::{LabelFilter, LabelFilterConfig};
pub use language::{LanguageConfig, LanguageFilter};
pub use length::{LengthConfig, LengthFilter};
pub use minhash::{MinHashConfig, MinHasher};
pub use normalize::{Normalize, NormalizeConfig, UnicodeForm};
pub use pii::{PiiConfig, PiiScrubber};
pub use quality::{QualityConfig, QualityFilter};
pub use regex_filter::{MatchAction, RegexFilter, RegexFilterConfig};

//! The built-in curation stages, one per file; each implements [`Stage`](crate::Stage).

pub(crate) mod decontaminate;
pub(crate) mod dedup;
pub(crate) mod html;
pub(crate) mod label_filter;
pub(crate) mod language;
pub(crate) mod length;
pub(crate) mod minhash;
pub(crate) mod normalize;
pub(crate) mod pii;
pub(crate) mod quality;
pub(crate) mod regex_filter;

pub use decontaminate::{Decontaminate, DecontaminateConfig};
pub use dedup::{DuplicateGroup, ExactDedup, NearDedup};
pub use html::{decode_entities, strip_html};
pub use label_filter::{LabelFilter, LabelFilterConfig};
pub use language::{LanguageConfig, LanguageFilter};
pub use length::{LengthConfig, LengthFilter};
pub use minhash::{
    MERSENNE_PRIME, MinHashConfig, MinHasher, estimate_jaccard, shingles, simplify_text,
};
pub use normalize::{Normalize, NormalizeConfig, UnicodeForm, collapse_whitespace};
pub use pii::{CREDIT_CARD, EMAIL, IP, PHONE, PiiConfig, PiiScrubber, luhn_valid};
pub use quality::{QualityConfig, QualityFilter, STOP_WORDS};
pub use regex_filter::{MatchAction, RegexFilter, RegexFilterConfig};

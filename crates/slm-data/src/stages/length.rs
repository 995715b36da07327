//! [`LengthFilter`]: bounds on characters and words per input.

use serde::{Deserialize, Serialize};

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::Result;
use crate::example::Example;

/// Inclusive bounds on an input's length; `None` means unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LengthConfig {
    /// Fewest characters (Unicode scalar values).
    pub min_chars: Option<usize>,
    /// Most characters.
    pub max_chars: Option<usize>,
    /// Fewest whitespace-separated words.
    pub min_words: Option<usize>,
    /// Most words.
    pub max_words: Option<usize>,
}

/// Drops inputs outside [`LengthConfig`]'s bounds, with reasons `too_few_chars`,
/// `too_many_chars`, `too_few_words` and `too_many_words`.
#[derive(Debug, Clone, Default)]
pub struct LengthFilter {
    /// Its bounds.
    pub config: LengthConfig,
}

impl LengthFilter {
    /// The stage with `config`.
    pub fn new(config: LengthConfig) -> Self {
        LengthFilter { config }
    }

    /// Why `text` is out of bounds, if it is: `(reason, detail)`.
    pub fn check(&self, text: &str) -> Option<(&'static str, String)> {
        let c = &self.config;
        let chars = text.chars().count();
        let words = text.split_whitespace().count();
        let checks = [
            (
                c.min_chars.is_some_and(|m| chars < m),
                "too_few_chars",
                chars,
            ),
            (
                c.max_chars.is_some_and(|m| chars > m),
                "too_many_chars",
                chars,
            ),
            (
                c.min_words.is_some_and(|m| words < m),
                "too_few_words",
                words,
            ),
            (
                c.max_words.is_some_and(|m| words > m),
                "too_many_words",
                words,
            ),
        ];
        checks
            .into_iter()
            .find(|(failed, _, _)| *failed)
            .map(|(_, reason, n)| (reason, n.to_string()))
    }
}

impl Stage for LengthFilter {
    fn name(&self) -> &str {
        "length"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        Ok(filter_map_examples(self.name(), examples, |e| {
            match self.check(&e.input) {
                Some((reason, detail)) => Verdict::Drop {
                    reason: reason.into(),
                    detail,
                },
                None => Verdict::Keep,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        let f = LengthFilter::new(LengthConfig {
            min_chars: Some(3),
            max_words: Some(2),
            ..Default::default()
        });
        assert_eq!(f.check("ab").unwrap().0, "too_few_chars");
        assert!(f.check("abc").is_none());
        assert!(f.check("ab cd").is_none());
        assert_eq!(f.check("a b c").unwrap().0, "too_many_words");
    }
}

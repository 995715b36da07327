//! [`RegexFilter`]: drop (or keep only) examples whose text matches a regular expression.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::{Error, Result};
use crate::example::Example;

/// What [`RegexFilter`] does with a matching example.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchAction {
    /// Drop examples that match (reason `matched_pattern`).
    #[default]
    Drop,
    /// Keep only examples that match (others go with reason `no_match`).
    Keep,
}

/// Settings of [`RegexFilter`].
///
/// ```toml
/// [[stages.custom]]
/// name = "regex_filter"
/// after = "normalize"
/// params = { pattern = "(?i)this is an automated message", field = "input", action = "drop" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexFilterConfig {
    /// The pattern, in the `regex` crate's syntax (RE2-like; `(?i)` for case-insensitive).
    pub pattern: String,
    /// Which text to test: `input` (default), `target`, `label`, or a string metadata field
    /// (a missing or non-string field does not match).
    #[serde(default = "default_field")]
    pub field: String,
    /// Drop matches (default) or keep only matches.
    #[serde(default)]
    pub action: MatchAction,
}

fn default_field() -> String {
    "input".to_string()
}

impl RegexFilterConfig {
    /// Drop examples whose input matches `pattern`.
    pub fn new(pattern: impl Into<String>) -> Self {
        RegexFilterConfig {
            pattern: pattern.into(),
            field: default_field(),
            action: MatchAction::Drop,
        }
    }

    /// The compiled stage.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the pattern when it does not compile.
    pub fn init(self) -> Result<RegexFilter> {
        let regex = Regex::new(&self.pattern).map_err(|e| Error::InvalidOption {
            name: "regex_filter.pattern",
            reason: e.to_string(),
        })?;
        Ok(RegexFilter {
            config: self,
            regex,
        })
    }
}

/// Drops examples whose [`RegexFilterConfig::field`] matches the pattern, or with
/// [`MatchAction::Keep`] every example whose field does not; the drop's detail is the
/// matched text (cut at 80 characters).
#[derive(Debug, Clone)]
pub struct RegexFilter {
    config: RegexFilterConfig,
    regex: Regex,
}

impl RegexFilter {
    /// Its settings.
    pub fn config(&self) -> &RegexFilterConfig {
        &self.config
    }

    fn field<'a>(&self, example: &'a Example) -> Option<&'a str> {
        match self.config.field.as_str() {
            "input" => Some(&example.input),
            "target" => example.target.as_deref(),
            "label" => example.label.as_deref(),
            key => example.meta.get(key).and_then(|v| v.as_str()),
        }
    }
}

impl Stage for RegexFilter {
    fn name(&self) -> &str {
        "regex_filter"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        Ok(filter_map_examples(self.name(), examples, |e| {
            let found = self.field(e).and_then(|text| self.regex.find(text));
            match (self.config.action, found) {
                (MatchAction::Drop, Some(m)) => Verdict::Drop {
                    reason: "matched_pattern".to_string(),
                    detail: m.as_str().chars().take(80).collect(),
                },
                (MatchAction::Keep, None) => Verdict::drop("no_match"),
                _ => Verdict::Keep,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Example> {
        vec![
            Example::new("1", "Buy CHEAP pills now").with_meta("from", "x@spam.biz"),
            Example::new("2", "Lunch at noon?").with_meta("from", "ann@example.com"),
            Example::new("3", "cheap flights").with_label("travel"),
        ]
    }

    #[test]
    fn drops_or_keeps_matches_on_any_field() {
        let stage = RegexFilterConfig::new("(?i)cheap").init().unwrap();
        let out = stage.apply(rows()).unwrap();
        assert_eq!(out.kept.len(), 1);
        assert_eq!(out.dropped[0].reason, "matched_pattern");
        assert_eq!(out.dropped[0].detail, "CHEAP");

        let by_sender = RegexFilterConfig {
            field: "from".into(),
            action: MatchAction::Keep,
            ..RegexFilterConfig::new(r"@example\.com$")
        }
        .init()
        .unwrap();
        let out = by_sender.apply(rows()).unwrap();
        let kept: Vec<&str> = out.kept.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(kept, ["2"]);
        // Row 3 has no `from`: it does not match, so Keep drops it.
        assert_eq!(out.dropped.len(), 2);
        assert!(out.dropped.iter().all(|d| d.reason == "no_match"));
    }

    #[test]
    fn a_bad_pattern_is_a_typed_error() {
        let err = RegexFilterConfig::new("(unclosed").init().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid option `regex_filter.pattern`: regex parse error"),
            "{err}"
        );
    }
}

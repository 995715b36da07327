//! [`LanguageFilter`]: keep examples written in the task's languages, identified with
//! `whatlang` (character-trigram profiles of 69 languages; the role fastText's `lid.176` plays
//! in datatrove's `LanguageFilter`, without a 126 MB model file).

use serde::{Deserialize, Serialize};
use whatlang::Lang;

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::{Error, Result};
use crate::example::Example;

/// Settings of [`LanguageFilter`].
///
/// ```toml
/// [[stages.custom]]
/// name = "language_filter"
/// after = "quality"
/// params = { languages = ["eng"], min_confidence = 0.5 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageConfig {
    /// ISO 639-3 codes of the languages to keep (`eng`, `deu`, `fra`, `spa`, `cmn`, ...).
    pub languages: Vec<String>,
    /// Least confidence (0..1) in the detected language (0.5); below it the example is dropped
    /// as `language_uncertain`.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f64,
    /// Characters of the input that are looked at (the first 2,000), which bounds the cost
    /// of long documents.
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
}

fn default_min_confidence() -> f64 {
    0.5
}

fn default_max_chars() -> usize {
    2_000
}

impl LanguageConfig {
    /// Keep `languages` (ISO 639-3) at the default confidence.
    pub fn new<S: Into<String>>(languages: impl IntoIterator<Item = S>) -> Self {
        LanguageConfig {
            languages: languages.into_iter().map(Into::into).collect(),
            min_confidence: default_min_confidence(),
            max_chars: default_max_chars(),
        }
    }

    /// The stage.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for no language, a code whatlang does not know (the message
    /// lists the known ones) or a confidence outside `[0, 1]`.
    pub fn init(self) -> Result<LanguageFilter> {
        let invalid = |reason: String| Error::InvalidOption {
            name: "language_filter.languages",
            reason,
        };
        if self.languages.is_empty() {
            return Err(invalid("name at least one ISO 639-3 code".to_string()));
        }
        let mut keep = Vec::new();
        for code in &self.languages {
            let lang = Lang::from_code(code.to_ascii_lowercase()).ok_or_else(|| {
                let known: Vec<&str> = Lang::all().iter().map(Lang::code).collect();
                invalid(format!(
                    "unknown ISO 639-3 code `{code}` (known: {})",
                    known.join(", ")
                ))
            })?;
            keep.push(lang);
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(Error::InvalidOption {
                name: "language_filter.min_confidence",
                reason: format!("{} is not in [0, 1]", self.min_confidence),
            });
        }
        Ok(LanguageFilter { config: self, keep })
    }
}

/// Drops examples whose input is not in one of [`LanguageConfig::languages`]
/// (`wrong_language`, detail `deu 0.93`), is identified with less than the minimum confidence
/// (`language_uncertain`), or has no letters to identify (`no_language`).
#[derive(Debug, Clone)]
pub struct LanguageFilter {
    config: LanguageConfig,
    keep: Vec<Lang>,
}

impl LanguageFilter {
    /// Its settings.
    pub fn config(&self) -> &LanguageConfig {
        &self.config
    }

    /// The detected language and its confidence, if any.
    pub fn identify(&self, text: &str) -> Option<(Lang, f64)> {
        let end = text
            .char_indices()
            .nth(self.config.max_chars)
            .map_or(text.len(), |(i, _)| i);
        whatlang::detect(&text[..end]).map(|info| (info.lang(), info.confidence()))
    }
}

impl Stage for LanguageFilter {
    fn name(&self) -> &str {
        "language_filter"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        Ok(filter_map_examples(self.name(), examples, |e| {
            let Some((lang, confidence)) = self.identify(&e.input) else {
                return Verdict::drop("no_language");
            };
            let detail = format!("{} {confidence:.2}", lang.code());
            if !self.keep.contains(&lang) {
                Verdict::Drop {
                    reason: "wrong_language".to_string(),
                    detail,
                }
            } else if confidence < self.config.min_confidence {
                Verdict::Drop {
                    reason: "language_uncertain".to_string(),
                    detail,
                }
            } else {
                Verdict::Keep
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_task_languages_and_says_what_the_others_are() {
        let rows = vec![
            Example::new(
                "en",
                "Your invoice for the last order is attached, please pay it by Friday.",
            ),
            Example::new(
                "de",
                "Ihre Rechnung für die letzte Bestellung liegt bei, bitte bezahlen Sie bis Freitag.",
            ),
            Example::new(
                "fr",
                "Votre facture pour la dernière commande est jointe, merci de la régler avant vendredi.",
            ),
            Example::new("none", "12345 !!! ---"),
        ];
        let stage = LanguageConfig::new(["eng", "FRA"]).init().unwrap();
        let out = stage.apply(rows).unwrap();
        let kept: Vec<&str> = out.kept.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(kept, ["en", "fr"]);
        assert_eq!(out.dropped[0].reason, "wrong_language");
        assert!(
            out.dropped[0].detail.starts_with("deu "),
            "{}",
            out.dropped[0].detail
        );
        assert_eq!(out.dropped[1].reason, "no_language");
    }

    #[test]
    fn unknown_codes_and_bad_confidences_are_typed_errors() {
        let err = LanguageConfig::new(["en"]).init().unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid option `language_filter.languages`: unknown ISO 639-3 code `en` (known: "
            ),
            "{err}"
        );
        assert!(LanguageConfig::new(Vec::<String>::new()).init().is_err());
        let bad = LanguageConfig {
            min_confidence: 1.5,
            ..LanguageConfig::new(["eng"])
        };
        assert!(bad.init().is_err());
    }
}

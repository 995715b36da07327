//! [`Normalize`]: Unicode normalisation, HTML stripping, control characters and whitespace.

use serde::{Deserialize, Serialize};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick, is_nfkc_quick};

use crate::curate::{Stage, StageOutput, Verdict, filter_map_examples};
use crate::error::Result;
use crate::example::Example;
use crate::stages::html::strip_html;

/// A Unicode normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnicodeForm {
    /// Canonical composition (`é` stays one code point; compatibility characters kept).
    Nfc,
    /// Compatibility composition (`ﬁ` becomes `fi`, full-width digits become ASCII).
    Nfkc,
}

/// What [`Normalize`] does to each input (and target), in this order: HTML, Unicode form,
/// control characters, whitespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Strip HTML tags, scripts, styles and decode entities ([`strip_html`]).
    pub strip_html: bool,
    /// The Unicode normal form, or none.
    pub unicode: Option<UnicodeForm>,
    /// Remove control characters (Unicode `Cc` except `\n` and `\t`, plus zero-width and BOM).
    pub remove_control: bool,
    /// Collapse runs of spaces/tabs to one space, trim lines, and keep at most one empty line.
    pub collapse_whitespace: bool,
    /// Normalise the target text too.
    pub targets: bool,
}

impl Default for NormalizeConfig {
    /// NFC, control characters removed, whitespace collapsed, targets too; no HTML stripping.
    fn default() -> Self {
        NormalizeConfig {
            strip_html: false,
            unicode: Some(UnicodeForm::Nfc),
            remove_control: true,
            collapse_whitespace: true,
            targets: true,
        }
    }
}

/// The normalisation stage: rewrites texts, drops an example only when its input ends up
/// empty (reason `empty_after_normalize`).
#[derive(Debug, Clone, Default)]
pub struct Normalize {
    /// Its settings.
    pub config: NormalizeConfig,
}

impl Normalize {
    /// The stage with `config`.
    pub fn new(config: NormalizeConfig) -> Self {
        Normalize { config }
    }

    /// Normalises one text.
    pub fn text(&self, text: &str) -> String {
        let c = &self.config;
        let mut s = if c.strip_html {
            strip_html(text)
        } else {
            text.to_string()
        };
        // The quick checks answer "already normalised" for ASCII and most text without
        // composing anything, which is most of the cost otherwise.
        s = match c.unicode {
            Some(UnicodeForm::Nfc) if is_nfc_quick(s.chars()) != IsNormalized::Yes => {
                s.nfc().collect()
            }
            Some(UnicodeForm::Nfkc) if is_nfkc_quick(s.chars()) != IsNormalized::Yes => {
                s.nfkc().collect()
            }
            _ => s,
        };
        if c.remove_control {
            s.retain(|ch| !is_removable_control(ch));
        }
        if c.collapse_whitespace {
            s = collapse_whitespace(&s);
        }
        s
    }
}

fn is_removable_control(ch: char) -> bool {
    (ch.is_control() && ch != '\n' && ch != '\t')
        || matches!(
            ch,
            '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}'
        )
}

/// Collapses horizontal whitespace (including `\r` and NBSP) to one space, trims every line,
/// keeps at most one empty line between paragraphs, and trims the whole text.
pub fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        for (i, w) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(w);
        }
    }
    out
}

impl Stage for Normalize {
    fn name(&self) -> &str {
        "normalize"
    }

    fn apply(&self, examples: Vec<Example>) -> Result<StageOutput> {
        Ok(filter_map_examples(self.name(), examples, |e| {
            let input = self.text(&e.input);
            if input.is_empty() {
                return Verdict::drop("empty_after_normalize");
            }
            let target = match (&e.target, self.config.targets) {
                (Some(t), true) => Some(self.text(t)),
                (t, _) => t.clone(),
            };
            Verdict::rewritten(e, input, target)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_forms_controls_and_whitespace() {
        let n = Normalize::default();
        assert_eq!(
            n.text("Cafe\u{301}  au\u{0}\u{200b} lait \r\n\n\n\n  next\tline "),
            "Café au lait\n\nnext line"
        );
        let k = Normalize::new(NormalizeConfig {
            unicode: Some(UnicodeForm::Nfkc),
            strip_html: true,
            ..Default::default()
        });
        assert_eq!(k.text("<p>ﬁne １２３</p>"), "fine 123");
    }

    #[test]
    fn drops_inputs_that_become_empty() {
        let n = Normalize::default();
        let rows = vec![
            Example::new("a", " \u{200b}\t"),
            Example::new("b", "ok"),
            Example::new("c", "x  y"),
        ];
        let out = n.apply(rows).unwrap();
        assert_eq!(out.kept.len(), 2);
        assert_eq!(out.modified, 1);
        assert_eq!(out.dropped[0].reason, "empty_after_normalize");
    }
}

//! Stop strings over streamed text, also when one is split across tokens.
//!
//! Text that could still be the start of a stop string is held back until the next delta
//! decides; a found stop string ends the output before it (it is not part of the text, as in
//! OpenAI's API and vLLM).

/// Matches stop strings over text deltas (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text received but not yet released: a suffix that may begin a stop string.
    held: String,
}

/// What [`StopStrings::push`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopMatch {
    /// Text safe to emit now (possibly empty).
    Continue(String),
    /// A stop string was found: the text before it, which ends the output, and which stop.
    Stopped {
        /// Text up to the stop string.
        text: String,
        /// Index of the stop string that matched.
        stop: usize,
    },
}

impl StopStrings {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Whether there is anything to match.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Adds a delta of output text.
    pub fn push(&mut self, delta: &str) -> StopMatch {
        if self.stops.is_empty() {
            return StopMatch::Continue(delta.to_string());
        }
        self.held.push_str(delta);
        // The earliest stop string in the held text wins (ties: the longer one, listed first).
        let found = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|at| (at, i)))
            .min();
        if let Some((at, stop)) = found {
            let text = self.held[..at].to_string();
            self.held.clear();
            return StopMatch::Stopped { text, stop };
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        StopMatch::Continue(out)
    }

    /// Releases the held text at the end of the output (no stop string came).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(stops: &[&str], deltas: &[&str]) -> (String, Option<usize>) {
        let mut m = StopStrings::new(stops.iter().map(|s| s.to_string()));
        let mut out = String::new();
        for d in deltas {
            match m.push(d) {
                StopMatch::Continue(t) => out.push_str(&t),
                StopMatch::Stopped { text, stop } => {
                    out.push_str(&text);
                    return (out, Some(stop));
                }
            }
        }
        out.push_str(&m.flush());
        (out, None)
    }

    #[test]
    fn a_stop_split_across_deltas_is_found_and_cut() {
        assert_eq!(
            run(&["###"], &["Answer: yes", "#", "#", "# more"]),
            ("Answer: yes".into(), Some(0))
        );
        assert_eq!(
            run(&["\n\n", "END"], &["a\n", "b E", "ND"]),
            ("a\nb ".into(), Some(1))
        );
    }

    #[test]
    fn held_text_is_released_when_it_stops_looking_like_a_stop() {
        let mut m = StopStrings::new(["STOP".to_string()]);
        assert_eq!(m.push("go ST"), StopMatch::Continue("go ".into()));
        assert_eq!(m.push("ART"), StopMatch::Continue("START".into()));
        assert_eq!(m.push("ST"), StopMatch::Continue(String::new()));
        assert_eq!(m.flush(), "ST");
    }

    #[test]
    fn multibyte_text_is_held_at_character_boundaries() {
        assert_eq!(run(&["é!"], &["café", "!"]), ("caf".into(), Some(0)));
        assert_eq!(run(&["日本"], &["日", "x日本"]), ("日x".into(), Some(0)));
    }

    proptest! {
        #[test]
        fn output_is_the_text_before_the_first_stop(
            text in "[ab\n]{0,40}",
            stop in "[ab\n]{1,4}",
            cuts in proptest::collection::vec(0usize..40, 0..8),
        ) {
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c <= text.len()).collect();
            bounds.push(0);
            bounds.push(text.len());
            bounds.sort();
            let deltas: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            let (out, stopped) = run(&[&stop], &deltas);
            match text.find(&stop) {
                Some(at) => {
                    prop_assert_eq!(out, &text[..at]);
                    prop_assert_eq!(stopped, Some(0));
                }
                None => {
                    prop_assert_eq!(out, text.clone());
                    prop_assert_eq!(stopped, None);
                }
            }
        }
    }
}

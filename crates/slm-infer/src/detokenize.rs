//! Streaming detokenization: text deltas that never split a UTF-8 character.
//!
//! Byte-level vocabularies (GPT-2 style, SmolLM2's) and byte-fallback ones (`<0xE2>`) spell one
//! character over several tokens; decoding each token alone gives U+FFFD halves, and decoding
//! the whole output at every step costs O(n²) and rewrites spacing at word starts. As
//! text-generation-inference does, [`TextStream`] decodes a short window of tokens twice (with
//! and without the new ones) and emits the difference only once it no longer ends inside a
//! character.

use slm_core::tokenizer::Tokenizer;

use crate::error::Result;

/// Turns a stream of token ids into text deltas (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Window start: tokens before it have been emitted and no longer affect new text.
    prefix: usize,
    /// Tokens up to here have been emitted.
    read: usize,
}

impl TextStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id` and returns the text it completes (often empty in the middle of a character).
    /// Special tokens are skipped.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read], true)?;
        let after = tokenizer.decode(&self.ids[self.prefix..], true)?;
        if after.len() > before.len() && !after.ends_with('\u{FFFD}') {
            let delta = match after.get(before.len()..) {
                Some(d) if after.starts_with(&before) => d.to_string(),
                // Decoding rewrote the window (rare normalisers): emit what is new by chars.
                _ => after.chars().skip(before.chars().count()).collect(),
            };
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }

    /// The text still held back (an incomplete character at the end of the output), as the
    /// tokenizer decodes it; the stream is then empty of pending tokens.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let before = tokenizer.decode(&self.ids[self.prefix..self.read], true)?;
        let after = tokenizer.decode(&self.ids[self.prefix..], true)?;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(after.chars().skip(before.chars().count()).collect())
    }
}

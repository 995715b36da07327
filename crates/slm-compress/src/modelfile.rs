//! Ollama `Modelfile`s for the GGUF files slm writes: `FROM ./FILE.gguf`, the model's chat
//! template converted from Jinja to the Go template syntax Ollama uses, the default system prompt
//! the Jinja template inserts, and a `PARAMETER stop` for each end-of-turn marker.
//!
//! The template families are recognised by their markers: ChatML (`<|im_start|>`: SmolLM2,
//! Qwen2/2.5), Llama 3.x (`<|start_header_id|>`, with the "Cutting Knowledge Date" preamble of
//! 3.1+) and Phi-3 (`<|user|>` ... `<|end|>`). Their Go templates follow the ones Ollama's
//! library ships for those models (a system prompt first, then the turns, then the assistant
//! header), so `ollama run` renders a conversation as `apply_chat_template` does. Other
//! templates get no `TEMPLATE` line (Ollama then falls back to its own detection), and
//! [`Modelfile::template_family`] says so.

use std::fmt::Write;

use serde::Serialize;
use slm_core::tokenizer::Tokenizer;

/// A chat template family slm converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateFamily {
    /// `<|im_start|>role\n...<|im_end|>` (SmolLM2, Qwen2, Qwen2.5).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>` (Llama 3.x).
    Llama3,
    /// `<|role|>\n...<|end|>` (Phi-3, Phi-3.5).
    Phi3,
}

impl TemplateFamily {
    /// The family of a Jinja chat template, by its turn markers.
    pub fn detect(jinja: &str) -> Option<Self> {
        if jinja.contains("<|im_start|>") && jinja.contains("<|im_end|>") {
            Some(TemplateFamily::ChatMl)
        } else if jinja.contains("<|start_header_id|>") && jinja.contains("<|eot_id|>") {
            Some(TemplateFamily::Llama3)
        } else if jinja.contains("<|user|>") && jinja.contains("<|end|>") {
            Some(TemplateFamily::Phi3)
        } else {
            None
        }
    }

    /// The markers Ollama must stop on.
    pub fn stop_tokens(self) -> &'static [&'static str] {
        match self {
            TemplateFamily::ChatMl => &["<|im_start|>", "<|im_end|>"],
            TemplateFamily::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            TemplateFamily::Phi3 => &["<|end|>", "<|user|>", "<|assistant|>"],
        }
    }

    /// The Go template.
    fn go_template(self, jinja: &str) -> String {
        match self {
            TemplateFamily::ChatMl => concat!(
                "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}",
                "{{- range $i, $_ := .Messages }}\n",
                "{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n",
                "{{- if eq .Role \"user\" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n",
                "{{ else if eq .Role \"assistant\" }}<|im_start|>assistant\n",
                "{{ .Content }}{{ if not $last }}<|im_end|>\n{{ end }}\n",
                "{{- end }}\n",
                "{{- if and (ne .Role \"assistant\") $last }}<|im_start|>assistant\n{{ end }}\n",
                "{{- end }}"
            )
            .to_owned(),
            TemplateFamily::Llama3 => {
                let preamble = if jinja.contains("Cutting Knowledge Date") {
                    "Cutting Knowledge Date: December 2023\n\n"
                } else {
                    ""
                };
                let system = if preamble.is_empty() {
                    "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>\n{{- end }}".to_owned()
                } else {
                    format!(
                        "<|start_header_id|>system<|end_header_id|>\n\n{preamble}{{{{ if .System }}}}{{{{ .System }}}}{{{{ end }}}}<|eot_id|>"
                    )
                };
                // No `<|begin_of_text|>`: llama.cpp adds BOS when it tokenizes (add_bos_token).
                format!(
                    "{system}\n{{{{- range .Messages }}}}{{{{- if ne .Role \"system\" }}}}<|start_header_id|>{{{{ .Role }}}}<|end_header_id|>\n\n{{{{ .Content }}}}<|eot_id|>\n{{{{- end }}}}{{{{- end }}}}<|start_header_id|>assistant<|end_header_id|>\n\n"
                )
            }
            TemplateFamily::Phi3 => concat!(
                "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}",
                "{{- range .Messages }}{{- if ne .Role \"system\" }}<|{{ .Role }}|>\n",
                "{{ .Content }}<|end|>\n{{ end }}{{- end }}<|assistant|>\n"
            )
            .to_owned(),
        }
    }
}

/// The default system prompt a ChatML template writes when the conversation has none (SmolLM2's
/// "You are a helpful AI assistant named SmolLM, ...", Qwen's "You are Qwen, ...").
fn default_system(family: TemplateFamily, jinja: &str) -> Option<String> {
    if family != TemplateFamily::ChatMl {
        return None;
    }
    let start = "<|im_start|>system\n";
    let at = jinja.find(start)? + start.len();
    let rest = &jinja[at..];
    let text = &rest[..rest.find("<|im_end|>")?];
    // A literal, not template code (`' + messages[0]['content'] + '`).
    if text.is_empty() || text.contains(['{', '}', '\'', '+']) {
        return None;
    }
    Some(text.to_owned())
}

/// An Ollama Modelfile for one GGUF file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Modelfile {
    /// The file it points at (`FROM ./name.gguf`, relative to the Modelfile).
    pub gguf_file: String,
    /// The template family converted, `None` when the model's template is not one slm knows.
    pub template_family: Option<TemplateFamily>,
    /// The Go template.
    pub template: Option<String>,
    /// The default system prompt.
    pub system: Option<String>,
    /// `PARAMETER stop` values.
    pub stop: Vec<String>,
}

impl Modelfile {
    /// The Modelfile of `gguf_file` (a name beside the Modelfile) for a model with `tokenizer`.
    pub fn new(gguf_file: &str, tokenizer: Option<&Tokenizer>) -> Self {
        let jinja = tokenizer
            .and_then(Tokenizer::chat_template)
            .map(|t| t.source().to_owned());
        let family = jinja.as_deref().and_then(TemplateFamily::detect);
        let (template, system, stop) = match (family, jinja.as_deref()) {
            (Some(f), Some(j)) => (
                Some(f.go_template(j)),
                default_system(f, j),
                f.stop_tokens().iter().map(|s| (*s).to_owned()).collect(),
            ),
            _ => (None, None, Vec::new()),
        };
        Self {
            gguf_file: gguf_file.to_owned(),
            template_family: family,
            template,
            system,
            stop,
        }
    }

    /// The Modelfile's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "FROM ./{}", self.gguf_file);
        if let Some(t) = &self.template {
            let _ = writeln!(out, "TEMPLATE \"\"\"{t}\"\"\"");
        }
        if let Some(s) = &self.system {
            let _ = writeln!(out, "SYSTEM \"\"\"{s}\"\"\"");
        }
        for stop in &self.stop {
            let _ = writeln!(out, "PARAMETER stop \"{stop}\"");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn families_are_detected_by_their_markers() {
        assert_eq!(
            TemplateFamily::detect(SMOLLM2),
            Some(TemplateFamily::ChatMl)
        );
        assert_eq!(
            TemplateFamily::detect(
                "{{ '<|start_header_id|>' + m + '<|end_header_id|>\n\n' + c + '<|eot_id|>' }}"
            ),
            Some(TemplateFamily::Llama3)
        );
        assert_eq!(
            TemplateFamily::detect("{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"),
            Some(TemplateFamily::Phi3)
        );
        assert_eq!(TemplateFamily::detect("[INST] {{ m }} [/INST]"), None);
    }

    #[test]
    fn smollm2_modelfile() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/smollm2-tokenizer");
        let tok = Tokenizer::from_model_dir(&dir).unwrap();
        assert_eq!(tok.chat_template().unwrap().source(), SMOLLM2);
        let m = Modelfile::new("smollm2.Q4_K_M.gguf", Some(&tok));
        let text = m.render();
        assert!(text.starts_with(
            "FROM ./smollm2.Q4_K_M.gguf\nTEMPLATE \"\"\"{{- if .System }}<|im_start|>system\n"
        ));
        assert!(text.contains(
            "SYSTEM \"\"\"You are a helpful AI assistant named SmolLM, trained by Hugging Face\"\"\"\n"
        ));
        assert!(text.ends_with("PARAMETER stop \"<|im_start|>\"\nPARAMETER stop \"<|im_end|>\"\n"));
        // Go template actions balance.
        let t = m.template.unwrap();
        assert_eq!(t.matches("{{").count(), t.matches("}}").count());
    }

    #[test]
    fn unknown_templates_get_no_template() {
        let m = Modelfile::new("x.gguf", None);
        assert_eq!(m.render(), "FROM ./x.gguf\n");
        assert_eq!(m.template_family, None);
    }

    #[test]
    fn llama3_preamble_and_phi3() {
        let j = "{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December 2023\\n' }}{{ '<|eot_id|>' }}";
        let t = TemplateFamily::Llama3.go_template(j);
        assert!(t.starts_with("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n\n{{ if .System }}{{ .System }}{{ end }}<|eot_id|>\n"));
        assert!(t.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
        let p = TemplateFamily::Phi3.go_template("");
        assert!(p.ends_with("<|assistant|>\n"));
        assert_eq!(p.matches("{{").count(), p.matches("}}").count());
    }
}

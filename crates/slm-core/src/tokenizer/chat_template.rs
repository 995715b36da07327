//! Chat templates: the Jinja templates of `tokenizer_config.json` / `chat_template.jinja` /
//! GGUF `tokenizer.chat_template`, rendered the way transformers' `apply_chat_template` does
//! (jinja2 with `trim_blocks`, `lstrip_blocks` and loop controls, plus Python string methods).

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        Self::new(self.source.clone()).expect("a template that compiled once compiles again")
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; a syntax error is [`Error::ChatTemplate`].
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        Ok(Self { source, env })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        tmpl.render(context! {
            messages => Value::from(Serde(messages)),
            tools => Value::from(()),
            documents => Value::from(()),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token.unwrap_or_default(),
            eos_token => eos_token.unwrap_or_default(),
        })
        .map_err(|e| Error::ChatTemplate(e.to_string()))
    }

    /// Renders with everything transformers' `apply_chat_template` can pass: `messages` as
    /// JSON (any fields: `tool_calls`, `name`, ...), `tools` (JSON schemas; `None` renders as
    /// transformers' `tools=None`), and `extra` variables (`bos_token`, `eos_token`, Llama 3.x's
    /// `date_string`, ...). Key order of objects is kept, as Python's dicts keep it.
    pub fn render_with(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), messages.clone());
        ctx.insert(
            "tools".into(),
            tools.cloned().unwrap_or(serde_json::Value::Null),
        );
        ctx.insert("documents".into(), serde_json::Value::Null);
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        for (k, v) in extra {
            ctx.insert(k.clone(), v.clone());
        }
        tmpl.render(Value::from(Serde(ctx)))
            .map_err(|e| Error::ChatTemplate(e.to_string()))
    }
}

/// transformers' `strftime_now(format)`: the current time (UTC) formatted by C `strftime`
/// directives (`%d %b %Y` for Llama 3.x's date).
fn strftime_now(format: String) -> std::result::Result<String, JinjaError> {
    strftime(&format, chrono::Utc::now())
}

/// `time` formatted by chrono's `strftime`; an unknown directive is an error, not a panic.
fn strftime(
    format: &str,
    time: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<String, JinjaError> {
    let items = chrono::format::StrftimeItems::new(format)
        .parse()
        .map_err(|e| {
            JinjaError::new(
                ErrorKind::InvalidOperation,
                format!("strftime_now: {e} in `{format}`"),
            )
        })?;
    Ok(time.format_with_items(items.iter()).to_string())
}

/// transformers' `tojson` filter: Python's `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)` (`", "` and `": "` between items, or `","`
/// with an indent), not minijinja's compact, HTML-escaping one.
fn tojson(
    value: &Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<Value, JinjaError> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_owned(),
            None => " ".repeat(v.as_usize().unwrap_or(0)),
        }),
    };
    let (item, key) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        _ if indent.is_some() => (",".into(), ": ".into()),
        _ => (", ".into(), ": ".into()),
    };
    let json: serde_json::Value = serde_json::to_value(value)
        .map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    PyJson {
        indent: indent.as_deref(),
        item: &item,
        key: &key,
        sort_keys: sort_keys.unwrap_or(false),
    }
    .write(&json, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// Python's `json.dumps` layout.
struct PyJson<'a> {
    indent: Option<&'a str>,
    item: &'a str,
    key: &'a str,
    sort_keys: bool,
}

impl PyJson<'_> {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(ind) = self.indent {
            out.push('\n');
            out.push_str(&ind.repeat(depth));
        }
    }

    fn write(&self, v: &serde_json::Value, depth: usize, out: &mut String) {
        use serde_json::Value as J;
        match v {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Number(n) => match n.as_f64() {
                // Python writes floats with a fraction (`1.0`), integers without.
                Some(f) if n.is_f64() && f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 => {
                    out.push_str(&format!("{f:.1}"))
                }
                _ => out.push_str(&n.to_string()),
            },
            J::String(s) => write_py_string(s, out),
            J::Array(items) if items.is_empty() => out.push_str("[]"),
            J::Array(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item);
                    }
                    self.newline(depth + 1, out);
                    self.write(x, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            J::Object(map) if map.is_empty() => out.push_str("{}"),
            J::Object(map) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item);
                    }
                    self.newline(depth + 1, out);
                    write_py_string(k, out);
                    out.push_str(self.key);
                    self.write(x, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
        }
    }
}

/// A JSON string as Python writes it with `ensure_ascii=False`.
fn write_py_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_methods_and_exceptions_work() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role not in ['user'] %}{{ raise_exception('bad role') }}{% endif %}{{ m.content.strip() }}{% endfor %}",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::user("  hi ")], false, None, None)
                .unwrap(),
            "hi"
        );
        let err = t
            .render(&[ChatMessage::new("tool", "x")], false, None, None)
            .unwrap_err();
        assert!(err.to_string().contains("bad role"), "{err}");
    }

    #[test]
    fn strftime_formats_dates_as_python() {
        // 2024-07-26 13:05:09 UTC, a Friday, day 208 of a leap year.
        let at = |secs| chrono::DateTime::from_timestamp(secs, 0).unwrap();
        let t = at(1_721_999_109);
        assert_eq!(strftime("%d %b %Y", t).unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime("%A %a %B %m/%d/%y %j %H:%M:%S %p %e%%", t).unwrap(),
            "Friday Fri July 07/26/24 208 13:05:09 PM 26%"
        );
        assert_eq!(strftime("%d %b %Y", at(0)).unwrap(), "01 Jan 1970");
        assert_eq!(strftime("%Y-%m-%d", at(951_782_400)).unwrap(), "2000-02-29");
        assert!(strftime("%Q", t).is_err());
    }

    #[test]
    fn tojson_writes_python_json() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':')) }}",
        )
        .unwrap();
        let x = serde_json::json!({"b": [1, 2.0, "é\"<>"], "a": {}, "n": null});
        let extra = serde_json::Map::from_iter([("x".to_string(), x)]);
        assert_eq!(
            t.render_with(&serde_json::json!([]), false, None, &extra)
                .unwrap(),
            "{\"b\": [1, 2.0, \"é\\\"<>\"], \"a\": {}, \"n\": null}|{\n  \"b\": [\n    1,\n    2.0,\n    \"é\\\"<>\"\n  ],\n  \"a\": {},\n  \"n\": null\n}|{\"b\":[1,2.0,\"é\\\"<>\"],\"a\":{},\"n\":null}"
        );
    }

    #[test]
    fn syntax_errors_are_typed() {
        assert!(matches!(
            ChatTemplate::new("{% for %}"),
            Err(Error::ChatTemplate(_))
        ));
    }
}

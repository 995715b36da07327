//! Constrained outputs through the engine on a real checkpoint (qwen2-tiny, random weights, so
//! only the constraint keeps the output in shape): choices, regexes, nested JSON schemas and
//! JSON objects always come out valid, whatever the seed; bad constraints fail closed; a
//! compiled constraint is cached.

use std::sync::Arc;

mod common;

use common::*;
use serde_json::{Value, json};
use slm_core::tokenizer::Tokenizer;
use slm_infer::constraint::{ConstraintCompiler, OutputConstraint};
use slm_infer::engine::{Engine, EngineConfig, Request};
use slm_infer::{Error, FinishReason, GenerationConfig, SamplingParams};

struct Setup {
    engine: Engine,
    compiler: ConstraintCompiler,
    tokenizer: Arc<Tokenizer>,
}

fn setup() -> Setup {
    let ckpt = qwen2_tiny();
    let model = qwen2_fast_bytes(8 << 20);
    let tokenizer = Arc::new(qwen2_tiny_tokenizer());
    let eos = ckpt.config.eos_token_ids[0];
    let compiler = ConstraintCompiler::new(&tokenizer, eos, ckpt.config.vocab_size).unwrap();
    let engine = Engine::start(
        Arc::new(model),
        Some(tokenizer.clone()),
        EngineConfig::default(),
    )
    .unwrap();
    Setup {
        engine,
        compiler,
        tokenizer,
    }
}

/// Runs `constraint` at temperature 1 for several seeds, all at once; returns the texts.
fn outputs(s: &Setup, constraint: &OutputConstraint, max_new_tokens: usize) -> Vec<String> {
    outputs_biased(s, constraint, max_new_tokens, &[])
}

/// As [`outputs`], with `bias` added to the logits of these token strings.
fn outputs_biased(
    s: &Setup,
    constraint: &OutputConstraint,
    max_new_tokens: usize,
    bias: &[(&str, f32)],
) -> Vec<String> {
    let logit_bias: std::collections::BTreeMap<u32, f32> = bias
        .iter()
        .map(|&(t, b)| (s.tokenizer.token_to_id(t).unwrap(), b))
        .collect();
    let grammar = s.compiler.compile(constraint).unwrap();
    let eos = s.engine.model().config().eos_token_ids.clone();
    let prompt = s.tokenizer.encode("Answer:", true).unwrap();
    let streams: Vec<_> = (0..6)
        .map(|seed| {
            let config = GenerationConfig {
                max_new_tokens,
                sampling: SamplingParams {
                    logit_bias: logit_bias.clone(),
                    ..SamplingParams::with_temperature(1.0, seed)
                },
                stop_tokens: eos.clone(),
                ..Default::default()
            };
            s.engine
                .submit(Request::new(prompt.clone(), config).with_grammar(grammar.clone()))
                .unwrap()
        })
        .collect();
    streams
        .into_iter()
        .map(|st| {
            let c = st.wait().unwrap();
            assert_eq!(
                c.reason,
                FinishReason::Stop,
                "incomplete output: {:?}",
                c.text
            );
            c.text
        })
        .collect()
}

#[test]
fn choices_and_regexes_always_match() {
    let s = setup();
    let options = vec![
        "spam".to_string(),
        "ham".to_string(),
        "not sure".to_string(),
    ];
    for text in outputs(&s, &OutputConstraint::Choice(options.clone()), 20) {
        assert!(options.contains(&text), "{text:?}");
    }
    let rx = regex::Regex::new(r"^[0-9]{3}-[a-z]{2}$").unwrap();
    for text in outputs(&s, &OutputConstraint::Regex("[0-9]{3}-[a-z]{2}".into()), 40) {
        assert!(rx.is_match(&text), "{text:?}");
    }
}

#[test]
fn json_schemas_with_nesting_arrays_enums_and_numbers_always_parse_and_validate() {
    let s = setup();
    let schema = json!({
        "type": "object",
        "properties": {
            "label": {"enum": ["spam", "ham"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 9},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
            "meta": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}},
                "required": ["ok"],
                "additionalProperties": false
            }
        },
        "required": ["label", "score", "tags", "meta"],
        "additionalProperties": false
    });
    for text in outputs(&s, &OutputConstraint::json_schema(&schema), 200) {
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(
            matches!(v["label"].as_str(), Some("spam" | "ham")),
            "{text}"
        );
        let score = v["score"].as_i64().unwrap();
        assert!((0..=9).contains(&score), "{text}");
        let tags = v["tags"].as_array().unwrap();
        assert!(
            tags.len() <= 2
                && tags
                    .iter()
                    .all(|t| t.as_str().unwrap().chars().count() <= 3)
        );
        assert!(v["meta"]["ok"].is_boolean(), "{text}");
        assert_eq!(v.as_object().unwrap().len(), 4, "{text}");
    }
    // Any object: keys and strings are unbounded, so a random model is nudged to close them
    // (the mask alone keeps the text valid JSON).
    let close = [("\"", 6.0), ("}", 6.0)];
    for text in outputs_biased(&s, &OutputConstraint::JsonObject, 300, &close) {
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v.is_object(), "{text}");
    }
}

#[test]
fn bad_constraints_fail_closed_and_good_ones_are_compiled_once() {
    let s = setup();
    for bad in [
        OutputConstraint::Regex("(unclosed".into()),
        OutputConstraint::JsonSchema("{not json".into()),
        OutputConstraint::json_schema(&json!({"type": "no-such-type"})),
        OutputConstraint::Choice(vec![]),
        OutputConstraint::Lark("start: missing_rule".into()),
    ] {
        match s.compiler.compile(&bad) {
            Err(Error::InvalidConstraint(msg)) => assert!(msg.len() > 8, "{msg}"),
            other => panic!("{bad:?} compiled: {other:?}"),
        }
    }
    let c = OutputConstraint::Choice(vec!["a".into(), "b".into()]);
    s.compiler.compile(&c).unwrap();
    s.compiler.compile(&c).unwrap();
    assert_eq!(s.compiler.cached(), 1);
}

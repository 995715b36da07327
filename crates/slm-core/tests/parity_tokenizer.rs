//! Tokenizers and chat templates against HF tokenizers / transformers.

mod common;

use common::*;
use slm_core::tokenizer::{ChatMessage, Tokenizer};

fn check_cases(tok: &Tokenizer, cases_rel: &str) -> usize {
    let cases = json(cases_rel);
    let mut n = 0;
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, false).unwrap(),
            ids(&case["ids"]),
            "ids of {text:?}"
        );
        if let Some(with) = case.get("ids_with_special") {
            assert_eq!(
                tok.encode(text, true).unwrap(),
                ids(with),
                "ids_with_special of {text:?}"
            );
        }
        if let Some(dec) = case.get("decoded").and_then(|d| d.as_str()) {
            assert_eq!(
                tok.decode(&ids(&case["ids"]), true).unwrap(),
                dec,
                "decode of {text:?}"
            );
        }
        if let (Some(with), Some(dec)) = (
            case.get("ids_with_special"),
            case.get("decoded_with_special"),
        ) {
            assert_eq!(
                tok.decode(&ids(with), false).unwrap(),
                dec.as_str().unwrap()
            );
        }
        n += 1;
    }
    n
}

#[test]
fn tiny_tokenizer_matches_hf_tokenizers() {
    let tok = Tokenizer::from_path(&fixture("tokenizer/tokenizer.json")).unwrap();
    assert!(check_cases(&tok, "tokenizer/cases.json") >= 30);
}

#[test]
fn smollm2_tokenizer_json_matches_and_renders_its_chat_template() {
    let tok = Tokenizer::from_model_dir(&fixture("smollm2-tokenizer")).unwrap();
    check_cases(&tok, "smollm2-tokenizer/cases.json");
    assert_eq!(
        tok.encode("Once upon a time, there was a little", false)
            .unwrap(),
        vec![6403, 1980, 253, 655, 28, 665, 436, 253, 1838]
    );
    let chat = json("smollm2/chat.json");
    let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
    let rendered = tok.apply_chat_template(&messages, true).unwrap();
    assert_eq!(rendered, chat["rendered"].as_str().unwrap());
    assert_eq!(tok.encode(&rendered, false).unwrap(), ids(&chat["ids"]));
}

#[test]
fn out_of_vocab_ids_do_not_decode() {
    let tok = Tokenizer::from_path(&fixture("tokenizer/tokenizer.json")).unwrap();
    assert!(tok.decode(&[5, 100_000], false).is_err());
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = Tokenizer::from_path(&path).unwrap();
    check_cases(&tok, "smollm2-tokenizer/cases.json");
    let chat = json("smollm2/chat.json");
    let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
    let rendered = tok.apply_chat_template(&messages, true).unwrap();
    assert_eq!(rendered, chat["rendered"].as_str().unwrap());
    assert_eq!(tok.encode(&rendered, false).unwrap(), ids(&chat["ids"]));
}

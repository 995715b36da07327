//! SentencePiece vocabularies from GGUF (`tokenizer.ggml.model = llama`) against three
//! references no one here wrote (`tests/data/coverage/vocab`, see its `generate.py`): llama.cpp's
//! own expected ids for its Llama 2 and Phi-3 vocab GGUFs (`.inp`/`.out`), the ids of the
//! original models' `tokenizer.json` layout (transformers' `phi3_tokenizer` GGUF builder), and
//! SentencePiece on the same pieces; over whitespace runs, leading spaces, digits, emoji, CJK,
//! byte fallback and special-token text.

mod common;

use common::*;
use slm_core::gguf::GgufFile;
use slm_core::tokenizer::Tokenizer;

const VOCABS: [&str; 2] = ["llama-spm", "phi-3"];

fn open(name: &str) -> Tokenizer {
    let file = GgufFile::open(fixture(&format!("coverage/vocab/ggml-vocab-{name}.gguf"))).unwrap();
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn sentencepiece_ggufs_give_llama_cpp_ids() {
    for name in VOCABS {
        let tok = open(name);
        let dir = format!("coverage/vocab/ggml-vocab-{name}.gguf");
        let inp = std::fs::read_to_string(fixture(&format!("{dir}.inp"))).unwrap();
        let out = std::fs::read_to_string(fixture(&format!("{dir}.out"))).unwrap();
        // llama.cpp's test-tokenizer-0 format: strings separated by a marker line, one line of
        // ids (no BOS) per string.
        let marker = "\n__ggml_vocab_test__\n";
        let strings: Vec<&str> = inp.strip_suffix(marker).unwrap().split(marker).collect();
        let expected: Vec<&str> = out.lines().collect();
        assert_eq!(strings.len(), expected.len(), "{name}");
        for (text, line) in strings.iter().zip(expected) {
            let want: Vec<u32> = line
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            assert_eq!(tok.encode(text, false).unwrap(), want, "{name}: {text:?}");
        }
        eprintln!("{name}: {} llama.cpp strings match", strings.len());
    }
}

#[test]
fn sentencepiece_ggufs_match_the_original_tokenizer_layout_and_sentencepiece() {
    for name in VOCABS {
        let tok = open(name);
        let cases = json(&format!("coverage/vocab/{name}.cases.json"));
        let (mut spm, mut decoded) = (0, 0);
        for case in cases["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let legacy = ids(&case["legacy_ids"]);
            let got = tok.encode(text, false).unwrap();
            assert_eq!(got, legacy, "{name}: {text:?}");
            // llama.cpp and transformers add BOS to SentencePiece vocabularies.
            let with = tok.encode(text, true).unwrap();
            assert_eq!(with[0], 1, "{name}: {text:?}");
            assert_eq!(&with[1..], &legacy[..], "{name}: {text:?}");
            // SentencePiece does not know special tokens: "<s>" in text is plain text to it.
            if !text.contains("<s>") && !text.contains("<|") {
                assert_eq!(got, ids(&case["sentencepiece_ids"]), "{name}: {text:?}");
                spm += 1;
            }
            // transformers' decode of the same ids (its ids equal these for Phi-3, and for
            // Llama 2 wherever its Metaspace layout agrees).
            if ids(&case["ids"]) == legacy {
                assert_eq!(
                    tok.decode(&legacy, true).unwrap(),
                    case["decoded"].as_str().unwrap(),
                    "{name}: decode of {text:?}"
                );
                decoded += 1;
            }
        }
        eprintln!("{name}: sentencepiece agrees on {spm}, decodes checked {decoded}");
        assert!(spm >= 55 && decoded >= 40, "{name}: {spm} {decoded}");
    }
}

#[test]
fn sentencepiece_special_tokens_and_bytes() {
    let tok = open("phi-3");
    assert_eq!(tok.bos_token(), Some("<s>"));
    assert_eq!(tok.eos_token(), Some("<|endoftext|>"));
    assert_eq!(tok.unk_token(), Some("<unk>"));
    assert_eq!(tok.token_to_id("<0x0A>"), Some(13));
    // Chat markers are single control tokens, skipped when decoding.
    let ids = tok.encode("<|user|>\nHi<|end|>", false).unwrap();
    assert_eq!(ids.first(), Some(&tok.token_to_id("<|user|>").unwrap()));
    assert_eq!(tok.decode(&ids, true).unwrap(), "\nHi");
    // A character outside the vocabulary falls back to its UTF-8 bytes and decodes back.
    let text = "\u{1F999} 日本";
    let ids = tok.encode(text, false).unwrap();
    assert!(ids.iter().any(|&i| i == tok.token_to_id("<0xF0>").unwrap()));
    assert_eq!(tok.decode(&ids, true).unwrap(), text);
}

//! Vocabulary resizing (`model::resize_vocab`) on the tiny fixture models: untied, tied, fused
//! (Phi-3) and biased (Qwen2) decoders keep their old rows and logits, and new rows start as
//! the mean of the rows they name.

mod common;

use common::*;
use slm_core::model::{NewRow, resize_vocab};
use slm_core::prelude::*;

fn load(model: &str) -> Decoder {
    Checkpoint::open(&fixture(&format!("models/{model}")))
        .unwrap()
        .load_decoder(&Device::flex())
        .unwrap()
}

fn rows_of(dec: &Decoder, name: &str) -> (Vec<usize>, Vec<f32>) {
    dec.named_parameters()
        .unwrap()
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, v)| (s, v))
        .unwrap_or_else(|| panic!("no parameter {name}"))
}

fn mean(values: &[f32], hidden: usize, ids: &[u32]) -> Vec<f32> {
    let mut sum = vec![0f32; hidden];
    for &id in ids {
        for (s, x) in sum
            .iter_mut()
            .zip(&values[id as usize * hidden..][..hidden])
        {
            *s += x;
        }
    }
    sum.iter().map(|s| s / ids.len() as f32).collect()
}

fn check_resize(model: &str) {
    let dec = load(model);
    let (old_v, hidden) = (dec.config().vocab_size, dec.config().hidden_size);
    let rows = vec![
        NewRow {
            id: old_v as u32,
            mean_of: vec![1, 2],
        },
        NewRow {
            id: old_v as u32 + 2,
            mean_of: vec![5, 3, 4],
        },
    ];
    // Four new rows: two written, two left zero.
    let resized = resize_vocab(&dec, old_v + 4, &rows).unwrap();
    assert_eq!(resized.config().vocab_size, old_v + 4, "{model}");
    let mut names = vec!["model.embed_tokens.weight"];
    if !dec.config().tie_word_embeddings {
        names.push("lm_head.weight");
    }
    for name in names {
        let (_, old) = rows_of(&dec, name);
        let (shape, new) = rows_of(&resized, name);
        assert_eq!(shape, vec![old_v + 4, hidden], "{model} {name}");
        assert_eq!(
            &new[..old.len()],
            &old[..],
            "{model} {name}: old rows unchanged"
        );
        for row in &rows {
            let id = row.id as usize;
            assert_eq!(
                &new[id * hidden..][..hidden],
                &mean(&old, hidden, &row.mean_of)[..],
                "{model} {name} row {id}"
            );
        }
        for id in [old_v + 1, old_v + 3] {
            assert!(new[id * hidden..][..hidden].iter().all(|&x| x == 0.0));
        }
    }
    // Every other parameter is the same.
    for ((n, s, v), (m, t, w)) in dec
        .named_parameters()
        .unwrap()
        .into_iter()
        .zip(resized.named_parameters().unwrap())
    {
        assert_eq!(n, m);
        if n != "model.embed_tokens.weight" && n != "lm_head.weight" {
            assert!(s == t && v == w, "{model} {n} changed");
        }
    }

    // Old tokens: identical logits over the old vocabulary; a new token runs.
    let ids: Vec<u32> = vec![1, 7, 3, 9, 2];
    let batch = TokenBatch::single(ids.clone(), LogitsScope::All);
    let a = dec.forward(&batch, &mut dec.new_cache()).unwrap();
    let b = resized.forward(&batch, &mut resized.new_cache()).unwrap();
    assert_eq!(b.vocab, old_v + 4);
    for t in 0..ids.len() {
        assert_eq!(a.at(0, t), &b.at(0, t)[..old_v], "{model} position {t}");
    }
    let with_new = TokenBatch::single(vec![1, old_v as u32, 2], LogitsScope::Last);
    let c = resized
        .forward(&with_new, &mut resized.new_cache())
        .unwrap();
    assert_eq!(c.last(0).len(), old_v + 4);
    assert!(c.last(0).iter().all(|x| x.is_finite()));
}

#[test]
fn resize_untied_llama_and_tied_smollm() {
    check_resize("llama-tiny");
    check_resize("smollm-tiny");
}

#[test]
fn resize_fused_phi3_and_biased_qwen2() {
    check_resize("phi3-tiny");
    check_resize("qwen2-tiny");
}

#[test]
fn rows_below_the_old_size_are_rewritten_in_place() {
    // A vocabulary padded beyond its tokenizer: new tokens land on padding rows.
    let dec = load("smollm-tiny");
    let (v, hidden) = (dec.config().vocab_size, dec.config().hidden_size);
    let row = NewRow {
        id: v as u32 - 1,
        mean_of: vec![4, 6],
    };
    let resized = resize_vocab(&dec, v, std::slice::from_ref(&row)).unwrap();
    let (_, old) = rows_of(&dec, "model.embed_tokens.weight");
    let (shape, new) = rows_of(&resized, "model.embed_tokens.weight");
    assert_eq!(shape, vec![v, hidden]);
    assert_eq!(&new[..(v - 1) * hidden], &old[..(v - 1) * hidden]);
    assert_eq!(&new[(v - 1) * hidden..], &mean(&old, hidden, &[4, 6])[..]);
}

#[test]
fn bad_resizes_are_typed_errors() {
    let dec = load("llama-tiny");
    let v = dec.config().vocab_size;
    let row = |id: usize, mean_of: Vec<u32>| NewRow {
        id: id as u32,
        mean_of,
    };
    assert!(matches!(
        resize_vocab(&dec, v - 1, &[]),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        resize_vocab(&dec, v + 1, &[row(v, vec![])]),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        resize_vocab(&dec, v + 1, &[row(v + 1, vec![1])]),
        Err(Error::TokenOutOfVocab { vocab_size, .. }) if vocab_size == v + 1
    ));
    assert!(matches!(
        resize_vocab(&dec, v + 1, &[row(v, vec![1, v as u32])]),
        Err(Error::TokenOutOfVocab { vocab_size, .. }) if vocab_size == v
    ));
}

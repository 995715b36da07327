//! slm-data against the tiny fixture models of `fixtures/models`: tokenizer extension and the
//! embedding resize it calls for (the model side alone is tested in slm-core's
//! `tests/resize.rs`), chat-template inputs, and teacher-driven synthetic augmentation.

use std::path::{Path, PathBuf};

use slm_core::prelude::*;
use slm_data::Example;
use slm_data::inputs::{Batcher, BatcherConfig, IGNORE_INDEX, PackedBatcher, PromptTemplate};
use slm_data::synth::{
    AugmentConfig, DropReason, GenerationRequest, Generator, LabelScorer, QualityBounds,
    TeacherConfig, TeacherGenerator, TeacherScorer, augment,
};
use slm_data::tokenizer::{extend_tokenizer, new_token_rows, resize_embeddings};

/// `fixtures/<rel>` at the repository root (the project copy of the shared reference fixtures); panics naming the path if absent.
fn fixture(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel);
    assert!(p.exists(), "fixture missing: {}", p.display());
    p
}

fn load(model: &str) -> (Decoder, Tokenizer) {
    let ck = Checkpoint::open(&fixture(&format!("models/{model}"))).unwrap();
    let dec = ck.load_decoder(&Device::flex()).unwrap();
    (dec, ck.tokenizer.expect("fixture has a tokenizer"))
}

fn embedding_rows(dec: &Decoder, name: &str) -> (Vec<usize>, Vec<f32>) {
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

fn check_extension(model: &str) {
    let (dec, base) = load(model);
    let new_tokens = ["mortgage", "unsubscribe", "viagra"];
    let ext = extend_tokenizer(&base, &new_tokens).unwrap();
    assert_eq!(ext.vocab_size(), base.vocab_size() + 3);
    assert_eq!(
        ext.eos_token(),
        base.eos_token(),
        "special-token names survive"
    );
    // The tokenizer side: the new tokens get the ids after the base vocabulary, in order, each
    // starting from the base sub-tokens of its text.
    let rows = new_token_rows(&base, &ext).unwrap();
    assert_eq!(rows.len(), new_tokens.len());
    for (i, (row, tok)) in rows.iter().zip(new_tokens).enumerate() {
        assert_eq!(row.id as usize, base.vocab_size() + i, "{tok}");
        assert_eq!(row.mean_of, base.encode(tok, false).unwrap(), "{tok}");
    }
    let resized = resize_embeddings(&dec, &base, &ext).unwrap();
    let old_v = dec.config().vocab_size;
    assert_eq!(resized.config().vocab_size, old_v + 3);

    // Each new token is one id, and its row is the mean of its old sub-token rows, exactly.
    let hidden = dec.config().hidden_size;
    let mut heads = vec!["model.embed_tokens.weight"];
    if !dec.config().tie_word_embeddings {
        heads.push("lm_head.weight");
    }
    for name in heads {
        let (_, old) = embedding_rows(&dec, name);
        let (shape, new) = embedding_rows(&resized, name);
        assert_eq!(shape, vec![old_v + 3, hidden]);
        assert_eq!(&new[..old.len()], &old[..], "{name}: old rows unchanged");
        for tok in new_tokens {
            let ids = ext.encode(tok, false).unwrap();
            assert_eq!(ids.len(), 1, "{tok} is one token");
            let id = ids[0] as usize;
            assert!(id >= old_v);
            let pieces = base.encode(tok, false).unwrap();
            assert!(pieces.len() > 1, "{tok} was split before");
            assert_eq!(
                &new[id * hidden..][..hidden],
                &mean(&old, hidden, &pieces)[..],
                "{name} {tok}"
            );
        }
    }

    // A sequence without new tokens: identical logits over the old vocabulary.
    let text = "The quarterly report is due on Friday.";
    let ids = base.encode(text, true).unwrap();
    assert_eq!(ids, ext.encode(text, true).unwrap());
    let a = dec
        .forward(
            &TokenBatch::single(ids.clone(), LogitsScope::All),
            &mut dec.new_cache(),
        )
        .unwrap();
    let b = resized
        .forward(
            &TokenBatch::single(ids.clone(), LogitsScope::All),
            &mut resized.new_cache(),
        )
        .unwrap();
    assert_eq!(b.vocab, old_v + 3);
    for t in 0..ids.len() {
        assert_eq!(a.at(0, t), &b.at(0, t)[..old_v], "position {t}");
    }
}

#[test]
fn extension_and_resize_untied_llama() {
    check_extension("llama-tiny");
}

#[test]
fn extension_and_resize_tied_smollm() {
    check_extension("smollm-tiny");
}

#[test]
fn extension_and_resize_fused_phi3_and_biased_qwen2() {
    check_extension("phi3-tiny");
    check_extension("qwen2-tiny");
}

#[test]
fn resize_rejects_a_tokenizer_that_is_not_an_extension() {
    let (dec, base) = load("smollm-tiny");
    let texts = ["a mortgage refinance offer", "the meeting moved to Friday"];
    let other = slm_data::tokenizer::train_bpe_from_texts(
        texts,
        &slm_data::tokenizer::BpeTrainingConfig::new(300),
    )
    .unwrap();
    let err = resize_embeddings(&dec, &base, &other).unwrap_err();
    assert!(err.to_string().contains("not an extension"), "{err}");
    // A base tokenizer bigger than the model is refused too.
    let ext = extend_tokenizer(&base, &["mortgage"]).unwrap();
    assert!(matches!(
        resize_embeddings(&dec, &ext, &ext),
        Err(slm_data::Error::VocabMismatch { .. })
    ));
}

#[test]
fn chat_template_inputs_mask_all_but_the_reply() {
    let tk = Tokenizer::from_model_dir(&fixture("smollm2-tokenizer")).unwrap();
    let template = PromptTemplate::chat("Classify the email as spam or ham.");
    let ex = Example::new("e1", "Win a free cruise!").with_label("spam");
    let (prompt, completion) = template.render(&ex, &tk).unwrap();
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    assert_eq!(completion, "spam<|im_end|>\n");
    let tokenized = template.tokenize(&ex, &tk).unwrap();
    let target: Vec<u32> = tokenized
        .input_ids
        .iter()
        .zip(&tokenized.loss_mask)
        .filter(|(_, m)| **m)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(tk.decode(&target, false).unwrap(), completion);
    let labels = tokenized.labels();
    assert_eq!(
        labels.iter().filter(|&&l| l != IGNORE_INDEX).count(),
        target.len()
    );

    // Instruction template through the Llama-3-style fixture tokenizer: BOS, then the prompt.
    let (_, llama_tk) = load("llama-tiny");
    let t = PromptTemplate::instruction("Classify the email.")
        .tokenize(&ex, &llama_tk)
        .unwrap();
    assert_eq!(t.input_ids[0], 0, "BOS first");
    assert!(!t.loss_mask[0]);
    let per_example = t.loss_mask.iter().filter(|&&m| m).count();
    assert!(per_example >= 2, "label and EOS");
    let mut b = PackedBatcher::new(vec![t.clone(), t], &BatcherConfig::new(2, 128, 2)).unwrap();
    let batch = b.next_batch().unwrap().unwrap();
    assert_eq!(batch.rows(), 1);
    assert_eq!(batch.target_tokens(), 2 * per_example);
}

const INSTRUCTION: &str = "Write one short spam email.";

fn seeds() -> Vec<Example> {
    [
        "Win a free cruise now",
        "Cheap pills, no prescription",
        "Your prize is waiting, click here",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| Example::new(format!("s{i}"), *t).with_label("spam"))
    .collect()
}

fn teacher_run(dec: &Decoder, tk: &Tokenizer, seed: u64) -> Vec<Example> {
    let config = TeacherConfig {
        shots: 2,
        max_new_tokens: 12,
        seed,
        ..TeacherConfig::new(INSTRUCTION)
    };
    let mut g = TeacherGenerator::new(dec, tk, config).unwrap();
    let seeds = seeds();
    let req = GenerationRequest {
        label: "spam",
        seeds: &seeds,
        count: 4,
    };
    g.generate(&req).unwrap()
}

#[test]
fn teacher_generation_is_deterministic_for_a_seed() {
    let (dec, tk) = load("smollm-tiny");
    let a = teacher_run(&dec, &tk, 7);
    assert_eq!(a.len(), 4);
    assert_eq!(a, teacher_run(&dec, &tk, 7));
    let b = teacher_run(&dec, &tk, 8);
    assert_ne!(
        a.iter().map(|e| &e.input).collect::<Vec<_>>(),
        b.iter().map(|e| &e.input).collect::<Vec<_>>()
    );
    assert!(
        a.iter()
            .all(|e| e.label.as_deref() == Some("spam") && !e.input.contains('\n'))
    );
}

#[test]
fn teacher_pipeline_filters_and_reports() {
    let (dec, tk) = load("smollm-tiny");
    let config = TeacherConfig {
        shots: 2,
        max_new_tokens: 12,
        sampling: slm_infer::SamplingParams::greedy(),
        seed: 3,
        ..TeacherConfig::new(INSTRUCTION)
    };
    let seeds = seeds();
    let req = GenerationRequest {
        label: "spam",
        seeds: &seeds,
        count: 5,
    };
    let scorer = TeacherScorer::new(&dec, &tk, "Is this email spam or ham?");
    let scores = scorer
        .label_scores("Win a free cruise", &["spam".into(), "ham".into()])
        .unwrap();
    assert!(
        scores.iter().all(|s| s.is_finite() && *s < 0.0),
        "{scores:?}"
    );

    // Candidates the tiny random teacher wrote with this seed, put in the train set: every
    // candidate must now be dropped as a duplicate.
    let mut g = TeacherGenerator::new(&dec, &tk, config.clone()).unwrap();
    let first = g.generate(&req).unwrap();
    let aug = AugmentConfig::new(QualityBounds::default()).with_labels(["spam", "ham"]);
    let mut g = TeacherGenerator::new(&dec, &tk, config.clone()).unwrap();
    let out = augment(&mut g, &req, &first, &[], &aug, Some(&scorer)).unwrap();
    assert_eq!(out.report.generated, 5);
    assert!(out.kept.is_empty());
    assert!(out.report.dropped.iter().all(|d| matches!(
        d.reason,
        DropReason::Duplicate | DropReason::TooShort { .. }
    )));

    // A minimum length no 12-token output reaches: everything is too short.
    let strict = AugmentConfig::new(QualityBounds {
        min_chars: 1000,
        ..QualityBounds::default()
    });
    let mut g = TeacherGenerator::new(&dec, &tk, config.clone()).unwrap();
    let out = augment(&mut g, &req, &[], &[], &strict, None).unwrap();
    assert_eq!(out.report.dropped.len(), 5);
    assert!(
        out.report
            .dropped
            .iter()
            .all(|d| matches!(d.reason, DropReason::TooShort { .. }))
    );

    // Same seed, same outcome, label check included.
    let run = || {
        let mut g = TeacherGenerator::new(&dec, &tk, config.clone()).unwrap();
        augment(&mut g, &req, &seeds, &[], &aug, Some(&scorer)).unwrap()
    };
    let (x, y) = (run(), run());
    assert_eq!(x, y);
    assert_eq!(x.report.kept + x.report.dropped.len(), 5);
}

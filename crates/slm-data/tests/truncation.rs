//! An input too long for a row is cut in its input text only (at the end, the start or the
//! middle), never in the instruction or the target.

use slm_core::tokenizer::Tokenizer;
use slm_data::Example;
use slm_data::inputs::{PromptTemplate, Truncation};

fn tokenizer() -> Tokenizer {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tokenizer/tokenizer.json");
    Tokenizer::from_path(&p).unwrap()
}

#[test]
fn long_inputs_are_cut_where_asked_and_nowhere_else() {
    let tok = tokenizer();
    let template = PromptTemplate::instruction("Classify the message as ham or spam.");
    let words: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    let example = Example::new("long", words.join(" ")).with_label("spam");
    let full = template.tokenize(&example, &tok).unwrap();
    let answer: Vec<u32> = full
        .input_ids
        .iter()
        .zip(&full.loss_mask)
        .filter(|(_, m)| **m)
        .map(|(i, _)| *i)
        .collect();
    for (how, kept_word) in [
        (Truncation::End, "word0 "),
        (Truncation::Start, "word199"),
        (Truncation::Middle, "word0 "),
    ] {
        let t = template.tokenize_within(&example, &tok, 64, how).unwrap();
        assert!(
            t.len() <= 64 && t.len() >= 56,
            "{how:?}: {} tokens",
            t.len()
        );
        let text = tok.decode(&t.input_ids, false).unwrap();
        assert!(
            text.contains("Classify the message as ham or spam."),
            "{how:?}: {text}"
        );
        assert!(
            text.contains(kept_word),
            "{how:?} keeps {kept_word}: {text}"
        );
        let target: Vec<u32> = t
            .input_ids
            .iter()
            .zip(&t.loss_mask)
            .filter(|(_, m)| **m)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(target, answer, "{how:?}: the target is never cut");
    }
    let t = template
        .tokenize_within(&example, &tok, 64, Truncation::Middle)
        .unwrap();
    let text = tok.decode(&t.input_ids, false).unwrap();
    assert!(text.contains("word199"), "middle keeps the end too: {text}");
    // Short inputs are left alone, and an impossible limit is a typed error.
    let short = Example::new("s", "hello there").with_label("ham");
    assert_eq!(
        template
            .tokenize_within(&short, &tok, 64, Truncation::End)
            .unwrap(),
        template.tokenize(&short, &tok).unwrap()
    );
    assert!(matches!(
        template.tokenize_within(&example, &tok, 5, Truncation::End),
        Err(slm_data::Error::ExampleTooLong { .. })
    ));
}

#[test]
fn a_classifier_prompt_is_cut_alike_whatever_the_label() {
    use slm_data::inputs::{TaskSpec, TemplateSpec};
    let tok = tokenizer();
    let labels: Vec<String> = ["ham", "spam", "not spam at all"].map(String::from).into();
    let task = TaskSpec {
        labels: Some(labels.clone()),
        text_field: "input".into(),
        label_field: "label".into(),
        target_field: None,
        template: TemplateSpec::Instruction {
            instruction: "Classify the message.".into(),
        },
        truncation: Truncation::End,
        seq_len: 64,
    };
    let completions = task.label_completions(&labels, &tok).unwrap();
    let longest = completions.iter().map(Vec::len).max().unwrap();
    assert!(
        completions[0].len() < longest,
        "labels of different lengths"
    );
    let words: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    for input in [words.join(" "), "hello there".to_string()] {
        let mut prompts = Vec::new();
        for (label, completion) in labels.iter().zip(&completions) {
            let e = Example::new("e", input.clone()).with_label(label.clone());
            let t = task.tokenize(&e, &tok).unwrap();
            assert!(t.len() <= 64, "{label}: {} tokens", t.len());
            let n = t.loss_mask.iter().take_while(|m| !**m).count();
            assert_eq!(
                &t.input_ids[n..],
                &completion[..],
                "{label}: its own completion"
            );
            prompts.push(t.input_ids[..n].to_vec());
        }
        // One prompt for every label: its length never tells the label.
        assert!(prompts.windows(2).all(|w| w[0] == w[1]), "{input:.20}");
        let e = Example::new("e", input.clone());
        assert_eq!(
            task.prompt_for_labels(&e, &labels, &tok).unwrap(),
            prompts[0]
        );
        if input.len() > 100 {
            // Cut for the longest label: that row fills the budget.
            assert!(prompts[0].len() + longest >= 60, "{}", prompts[0].len());
        } else {
            let whole = task
                .prompt_template()
                .tokenize(&e.with_label("ham"), &tok)
                .unwrap();
            let n = whole.loss_mask.iter().take_while(|m| !**m).count();
            assert_eq!(prompts[0], whole.input_ids[..n], "a short input is not cut");
        }
    }
}

//! The SpamAssassin subset shipped in `data/spamassassin/` (made by
//! `scripts/import-spamassassin.sh`) reads with the JSONL reader, has both labels and every
//! group, and has unique ids.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use slm_data::{FieldMap, JsonlReader};

fn sample() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/spamassassin/sample.jsonl");
    assert!(path.exists(), "missing {}", path.display());
    path
}

#[test]
fn the_shipped_sample_reads_and_is_labelled() {
    let fields = FieldMap::new("text").with_label("label").with_id("id");
    let examples = JsonlReader::open(sample(), fields)
        .unwrap()
        .read_all()
        .unwrap();
    assert!(examples.len() >= 500, "{} emails", examples.len());

    let mut labels = BTreeMap::<String, usize>::new();
    let mut groups = BTreeMap::<String, usize>::new();
    let mut ids = HashSet::new();
    for ex in &examples {
        assert!(ids.insert(ex.id.clone()), "duplicate id {}", ex.id);
        assert!(!ex.input.trim().is_empty(), "{} has no text", ex.id);
        let label = ex.label.clone().expect("every email is labelled");
        let group = ex.meta["group"].as_str().unwrap().to_string();
        assert_eq!(label == "spam", group.starts_with("spam"), "{}", ex.id);
        for key in ["date", "subject", "from"] {
            assert!(ex.meta.contains_key(key), "{} lacks {key}", ex.id);
        }
        *labels.entry(label).or_default() += 1;
        *groups.entry(group).or_default() += 1;
    }
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["ham", "spam"]);
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]
    );
}

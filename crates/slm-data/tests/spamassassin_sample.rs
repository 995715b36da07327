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

#[test]
fn the_shipped_curate_config_runs_on_the_sample() {
    let config_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/spamassassin/curate.toml");
    let mut config = slm_data::CurateConfig::from_path(&config_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    config.output_dir = dir.path().join("curated");
    let report = slm_data::curate(&config).unwrap();
    let card = &report.card;
    assert_eq!(card.rows_read, 604);
    let stages: Vec<&str> = card.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "read",
            "label_filter",
            "normalize",
            "length",
            "pii",
            "exact_dedup",
            "near_dedup"
        ]
    );
    // Every split, the live-like one included, has both classes, in JSONL and Parquet.
    for split in ["train", "val", "test", "live"] {
        let labels = &card.splits[split].labels;
        assert!(
            labels["ham"] > 0 && labels["spam"] > 0,
            "{split}: {labels:?}"
        );
        for ext in ["jsonl", "parquet"] {
            assert!(config.output_dir.join(format!("{split}.{ext}")).is_file());
        }
    }
    // The live split is the newest mail: no kept row in train is newer than its oldest.
    let dates = |split: &str| -> Vec<f64> {
        JsonlReader::open(
            config.output_dir.join(format!("{split}.jsonl")),
            FieldMap::canonical(),
        )
        .unwrap()
        .read_all()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e.meta["date"]
                .as_str()
                .and_then(slm_data::curation::parse_timestamp)
        })
        .collect()
    };
    let oldest_live = dates("live").into_iter().fold(f64::INFINITY, f64::min);
    assert!(dates("train").into_iter().all(|t| t <= oldest_live));
    assert!(
        report.dropped > 0 && report.dropped < 100,
        "{}",
        report.dropped
    );
}

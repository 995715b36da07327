//! `curate` end to end on small files: bad rows, every stage, eval overlap, holdout, outputs.

use slm_data::{CurateConfig, Dropped, Error, FieldMap, read_jsonl};

fn words(seed: usize, n: usize) -> String {
    const VOCAB: [&str; 24] = [
        "account", "billing", "router", "printer", "invoice", "password", "network", "refund",
        "delivery", "order", "screen", "battery", "update", "install", "license", "server",
        "backup", "login", "email", "driver", "laptop", "monitor", "keyboard", "cable",
    ];
    let mut state =
        0x9e37_79b9_7f4a_7c15u64 ^ (seed as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            VOCAB[(state % VOCAB.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn curate_writes_splits_card_and_dropped_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..60 {
        let text = format!("the {} with the {}", words(i, 12), words(i + 100, 6));
        let label = if i % 3 == 0 { "spam" } else { "ham" };
        let date = format!("2024-{:02}-01", 1 + i % 12);
        lines.push(serde_json::json!({"text": text, "label": label, "date": date}).to_string());
    }
    // exact duplicate (after whitespace normalisation) with a conflicting label
    let dup = serde_json::json!({"text": format!("the  {}   with the {}", words(0, 12), words(100, 6)), "label": "ham", "date": "2024-01-01"});
    lines.push(dup.to_string());
    lines.push("{\"text\": 3, \"label\": \"ham\", \"date\": \"2024-01-01\"}".into());
    lines.push("not json".into());
    // PII is scrubbed
    lines.push(serde_json::json!({"text": "write to jane@example.com about the order and the card 4111 1111 1111 1111 now", "label": "ham", "date": "2024-02-02"}).to_string());
    // contaminated: shares 13 words with the eval set
    let eval_text =
        "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat";
    lines.push(serde_json::json!({"text": format!("prefix {eval_text}"), "label": "spam", "date": "2024-03-03"}).to_string());
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(
        dir.path().join("eval.jsonl"),
        serde_json::json!({"text": eval_text}).to_string(),
    )
    .unwrap();

    let toml = r#"
        name = "tickets"
        output_dir = "out"
        seed = 7
        [[inputs]]
        path = "in.jsonl"
        label_field = "label"
        [eval]
        path = "eval.jsonl"
        [stages]
        exact_dedup = true
        [stages.normalize]
        [stages.pii]
        [stages.length]
        min_words = 3
        [stages.near_dedup]
        [splits]
        val = 0.1
        test = 0.1
        holdout = { by = "time", field = "date", fraction = 0.1 }
    "#;
    std::fs::write(dir.path().join("curate.toml"), toml).unwrap();
    let config = CurateConfig::from_path(dir.path().join("curate.toml")).unwrap();
    let report = slm_data::curate(&config).unwrap();
    let card = &report.card;

    let stages: Vec<&str> = card.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "read",
            "normalize",
            "length",
            "pii",
            "exact_dedup",
            "near_dedup",
            "decontaminate"
        ]
    );
    assert_eq!(card.rows_read, 65);
    assert_eq!(card.stages[0].dropped["malformed_json"], 1);
    assert_eq!(card.stages[0].dropped["wrong_type"], 1);
    assert_eq!(card.stages[3].modified, 1);
    assert_eq!(card.stages[4].dropped["exact_duplicate"], 1);
    assert_eq!(card.stages[6].dropped["eval_overlap"], 1);
    assert_eq!(card.audit.conflicts.len(), 1);

    let out = dir.path().join("out");
    let dropped: Vec<Dropped> = std::fs::read_to_string(out.join("dropped.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dropped.len(), report.dropped);
    assert!(
        dropped
            .iter()
            .any(|d| d.id == "in.jsonl:63" && d.stage == "read")
    );
    assert!(
        dropped
            .iter()
            .any(|d| d.id == "in.jsonl:61" && d.detail == "duplicate of in.jsonl:1")
    );

    let mut total = 0;
    for split in ["train", "val", "test", "live"] {
        let rows = read_jsonl(out.join(format!("{split}.jsonl")), FieldMap::canonical()).unwrap();
        assert_eq!(rows.len(), card.splits[split].count);
        total += rows.len();
        assert!(
            rows.iter()
                .all(|e| !e.input.contains("jane@example.com") && !e.input.contains("4111"))
        );
    }
    assert_eq!(total + report.dropped, 65);
    let live = read_jsonl(out.join("live.jsonl"), FieldMap::canonical()).unwrap();
    assert!(
        live.iter()
            .all(|e| e.meta["date"].as_str().unwrap() >= "2024-11-01")
    );
    let md = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        md.contains("\n# tickets\n") && md.contains("| exact_dedup |"),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("card.json")).unwrap()).unwrap();
    assert_eq!(json["rows_read"], 65);
}

#[test]
fn a_missing_label_column_and_an_all_dropped_dataset_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"text\": \"a b c\"}\n{\"text\": \"d e f\"}\n",
    )
    .unwrap();
    let cfg = |extra: &str| {
        let toml = format!("output_dir = \"out\"\n[[inputs]]\npath = \"in.jsonl\"\n{extra}");
        std::fs::write(dir.path().join("c.toml"), toml).unwrap();
        CurateConfig::from_path(dir.path().join("c.toml")).unwrap()
    };
    let err = slm_data::curate(&cfg("label_field = \"lable\"\n")).unwrap_err();
    assert!(
        matches!(&err, Error::MissingField { field, .. } if field == "lable"),
        "{err}"
    );
    let err = slm_data::curate(&cfg("[stages.length]\nmin_words = 10\n")).unwrap_err();
    assert!(
        err.to_string()
            .contains("every one of the 2 rows was dropped"),
        "{err}"
    );
}

#[test]
fn custom_stages_parquet_splits_and_reserved_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..40 {
        let label = ["spam", "ham", "hard-ham"][i % 3];
        let text = if i % 10 == 4 {
            "This is a multi-part message in MIME format.".to_string()
        } else {
            format!("<p>the {} and {}</p>", words(i, 10), words(i + 50, 5))
        };
        let row = serde_json::json!({"id": format!("m{i}"), "body": text, "label": label, "n": i});
        lines.push(row.to_string());
    }
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let write_config = |extra: &str| {
        let toml = format!(
            r#"
            output_dir = "out"
            formats = ["jsonl", "parquet"]
            [[inputs]]
            path = "in.jsonl"
            text_field = "body"
            label_field = "label"
            {extra}
            [stages.normalize]
            strip_html = true
            [[stages.custom]]
            name = "regex_filter"
            after = "normalize"
            params = {{ pattern = "(?i)^this is a multi-part message" }}
            [[stages.custom]]
            name = "label_filter"
            after = "read"
            params = {{ rename = {{ "hard-ham" = "ham" }} }}
            [splits]
            val = 0.2
            test = 0.2
            "#
        );
        std::fs::write(dir.path().join("c.toml"), toml).unwrap();
        CurateConfig::from_path(dir.path().join("c.toml")).unwrap()
    };

    // `id` is a column of the input but not mapped: refused before anything is written.
    let err = slm_data::curate(&write_config("")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid curation config: {}: column `id` is not mapped, but curated files use `id` for each example's own id; map it (`id_field = \"id\"`) or rename the column",
            dir.path().join("in.jsonl").display()
        )
    );
    assert!(!dir.path().join("out").exists());

    let config = write_config("id_field = \"id\"");
    let report = slm_data::curate(&config).unwrap();
    let card = &report.card;
    let stages: Vec<&str> = card.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        ["read", "label_filter", "normalize", "regex_filter"]
    );
    assert_eq!(card.stages[1].modified, 13, "hard-ham renamed");
    assert_eq!(card.stages[3].dropped["matched_pattern"], 4);
    assert_eq!(
        card.label_distribution.keys().collect::<Vec<_>>(),
        ["ham", "spam"],
        "{:?}",
        card.label_distribution
    );

    let out = dir.path().join("out");
    let mut total = 0;
    for split in ["train", "val", "test"] {
        let jsonl = read_jsonl(out.join(format!("{split}.jsonl")), FieldMap::canonical()).unwrap();
        let parquet: Vec<_> = slm_data::ParquetReader::open(
            out.join(format!("{split}.parquet")),
            FieldMap::canonical(),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
        assert_eq!(parquet, jsonl, "{split}");
        assert!(jsonl.iter().all(|e| !e.input.contains("<p>")));
        total += jsonl.len();
    }
    assert_eq!(total, 36);
    assert_eq!(
        report
            .files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
            .count(),
        3
    );

    // The Markdown card's Hugging Face front matter names each split's file.
    let md = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        md.starts_with("---\npretty_name: \"dataset\"\nconfigs:\n- config_name: default\n  data_files:\n  - split: \"test\"\n    path: \"test.parquet\"\n"),
        "{md}"
    );

    // Back to JSONL only: the Parquet files of the earlier run go.
    let mut jsonl_only = config.clone();
    jsonl_only.formats = vec![slm_data::OutputFormat::Jsonl];
    let report = slm_data::curate(&jsonl_only).unwrap();
    assert!(!out.join("train.parquet").exists() && out.join("train.jsonl").exists());
    assert_eq!(report.card.data_files["train"], "train.jsonl");

    // An unknown custom stage fails before any input is read.
    let mut unknown = config.clone();
    unknown.inputs[0].path = dir.path().join("missing.jsonl");
    unknown.stages.custom[0].name = "regex_filtr".into();
    let err = slm_data::curate(&unknown).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid curation config: unknown stage `regex_filtr` (registered: label_filter, language_filter, regex_filter)"
    );
}

#[test]
fn an_input_can_be_a_glob_over_shards() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for shard in 0..3 {
        let rows: Vec<String> = (0..10)
            .map(|i| {
                let n = shard * 10 + i;
                serde_json::json!({"text": format!("shard {shard} row {i}: {}", words(n, 8)), "label": if n % 2 == 0 { "a" } else { "b" }})
                    .to_string()
            })
            .collect();
        std::fs::write(
            dir.path()
                .join(format!("data/train-{shard:05}-of-00003.jsonl")),
            rows.join("\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("c.toml"),
        "output_dir = \"out\"\n[[inputs]]\npath = \"data/train-*-of-00003.jsonl\"\nlabel_field = \"label\"\n",
    )
    .unwrap();
    let config = CurateConfig::from_path(dir.path().join("c.toml")).unwrap();
    let report = slm_data::curate(&config).unwrap();
    assert_eq!(report.card.rows_read, 30);
    assert!(
        report.card.warnings.is_empty(),
        "{:?}",
        report.card.warnings
    );

    std::fs::write(
        dir.path().join("c.toml"),
        "output_dir = \"out\"\n[[inputs]]\npath = \"data/validation-*.jsonl\"\n",
    )
    .unwrap();
    let config = CurateConfig::from_path(dir.path().join("c.toml")).unwrap();
    let err = slm_data::curate(&config).unwrap_err();
    assert!(matches!(err, Error::NoMatch { .. }), "{err}");
}

/// Records what an `EnergyTracker` would hear.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>, std::sync::Mutex<Vec<String>>);

impl slm_data::CurateObserver for Recorder {
    fn rows(&self, phase: &str, done: usize, total: Option<usize>) {
        self.1
            .lock()
            .unwrap()
            .push(format!("{phase} {done}/{total:?}"));
    }
}

impl slm_energy::PhaseObserver for Recorder {
    fn phase_started(&self, name: &str) {
        self.0.lock().unwrap().push(format!("+{name}"));
    }
    fn phase_ended(&self, name: &str) {
        self.0.lock().unwrap().push(format!("-{name}"));
    }
}

#[test]
fn every_stage_is_an_energy_phase() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..20)
        .map(|i| {
            serde_json::json!({"text": words(i, 12), "label": if i % 2 == 0 { "a" } else { "b" }})
                .to_string()
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), rows.join("\n")).unwrap();
    std::fs::write(
        dir.path().join("eval.jsonl"),
        "{\"text\": \"something else entirely\"}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "output_dir = \"out\"\n[[inputs]]\npath = \"in.jsonl\"\nlabel_field = \"label\"\n[eval]\npath = \"eval.jsonl\"\n[stages]\nexact_dedup = true\n[stages.normalize]\n[[stages.custom]]\nname = \"label_filter\"\nafter = \"normalize\"\n",
    )
    .unwrap();
    let config = CurateConfig::from_path(dir.path().join("c.toml")).unwrap();
    let recorder = Recorder::default();
    slm_data::curate_with(&config, &slm_data::StageRegistry::default(), &recorder).unwrap();
    let rows = recorder.1.into_inner().unwrap();
    for expected in [
        "curation/read_eval 1/Some(1)",
        "curation/read 0/None",
        "curation/read 20/Some(20)",
        "curation/normalize 0/Some(20)",
        "curation/normalize 20/Some(20)",
    ] {
        assert!(rows.iter().any(|r| r == expected), "{expected}: {rows:?}");
    }
    let events = recorder.0.into_inner().unwrap();
    assert_eq!(
        events,
        [
            "+curation",
            "+curation/read_eval",
            "-curation/read_eval",
            "+curation/read",
            "-curation/read",
            "+curation/normalize",
            "-curation/normalize",
            "+curation/label_filter",
            "-curation/label_filter",
            "+curation/exact_dedup",
            "-curation/exact_dedup",
            "+curation/decontaminate",
            "-curation/decontaminate",
            "+curation/split",
            "-curation/split",
            "+curation/write",
            "-curation/write",
            "-curation",
        ]
    );

    // A failing run still closes its phases.
    let mut missing = config.clone();
    missing.inputs[0].path = dir.path().join("nope.jsonl");
    let recorder = Recorder::default();
    assert!(
        slm_data::curate_with(&missing, &slm_data::StageRegistry::default(), &recorder).is_err()
    );
    assert_eq!(
        recorder.0.into_inner().unwrap(),
        [
            "+curation",
            "+curation/read_eval",
            "-curation/read_eval",
            "+curation/read",
            "-curation/read",
            "-curation"
        ]
    );
}

/// The eval sets users have: labelled splits in the training layout (`id`, `text`, `label`,
/// extra columns), JSONL and Parquet, several at once.
#[test]
fn labelled_eval_sets_in_jsonl_and_parquet_decontaminate() {
    let dir = tempfile::tempdir().unwrap();
    let leak_a = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat";
    let leak_b =
        "seven ships sailed past the old grey lighthouse before the storm broke over the bay";
    let mut rows: Vec<String> = (0..30)
        .map(|i| {
            serde_json::json!({"id": format!("t{i}"), "text": words(i, 14), "label": if i % 2 == 0 { "a" } else { "b" }})
                .to_string()
        })
        .collect();
    rows.push(
        serde_json::json!({"id": "leak-a", "text": format!("so {leak_a}"), "label": "a"})
            .to_string(),
    );
    rows.push(
        serde_json::json!({"id": "leak-b", "text": format!("{leak_b} again"), "label": "b"})
            .to_string(),
    );
    std::fs::write(dir.path().join("train.jsonl"), rows.join("\n")).unwrap();
    // A val split as users have it: id, text, label and a column nothing maps.
    std::fs::write(
        dir.path().join("val.jsonl"),
        serde_json::json!({"id": "v1", "text": leak_a, "label": "a", "source": "web"}).to_string(),
    )
    .unwrap();
    // A test split in Parquet with the canonical columns (id, input, target, label).
    let mut writer = slm_data::ParquetWriter::create(dir.path().join("test.parquet"));
    writer
        .write(&slm_data::Example::new("x1", leak_b).with_label("b"))
        .unwrap();
    writer.finish().unwrap();
    let toml = r#"
        output_dir = "out"
        [[inputs]]
        path = "train.jsonl"
        id_field = "id"
        label_field = "label"
        [[eval]]
        path = "val.jsonl"
        id_field = "id"
        label_field = "label"
        [[eval]]
        path = "test.parquet"
        text_field = "input"
        [stages]
        exact_dedup = true
    "#;
    std::fs::write(dir.path().join("c.toml"), toml).unwrap();
    let config = CurateConfig::from_path(dir.path().join("c.toml")).unwrap();
    assert_eq!(config.eval.len(), 2);
    let report = slm_data::curate(&config).unwrap();
    let decon = report
        .card
        .stages
        .iter()
        .find(|s| s.stage == "decontaminate")
        .unwrap();
    assert_eq!(decon.dropped["eval_overlap"], 2, "{decon:?}");
    let dropped: Vec<Dropped> = std::fs::read_to_string(dir.path().join("out/dropped.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut leaked: Vec<&str> = dropped
        .iter()
        .filter(|d| d.reason == "eval_overlap")
        .map(|d| d.id.as_str())
        .collect();
    leaked.sort();
    assert_eq!(leaked, ["leak-a", "leak-b"]);

    // One [eval] table still works, and eval sets must share their decontamination settings.
    let one = toml.replacen("[[eval]]", "[eval]", 1);
    let one = &one[..one.rfind("[[eval]]").unwrap()];
    let c =
        CurateConfig::from_toml_str(&format!("{one}\n[stages]\nexact_dedup = true\n"), "c.toml");
    assert_eq!(c.unwrap().eval.len(), 1);
    let differ = toml.replace(
        "text_field = \"input\"",
        "text_field = \"input\"\n        decontaminate = { n = 8 }",
    );
    std::fs::write(dir.path().join("c.toml"), differ).unwrap();
    let err = CurateConfig::from_path(dir.path().join("c.toml")).unwrap_err();
    assert!(err.to_string().contains("decontaminate settings"), "{err}");
}

//! Reading and writing real JSON Lines files on disk (temporary directories; no fixtures).

use std::path::PathBuf;

use slm_data::prelude::*;

fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_classification_file_with_crlf_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(
        &dir,
        "intents.jsonl",
        b"{\"utterance\": \"book a table\", \"intent\": \"restaurant\", \"uid\": 10}\r\n\r\n{\"utterance\": \"play jazz\", \"intent\": \"music\", \"uid\": 11}\r\n",
    );
    let fields = FieldMap::new("utterance")
        .with_label("intent")
        .with_id("uid");
    let got = read_jsonl(&p, fields).unwrap();
    assert_eq!(
        got,
        [
            Example::new("10", "book a table").with_label("restaurant"),
            Example::new("11", "play jazz").with_label("music")
        ]
    );
}

#[test]
fn errors_carry_the_real_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(
        &dir,
        "broken.jsonl",
        b"{\"input\": \"fine\"}\n{\"input\": }\n",
    );
    let err = read_jsonl(&p, FieldMap::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Json { path, line: 2, .. } if *path == p),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: malformed JSON", p.display()))
    );

    let empty = file(&dir, "empty.jsonl", b"");
    assert!(
        matches!(read_jsonl(&empty, FieldMap::default()), Err(Error::EmptyDataset { path }) if path == empty)
    );

    let missing = dir.path().join("missing.jsonl");
    let err = JsonlReader::open(&missing, FieldMap::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, source } if *path == missing && source.kind() == std::io::ErrorKind::NotFound)
    );
}

#[test]
fn write_then_read_many_examples() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.jsonl");
    let examples: Vec<Example> = (0..500)
        .map(|i| {
            let ex = Example::new(format!("ex{i}"), format!("input {i} ünïcödé ✓"));
            match i % 3 {
                0 => ex.with_target(format!("target {i}")),
                1 => ex.with_label(if i % 2 == 0 { "even" } else { "odd" }),
                _ => ex.with_meta("n", i),
            }
        })
        .collect();
    assert_eq!(write_jsonl(&p, &examples).unwrap(), 500);
    let reader = JsonlReader::open(&p, FieldMap::canonical()).unwrap();
    let back: Vec<Example> = reader.map(|r| r.unwrap()).collect();
    assert_eq!(back, examples);

    // Overwriting replaces the file whole.
    assert_eq!(write_jsonl(&p, &examples[..3]).unwrap(), 3);
    assert_eq!(
        read_jsonl(&p, FieldMap::canonical()).unwrap(),
        examples[..3]
    );
}

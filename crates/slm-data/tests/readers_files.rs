//! Every reader on small files written to a temporary folder, through [`read_any`], plus a
//! Parquet file written by pyarrow (`data/make_pyarrow_small.py`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use slm_data::writers::write_parquet;
use slm_data::{Error, Example, FieldMap, ParquetReader, read_any};

fn write(dir: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn read_ok(path: &Path, fields: &FieldMap) -> Vec<Example> {
    read_any(path, fields)
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn csv_with_quotes_multiline_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "tickets.csv",
        b"text,team\r\n\"Printer, floor 3\r\nis \"\"jammed\"\"\",facilities\r\nVPN drops,it\r\n",
    );
    let got = read_ok(&path, &FieldMap::new("text").with_label("team"));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].input, "Printer, floor 3\r\nis \"jammed\"");
    assert_eq!(got[0].id, "tickets.csv:2");
    assert_eq!(got[1].id, "tickets.csv:4");
    assert_eq!(got[1].label.as_deref(), Some("it"));
}

#[test]
fn tsv_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "qa.tsv", b"q\ta\nwhere, then?\there\n");
    let got = read_ok(&path, &FieldMap::new("q").with_target("a"));
    assert_eq!(got[0].input, "where, then?");
    assert_eq!(got[0].target.as_deref(), Some("here"));
}

#[test]
fn a_label_column_that_does_not_exist_is_named_in_every_columnar_format() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "a.csv", b"text,label\nx,y\n");
    let parquet = dir.path().join("a.parquet");
    write_parquet(&parquet, &[Example::new("1", "x").with_label("y")]).unwrap();
    for (path, fields) in [
        (&csv, FieldMap::new("text").with_label("category")),
        (&parquet, FieldMap::new("input").with_label("category")),
    ] {
        let err = read_any(path, &fields).err().unwrap();
        assert!(
            matches!(&err, Error::UnknownColumn { column, .. } if column == "category"),
            "{err}"
        );
        assert!(err.to_string().contains("no column `category`"), "{err}");
    }
}

#[test]
fn empty_inputs_are_empty_datasets_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    for path in [
        write(dir.path(), "e.jsonl", b"\n"),
        write(dir.path(), "e.csv", b"text\n"),
        write(dir.path(), "e.tsv", b""),
        empty_dir,
    ] {
        let got: Vec<_> = read_any(&path, &FieldMap::new("text")).unwrap().collect();
        assert_eq!(got.len(), 1, "{}", path.display());
        assert!(
            matches!(&got[0], Err(Error::EmptyDataset { path: p }) if *p == path),
            "{:?}",
            got[0]
        );
    }
}

#[test]
fn parquet_round_trip_through_read_any() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    let examples = vec![
        Example::new("a", "one")
            .with_label("spam")
            .with_meta("n", 1),
        Example::new("b", "two").with_label("ham").with_meta("n", 2),
    ];
    write_parquet(&path, &examples).unwrap();
    let back = read_ok(&path, &FieldMap::canonical());
    assert_eq!(back, examples);
}

#[test]
fn parquet_written_by_pyarrow_in_the_hugging_face_layout() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pyarrow_small.parquet");
    let reader = ParquetReader::open(&path, FieldMap::new("text").with_label("label")).unwrap();
    assert_eq!(reader.num_rows(), 3);
    let got: Vec<Example> = reader.map(|r| r.unwrap()).collect();
    assert_eq!(got[0].id, "pyarrow_small.parquet:1");
    assert_eq!(got[0].input, "Win a free cruise!!!");
    assert_eq!(
        got[0].label.as_deref(),
        Some("spam"),
        "ClassLabel ids become the names in the file's `huggingface` metadata"
    );
    assert_eq!(got[1].label.as_deref(), Some("ham"));
    assert_eq!(got[0].meta["subject"], "WIN");
    assert_eq!(got[0].meta["score"], json!(0.9));
    assert_eq!(got[0].meta["tags"], json!(["promo", "cruise"]));
    assert_eq!(got[1].input, "Lunch at noon?\nSee you");
    assert_eq!(got[1].meta["subject"], Value::Null);
    assert_eq!(got[1].meta["tags"], json!([]));
    assert_eq!(got[2].id, "pyarrow_small.parquet:3", "the second row group");
    assert_eq!(got[2].input, "café ☕ résumé");
    assert_eq!(got[2].label, None, "a null label is no label");
    // A label column that is not a ClassLabel keeps its values: `score` read as the label.
    let by_score = ParquetReader::open(&path, FieldMap::new("text").with_label("subject"))
        .unwrap()
        .map(|r| r.unwrap().label)
        .collect::<Vec<_>>();
    assert_eq!(by_score[0].as_deref(), Some("WIN"));

    // The same table written by pyarrow with zstd (polars' default), gzip and LZ4.
    for codec in ["zstd", "gzip", "lz4"] {
        let other = path.with_file_name(format!("pyarrow_small_{codec}.parquet"));
        let rows: Vec<Example> =
            ParquetReader::open(&other, FieldMap::new("text").with_label("label"))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
        assert_eq!(rows.len(), 3, "{codec}");
        for (a, b) in rows.iter().zip(&got) {
            assert_eq!(
                (&a.input, &a.label, &a.meta),
                (&b.input, &b.label, &b.meta),
                "{codec}"
            );
        }
    }
}

#[test]
fn a_class_id_outside_the_classlabel_names_is_a_typed_error() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pyarrow_bad_classlabel.parquet");
    let mut rows = ParquetReader::open(&path, FieldMap::new("text").with_label("label")).unwrap();
    assert_eq!(rows.next().unwrap().unwrap().label.as_deref(), Some("ham"));
    let err = rows.next().unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: field `label` is an id outside its names, expected a class id the file's ClassLabel names",
            path.display()
        )
    );
}

#[test]
fn text_and_email_folders_label_by_sub_folder() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reviews/pos/1.txt", b"loved it");
    write(dir.path(), "reviews/neg/2.txt", b"hated it");
    let got = read_ok(&dir.path().join("reviews"), &FieldMap::default());
    let pairs: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|e| (e.id.as_str(), e.label.as_deref()))
        .collect();
    assert_eq!(
        pairs,
        [("neg/2.txt", Some("neg")), ("pos/1.txt", Some("pos"))]
    );

    let mail = write(
        dir.path(),
        "one.eml",
        b"From: a@b.c\nSubject: Hi\nContent-Type: text/plain\n\nbody\n",
    );
    let got = read_ok(&mail, &FieldMap::default());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, "one.eml");
    assert_eq!(got[0].input, "body");
    assert_eq!(got[0].meta["subject"], "Hi");
}

#[test]
fn email_folders_read_each_message_and_report_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "spam/1.txt",
        b"Subject: WIN\nContent-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n\n<b>Cheap =\npills</b> &amp; more\n",
    );
    write(
        dir.path(),
        "ham/2.txt",
        b"Subject: notes\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: base64\n\nY2Fm6Q==\n--b\nContent-Type: application/pdf\n\n%PDF\n--b--\n",
    );
    write(dir.path(), "ham/3.txt", b"");
    let got: Vec<_> = slm_data::TextDirReader::emails(dir.path())
        .unwrap()
        .collect();
    assert_eq!(got.len(), 3);
    let ham = got[0].as_ref().unwrap();
    assert_eq!((ham.id.as_str(), ham.input.as_str()), ("ham/2.txt", "café"));
    assert_eq!(ham.label.as_deref(), Some("ham"));
    let err = got[1].as_ref().unwrap_err();
    assert!(
        err.to_string()
            .ends_with("3.txt: not an email: no header found"),
        "{err}"
    );
    let spam = got[2].as_ref().unwrap();
    assert_eq!(spam.input, "Cheap pills & more");
    assert_eq!(spam.label.as_deref(), Some("spam"));
}

#[test]
fn gzip_and_zstd_compressed_jsonl_and_csv_stream() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    // Two gzip members back to back, as `cat a.gz b.gz` makes (and some writers do).
    let gz = dir.path().join("train.jsonl.gz");
    let mut bytes = Vec::new();
    for part in [
        "{\"text\": \"first\", \"label\": \"a\"}\n",
        "{\"text\": \"second\", \"label\": \"b\"}\n",
    ] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(part.as_bytes()).unwrap();
        bytes.extend(enc.finish().unwrap());
    }
    std::fs::write(&gz, bytes).unwrap();
    let got = read_ok(&gz, &FieldMap::new("text").with_label("label"));
    let pairs: Vec<(&str, &str, Option<&str>)> = got
        .iter()
        .map(|e| (e.id.as_str(), e.input.as_str(), e.label.as_deref()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("train.jsonl.gz:1", "first", Some("a")),
            ("train.jsonl.gz:2", "second", Some("b"))
        ]
    );

    let zst = dir.path().join("test.tsv.zst");
    let tsv = "text\tlabel\nhello, world\tx\n";
    std::fs::write(&zst, zstd::stream::encode_all(tsv.as_bytes(), 3).unwrap()).unwrap();
    let got = read_ok(&zst, &FieldMap::new("text").with_label("label"));
    assert_eq!(
        got[0].input, "hello, world",
        "a tab-separated file under .zst"
    );

    // Compressed Parquet makes no sense; a corrupt gzip is an error, not a panic.
    assert!(matches!(
        read_any(dir.path().join("x.parquet.gz"), &FieldMap::default()),
        Err(Error::UnsupportedFormat { .. })
    ));
    let bad = dir.path().join("bad.jsonl.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00garbage").unwrap();
    let rows: Vec<_> = read_any(&bad, &FieldMap::default()).unwrap().collect();
    assert!(rows.iter().any(|r| r.is_err()), "{rows:?}");
}

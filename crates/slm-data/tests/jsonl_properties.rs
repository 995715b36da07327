//! The reader never panics on arbitrary bytes, and whatever the writer writes reads back equal.

use std::io::Cursor;

use proptest::prelude::*;
use slm_data::prelude::*;

fn examples() -> impl Strategy<Value = Vec<Example>> {
    let example = (
        "[a-z0-9_-]{1,8}",
        any::<String>(),
        proptest::option::of(any::<String>()),
        proptest::option::of("[a-z]{1,6}"),
        proptest::collection::btree_map("m_[a-z]{1,4}", any::<i64>(), 0..3),
    )
        .prop_map(|(id, input, target, label, meta)| {
            let mut ex = Example::new(id, input);
            ex.target = target;
            ex.label = label;
            for (k, v) in meta {
                ex = ex.with_meta(k, v);
            }
            ex
        });
    proptest::collection::vec(example, 1..8)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), limit in 1usize..64) {
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        for fields in [FieldMap::default(), FieldMap::canonical()] {
            let reader = JsonlReader::from_reader(Cursor::new(bytes.clone()), "fuzz.jsonl", fields).unwrap();
            let n = reader.count();
            prop_assert!(n >= 1 && n <= lines, "{} items from {} lines", n, lines);
        }
        let short = JsonlReader::from_reader(Cursor::new(bytes.clone()), "fuzz.jsonl", FieldMap::default())
            .unwrap()
            .with_max_line_bytes(limit);
        prop_assert!(short.count() <= lines);
    }

    #[test]
    fn json_shaped_noise_never_panics(lines in proptest::collection::vec("[{}\\[\\]\":,a-z0-9 \\\\nul]{0,40}", 0..10)) {
        let text = lines.join("\n");
        for item in JsonlReader::from_reader(Cursor::new(text), "noise.jsonl", FieldMap::canonical()).unwrap() {
            if let Err(e) = item {
                prop_assert!(e.to_string().starts_with("noise.jsonl"), "{}", e);
            }
        }
    }

    #[test]
    fn written_examples_read_back_equal(examples in examples()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.jsonl");
        prop_assert_eq!(write_jsonl(&path, &examples).unwrap(), examples.len());
        prop_assert_eq!(read_jsonl(&path, FieldMap::canonical()).unwrap(), examples);
    }
}

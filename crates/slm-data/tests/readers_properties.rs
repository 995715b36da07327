//! Property tests: the CSV and email readers never panic, whatever the bytes.

use std::path::Path;

use proptest::prelude::*;
use slm_data::readers::parse_email;
use slm_data::{CsvReader, FieldMap};

/// Bytes biased towards what the parsers branch on.
fn csvish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b','),
            Just(b'"'),
            Just(b'\n'),
            Just(b'\r'),
            Just(b'\t'),
            Just(0xff),
            Just(0xef),
            any::<u8>(),
            b'a'..=b'e',
        ],
        0..200,
    )
}

fn mailish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"Subject: ".to_vec()),
        Just(b"Content-Type: multipart/mixed; boundary=b\n".to_vec()),
        Just(b"Content-Type: text/html; charset=utf-8\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\n".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable\n".to_vec()),
        Just(b"\n--b\n".to_vec()),
        Just(b"--b--\n".to_vec()),
        Just(b"=?utf-8?B?".to_vec()),
        Just(b"=C3=\n".to_vec()),
        Just(b"<script>".to_vec()),
        Just(b"&#x1F600;&bogus;".to_vec()),
        Just(b"\n\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ];
    prop::collection::vec(pieces, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn csv_never_panics(body in csvish(), tab in any::<bool>(), header in any::<bool>()) {
        let delimiter = if tab { b'\t' } else { b',' };
        // With a header naming the mapped column, most inputs get past the header check.
        let head: &[u8] = if tab { b"a\tb\n" } else { b"a,b\n" };
        let bytes = if header { [head, &body].concat() } else { body };
        if let Ok(reader) = CsvReader::from_reader(&bytes[..], "p.csv", FieldMap::new("a"), delimiter) {
            let mut n = 0;
            for item in reader {
                n += 1;
                prop_assert!(n <= bytes.len() + 1, "more items than bytes");
                if let Err(e) = item {
                    // Every error names the file.
                    prop_assert!(e.to_string().starts_with("p.csv"), "{}", e);
                }
            }
        }
    }

    #[test]
    fn email_never_panics(bytes in mailish()) {
        let _ = parse_email(&bytes, Path::new("p.eml"), "p");
    }

    #[test]
    fn email_never_panics_on_raw_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_email(&bytes, Path::new("p.eml"), "p");
    }
}

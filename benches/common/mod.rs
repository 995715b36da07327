//! The SpamAssassin corpus the data benches read, shared by `minhash.rs` and `curate.rs`.

use std::path::PathBuf;

/// The largest SpamAssassin JSONL available, with a name for the report:
/// `$SLM_SPAMASSASSIN_JSONL`, else the full corpus `scripts/import-spamassassin.sh` writes
/// (`~/.cache/slm/spamassassin/full.jsonl`, or `target/spamassassin/full.jsonl`, its default
/// output), else the 604-email sample shipped in `data/spamassassin/`.
pub fn spamassassin_jsonl() -> (String, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(p) = std::env::var_os("SLM_SPAMASSASSIN_JSONL") {
        return ("spamassassin".into(), PathBuf::from(p));
    }
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    for full in [
        home.join(".cache/slm/spamassassin/full.jsonl"),
        root.join("target/spamassassin/full.jsonl"),
    ] {
        if full.is_file() {
            return ("spamassassin-full".into(), full);
        }
    }
    (
        "spamassassin-sample".into(),
        root.join("data/spamassassin/sample.jsonl"),
    )
}

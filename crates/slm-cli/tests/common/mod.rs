//! Helpers shared by the slm-cli integration tests.

use std::path::{Path, PathBuf};

/// The repository root.
#[allow(dead_code)]
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The cached SmolLM2 GGUF, where `scripts/fetch-smollm2.sh` keeps it
/// ([`slm_core::cache::smollm2_gguf`]); `None` with a note when absent, unless
/// `SLM_REQUIRE_SMOLLM2=1`, which makes absence a failure.
#[allow(dead_code)]
pub fn smollm2() -> Option<PathBuf> {
    let path = slm_core::cache::smollm2_gguf_if_present().unwrap_or_else(|e| panic!("{e}"));
    if path.is_none() {
        eprintln!("skipping: SmolLM2 GGUF not found (run scripts/fetch-smollm2.sh)");
    }
    path
}

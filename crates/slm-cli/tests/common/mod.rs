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
    let path = slm_core::cache::smollm2_gguf();
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("SLM_REQUIRE_SMOLLM2").as_deref() != Ok("1"),
        "SLM_REQUIRE_SMOLLM2=1 but {} does not exist",
        path.display()
    );
    eprintln!("skipping: SmolLM2 GGUF not found at {}", path.display());
    None
}

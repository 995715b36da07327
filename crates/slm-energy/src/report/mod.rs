//! Reports: the Energy-to-Solution figures ([`E2sInputs`] → [`E2sReport`]), and the files a
//! run leaves behind: JSON, a CodeCarbon-compatible `emissions.csv`, a Markdown section and a
//! self-contained HTML page with SVG plots. Every file is written atomically (a temporary file
//! in the same directory, then a rename), so a reader never sees half a report.

mod csv;
mod e2s;
mod html;
mod plots;

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

pub use self::csv::{CsvRunInfo, EMISSIONS_CSV_COLUMNS, emissions_csv, write_emissions_csv};
pub use e2s::{E2sInputs, E2sReport, Figure, InferenceMeasurement};
pub use html::{HTML_STYLE, escape as html_escape, html_page, html_section, markdown_section};
pub use plots::{PALETTE, phase_energy_svg, power_svg};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed and
/// synced, then renamed over `path` (mode 0644 on Unix).
///
/// # Errors
/// [`Error::WriteFile`] naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let wrap = |source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    // A report is for reading: rw-r--r-- rather than the temporary file's private rw-------.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut file = builder.tempfile_in(dir).map_err(wrap)?;
    file.write_all(bytes).map_err(wrap)?;
    file.as_file().sync_all().map_err(wrap)?;
    file.persist(path).map_err(|e| wrap(e.error))?;
    Ok(())
}

/// `value` (a [`TrackerReport`](crate::TrackerReport), an [`E2sReport`], ...) as pretty JSON.
///
/// # Errors
/// [`Error::Json`].
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Writes `value` as pretty JSON to `path` atomically.
///
/// # Errors
/// [`Error::Json`], [`Error::WriteFile`].
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut json = to_json(value)?;
    json.push('\n');
    write_atomic(path, json.as_bytes())
}

#[cfg(test)]
mod tests;

//! [`JsonlWriter`]: writes [`Example`]s as JSON Lines, atomically.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};
use crate::example::Example;

/// Writes a JSON Lines dataset into a temporary file beside `path` and moves it into place
/// only on [`finish`](Self::finish), so readers never see a half-written file and an
/// existing file survives a failed or abandoned write (the temporary file is deleted on drop).
///
/// Each line is one [`Example`] in its flat serde form, readable with
/// [`FieldMap::canonical`](crate::FieldMap::canonical).
#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<NamedTempFile>,
    written: usize,
}

impl JsonlWriter {
    /// Starts writing `path`: creates the temporary file in the same directory (so the final
    /// rename stays on one file system).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = NamedTempFile::new_in(&dir).map_err(|source| Error::Io { path: dir, source })?;
        Ok(JsonlWriter {
            path,
            out: BufWriter::new(tmp),
            written: 0,
        })
    }

    /// Appends one example.
    ///
    /// # Errors
    /// [`Error::ReservedMetaKey`] when the example's metadata uses `id`, `input`, `target` or
    /// `label` (the line would hold the key twice); [`Error::Io`] on a write failure.
    pub fn write(&mut self, example: &Example) -> Result<()> {
        example.check_reserved_meta(&self.path)?;
        let io = |source: std::io::Error| Error::Io {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, example).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.written += 1;
        Ok(())
    }

    /// Examples written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Flushes, syncs and moves the file into place; returns the number of examples.
    ///
    /// # Errors
    /// [`Error::EmptyDataset`] when nothing was written (the reader would refuse the file; the
    /// target is left untouched), [`Error::Io`] when flushing fails, [`Error::Core`] (its I/O
    /// error) when syncing or renaming fails.
    pub fn finish(self) -> Result<usize> {
        let JsonlWriter { path, out, written } = self;
        if written == 0 {
            return Err(Error::EmptyDataset { path });
        }
        let tmp = out.into_inner().map_err(|e| Error::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        slm_core::io::persist_temp(tmp, &path)?;
        Ok(written)
    }
}

/// Writes `examples` to `path` atomically; returns how many were written.
pub fn write_jsonl<'a>(
    path: impl AsRef<Path>,
    examples: impl IntoIterator<Item = &'a Example>,
) -> Result<usize> {
    let mut writer = JsonlWriter::create(path)?;
    for example in examples {
        writer.write(example)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldMap, JsonlReader};

    #[test]
    fn round_trips_through_the_canonical_field_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let examples = vec![
            Example::new("a", "first")
                .with_target("1st")
                .with_meta("lang", "en"),
            Example::new("b", "second \"quoted\"\nline")
                .with_label("pos")
                .with_meta("score", 0.5),
        ];
        assert_eq!(write_jsonl(&path, &examples).unwrap(), 2);
        let back = JsonlReader::open(&path, FieldMap::canonical())
            .unwrap()
            .read_all()
            .unwrap();
        assert_eq!(back, examples);
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        {
            let mut w = JsonlWriter::create(&path).unwrap();
            w.write(&Example::new("x", "new")).unwrap();
            assert_eq!(w.written(), 1);
            // dropped without finish
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the temporary file is gone"
        );
    }

    #[test]
    fn reserved_meta_keys_and_empty_datasets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        let mut w = JsonlWriter::create(&path).unwrap();
        let err = w
            .write(&Example::new("x", "y").with_meta("label", "oops"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: example `x` has metadata key `label`, which is reserved",
                path.display()
            )
        );
        assert!(matches!(w.finish(), Err(Error::EmptyDataset { .. })));
        assert!(!path.exists());
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir");
        let err = JsonlWriter::create(missing.join("f.jsonl")).unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, .. } if *path == missing),
            "{err}"
        );
    }
}

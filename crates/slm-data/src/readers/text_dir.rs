//! [`TextDirReader`]: a folder with one document per file, labelled by sub-folder, the layout
//! of Hugging Face's `textfolder`/`imagefolder` builders:
//!
//! ```text
//! reviews/
//!   pos/a.txt        -> Example { id: "pos/a.txt", label: Some("pos"), .. }
//!   neg/b.txt        -> Example { id: "neg/b.txt", label: Some("neg"), .. }
//!   unlabelled.txt   -> Example { id: "unlabelled.txt", label: None, .. }
//! ```

use std::path::{Path, PathBuf};

use super::Reader;
use super::email::read_email_file;
use crate::error::{Error, Result, io_error};
use crate::example::Example;

/// How each file of a [`TextDirReader`] is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DocumentKind {
    /// UTF-8 text, taken whole (a byte-order mark is dropped).
    #[default]
    Text,
    /// A raw RFC 822 email, read with [`parse_email`](super::parse_email).
    Email,
}

/// Reads a folder tree lazily, one example per file.
///
/// - Files are listed when the reader is built, recursively, and read in byte order of their
///   relative paths, so the order is the same on every machine. Hidden files and folders
///   (names starting with `.`) are skipped.
/// - The id is the path relative to the root, with `/` separators; the label is the name of
///   the file's parent folder, or none for files directly in the root.
/// - A file that cannot be read or decoded yields an error naming it (for text, the 1-based
///   line of the first invalid UTF-8 byte), and reading goes on.
/// - A folder without files yields one [`Error::EmptyDataset`].
#[derive(Debug)]
pub struct TextDirReader {
    root: PathBuf,
    kind: DocumentKind,
    files: std::vec::IntoIter<PathBuf>,
    saw_file: bool,
    done: bool,
}

impl TextDirReader {
    /// Lists the text files under `root`.
    ///
    /// # Errors
    /// [`Error::Io`] when a folder cannot be listed.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_as(root, DocumentKind::Text, None)
    }

    /// Lists the emails under `root` (a SpamAssassin-style `spam/`, `ham/` tree).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn emails(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_as(root, DocumentKind::Email, None)
    }

    /// Lists the files under `root` read as `kind`, keeping only those whose extension is
    /// `extension` (case-insensitive) when one is given.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_as(
        root: impl AsRef<Path>,
        kind: DocumentKind,
        extension: Option<&str>,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut files = Vec::new();
        list(&root, Path::new(""), &mut files)?;
        if let Some(want) = extension {
            files.retain(|f| {
                f.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case(want))
            });
        }
        files.sort_by_cached_key(|f| id_of(f));
        Ok(TextDirReader {
            root,
            kind,
            files: files.into_iter(),
            saw_file: false,
            done: false,
        })
    }

    /// Files not read yet.
    pub fn remaining(&self) -> usize {
        self.files.len()
    }

    fn read(&self, rel: &Path) -> Result<Example> {
        let path = self.root.join(rel);
        let id = id_of(rel);
        let label = rel
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let mut example = match self.kind {
            DocumentKind::Email => read_email_file(&path, id)?,
            DocumentKind::Text => {
                let bytes = std::fs::read(&path).map_err(io_error(&path))?;
                let text = String::from_utf8(bytes).map_err(|e| {
                    let valid_up_to = e.utf8_error().valid_up_to();
                    let bytes = e.as_bytes();
                    let line = line_of(bytes, valid_up_to);
                    let line_start = bytes[..valid_up_to]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    Error::InvalidUtf8 {
                        path: path.clone(),
                        line,
                        valid_up_to: valid_up_to - line_start,
                    }
                })?;
                let text = match text.strip_prefix('\u{feff}') {
                    Some(rest) => rest.to_string(),
                    None => text,
                };
                Example::new(id, text)
            }
        };
        example.label = label;
        Ok(example)
    }
}

/// The id of a file: its relative path with `/` separators.
fn id_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// Appends the files under `root/rel` (as paths relative to `root`) to `out`.
fn list(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(io_error(&dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error(&dir))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let child = rel.join(&name);
        // Follows symlinks, as `std::fs::metadata` does.
        let meta = std::fs::metadata(root.join(&child)).map_err(io_error(&root.join(&child)))?;
        if meta.is_dir() {
            list(root, &child, out)?;
        } else if meta.is_file() {
            out.push(child);
        }
    }
    Ok(())
}

impl Iterator for TextDirReader {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        if self.done {
            return None;
        }
        match self.files.next() {
            Some(rel) => {
                self.saw_file = true;
                Some(self.read(&rel))
            }
            None => {
                self.done = true;
                (!self.saw_file).then(|| {
                    Err(Error::EmptyDataset {
                        path: self.root.clone(),
                    })
                })
            }
        }
    }
}

impl Reader for TextDirReader {
    fn path(&self) -> &Path {
        &self.root
    }
}

/// The 1-based line of byte `offset` in `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_sub_folders_ids_from_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (rel, text) in [
            ("pos/b.txt", "great"),
            ("pos/a.txt", "\u{feff}fine"),
            ("neg/z.txt", "awful"),
            ("top.txt", "no label"),
            (".hidden", "skip me"),
            ("neg/.DS_Store", "skip me too"),
        ] {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let got: Vec<Example> = TextDirReader::open(root)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["neg/z.txt", "pos/a.txt", "pos/b.txt", "top.txt"]);
        assert_eq!(got[1], Example::new("pos/a.txt", "fine").with_label("pos"));
        assert_eq!(got[3].label, None);
    }

    #[test]
    fn bad_files_are_reported_and_empty_folders_are_empty_datasets() {
        let dir = tempfile::tempdir().unwrap();
        let err = TextDirReader::open(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::EmptyDataset { .. }));

        std::fs::write(dir.path().join("a.txt"), b"ok\nstill ok\nbad \xff\n").unwrap();
        std::fs::write(dir.path().join("b.txt"), b"good").unwrap();
        let got: Vec<_> = TextDirReader::open(dir.path()).unwrap().collect();
        assert!(matches!(
            got[0],
            Err(Error::InvalidUtf8 {
                line: 3,
                valid_up_to: 4,
                ..
            })
        ));
        assert_eq!(got[1].as_ref().unwrap().input, "good");
        assert!(matches!(
            TextDirReader::open(dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of(b"ab\ncd\nef", 0), 1);
        assert_eq!(line_of(b"ab\ncd\nef", 4), 2);
        assert_eq!(line_of(b"ab\ncd\nef", 99), 3);
    }
}

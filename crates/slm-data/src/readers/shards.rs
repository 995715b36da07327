//! [`ShardedReader`]: every file a glob pattern matches, read as one dataset — the way
//! Hugging Face publishes splits (`data/train-00000-of-00004.parquet`, ...).

use std::path::{Path, PathBuf};

use super::{Reader, read_any};
use crate::error::{Error, Result};
use crate::example::Example;
use crate::fields::FieldMap;

/// Whether `path` is a glob pattern rather than a file or folder: it does not exist and holds
/// `*`, `?` or `[`.
pub fn is_glob(path: &Path) -> bool {
    !path.exists() && path.to_str().is_some_and(|s| s.contains(['*', '?', '[']))
}

/// Reads the files a glob pattern matches (`*`, `?`, `[a-z]`, and `**` for any folders), in
/// sorted path order, each with the reader its extension calls for, as one stream.
///
/// - Ids default to `<file name>:<line>` per shard, so they stay unique when shard names do.
/// - A shard without records is skipped; when every shard is empty, the stream yields one
///   [`Error::EmptyDataset`] naming the pattern.
/// - A shard that cannot be opened (unknown format, missing column) yields that error and
///   reading goes on with the next shard.
pub struct ShardedReader {
    pattern: PathBuf,
    fields: FieldMap,
    files: std::vec::IntoIter<PathBuf>,
    current: Option<Box<dyn Reader>>,
    yielded: usize,
    done: bool,
}

impl std::fmt::Debug for ShardedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedReader")
            .field("pattern", &self.pattern)
            .field("remaining", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl ShardedReader {
    /// Expands `pattern` (no file is opened yet).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a malformed pattern, [`Error::NoMatch`] when no file
    /// matches, [`Error::Io`] when a folder on the way cannot be read.
    pub fn open(pattern: impl AsRef<Path>, fields: FieldMap) -> Result<Self> {
        let pattern = pattern.as_ref().to_path_buf();
        fields.validate()?;
        let text = pattern.to_str().ok_or_else(|| Error::InvalidOption {
            name: "path",
            reason: format!("{} is not UTF-8", pattern.display()),
        })?;
        let paths = glob::glob(text).map_err(|e| Error::InvalidOption {
            name: "path",
            reason: format!("bad glob pattern `{text}`: {e}"),
        })?;
        let mut files = Vec::new();
        for entry in paths {
            let path = entry.map_err(|e| Error::Io {
                path: e.path().to_path_buf(),
                source: e.into(),
            })?;
            if path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(Error::NoMatch { pattern });
        }
        files.sort();
        Ok(ShardedReader {
            pattern,
            fields,
            files: files.into_iter(),
            current: None,
            yielded: 0,
            done: false,
        })
    }

    /// The shards not started yet.
    pub fn remaining(&self) -> &[PathBuf] {
        self.files.as_slice()
    }
}

impl Iterator for ShardedReader {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(reader) = &mut self.current {
                match reader.next() {
                    Some(Err(Error::EmptyDataset { .. })) => continue,
                    Some(item) => {
                        self.yielded += 1;
                        return Some(item);
                    }
                    None => self.current = None,
                }
            }
            let Some(file) = self.files.next() else {
                self.done = true;
                return (self.yielded == 0).then(|| {
                    Err(Error::EmptyDataset {
                        path: self.pattern.clone(),
                    })
                });
            };
            match read_any(&file, &self.fields) {
                Ok(reader) => self.current = Some(reader),
                Err(e) => {
                    self.yielded += 1;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Reader for ShardedReader {
    fn path(&self) -> &Path {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writers::{write_jsonl, write_parquet};

    #[test]
    fn reads_every_shard_in_order_as_one_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let rows = |from: usize, n: usize| -> Vec<Example> {
            (from..from + n)
                .map(|i| Example::new(i.to_string(), format!("text {i}")).with_label("x"))
                .collect()
        };
        write_parquet(data.join("train-00001-of-00002.parquet"), &rows(3, 2)).unwrap();
        write_parquet(data.join("train-00000-of-00002.parquet"), &rows(0, 3)).unwrap();
        write_jsonl(data.join("test-00000-of-00001.jsonl"), &rows(9, 1)).unwrap();
        std::fs::write(data.join("train-empty.jsonl"), "\n").unwrap();

        let pattern = data.join("train-*");
        assert!(is_glob(&pattern) && !is_glob(&data));
        let got: Vec<Example> = ShardedReader::open(&pattern, FieldMap::canonical())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            ["0", "1", "2", "3", "4"],
            "shards in name order, the empty one skipped"
        );

        // Through read_any, with `**`.
        let all = read_any(dir.path().join("**/*-of-*"), &FieldMap::canonical()).unwrap();
        assert_eq!(all.count(), 6);
    }

    #[test]
    fn no_match_and_all_empty_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            ShardedReader::open(dir.path().join("*.parquet"), FieldMap::canonical()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: no file matches",
                dir.path().join("*.parquet").display()
            )
        );
        std::fs::write(dir.path().join("a.jsonl"), "").unwrap();
        let mut r = ShardedReader::open(dir.path().join("*.jsonl"), FieldMap::canonical()).unwrap();
        assert!(matches!(r.next(), Some(Err(Error::EmptyDataset { .. }))));
        assert!(r.next().is_none());
    }
}

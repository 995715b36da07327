//! Resumable phases: each phase writes its artifacts under `OUT/<phase>/` and, last, a
//! `phase.json` with the key of its inputs and settings, its result and its energy report.
//! A re-run whose key matches reads the result back instead of running the phase again;
//! a changed setting or upstream artifact changes the key, and the phase (and every phase
//! after it, whose keys include it) runs again from an empty folder.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use slm_energy::{EnergyTracker, TrackerConfig, TrackerReport};

use super::error::{Error, Result};

/// The file a finished phase leaves.
pub const PHASE_FILE: &str = "phase.json";

/// Where phases keep their artifacts.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    energy: TrackerConfig,
}

/// A finished phase: its result, its key (for the keys of the phases after it), its energy.
#[derive(Debug, Clone)]
pub struct Finished<T> {
    /// What it produced.
    pub value: T,
    /// Hex key of its inputs and settings.
    pub key: String,
    /// The energy it took when it ran (in an earlier process when resumed).
    pub energy: TrackerReport,
    /// Whether it was read back from an earlier run.
    pub resumed: bool,
    /// Its folder.
    pub dir: PathBuf,
}

#[derive(Serialize, serde::Deserialize)]
struct Record<T> {
    key: String,
    settings: serde_json::Value,
    result: T,
    energy: TrackerReport,
}

/// The hex xxh3 of a value's JSON.
pub fn key_of<K: Serialize + ?Sized>(value: &K) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|source| Error::Json {
        path: PathBuf::from("<key>"),
        source,
    })?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&json)))
}

/// The hex xxh3 of a file's bytes (an input the run reads).
pub fn file_key(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
}

impl Store {
    /// A store under `root`, each phase metered with `energy`'s grid and PUE.
    pub fn new(root: &Path, energy: TrackerConfig) -> Self {
        Self {
            root: root.to_path_buf(),
            energy,
        }
    }

    /// The folder of phase `name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The energy settings every phase is metered with.
    pub fn energy_config(&self) -> &TrackerConfig {
        &self.energy
    }

    /// Phase `name` with these `settings`: read back when a finished run with the same key is
    /// there, else run by `work` (in an emptied folder, under a fresh energy tracker) and
    /// recorded.
    ///
    /// # Errors
    /// What `work` returns; I/O errors of the folder and the record.
    pub fn phase<S, T>(
        &self,
        name: &str,
        settings: &S,
        work: impl FnOnce(&Path, &EnergyTracker) -> Result<T>,
    ) -> Result<Finished<T>>
    where
        S: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
    {
        let dir = self.dir(name);
        let key = key_of(settings)?;
        let file = dir.join(PHASE_FILE);
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(record) = serde_json::from_str::<Record<T>>(&text)
            && record.key == key
        {
            return Ok(Finished {
                value: record.result,
                key,
                energy: record.energy,
                resumed: true,
                dir,
            });
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let tracker = EnergyTracker::new(slm_energy::default_meters(), self.energy.clone())?;
        let value = work(&dir, &tracker)?;
        let energy = tracker.stop()?;
        let record = Record {
            key: key.clone(),
            settings: serde_json::to_value(settings).map_err(|source| Error::Json {
                path: file.clone(),
                source,
            })?,
            result: value,
            energy,
        };
        let text = serde_json::to_string_pretty(&record).map_err(|source| Error::Json {
            path: file.clone(),
            source,
        })?;
        slm_core::io::write_atomic(&file, text.as_bytes())?;
        Ok(Finished {
            value: record.result,
            key,
            energy: record.energy,
            resumed: false,
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_phase_runs_once_per_key_and_again_when_its_settings_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), TrackerConfig::default());
        let runs = Cell::new(0);
        let work = |d: &Path, _: &EnergyTracker| {
            runs.set(runs.get() + 1);
            std::fs::write(d.join("artifact"), b"x").unwrap();
            Ok(runs.get() * 10)
        };
        let a = store.phase("p", &("lr", 1), work).unwrap();
        assert_eq!((a.value, a.resumed, runs.get()), (10, false, 1));
        let b = store.phase("p", &("lr", 1), work).unwrap();
        assert_eq!((b.value, b.resumed, runs.get()), (10, true, 1));
        assert_eq!(a.key, b.key);
        // A new setting: the phase runs again from an empty folder.
        std::fs::write(dir.path().join("p/stale"), b"old").unwrap();
        let c = store.phase("p", &("lr", 2), work).unwrap();
        assert_eq!((c.value, c.resumed, runs.get()), (20, false, 2));
        assert_ne!(c.key, a.key);
        assert!(!dir.path().join("p/stale").exists());
        // A failed phase leaves no record: the next run runs it.
        let failed = store.phase::<_, i32>("q", &1, |_, _| Err(Error::Invalid("boom".into())));
        assert!(failed.is_err());
        assert!(!dir.path().join("q").join(PHASE_FILE).exists());
    }
}

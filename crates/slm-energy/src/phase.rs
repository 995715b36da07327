//! Phase names: the lifecycle vocabulary, path validation, and the [`PhaseObserver`] trait other
//! crates report phases through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest phase path accepted, in bytes (a guard against a name built from data).
pub(crate) const MAX_PHASE_PATH_BYTES: usize = 256;

/// The separator of nested phase paths: `training/epoch-1`.
pub(crate) const PHASE_SEPARATOR: char = '/';

/// Something that wants to hear when a lifecycle phase starts and ends.
///
/// It is a trait so that crates that do work (slm-train, slm-infer, slm-data) can announce
/// their phases without knowing about meters: they hold a `&dyn PhaseObserver` (or an
/// `Arc<dyn PhaseObserver>`), and the program decides whether that is an
/// [`EnergyTracker`](crate::EnergyTracker) or [`NoopObserver`]. Names are phase paths
/// (`"training"`, `"training/epoch-1"`; see [`Lifecycle`] for the usual top-level names). The
/// methods cannot fail: an observer records its own problems (the tracker lists them in its
/// report).
pub trait PhaseObserver: Send + Sync {
    /// The phase `name` has started.
    fn phase_started(&self, name: &str);
    /// The phase `name` has ended.
    fn phase_ended(&self, name: &str);
}

/// A phase reported to any [`PhaseObserver`] from creation until it is dropped, so an early
/// return or an error ends the phase too: how crates that do work announce their phases (the
/// tracker's own [`PhaseGuard`](crate::PhaseGuard) does the same for an
/// [`EnergyTracker`](crate::EnergyTracker) and returns the phase's record).
pub struct ObservedPhase<'a> {
    observer: &'a dyn PhaseObserver,
    path: String,
}

impl<'a> ObservedPhase<'a> {
    /// Starts the phase `path` on `observer`.
    pub fn new(observer: &'a dyn PhaseObserver, path: impl Into<String>) -> Self {
        let path = path.into();
        observer.phase_started(&path);
        ObservedPhase { observer, path }
    }

    /// The phase's path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for ObservedPhase<'_> {
    fn drop(&mut self) {
        self.observer.phase_ended(&self.path);
    }
}

impl fmt::Debug for ObservedPhase<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedPhase")
            .field("path", &self.path)
            .finish()
    }
}

/// A [`PhaseObserver`] that ignores everything: the default for code run without a tracker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoopObserver;

impl PhaseObserver for NoopObserver {
    fn phase_started(&self, _name: &str) {}
    fn phase_ended(&self, _name: &str) {}
}

/// The phases of a task-specific model's life, the usual top-level phase names.
///
/// Any name is allowed as a phase; these are the ones the Energy-to-Solution report knows how
/// to place ([`is_one_off`](Self::is_one_off)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Collecting, cleaning, deduplicating and labelling data.
    Curation,
    /// Training or extending a tokenizer.
    Tokenizer,
    /// Pre-training or fine-tuning (full, LoRA).
    Training,
    /// Distilling from a teacher model.
    Distillation,
    /// Pruning, quantizing and exporting.
    Compression,
    /// Evaluating on held-out data.
    Evaluation,
    /// Answering queries in production.
    Serving,
}

impl Lifecycle {
    /// Every lifecycle phase, in the order a model goes through them.
    pub const ALL: [Lifecycle; 7] = [
        Lifecycle::Curation,
        Lifecycle::Tokenizer,
        Lifecycle::Training,
        Lifecycle::Distillation,
        Lifecycle::Compression,
        Lifecycle::Evaluation,
        Lifecycle::Serving,
    ];

    /// The phase name: `curation`, `tokenizer`, `training`, `distillation`, `compression`,
    /// `evaluation`, `serving`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Curation => "curation",
            Lifecycle::Tokenizer => "tokenizer",
            Lifecycle::Training => "training",
            Lifecycle::Distillation => "distillation",
            Lifecycle::Compression => "compression",
            Lifecycle::Evaluation => "evaluation",
            Lifecycle::Serving => "serving",
        }
    }

    /// The lifecycle phase a path belongs to, by its first segment (`training/epoch-1` is
    /// training); `None` for other names.
    pub fn of_path(path: &str) -> Option<Lifecycle> {
        let top = path.split(PHASE_SEPARATOR).next().unwrap_or(path);
        Lifecycle::ALL.into_iter().find(|l| l.as_str() == top)
    }

    /// Whether the phase is paid once to reach the solution (everything but serving), as opposed
    /// to paid per query.
    pub fn is_one_off(self) -> bool {
        self != Lifecycle::Serving
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// [`Error::InvalidPhaseName`] unless `path` is non-empty, at most [`MAX_PHASE_PATH_BYTES`],
/// free of control characters, and has no empty segment (`a//b`, `/a`, `a/`).
pub(crate) fn validate_phase_path(path: &str) -> Result<()> {
    let reason = if path.is_empty() {
        Some("is empty")
    } else if path.len() > MAX_PHASE_PATH_BYTES {
        Some("is longer than 256 bytes")
    } else if path.chars().any(char::is_control) {
        Some("contains a control character")
    } else if path.split(PHASE_SEPARATOR).any(str::is_empty) {
        Some("has an empty segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidPhaseName {
            name: path.chars().take(MAX_PHASE_PATH_BYTES).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The path of `child` nested under `parent`: `training` + `epoch-1` = `training/epoch-1`.
pub(crate) fn child_path(parent: &str, child: &str) -> String {
    format!("{parent}{PHASE_SEPARATOR}{child}")
}

/// Whether `path` lies strictly inside `ancestor` (`training/epoch-1` inside `training`).
pub(crate) fn is_nested_in(path: &str, ancestor: &str) -> bool {
    path.len() > ancestor.len()
        && path.starts_with(ancestor)
        && path[ancestor.len()..].starts_with(PHASE_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_names_round_trip() {
        for l in Lifecycle::ALL {
            assert_eq!(Lifecycle::of_path(l.as_str()), Some(l));
            assert_eq!(l.to_string(), l.as_str());
        }
        assert_eq!(
            Lifecycle::of_path("training/epoch-1"),
            Some(Lifecycle::Training)
        );
        assert_eq!(Lifecycle::of_path("trainingx"), None);
        assert!(!Lifecycle::Serving.is_one_off());
        assert!(Lifecycle::Compression.is_one_off());
    }

    #[test]
    fn paths_are_validated() {
        for ok in ["training", "training/epoch-1", "my phase/ü"] {
            assert!(validate_phase_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a\nb"] {
            assert!(
                matches!(
                    validate_phase_path(bad),
                    Err(Error::InvalidPhaseName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_phase_path(&"x".repeat(MAX_PHASE_PATH_BYTES + 1)).is_err());
    }

    #[test]
    fn nesting() {
        assert_eq!(child_path("training", "epoch-1"), "training/epoch-1");
        assert!(is_nested_in("training/epoch-1", "training"));
        assert!(!is_nested_in("training", "training"));
        assert!(!is_nested_in("trainingx/a", "training"));
    }

    #[test]
    fn noop_observer_is_an_observer() {
        let o: &dyn PhaseObserver = &NoopObserver;
        o.phase_started("training");
        o.phase_ended("training");
    }
}

//! What the run tells its user while it goes: a header per phase, a line when a phase is done
//! (or read back from an earlier run), and training steps with their loss (on stderr: a
//! progress bar on a terminal, a line every few seconds otherwise).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use slm_energy::PhaseObserver;
use slm_train::{EvalMetrics, StepMetrics, TrainObserver};

use super::store::Finished;

/// Progress lines on stderr.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Starts the clock of the run.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    fn stamp(&self) -> String {
        let s = self.started.elapsed().as_secs();
        format!("[{:02}:{:02}]", s / 60, s % 60)
    }

    /// A phase begins.
    pub fn header(&self, phase: &str, what: &str) {
        eprintln!("{} == {phase}: {what}", self.stamp());
    }

    /// A phase finished, or was read back from an earlier run.
    pub fn done<T>(&self, phase: &Finished<T>, summary: impl Fn(&T) -> String) {
        let how = if phase.resumed {
            "resumed from the last run"
        } else {
            "done"
        };
        eprintln!("{}    {how}: {}", self.stamp(), summary(&phase.value));
    }

    /// An observer of a training run of `steps` steps that prints its steps (at most one line
    /// every two seconds, and the last) and keeps every loss.
    pub fn training(&self, name: &str, steps: u64) -> TrainingProgress<'_> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "       {prefix:>9} [{bar:30}] {pos}/{len} steps {msg} ({elapsed}, eta {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar
        });
        TrainingProgress {
            progress: self,
            name: name.to_string(),
            steps,
            losses: Mutex::new(Vec::new()),
            last_line: Mutex::new(None),
            bar,
        }
    }
}

/// A training run's progress (see [`Progress::training`]).
#[derive(Debug)]
pub struct TrainingProgress<'a> {
    progress: &'a Progress,
    name: String,
    steps: u64,
    losses: Mutex<Vec<(u64, f64)>>,
    last_line: Mutex<Option<Instant>>,
    bar: Option<indicatif::ProgressBar>,
}

impl Drop for TrainingProgress<'_> {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl TrainingProgress<'_> {
    /// `(step, loss)` of every step so far.
    pub fn losses(&self) -> Vec<(u64, f64)> {
        self.losses.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl PhaseObserver for TrainingProgress<'_> {
    // The pipeline meters its own phases; the trainer's epochs are not charged twice.
    fn phase_started(&self, _name: &str) {}
    fn phase_ended(&self, _name: &str) {}
}

impl TrainObserver for TrainingProgress<'_> {
    fn on_step(&self, m: &StepMetrics) {
        if let Ok(mut l) = self.losses.lock() {
            l.push((m.step, m.loss));
        }
        if let Some(bar) = &self.bar {
            bar.set_position(m.step);
            bar.set_message(format!(
                "loss {:.4}, {:.0} tokens/s",
                m.loss, m.tokens_per_second
            ));
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if due || m.step >= self.steps {
            *last = Some(Instant::now());
            eprintln!(
                "{}    {} step {}/{}: loss {:.4}, {:.0} tokens/s",
                self.progress.stamp(),
                self.name,
                m.step,
                self.steps,
                m.loss,
                m.tokens_per_second
            );
        }
    }

    fn on_eval(&self, e: &EvalMetrics) {
        let line = format!(
            "{} step {}/{}: val loss {:.4}",
            self.name, e.step, self.steps, e.eval_loss
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{}    {line}", self.progress.stamp()),
        }
    }
}

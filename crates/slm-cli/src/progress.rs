//! Progress bars for `slm data curate`: one bar per phase with its rows and rows/s, drawn on
//! stderr only when stderr is a terminal and only once the run has lasted a few seconds (a
//! quick run prints nothing but its summary). Every phase event also goes to the energy
//! tracker, which charges the phase's energy.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use slm_data::CurateObserver;
use slm_energy::{EnergyTracker, PhaseObserver};

/// How long a run goes before its bars appear.
const SHOW_AFTER: Duration = Duration::from_secs(2);

/// A [`CurateObserver`] that forwards phases to an [`EnergyTracker`] and draws them as bars.
pub struct CurateProgress<'a> {
    energy: &'a EnergyTracker,
    bars: MultiProgress,
    open: Mutex<HashMap<String, ProgressBar>>,
    /// Stops the thread that reveals the bars after [`SHOW_AFTER`].
    reveal: Option<(Sender<()>, JoinHandle<()>)>,
}

impl<'a> CurateProgress<'a> {
    /// Bars for a run tracked by `energy`; hidden for good when stderr is not a terminal.
    pub fn new(energy: &'a EnergyTracker) -> Self {
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let reveal = std::io::stderr().is_terminal().then(|| {
            let (stop, stopped) = mpsc::channel::<()>();
            let bars = bars.clone();
            let thread = std::thread::spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SHOW_AFTER) {
                    bars.set_draw_target(ProgressDrawTarget::stderr());
                }
            });
            (stop, thread)
        });
        CurateProgress {
            energy,
            bars,
            open: Mutex::new(HashMap::new()),
            reveal,
        }
    }

    fn bar(&self, phase: &str) -> Option<ProgressBar> {
        self.open.lock().ok()?.get(phase).cloned()
    }
}

impl PhaseObserver for CurateProgress<'_> {
    fn phase_started(&self, name: &str) {
        self.energy.phase_started(name);
        // The run itself is the sum of its phases; only the phases get bars.
        let Some(stage) = name.strip_prefix("curation/") else {
            return;
        };
        let bar = self.bars.add(ProgressBar::no_length());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {human_pos:>9}/{human_len:<9} rows {msg:>14} {elapsed:>4}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        if let Ok(mut open) = self.open.lock() {
            open.insert(name.to_string(), bar);
        }
    }

    fn phase_ended(&self, name: &str) {
        self.energy.phase_ended(name);
        let Some(bar) = self.open.lock().ok().and_then(|mut o| o.remove(name)) else {
            return;
        };
        let rows = bar.position();
        let secs = bar.elapsed().as_secs_f64();
        if rows > 0 && secs > 0.0 {
            bar.set_message(format!("{:.0} rows/s", rows as f64 / secs));
        }
        bar.finish();
    }
}

impl CurateObserver for CurateProgress<'_> {
    fn rows(&self, phase: &str, done: usize, total: Option<usize>) {
        if let Some(bar) = self.bar(phase) {
            if let Some(total) = total {
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64);
        }
    }
}

impl Drop for CurateProgress<'_> {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.reveal.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        // The summary printed next says it all.
        let _ = self.bars.clear();
    }
}

/// A [`slm_train::TrainObserver`] that forwards phases to an [`EnergyTracker`] and draws one
/// bar over the optimizer steps (loss, learning rate, tokens/s, ETA) on stderr when it is a
/// terminal.
pub struct TrainProgress<'a> {
    energy: &'a EnergyTracker,
    bar: ProgressBar,
}

impl<'a> TrainProgress<'a> {
    /// A bar for a run tracked by `energy`.
    pub fn new(energy: &'a EnergyTracker) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] step {pos}/{len} {msg} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("training");
        TrainProgress { energy, bar }
    }
}

impl PhaseObserver for TrainProgress<'_> {
    fn phase_started(&self, name: &str) {
        self.energy.phase_started(name);
    }

    fn phase_ended(&self, name: &str) {
        self.energy.phase_ended(name);
    }
}

impl slm_train::TrainObserver for TrainProgress<'_> {
    fn on_step(&self, m: &slm_train::StepMetrics) {
        self.bar.set_length(m.total_steps);
        self.bar.set_position(m.step);
        self.bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.0} tok/s",
            m.loss, m.lr, m.tokens_per_second
        ));
    }

    fn on_eval(&self, m: &slm_train::EvalMetrics) {
        self.bar.println(format!(
            "eval at step {}: loss {:.4}, perplexity {:.2}{}",
            m.step,
            m.eval_loss,
            m.eval_perplexity,
            m.metrics
                .iter()
                .map(|(k, v)| format!(", {k} {v:.4}"))
                .collect::<String>()
        ));
    }
}

impl Drop for TrainProgress<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

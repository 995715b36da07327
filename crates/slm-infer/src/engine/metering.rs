//! Energy per request: the engine reads its power meters around every model step and splits
//! the step's energy between the step's sequences in proportion to the tokens each fed (a
//! decode token and a prefill token count alike). Figures keep the meters' method (measured by
//! RAPL / NVML, or estimated by a CPU-time model); a meter that cannot be read makes the
//! figure unknown (`None`), never 0.

use slm_energy::{Energy, EnergyReading, PowerMeter};

/// The engine's meters.
pub(crate) struct StepMeter {
    meters: Vec<Box<dyn PowerMeter>>,
}

impl StepMeter {
    pub(crate) fn new(meters: Vec<Box<dyn PowerMeter>>) -> Self {
        Self { meters }
    }

    /// Readings of every meter now; `None` without meters or when one fails.
    pub(crate) fn read(&mut self) -> Option<Vec<EnergyReading>> {
        if self.meters.is_empty() {
            return None;
        }
        self.meters.iter_mut().map(|m| m.read().ok()).collect()
    }

    /// Energy of every meter since `start` (summed; the method combines theirs).
    pub(crate) fn since(&mut self, start: &[EnergyReading]) -> Option<Energy> {
        let now = self.read()?;
        let mut total: Option<Energy> = None;
        for (a, b) in start.iter().zip(&now) {
            let e = b.energy_since(a).ok()?;
            total = Some(match total {
                None => e,
                Some(t) => t + e,
            });
        }
        total
    }
}

/// `energy` scaled by `fraction` (same method).
pub(crate) fn share(energy: &Energy, fraction: f64) -> Option<Energy> {
    Energy::new(energy.joules() * fraction, energy.method().clone()).ok()
}

/// Adds `more` to an accumulated figure that stays unknown once any part was.
pub(crate) fn accumulate(total: &mut Option<Option<Energy>>, more: Option<Energy>) {
    *total = Some(match (total.take(), more) {
        (None, m) => m,
        (Some(Some(t)), Some(m)) => Some(t + m),
        _ => None,
    });
}

//! [`ReplayMeter`]: a [`PowerMeter`] that replays a recorded [`PowerTrace`] on a clock the
//! caller moves, so tests know every reading exactly.

use crate::energy::{Energy, Method};
use crate::error::{Error, Result};
use crate::meter::{Component, EnergyReading, PowerMeter};
use crate::trace::PowerTrace;

/// A meter over a recorded power trace. Its clock starts at the trace's first sample and moves
/// only when told ([`advance`](Self::advance), [`seek`](Self::seek)); [`read`](PowerMeter::read)
/// returns the exact integral of the trace up to the clock, labelled with the `method` the
/// recording was made with, and charged to a [`Component`] ([`Component::Cpu`] unless
/// [`with_component`](Self::with_component) says otherwise).
#[derive(Debug, Clone)]
pub struct ReplayMeter {
    trace: PowerTrace,
    method: Method,
    component: Component,
    now: f64,
}

impl ReplayMeter {
    /// A meter replaying `trace`, whose energy was obtained by `method` (a RAPL recording is
    /// `Method::Measured(MeterSource::Rapl)`; a made-up trace is best labelled an estimate).
    /// The meter counts [`Component::Cpu`] energy; see [`with_component`](Self::with_component).
    pub fn new(trace: PowerTrace, method: Method) -> Self {
        let now = trace.start();
        ReplayMeter {
            trace,
            method,
            component: Component::Cpu,
            now,
        }
    }

    /// The same meter, charging its energy to `component` (a recorded GPU trace is
    /// `Component::Gpu`).
    pub fn with_component(mut self, component: Component) -> Self {
        self.component = component;
        self
    }

    /// The clock, in the trace's seconds.
    pub fn now(&self) -> f64 {
        self.now
    }

    /// The trace being replayed.
    pub fn trace(&self) -> &PowerTrace {
        &self.trace
    }

    /// Moves the clock to `seconds`.
    ///
    /// # Errors
    /// [`Error::TimeWentBackwards`] before the current time (a counter never runs back),
    /// [`Error::OutsideTrace`] past the trace's end; the clock stays where it was.
    pub fn seek(&mut self, seconds: f64) -> Result<()> {
        if seconds < self.now {
            return Err(Error::TimeWentBackwards {
                now: self.now,
                seconds,
            });
        }
        let (start, end) = (self.trace.start(), self.trace.end());
        if seconds.is_nan() || seconds > end {
            return Err(Error::OutsideTrace {
                seconds,
                start,
                end,
            });
        }
        self.now = seconds;
        Ok(())
    }

    /// Moves the clock forward by `seconds` (see [`seek`](Self::seek)).
    pub fn advance(&mut self, seconds: f64) -> Result<()> {
        self.seek(self.now + seconds)
    }
}

impl PowerMeter for ReplayMeter {
    fn name(&self) -> &str {
        "replay"
    }

    fn component(&self) -> Component {
        self.component
    }

    fn read(&mut self) -> Result<EnergyReading> {
        let joules = self.trace.joules_until(self.now)?;
        Ok(EnergyReading {
            seconds: self.now,
            energy: Energy::new(joules, self.method.clone())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::MeterSource;

    fn meter() -> ReplayMeter {
        // 100 W for 10 s, ramping down to 0 W over the next 10 s: 1000 J + 500 J.
        let trace = PowerTrace::new(vec![(0.0, 100.0), (10.0, 100.0), (20.0, 0.0)]).unwrap();
        ReplayMeter::new(trace, Method::Measured(MeterSource::Rapl))
    }

    #[test]
    fn readings_are_the_exact_integral() {
        let mut m = meter();
        assert_eq!(m.read().unwrap().energy.joules(), 0.0);
        m.advance(5.0).unwrap();
        assert_eq!(m.read().unwrap().energy.joules(), 500.0);
        m.seek(15.0).unwrap();
        // 1000 J + the first half of the ramp: 5 s × (100 + 50) / 2.
        let r = m.read().unwrap();
        assert_eq!((r.seconds, r.energy.joules()), (15.0, 1375.0));
        m.seek(20.0).unwrap();
        assert_eq!(m.read().unwrap().energy.joules(), 1500.0);
        assert_eq!(
            m.read().unwrap().energy.method().to_string(),
            "measured (RAPL)"
        );
    }

    #[test]
    fn a_phase_is_the_difference_of_two_readings() {
        let mut m: Box<dyn PowerMeter> = Box::new(meter());
        let before = m.read().unwrap();
        assert_eq!(m.name(), "replay");
        assert_eq!(m.component(), Component::Cpu);
        assert_eq!(
            meter().with_component(Component::Gpu).component(),
            Component::Gpu
        );
        let mut replay = meter();
        replay.seek(10.0).unwrap();
        let after = replay.read().unwrap();
        assert_eq!(after.energy_since(&before).unwrap().joules(), 1000.0);
        assert_eq!(after.mean_watts_since(&before).unwrap(), 100.0);
    }

    #[test]
    fn the_clock_only_moves_forward_inside_the_trace() {
        let mut m = meter();
        m.seek(12.0).unwrap();
        assert!(matches!(m.seek(11.0), Err(Error::TimeWentBackwards { .. })));
        assert!(matches!(m.advance(9.0), Err(Error::OutsideTrace { .. })));
        assert!(matches!(m.seek(f64::NAN), Err(Error::OutsideTrace { .. })));
        assert_eq!(m.now(), 12.0, "a refused move leaves the clock alone");
    }
}

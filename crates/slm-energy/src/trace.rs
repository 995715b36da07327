//! [`PowerTrace`]: power samples over time and their exact trapezoidal integral.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Power samples `(seconds, watts)` in time order, read as a piecewise-linear power curve.
///
/// Times never decrease; two samples at the same time are an instantaneous step in power.
/// Power is finite and non-negative. Energy between two times is the exact integral of the
/// curve (the trapezoidal rule over the samples, interpolating linearly inside a segment).
/// Serde writes `{"samples": [[seconds, watts], ...]}` and validates on reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTrace", into = "RawTrace")]
pub struct PowerTrace {
    samples: Vec<(f64, f64)>,
    /// `cumulative[i]`: joules from the first sample to sample `i`.
    cumulative: Vec<f64>,
}

/// What a serialized [`PowerTrace`] holds, before validation.
#[derive(Serialize, Deserialize)]
struct RawTrace {
    samples: Vec<(f64, f64)>,
}

impl TryFrom<RawTrace> for PowerTrace {
    type Error = Error;

    fn try_from(raw: RawTrace) -> Result<Self> {
        PowerTrace::new(raw.samples)
    }
}

impl From<PowerTrace> for RawTrace {
    fn from(trace: PowerTrace) -> Self {
        RawTrace {
            samples: trace.samples,
        }
    }
}

/// Joules of the straight power line from `(t0, w0)` to `(t1, w1)`.
fn trapezoid(t0: f64, w0: f64, t1: f64, w1: f64) -> f64 {
    (t1 - t0) * (w0 + w1) / 2.0
}

impl PowerTrace {
    /// A trace from `(seconds, watts)` samples.
    ///
    /// # Errors
    /// [`Error::EmptyTrace`], [`Error::NonFiniteSample`], [`Error::NegativePower`] or
    /// [`Error::TimeNotIncreasing`], each naming the first offending sample.
    pub fn new(samples: Vec<(f64, f64)>) -> Result<Self> {
        if samples.is_empty() {
            return Err(Error::EmptyTrace);
        }
        let mut cumulative = Vec::with_capacity(samples.len());
        for (index, &(seconds, watts)) in samples.iter().enumerate() {
            if !(seconds.is_finite() && watts.is_finite()) {
                return Err(Error::NonFiniteSample {
                    index,
                    seconds,
                    watts,
                });
            }
            if watts < 0.0 {
                return Err(Error::NegativePower { index, watts });
            }
            let joules = match index.checked_sub(1).map(|i| (samples[i], cumulative[i])) {
                None => 0.0,
                Some(((previous, _), _)) if seconds < previous => {
                    return Err(Error::TimeNotIncreasing {
                        index,
                        previous,
                        seconds,
                    });
                }
                Some(((t0, w0), before)) => before + trapezoid(t0, w0, seconds, watts),
            };
            cumulative.push(joules);
        }
        Ok(PowerTrace {
            samples,
            cumulative,
        })
    }

    /// The samples, as given.
    pub fn samples(&self) -> &[(f64, f64)] {
        &self.samples
    }

    /// Time of the first sample.
    pub fn start(&self) -> f64 {
        self.samples[0].0
    }

    /// Time of the last sample.
    pub fn end(&self) -> f64 {
        self.samples[self.samples.len() - 1].0
    }

    /// Joules over the whole trace.
    pub fn total_joules(&self) -> f64 {
        self.cumulative[self.cumulative.len() - 1]
    }

    /// Joules from the first sample to `seconds`; [`Error::OutsideTrace`] outside
    /// `[start, end]`.
    pub fn joules_until(&self, seconds: f64) -> Result<f64> {
        let (start, end) = (self.start(), self.end());
        if !(start..=end).contains(&seconds) {
            return Err(Error::OutsideTrace {
                seconds,
                start,
                end,
            });
        }
        // The last sample at or before `seconds`: after any step at that very time.
        let i = self.samples.partition_point(|&(t, _)| t <= seconds) - 1;
        let (t0, w0) = self.samples[i];
        let partial = match self.samples.get(i + 1) {
            Some(&(t1, w1)) if seconds > t0 => {
                let w = w0 + (w1 - w0) * ((seconds - t0) / (t1 - t0));
                trapezoid(t0, w0, seconds, w)
            }
            _ => 0.0,
        };
        Ok(self.cumulative[i] + partial)
    }

    /// Joules between two times inside the trace (`from <= to`).
    pub fn joules_between(&self, from: f64, to: f64) -> Result<f64> {
        if to < from {
            return Err(Error::ReversedInterval { from, to });
        }
        Ok(self.joules_until(to)? - self.joules_until(from)?)
    }

    /// This trace followed by `next`, shifted so that `next` starts where this one ends.
    /// The energy of the result is the sum of both (a step joins them if their powers differ).
    pub fn then(&self, next: &PowerTrace) -> PowerTrace {
        let (end, next_start) = (self.end(), next.start());
        let offset = self.total_joules();
        let mut samples = self.samples.clone();
        let mut cumulative = self.cumulative.clone();
        for (&(t, w), &j) in next.samples.iter().zip(&next.cumulative) {
            // `end + (t - next_start)`, not `t + (end - next_start)`: the first sample lands on
            // `end` exactly and rounding keeps the times in order.
            samples.push((end + (t - next_start), w));
            cumulative.push(offset + j);
        }
        PowerTrace {
            samples,
            cumulative,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_power_is_watts_times_seconds() {
        let t = PowerTrace::new(vec![(0.0, 50.0), (10.0, 50.0)]).unwrap();
        assert_eq!(t.total_joules(), 500.0);
        assert_eq!(t.joules_until(4.0).unwrap(), 200.0);
    }

    #[test]
    fn linear_ramp_integrates_exactly() {
        // 0 → 100 W over 10 s: 500 J in all; at t = 5 s power is 50 W, so 125 J so far.
        let t = PowerTrace::new(vec![(0.0, 0.0), (10.0, 100.0)]).unwrap();
        assert_eq!(t.total_joules(), 500.0);
        assert_eq!(t.joules_until(5.0).unwrap(), 125.0);
        assert_eq!(t.joules_between(5.0, 10.0).unwrap(), 375.0);
    }

    #[test]
    fn several_segments_and_a_step() {
        // 10 W for 2 s, a step to 30 W, ramp to 50 W over 2 s, then 50 W for 1 s.
        let t = PowerTrace::new(vec![
            (0.0, 10.0),
            (2.0, 10.0),
            (2.0, 30.0),
            (4.0, 50.0),
            (5.0, 50.0),
        ])
        .unwrap();
        assert_eq!(t.total_joules(), 20.0 + 80.0 + 50.0);
        assert_eq!(t.joules_until(2.0).unwrap(), 20.0);
        assert_eq!(t.joules_until(3.0).unwrap(), 20.0 + 35.0);
        assert_eq!(t.joules_until(0.0).unwrap(), 0.0);
        assert_eq!(t.joules_until(5.0).unwrap(), 150.0);
    }

    #[test]
    fn a_single_sample_holds_no_energy() {
        let t = PowerTrace::new(vec![(3.0, 80.0)]).unwrap();
        assert_eq!((t.start(), t.end(), t.total_joules()), (3.0, 3.0, 0.0));
        assert_eq!(t.joules_until(3.0).unwrap(), 0.0);
    }

    #[test]
    fn invalid_traces_name_the_sample() {
        assert!(matches!(PowerTrace::new(vec![]), Err(Error::EmptyTrace)));
        assert!(matches!(
            PowerTrace::new(vec![(0.0, 1.0), (1.0, f64::NAN)]),
            Err(Error::NonFiniteSample { index: 1, .. })
        ));
        assert!(matches!(
            PowerTrace::new(vec![(0.0, 1.0), (1.0, -2.0)]),
            Err(Error::NegativePower { index: 1, watts }) if watts == -2.0
        ));
        let err = PowerTrace::new(vec![(0.0, 1.0), (2.0, 1.0), (1.0, 1.0)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trace sample 2 at 1 s comes before the previous one at 2 s"
        );
    }

    #[test]
    fn times_outside_the_trace_are_errors() {
        let t = PowerTrace::new(vec![(1.0, 1.0), (2.0, 1.0)]).unwrap();
        assert!(matches!(
            t.joules_until(0.5),
            Err(Error::OutsideTrace { .. })
        ));
        assert!(matches!(
            t.joules_until(2.5),
            Err(Error::OutsideTrace { .. })
        ));
        assert!(matches!(
            t.joules_until(f64::NAN),
            Err(Error::OutsideTrace { .. })
        ));
        assert!(matches!(
            t.joules_between(2.0, 1.0),
            Err(Error::ReversedInterval { .. })
        ));
    }

    #[test]
    fn then_appends_shifted() {
        let a = PowerTrace::new(vec![(0.0, 10.0), (1.0, 10.0)]).unwrap();
        let b = PowerTrace::new(vec![(100.0, 20.0), (102.0, 20.0)]).unwrap();
        let ab = a.then(&b);
        assert_eq!(
            ab.samples(),
            [(0.0, 10.0), (1.0, 10.0), (1.0, 20.0), (3.0, 20.0)]
        );
        assert_eq!(ab.total_joules(), 50.0);
        assert_eq!(ab.joules_until(2.0).unwrap(), 30.0);
    }

    #[test]
    fn serde_validates() {
        let t = PowerTrace::new(vec![(0.0, 1.0), (1.0, 3.0)]).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"samples":[[0.0,1.0],[1.0,3.0]]}"#);
        assert_eq!(serde_json::from_str::<PowerTrace>(&json).unwrap(), t);
        let bad = serde_json::from_str::<PowerTrace>(r#"{"samples":[[1.0,1.0],[0.0,1.0]]}"#);
        assert!(bad.unwrap_err().to_string().contains("comes before"));
    }
}

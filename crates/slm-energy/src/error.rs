//! The error type of slm-energy: every variant carries the number that was out of range.

/// Everything that can go wrong while building energy figures, traces and readings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An energy that is negative, NaN or infinite.
    #[error("invalid energy {joules} J: expected a finite number >= 0")]
    InvalidEnergy {
        /// The value given.
        joules: f64,
    },
    /// A power trace with no samples.
    #[error("a power trace needs at least one sample")]
    EmptyTrace,
    /// A trace sample whose time or power is NaN or infinite.
    #[error("trace sample {index} is ({seconds} s, {watts} W): expected finite numbers")]
    NonFiniteSample {
        /// Index of the sample.
        index: usize,
        /// Its time.
        seconds: f64,
        /// Its power.
        watts: f64,
    },
    /// A trace sample with negative power.
    #[error("trace sample {index} has negative power {watts} W")]
    NegativePower {
        /// Index of the sample.
        index: usize,
        /// Its power.
        watts: f64,
    },
    /// A trace sample earlier than the one before it.
    #[error("trace sample {index} at {seconds} s comes before the previous one at {previous} s")]
    TimeNotIncreasing {
        /// Index of the sample.
        index: usize,
        /// The previous sample's time.
        previous: f64,
        /// This sample's time.
        seconds: f64,
    },
    /// A time outside the span a trace covers.
    #[error("{seconds} s is outside the trace's span [{start} s, {end} s]")]
    OutsideTrace {
        /// The time asked for.
        seconds: f64,
        /// The trace's first sample time.
        start: f64,
        /// The trace's last sample time.
        end: f64,
    },
    /// An interval whose end comes before its start.
    #[error("interval from {from} s to {to} s ends before it starts")]
    ReversedInterval {
        /// The start asked for.
        from: f64,
        /// The end asked for.
        to: f64,
    },
    /// A meter asked to go back in time: its counter only moves forward.
    #[error("meter is at {now} s and cannot go back to {seconds} s")]
    TimeWentBackwards {
        /// The meter's current time.
        now: f64,
        /// The time asked for.
        seconds: f64,
    },
    /// Two readings in the wrong order, or a counter that decreased between them.
    #[error(
        "reading at {later_seconds} s ({later_joules} J) is not after reading at {earlier_seconds} s ({earlier_joules} J)"
    )]
    CounterWentBackwards {
        /// Time of the reading taken as earlier.
        earlier_seconds: f64,
        /// Its cumulative energy.
        earlier_joules: f64,
        /// Time of the reading taken as later.
        later_seconds: f64,
        /// Its cumulative energy.
        later_joules: f64,
    },
    /// A power usage effectiveness below 1, NaN or infinite.
    #[error("invalid PUE {pue}: expected a finite number >= 1")]
    InvalidPue {
        /// The value given.
        pue: f64,
    },
    /// A carbon intensity that is negative, NaN or infinite.
    #[error(
        "invalid carbon intensity {grams_co2e_per_kwh} gCO2e/kWh from {source_name}: expected a finite number >= 0"
    )]
    InvalidIntensity {
        /// The value given.
        grams_co2e_per_kwh: f64,
        /// Where it came from.
        source_name: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

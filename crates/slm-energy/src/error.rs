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
    /// A grid region code the carbon-intensity table does not hold.
    #[error(
        "unknown grid region {code:?}: expected an ISO 3166-1 alpha-2/alpha-3 country code (FR, FRA) or a US state (US-CA)"
    )]
    UnknownRegion {
        /// The code asked for.
        code: String,
    },
    /// A phase path that is empty, too long, or has an empty segment.
    #[error("invalid phase name {name:?}: it {reason}")]
    InvalidPhaseName {
        /// The name given (cut at 256 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A phase started while one with the same path is open.
    #[error("phase {path:?} is already open")]
    PhaseAlreadyOpen {
        /// The phase path.
        path: String,
    },
    /// A phase ended that is not open.
    #[error("phase {path:?} is not open")]
    PhaseNotOpen {
        /// The phase path.
        path: String,
    },
    /// A phase started after the tracker was stopped.
    #[error("the energy tracker has been stopped")]
    TrackerStopped,
    /// The tracker's sampling thread could not be spawned.
    #[error("cannot spawn the energy sampling thread: {0}")]
    SamplerThread(#[source] std::io::Error),
    /// The tracker's sampling thread panicked (a meter panicked instead of returning an error).
    #[error("the energy sampling thread panicked")]
    SamplerPanicked,
    /// A report file that could not be written.
    #[error("cannot write {path}: {source}")]
    WriteFile {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A report that could not be serialized to JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A CSV row that could not be written.
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A plot that could not be drawn.
    #[error("cannot draw the {chart} plot: {message}")]
    Plot {
        /// Which plot.
        chart: &'static str,
        /// The plotting library's error.
        message: String,
    },
    /// An Energy-to-Solution input out of range (zero lifetime queries, no predictions, a
    /// serving phase of zero or negative duration).
    #[error("E2S input {field} = {value}: expected {expected}")]
    InvalidE2sInput {
        /// The input's name.
        field: &'static str,
        /// The value given.
        value: f64,
        /// What it should be.
        expected: &'static str,
    },
    /// Reports that cannot be put together ([`TrackerReport::concat`](crate::TrackerReport::concat)).
    #[error("cannot combine energy reports: {reason}")]
    IncompatibleReports {
        /// What differs.
        reason: String,
    },
    /// A phase the report needs that the tracker did not record.
    #[error("no finished phase {path:?} in the tracker report")]
    PhaseNotFound {
        /// The phase path.
        path: String,
    },
    /// A phase with no energy: no meter could be read at both its ends.
    #[error("phase {path:?} has no energy: no meter was read at both its ends")]
    NoEnergy {
        /// The phase path.
        path: String,
    },
    /// A file a meter reads could not be read (for a reason other than RAPL's permissions).
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file a meter reads holds something else than expected.
    #[error("{path}: cannot parse {content:?} as {expected}")]
    ParseFile {
        /// The file.
        path: std::path::PathBuf,
        /// What it held (trimmed; the first line for long files).
        content: String,
        /// What was expected.
        expected: &'static str,
    },
    /// No RAPL zone under the powercap root.
    #[error(
        "no powercap RAPL domains under {root}: the kernel lacks intel_rapl (try `sudo modprobe intel_rapl_msr`; AMD CPUs need Linux 5.8 or later) or this is a virtual machine, which does not expose RAPL; energy will be estimated"
    )]
    NoRaplDomains {
        /// The powercap root searched.
        root: std::path::PathBuf,
    },
    /// RAPL zones, but none for DRAM.
    #[error(
        "no RAPL dram domain under {root} (found: {found}): this CPU does not report DRAM energy (most client and AMD CPUs do not); memory energy will be estimated"
    )]
    NoRaplDramDomain {
        /// The powercap root searched.
        root: std::path::PathBuf,
        /// The zones found, as `name (zone)`.
        found: String,
    },
    /// A RAPL `energy_uj` file the process may not read.
    #[error(
        "{path} is not readable: permission denied (since Linux 5.10 energy_uj is root-only, CVE-2020-8694); run as root or `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj` (until the next reboot; a udev rule or a systemd-tmpfiles entry makes it permanent)"
    )]
    RaplPermissionDenied {
        /// The `energy_uj` file.
        path: std::path::PathBuf,
    },
    /// The kernel has no `power` perf PMU.
    #[error(
        "no RAPL perf events: {path} does not exist (the kernel has no `power` PMU: the CPU lacks RAPL, the kernel was built without CONFIG_PERF_EVENTS_INTEL_RAPL, or this is a virtual machine)"
    )]
    NoPerfPowerPmu {
        /// The PMU's `type` file that is missing.
        path: std::path::PathBuf,
    },
    /// The `power` PMU lacks an event.
    #[error(
        "the perf power PMU has no {event} event ({path} does not exist): this CPU does not report that domain"
    )]
    NoPerfEvent {
        /// The event (`energy-ram`).
        event: &'static str,
        /// Its missing sysfs file.
        path: std::path::PathBuf,
    },
    /// `perf_event_open` refused for lack of privilege.
    #[error(
        "perf_event_open(power/{event}/, cpu {cpu}) was refused: {source}; system-wide perf events need CAP_PERFMON (Linux 5.8+) or CAP_SYS_ADMIN (`sudo setcap cap_perfmon+ep <binary>`), or `sudo sysctl kernel.perf_event_paranoid=0` (it is now {paranoid})"
    )]
    PerfPermissionDenied {
        /// The event.
        event: &'static str,
        /// The CPU it was opened on.
        cpu: i32,
        /// The value of `kernel.perf_event_paranoid`.
        paranoid: String,
        /// EACCES or EPERM.
        #[source]
        source: std::io::Error,
    },
    /// `perf_event_open`, or reading its counter, failed otherwise.
    #[error("perf_event_open(power/{event}/, cpu {cpu}) failed: {source}")]
    PerfEventOpen {
        /// The event.
        event: &'static str,
        /// The CPU it was opened on.
        cpu: i32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A meter that exists only on Linux.
    #[error("the {meter} meter needs Linux; this is {os}")]
    UnsupportedOs {
        /// The meter.
        meter: &'static str,
        /// `std::env::consts::OS`.
        os: &'static str,
    },
    /// The NVML library could not be loaded.
    #[error("NVML not available: {library} not found (no NVIDIA driver): {reason}")]
    NvmlUnavailable {
        /// The library asked for.
        library: String,
        /// The loader's message.
        reason: String,
    },
    /// The NVML library lacks a function.
    #[error("NVML library {library} has no {symbol} (the NVIDIA driver is too old): {reason}")]
    NvmlMissingSymbol {
        /// The library loaded.
        library: String,
        /// The function.
        symbol: &'static str,
        /// The loader's message.
        reason: String,
    },
    /// An NVML call returned an error.
    #[error("NVML {function} failed: {message} (nvmlReturn_t {code})")]
    NvmlCall {
        /// The function.
        function: &'static str,
        /// Its `nvmlReturn_t`.
        code: u32,
        /// NVML's text for it.
        message: String,
    },
    /// NVML works but sees no GPU.
    #[error("NVML found no GPU")]
    NoGpu,
    /// The NVML meter was asked for in a build without it.
    #[error("NVML support is not compiled in: rebuild slm-energy with `--features nvml`")]
    NvmlNotCompiled,
    /// A power (or size it is derived from) that is negative, NaN or infinite.
    #[error("invalid {what} {watts}: expected a finite number >= 0")]
    InvalidPower {
        /// The value given.
        watts: f64,
        /// What it is.
        what: &'static str,
    },
    /// A load share outside `[0, 1]`.
    #[error("invalid load fraction {load_fraction}: expected a number in [0, 1]")]
    InvalidLoadFraction {
        /// The value given.
        load_fraction: f64,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

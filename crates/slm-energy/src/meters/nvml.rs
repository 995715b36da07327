//! [`NvmlMeter`]: NVIDIA GPU energy through NVML, loaded at run time (`libnvidia-ml.so.1`,
//! which the driver installs), so a binary built with the `nvml` feature still runs, and
//! reports a typed error, on a machine without NVIDIA's driver.
//!
//! Per GPU it prefers `nvmlDeviceGetTotalEnergyConsumption` (millijoules since the driver
//! loaded; Volta and later). On older GPUs, where that answers `NVML_ERROR_NOT_SUPPORTED`, it
//! samples `nvmlDeviceGetPowerUsage` (milliwatts) at each reading and integrates
//! trapezoidally between readings. Both are reported as measured by NVML, but a sampled GPU is
//! only as good as the reading interval: [`NvmlGpu::energy_counter`] says which one you have.

use std::ffi::{CStr, c_char, c_uint, c_ulonglong, c_void};
use std::time::Instant;

use libloading::Library;

use crate::energy::{Energy, MeterSource};
use crate::error::{Error, Result};
use crate::meter::{Component, EnergyReading, PowerMeter};

/// The NVML library the driver installs.
#[cfg(windows)]
pub const NVML_LIBRARY: &str = "nvml.dll";
/// The NVML library the driver installs.
#[cfg(not(windows))]
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

type NvmlReturn = c_uint;
type NvmlDevice = *mut c_void;

const NVML_SUCCESS: NvmlReturn = 0;
const NVML_ERROR_NOT_SUPPORTED: NvmlReturn = 3;
/// `NVML_DEVICE_NAME_V2_BUFFER_SIZE`.
const NAME_BUFFER: usize = 96;

/// The NVML entry points this meter uses, resolved from a loaded library and initialised.
struct Nvml {
    shutdown: unsafe extern "C" fn() -> NvmlReturn,
    device_count: unsafe extern "C" fn(*mut c_uint) -> NvmlReturn,
    handle_by_index: unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> NvmlReturn,
    name: unsafe extern "C" fn(NvmlDevice, *mut c_char, c_uint) -> NvmlReturn,
    total_energy: unsafe extern "C" fn(NvmlDevice, *mut c_ulonglong) -> NvmlReturn,
    power_usage: unsafe extern "C" fn(NvmlDevice, *mut c_uint) -> NvmlReturn,
    error_string: Option<unsafe extern "C" fn(NvmlReturn) -> *const c_char>,
    /// Dropped after [`Drop::drop`] has called `nvmlShutdown`, so the pointers above stay valid
    /// for the life of the struct.
    _library: Library,
}

impl Nvml {
    /// Loads `library`, resolves the entry points and calls `nvmlInit_v2`.
    fn load(library: &str) -> Result<Nvml> {
        // SAFETY: loading NVML runs its initialisers, which have no preconditions.
        let lib = unsafe { Library::new(library) }.map_err(|e| Error::NvmlUnavailable {
            library: library.to_owned(),
            reason: loader_message(&e),
        })?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the type is the function's prototype in nvml.h.
                *unsafe { lib.get($name.as_bytes()) }.map_err(|e| Error::NvmlMissingSymbol {
                    library: library.to_owned(),
                    symbol: $name,
                    reason: loader_message(&e),
                })?
            };
        }
        let init: unsafe extern "C" fn() -> NvmlReturn = symbol!("nvmlInit_v2");
        let shutdown = symbol!("nvmlShutdown");
        let device_count = symbol!("nvmlDeviceGetCount_v2");
        let handle_by_index = symbol!("nvmlDeviceGetHandleByIndex_v2");
        let name = symbol!("nvmlDeviceGetName");
        let total_energy = symbol!("nvmlDeviceGetTotalEnergyConsumption");
        let power_usage = symbol!("nvmlDeviceGetPowerUsage");
        // SAFETY: as above; optional, it only improves messages.
        let error_string = unsafe { lib.get(b"nvmlErrorString") }.ok().map(|s| *s);
        // SAFETY: nvmlInit_v2 takes no arguments; NVML counts inits, and Drop shuts down.
        let code = unsafe { init() };
        if code != NVML_SUCCESS {
            // No session to shut down; the library unloads on return.
            return Err(Error::NvmlCall {
                function: "nvmlInit_v2",
                code,
                message: message(error_string, code),
            });
        }
        Ok(Nvml {
            shutdown,
            device_count,
            handle_by_index,
            name,
            total_energy,
            power_usage,
            error_string,
            _library: lib,
        })
    }

    /// NVML's text for `code`.
    fn message(&self, code: NvmlReturn) -> String {
        message(self.error_string, code)
    }

    fn check(&self, function: &'static str, code: NvmlReturn) -> Result<()> {
        if code == NVML_SUCCESS {
            Ok(())
        } else {
            Err(Error::NvmlCall {
                function,
                code,
                message: self.message(code),
            })
        }
    }

    fn count(&self) -> Result<u32> {
        let mut n: c_uint = 0;
        // SAFETY: `n` is a valid out-pointer.
        self.check("nvmlDeviceGetCount_v2", unsafe {
            (self.device_count)(&mut n)
        })?;
        Ok(n)
    }

    fn handle(&self, index: u32) -> Result<NvmlDevice> {
        let mut device: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `device` is a valid out-pointer; `index` is below the device count.
        self.check("nvmlDeviceGetHandleByIndex_v2", unsafe {
            (self.handle_by_index)(index, &mut device)
        })?;
        Ok(device)
    }

    fn device_name(&self, device: NvmlDevice) -> Result<String> {
        let mut buf: [c_char; NAME_BUFFER] = [0; NAME_BUFFER];
        // SAFETY: `buf` holds NAME_BUFFER bytes; NVML NUL-terminates within that length.
        self.check("nvmlDeviceGetName", unsafe {
            (self.name)(device, buf.as_mut_ptr(), NAME_BUFFER as c_uint)
        })?;
        // SAFETY: NUL-terminated by NVML, and the last byte is still 0 regardless.
        buf[NAME_BUFFER - 1] = 0;
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    /// Millijoules since the driver loaded; `Ok(None)` when the GPU has no counter.
    fn energy_mj(&self, device: NvmlDevice) -> Result<Option<u64>> {
        let mut mj: c_ulonglong = 0;
        // SAFETY: `mj` is a valid out-pointer and `device` a handle from this session.
        match unsafe { (self.total_energy)(device, &mut mj) } {
            NVML_ERROR_NOT_SUPPORTED => Ok(None),
            code => self
                .check("nvmlDeviceGetTotalEnergyConsumption", code)
                .map(|()| Some(mj)),
        }
    }

    fn power_mw(&self, device: NvmlDevice) -> Result<u32> {
        let mut mw: c_uint = 0;
        // SAFETY: `mw` is a valid out-pointer and `device` a handle from this session.
        self.check("nvmlDeviceGetPowerUsage", unsafe {
            (self.power_usage)(device, &mut mw)
        })?;
        Ok(mw)
    }
}

/// libloading's error with its cause (`dlopen failed: libnvidia-ml.so.1: cannot open shared
/// object file: No such file or directory`).
fn loader_message(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// NVML's text for `code`, through `nvmlErrorString` when the library has it.
fn message(
    error_string: Option<unsafe extern "C" fn(NvmlReturn) -> *const c_char>,
    code: NvmlReturn,
) -> String {
    let Some(f) = error_string else {
        return format!("error {code}");
    };
    // SAFETY: nvmlErrorString returns a static NUL-terminated string (or NULL).
    let p = unsafe { f(code) };
    if p.is_null() {
        format!("error {code}")
    } else {
        // SAFETY: non-null, NUL-terminated and static, per nvml.h.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: pairs the successful nvmlInit_v2 of `load`; no handle outlives `self`.
        let _ = unsafe { (self.shutdown)() };
    }
}

/// How a GPU's energy is obtained.
#[derive(Debug, Clone, Copy)]
enum Counting {
    /// The total-energy counter, last value in mJ.
    Counter { last_mj: u64 },
    /// Power samples integrated trapezoidally: the last sample and when it was taken.
    Sampled { last_watts: f64, last_seconds: f64 },
}

/// One GPU as the meter sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NvmlGpu {
    /// NVML's index.
    pub index: u32,
    /// NVML's name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// Whether the total-energy counter is used (`false`: power sampled between readings).
    pub energy_counter: bool,
}

struct Gpu {
    info: NvmlGpu,
    device: NvmlDevice,
    counting: Counting,
    joules: f64,
}

/// A [`PowerMeter`] summing every GPU NVML sees, as [`Component::Gpu`], measured by
/// [`MeterSource::Nvml`] and counting from zero at construction.
///
/// ```no_run
/// use slm_energy::{NvmlMeter, PowerMeter};
///
/// # fn main() -> slm_energy::Result<()> {
/// let mut gpus = NvmlMeter::new()?; // Err(Error::NvmlUnavailable { .. }) without a driver
/// let start = gpus.read()?;
/// // ... work ...
/// let joules = gpus.read()?.energy_since(&start)?.joules();
/// # let _ = joules; Ok(()) }
/// ```
pub struct NvmlMeter {
    gpus: Vec<Gpu>,
    started: Instant,
    nvml: Nvml,
}

// SAFETY: NVML is thread-safe and its device handles are process-wide identifiers, so the meter
// may move between threads; `&mut self` on `read` keeps calls on one meter sequential.
unsafe impl Send for NvmlMeter {}

impl std::fmt::Debug for NvmlMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlMeter")
            .field("gpus", &self.gpus())
            .finish_non_exhaustive()
    }
}

impl NvmlMeter {
    /// Every GPU, through the driver's [`NVML_LIBRARY`].
    ///
    /// # Errors
    /// [`Error::NvmlUnavailable`] when the library cannot be loaded (no NVIDIA driver),
    /// [`Error::NvmlMissingSymbol`] for a driver too old, [`Error::NvmlCall`] when NVML
    /// refuses, [`Error::NoGpu`] when it sees no GPU.
    pub fn new() -> Result<Self> {
        Self::with_library(NVML_LIBRARY)
    }

    /// Every GPU, through the NVML library at `library` (a path or a name the loader finds).
    pub fn with_library(library: &str) -> Result<Self> {
        let nvml = Nvml::load(library)?;
        let count = nvml.count()?;
        if count == 0 {
            return Err(Error::NoGpu);
        }
        let started = Instant::now();
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = nvml.handle(index)?;
            let name = nvml.device_name(device)?;
            let counting = match nvml.energy_mj(device)? {
                Some(last_mj) => Counting::Counter { last_mj },
                None => Counting::Sampled {
                    last_watts: f64::from(nvml.power_mw(device)?) / 1000.0,
                    last_seconds: started.elapsed().as_secs_f64(),
                },
            };
            gpus.push(Gpu {
                info: NvmlGpu {
                    index,
                    name,
                    energy_counter: matches!(counting, Counting::Counter { .. }),
                },
                device,
                counting,
                joules: 0.0,
            });
        }
        Ok(NvmlMeter {
            gpus,
            started,
            nvml,
        })
    }

    /// The GPUs metered.
    pub fn gpus(&self) -> Vec<NvmlGpu> {
        self.gpus.iter().map(|g| g.info.clone()).collect()
    }

    /// Each GPU's power draw now, in watts (`nvmlDeviceGetPowerUsage`).
    pub fn power_watts(&self) -> Result<Vec<f64>> {
        self.gpus
            .iter()
            .map(|g| Ok(f64::from(self.nvml.power_mw(g.device)?) / 1000.0))
            .collect()
    }

    /// Each GPU's total-energy counter now, in millijoules since the driver loaded (`None`
    /// where the GPU has none).
    pub fn energy_counters_mj(&self) -> Result<Vec<Option<u64>>> {
        self.gpus
            .iter()
            .map(|g| self.nvml.energy_mj(g.device))
            .collect()
    }
}

impl PowerMeter for NvmlMeter {
    fn name(&self) -> &str {
        "nvml"
    }

    fn component(&self) -> Component {
        Component::Gpu
    }

    fn read(&mut self) -> Result<EnergyReading> {
        let seconds = self.started.elapsed().as_secs_f64();
        for gpu in &mut self.gpus {
            match &mut gpu.counting {
                Counting::Counter { last_mj } => {
                    let now = self.nvml.energy_mj(gpu.device)?.unwrap_or(*last_mj);
                    // A lower value means the driver reloaded: start again from it.
                    gpu.joules += now.saturating_sub(*last_mj) as f64 / 1000.0;
                    *last_mj = now;
                }
                Counting::Sampled {
                    last_watts,
                    last_seconds,
                } => {
                    let watts = f64::from(self.nvml.power_mw(gpu.device)?) / 1000.0;
                    gpu.joules += (*last_watts + watts) / 2.0 * (seconds - *last_seconds).max(0.0);
                    (*last_watts, *last_seconds) = (watts, seconds);
                }
            }
        }
        let joules = self.gpus.iter().map(|g| g.joules).sum();
        Ok(EnergyReading {
            seconds,
            energy: Energy::measured(joules, MeterSource::Nvml)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_typed_error_not_a_link_failure() {
        let err = NvmlMeter::with_library("libnvidia-ml-does-not-exist.so.1").unwrap_err();
        assert!(matches!(err, Error::NvmlUnavailable { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "NVML not available: libnvidia-ml-does-not-exist.so.1 not found (no NVIDIA driver)"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_default_library_gives_a_meter_or_a_typed_error() {
        match NvmlMeter::new() {
            Ok(mut m) => {
                let a = m.read().unwrap();
                let b = m.read().unwrap();
                assert!(b.energy_since(&a).unwrap().method().is_measured());
            }
            Err(e) => assert!(
                matches!(
                    e,
                    Error::NvmlUnavailable { .. }
                        | Error::NvmlMissingSymbol { .. }
                        | Error::NvmlCall { .. }
                        | Error::NoGpu
                ),
                "{e}"
            ),
        }
    }

    /// On a machine with an NVIDIA GPU:
    /// `cargo test -p slm-energy --features nvml -- --ignored --nocapture reads_a_real_gpu`.
    #[test]
    #[ignore = "needs an NVIDIA GPU and driver"]
    fn reads_a_real_gpu() {
        let mut m = NvmlMeter::new().expect("NVML");
        for gpu in m.gpus() {
            println!(
                "GPU {}: {} (energy counter: {})",
                gpu.index, gpu.name, gpu.energy_counter
            );
        }
        println!(
            "energy counters (mJ since driver load): {:?}",
            m.energy_counters_mj().unwrap()
        );
        println!("power (W): {:?}", m.power_watts().unwrap());
        let start = m.read().unwrap();
        let until = Instant::now() + std::time::Duration::from_secs(1);
        while Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(100));
            m.read().unwrap();
        }
        let end = m.read().unwrap();
        let energy = end.energy_since(&start).unwrap();
        println!(
            "{energy:.3} over {:.3} s = {:.1} W",
            end.seconds - start.seconds,
            end.mean_watts_since(&start).unwrap()
        );
        assert!(energy.joules() > 0.0, "an idle H100 still draws ~70 W");
        assert_eq!(energy.method().to_string(), "measured (NVML)");
    }
}

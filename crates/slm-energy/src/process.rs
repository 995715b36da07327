//! This process's CPU time and memory, read from the kernel (`getrusage`, `/proc/self`).

/// User plus system CPU seconds this process (all its threads) has used so far; 0 where
/// `getrusage` fails.
pub(crate) fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` writes a `rusage` into memory we own; a zeroed `rusage` is a valid
    // value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident set size now, in bytes (`VmRSS`); `None` where `/proc` is unavailable.
pub(crate) fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// The process's peak resident set size so far, in bytes: `VmHWM`, or `getrusage`'s
/// `ru_maxrss` where `/proc` is unavailable.
pub(crate) fn peak_rss_bytes() -> u64 {
    if let Some(kib) = status_kib("VmHWM:") {
        return kib * 1024;
    }
    // SAFETY: as in `cpu_seconds`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    // Linux reports kilobytes (macOS bytes, but it has no VmHWM fallback issue here either way).
    u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_seconds();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        assert!(cpu_seconds() > before);
    }

    #[test]
    fn memory_figures_are_plausible() {
        // RSS first: other test threads may grow the process between the two reads.
        let rss = rss_bytes();
        let peak = peak_rss_bytes();
        assert!(peak > 0);
        if let Some(rss) = rss {
            assert!(rss > 0 && rss <= peak, "{rss} > {peak}");
        }
    }
}

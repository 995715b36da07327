//! The memory-bandwidth side of the roofline: how fast this machine streams bytes from memory
//! into the cores, measured the way a decode step reads its weights (every byte once, in
//! order, split across the threads of the current rayon pool).

use std::time::Instant;

use rayon::prelude::*;

/// Bytes per second of a streaming read over `bytes` (rounded down to whole 8-byte words; make
/// it several times the last-level cache), split across the current rayon pool's threads: the
/// best of `passes` passes after the buffer is first written.
///
/// Each chunk is summed in eight independent lanes, so the adds vectorise and never wait on each
/// other (one running sum would be bound by the add's latency, ~3 GB/s, not by memory).
///
/// ```
/// let bytes_per_second = slm_ggml::dot::read_bandwidth(8 << 20, 2);
/// assert!(bytes_per_second > 0.0);
/// ```
pub fn read_bandwidth(bytes: usize, passes: usize) -> f64 {
    let words = (bytes / 8).max(8);
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = 0.0f64;
    let mut sink = 0u64;
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        let s: u64 = buf
            .par_chunks(1 << 16)
            .map(sum_words)
            .reduce(|| 0, u64::wrapping_add);
        let secs = t.elapsed().as_secs_f64();
        sink = sink.wrapping_add(s);
        best = best.max((words * 8) as f64 / secs.max(1e-9));
    }
    std::hint::black_box(sink);
    best
}

/// The wrapping sum of `words`, in eight independent lanes.
fn sum_words(words: &[u64]) -> u64 {
    let lanes = words.chunks_exact(8).fold([0u64; 8], |mut acc, x| {
        acc.iter_mut()
            .zip(x)
            .for_each(|(a, &x)| *a = a.wrapping_add(x));
        acc
    });
    let tail = words.chunks_exact(8).remainder();
    lanes
        .iter()
        .chain(tail)
        .fold(0u64, |a, &x| a.wrapping_add(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_read() {
        // Lengths with and without a tail past the eight lanes.
        for n in [0u64, 7, 8, 1000, 1003] {
            let words: Vec<u64> = (0..n).collect();
            assert_eq!(sum_words(&words), n * n.saturating_sub(1) / 2, "n = {n}");
        }
    }

    #[test]
    fn measures_a_positive_rate() {
        let b = read_bandwidth(1 << 20, 2);
        assert!(b.is_finite() && b > 0.0, "{b}");
    }
}

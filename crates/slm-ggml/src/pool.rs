//! One persistent pool of threads for the kernels of a decode step, as llama.cpp's threadpool:
//! the workers spin between jobs instead of sleeping, so the ~150 parallel products and
//! attention passes of a step each start at once (a sleeping thread takes tens of microseconds
//! to wake, longer than many of those jobs; rayon's workers sleep after a few dozen idle
//! rounds, and every product paid the wake-up). After [`SPIN`] without work a worker parks on a
//! condition variable, so an idle engine costs no CPU.
//!
//! [`ThreadPool::install`] makes a pool the current one on the calling thread;
//! [`for_each_range`] (and [`for_each_chunks_mut`] over a mutable slice) splits work across
//! the current pool (or rayon's, where none is installed), in chunks taken from one atomic
//! counter so a thread the OS delays does not hold up the others.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use slm_ggml::pool::{ThreadPool, for_each_range};
//!
//! let pool = ThreadPool::new(2).unwrap();
//! let sum = AtomicUsize::new(0);
//! pool.install(|| {
//!     for_each_range(1000, |range| {
//!         sum.fetch_add(range.sum::<usize>(), Ordering::Relaxed);
//!     })
//! });
//! assert_eq!(sum.into_inner(), 999 * 1000 / 2);
//! ```

use std::cell::Cell;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
pub const SPIN: Duration = Duration::from_millis(2);

/// Chunks per thread in [`for_each_range`]: enough to even out a delayed thread, few enough
/// that taking one costs little next to the work.
const CHUNKS_PER_THREAD: usize = 4;

/// A job as the workers see it: `f(thread index)`.
type Job<'a> = dyn Fn(usize) + Sync + 'a;

struct Shared {
    /// Bumped once per job (and once to stop); workers wait for it to change.
    epoch: AtomicUsize,
    /// The current job: a pointer to a `&Job` on the caller's stack, valid until `pending`
    /// is back at zero.
    job: AtomicPtr<()>,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// Whether a job panicked on a worker.
    panicked: AtomicBool,
    stop: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

/// A persistent pool of `threads` threads: the caller and `threads - 1` workers.
pub struct ThreadPool {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held while a job runs: a second caller (another thread) runs its job alone instead.
    busy: AtomicBool,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The pool [`ThreadPool::install`] made current on this thread.
    static CURRENT: Cell<*const ThreadPool> = const { Cell::new(std::ptr::null()) };
    /// Whether this thread is running a pool job (nested jobs then run inline).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

impl ThreadPool {
    /// Starts `threads - 1` workers (at least one thread: the caller).
    ///
    /// # Errors
    /// The operating system's error when a thread cannot be started.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(threads - 1);
        for index in 1..threads {
            let theirs = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("slm-kernel-{index}"))
                .spawn(move || worker(&theirs, index));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    // Stop the ones already started before giving up.
                    drop(ThreadPool {
                        threads: workers.len() + 1,
                        shared,
                        workers,
                        busy: AtomicBool::new(false),
                    });
                    return Err(e);
                }
            }
        }
        Ok(Self {
            threads,
            shared,
            workers,
            busy: AtomicBool::new(false),
        })
    }

    /// Threads, the caller's included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for every thread index `i` in `0..threads()` at once (`0` on the calling
    /// thread) and returns when all have finished. Called from inside a job, or while another
    /// thread runs one on this pool, it runs every index on the calling thread instead.
    /// A panic in any of them is resumed here once all have finished.
    pub fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1
            || IN_JOB.get()
            || self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            (0..self.threads).for_each(f);
            return;
        }
        let s = &*self.shared;
        let job: &Job<'_> = f;
        s.pending.store(self.threads - 1, Ordering::Relaxed);
        s.job
            .store(&job as *const &Job<'_> as *mut (), Ordering::Release);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        IN_JOB.set(true);
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        IN_JOB.set(false);
        // The workers read `job` until they are done: wait for them before it goes.
        while s.pending.load(Ordering::Acquire) > 0 {
            std::hint::spin_loop();
        }
        s.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        let theirs = s.panicked.swap(false, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if theirs {
            panic!("a kernel job panicked on a pool thread");
        }
    }

    /// Runs `f` with this pool as the current one on the calling thread (what
    /// [`for_each_range`] splits work across), restoring the previous one after.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const ThreadPool);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.set(self.0);
            }
        }
        let _restore = Restore(CURRENT.replace(self));
        f()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A worker's loop: wait for a new epoch (spinning, then parked), run the job, report.
fn worker(s: &Shared, index: usize) {
    // The epoch the pool started at, not the one this thread first sees: a job may have been
    // published before the thread ran.
    let mut seen = 0;
    loop {
        let idle = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = s.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && idle.elapsed() > SPIN {
                let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.epoch.load(Ordering::SeqCst) == seen {
                    guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            std::hint::spin_loop();
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let job = s.job.load(Ordering::Acquire) as *const &Job<'_>;
        // SAFETY: the caller published `job` before bumping the epoch and keeps it alive
        // until `pending` reaches zero, which this worker's decrement below is part of.
        let f: &Job<'_> = unsafe { *job };
        IN_JOB.set(true);
        if catch_unwind(AssertUnwindSafe(|| f(index))).is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        IN_JOB.set(false);
        s.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Calls `f` on disjoint ranges covering `0..n`, across the threads of the current pool
/// ([`ThreadPool::install`]), or of rayon's current pool where none is installed; returns
/// when all are done. Ranges are chunks of about `n / (4 threads)`, taken in order from one
/// counter by whichever thread is free.
pub fn for_each_range(n: usize, f: impl Fn(Range<usize>) + Sync) {
    if n == 0 {
        return;
    }
    // Inside a pool job the other threads are busy with the same job: run inline.
    if IN_JOB.get() {
        f(0..n);
        return;
    }
    let pool = CURRENT.get();
    let threads = if pool.is_null() {
        rayon::current_num_threads()
    } else {
        // SAFETY: `install` keeps the pool alive while it is current.
        unsafe { (*pool).threads() }
    }
    .max(1);
    if threads == 1 || n == 1 {
        f(0..n);
        return;
    }
    let chunk = n.div_ceil(threads * CHUNKS_PER_THREAD);
    let next = AtomicUsize::new(0);
    let take = |_: usize| {
        loop {
            let start = next.fetch_add(1, Ordering::Relaxed) * chunk;
            if start >= n {
                break;
            }
            f(start..(start + chunk).min(n));
        }
    };
    if pool.is_null() {
        rayon::broadcast(|ctx| take(ctx.index()));
    } else {
        // SAFETY: as above.
        unsafe { (*pool).broadcast(&take) };
    }
}

/// Splits `data` into chunks of `chunk_len` (the last may be shorter) and calls
/// `f(first, part)` on disjoint runs of them across the current pool, as [`for_each_range`]
/// does: `part` holds whole chunks, the first of which is chunk number `first`.
pub fn for_each_chunks_mut<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk_len = chunk_len.max(1);
    let (len, base) = (data.len(), SharedSlice(data.as_mut_ptr()));
    for_each_range(len.div_ceil(chunk_len), |chunks| {
        let start = chunks.start * chunk_len;
        let end = (chunks.end * chunk_len).min(len);
        // SAFETY: `start..end` is within `data`, and the ranges `for_each_range` hands out
        // are disjoint, so no two calls alias; `data` is borrowed mutably for the whole call.
        let part = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(chunks.start, part);
    });
}

/// A mutable slice's start, shared by jobs that each take a disjoint part of it.
struct SharedSlice<T>(*mut T);

// SAFETY: only `for_each_chunks_mut` builds one, and its jobs touch disjoint elements of a
// slice of `Send` values borrowed mutably for the whole call.
unsafe impl<T: Send> Sync for SharedSlice<T> {}

impl<T> SharedSlice<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(&self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every index of every size is covered exactly once, with and without a pool.
    #[test]
    fn ranges_cover_every_index_once() {
        let pool = ThreadPool::new(3).unwrap();
        for n in [0usize, 1, 2, 5, 11, 64, 1000] {
            for installed in [false, true] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let run = || {
                    for_each_range(n, |r| {
                        r.for_each(|i| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        })
                    })
                };
                if installed {
                    pool.install(run)
                } else {
                    run()
                }
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "n {n} installed {installed}"
                );
            }
        }
    }

    /// Chunks are handed out whole, once each, with their index.
    #[test]
    fn chunks_are_disjoint_and_numbered() {
        let pool = ThreadPool::new(2).unwrap();
        for (len, chunk) in [(0usize, 3usize), (10, 3), (64, 8), (7, 100)] {
            let mut data = vec![0usize; len];
            pool.install(|| {
                for_each_chunks_mut(&mut data, chunk, |first, part| {
                    for (k, c) in part.chunks_mut(chunk).enumerate() {
                        c.iter_mut().for_each(|v| *v += first + k + 1);
                    }
                })
            });
            let want: Vec<usize> = (0..len).map(|i| i / chunk + 1).collect();
            assert_eq!(data, want, "len {len} chunk {chunk}");
        }
    }

    /// Every thread runs, a nested call runs inline, the pool survives parking.
    #[test]
    fn broadcast_runs_every_thread_and_nests() {
        let pool = ThreadPool::new(4).unwrap();
        let seen: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        pool.broadcast(&|i| {
            seen[i].fetch_add(1, Ordering::Relaxed);
            // Nested: runs all four indices on this thread without deadlock.
            let inner = AtomicUsize::new(0);
            pool.broadcast(&|_| {
                inner.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(inner.load(Ordering::Relaxed), 4);
        });
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
        // Past the spin time the workers park; a new job wakes them.
        std::thread::sleep(SPIN * 3);
        let count = AtomicUsize::new(0);
        pool.broadcast(&|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }

    /// A panicking job reaches the caller, and the pool keeps working after it.
    #[test]
    fn a_panic_reaches_the_caller() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.broadcast(&|i| {
                if i == 1 {
                    panic!("worker job fails");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.broadcast(&|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}

//! A cheap clock for one process's short intervals: the time-stamp counter where it ticks
//! at a constant rate, `CLOCK_MONOTONIC` elsewhere.
//!
//! The cost model of nested jobs (`worker::sizes`) reads the clock when a small job
//! starts while a worker is hungry and at each of its looks at the hungry set: twice for
//! a job that lasts 80 ns. `CLOCK_MONOTONIC` through the vDSO took 24 ns a read on the
//! reference VM, `RDTSC` 10 ns, and the difference showed: a 4-item nested job with the
//! other worker idle took 0.15 us with the first and 0.12 us with the second (0.08 us
//! when nobody is hungry).
//!
//! [`now_ns`] is in nanoseconds from an arbitrary start, and only its differences mean
//! anything, within one process: it is not [`monotonic_ns`](super::process::monotonic_ns),
//! whose values travel between processes. On x86_64 it counts TSC ticks when the CPU says
//! its TSC is invariant (CPUID 0x8000_0007, EDX bit 8: a constant rate, never stopped)
//! and the kernel keeps time with it (its clocksource is `tsc`, which Linux keeps only
//! while every CPU's counter runs in step, so a process that moves between CPUs reads
//! one clock), converted with a rate measured once per process against
//! `CLOCK_MONOTONIC` over [`CALIBRATION_NS`], on first use. Anywhere else, and if the
//! measured rate makes no sense, it is `CLOCK_MONOTONIC`. Callers take differences with
//! `saturating_sub`.

use std::sync::OnceLock;

use super::process::monotonic_ns;

/// How long the one-time measurement of the TSC's rate takes: at ~25 ns per clock read
/// its error is about 0.1%, plenty for comparing a time with a threshold.
pub(crate) const CALIBRATION_NS: u64 = 20_000;

/// Nanoseconds from an arbitrary start, for intervals within this process (module docs).
#[inline]
pub(crate) fn now_ns() -> u64 {
    match ns_per_tick() {
        Some(scale) => (ticks() as f64 * scale) as u64,
        None => monotonic_ns(),
    }
}

/// Nanoseconds per TSC tick, if the TSC is used (measured once).
fn ns_per_tick() -> Option<f64> {
    static SCALE: OnceLock<Option<f64>> = OnceLock::new();
    *SCALE.get_or_init(calibrate)
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
fn ticks() -> u64 {
    // SAFETY: RDTSC has no preconditions (it reads a counter; user-mode RDTSC is allowed
    // on Linux unless a process opts out with PR_SET_TSC, which procyon never does).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
fn ticks() -> u64 {
    0
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
fn calibrate() -> Option<f64> {
    let invariant = core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
    let kernel_uses_it =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc");
    if !(invariant && kernel_uses_it) {
        return None;
    }
    let (t0, n0) = (ticks(), monotonic_ns());
    let mut n1 = n0;
    while n1 < n0 + CALIBRATION_NS {
        std::hint::spin_loop();
        n1 = monotonic_ns();
    }
    let t1 = ticks();
    let scale = (n1 - n0) as f64 / t1.wrapping_sub(t0) as f64;
    // A TSC of 100 MHz to 100 GHz; anything else (a counter that did not move, or moved
    // backwards) is not one to trust.
    (0.01..=10.0).contains(&scale).then_some(scale)
}

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
fn calibrate() -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheap_clock_keeps_time_with_the_monotonic_one() {
        // Both clocks read back to back, retried until no preemption split the pair.
        let pair = || loop {
            let before = monotonic_ns();
            let cheap = now_ns();
            let after = monotonic_ns();
            if after - before < 10_000 {
                return (cheap, before + (after - before) / 2);
            }
        };
        let (a, m0) = pair();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (b, m1) = pair();
        let (cheap, mono) = (b.saturating_sub(a) as f64, (m1 - m0) as f64);
        assert!(
            (cheap / mono - 1.0).abs() < 0.02,
            "cheap clock {cheap} ns against monotonic {mono} ns over the same 20 ms"
        );
    }
}

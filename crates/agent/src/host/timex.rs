//! node_exporter's `timex` collector: the kernel's clock discipline state (`node_timex_*`:
//! NTP offset, frequency adjustment, maximum and estimated error, status bits, whether the
//! clock is synchronised, the PPS counters and the TAI offset), read with adjtimex(2) in
//! read-only mode (`modes = 0`, which needs no privilege and changes nothing).
//!
//! # The one `unsafe` block of the workspace
//! No well-kept crate offers a safe read of adjtimex(2): `rustix` 1.1 and `nix` 0.31 do not
//! wrap it, `clock-steering` 0.2 exposes only the frequency and the TAI offset, and
//! `rtime-clock` 0.15 (an NTP daemon's own crate) would bring `nix` and the daemon's core
//! crate into the build for one call while handing out a writable `timex` that can step
//! the clock. So [`read_kernel_clock`] calls `libc::adjtimex` itself, once, on a zeroed
//! `timex` it owns; the workspace's `unsafe_code` lint is `deny` rather than `forbid` for
//! this one exception (root Cargo.toml), and `only_timex_allows_unsafe_code` in this crate's
//! tests fails if any other file allows it.

use super::Snapshot;
use super::collect::{Cache, HostSettings};

/// adjtimex(2)'s answer, the fields in the kernel's units (see [`report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelClock {
    /// The return value: the clock state (`TIME_OK` 0 ... `TIME_ERROR` 5).
    pub state: i64,
    /// µs, or ns when `status` has `STA_NANO`.
    pub offset: i64,
    /// ppm with a 16-bit fraction.
    pub freq: i64,
    /// µs.
    pub maxerror: i64,
    /// µs.
    pub esterror: i64,
    pub status: i64,
    pub constant: i64,
    /// µs.
    pub tick: i64,
    /// ppm with a 16-bit fraction.
    pub ppsfreq: i64,
    /// µs, or ns when `status` has `STA_NANO`.
    pub jitter: i64,
    /// s (log2 of the PPS interval's length, as the kernel and node_exporter report it).
    pub shift: i64,
    /// ppm with a 16-bit fraction.
    pub stabil: i64,
    pub jitcnt: i64,
    pub calcnt: i64,
    pub errcnt: i64,
    pub stbcnt: i64,
    /// s.
    pub tai: i64,
}

/// adjtimex(2)'s state when the clock is not synchronised (`TIME_ERROR`).
pub const TIME_ERROR: i64 = 5;
/// The status bit saying `offset` and `jitter` are in nanoseconds.
pub const STA_NANO: i64 = 0x2000;
/// One ppm with the kernel's 16-bit binary fraction (adjtimex(2), NOTES).
const PPM16: f64 = 1e6 * 65536.0;

pub fn collect(_s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    report(&read_kernel_clock()?, out);
    Ok(())
}

/// Reads the kernel's clock discipline state without changing it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // the workspace's one exception: see the module's documentation
#[allow(clippy::useless_conversion)] // `c_long` is i64 here, i32 on 32-bit targets
pub fn read_kernel_clock() -> Result<KernelClock, String> {
    // Every field named, so the compiler checks the whole struct starts at zero; `modes` 0
    // makes the call read-only.
    let mut tx = libc::timex {
        modes: 0,
        offset: 0,
        freq: 0,
        maxerror: 0,
        esterror: 0,
        status: 0,
        constant: 0,
        precision: 0,
        tolerance: 0,
        time: libc::timeval { tv_sec: 0, tv_usec: 0 },
        tick: 0,
        ppsfreq: 0,
        jitter: 0,
        shift: 0,
        stabil: 0,
        jitcnt: 0,
        calcnt: 0,
        errcnt: 0,
        stbcnt: 0,
        tai: 0,
        #[cfg(target_env = "musl")]
        __padding: [0; 11],
        #[cfg(not(target_env = "musl"))]
        __unused1: 0,
        #[cfg(not(target_env = "musl"))]
        __unused2: 0,
        #[cfg(not(target_env = "musl"))]
        __unused3: 0,
        #[cfg(not(target_env = "musl"))]
        __unused4: 0,
        #[cfg(not(target_env = "musl"))]
        __unused5: 0,
        #[cfg(not(target_env = "musl"))]
        __unused6: 0,
        #[cfg(not(target_env = "musl"))]
        __unused7: 0,
        #[cfg(not(target_env = "musl"))]
        __unused8: 0,
        #[cfg(not(target_env = "musl"))]
        __unused9: 0,
        #[cfg(not(target_env = "musl"))]
        __unused10: 0,
        #[cfg(not(target_env = "musl"))]
        __unused11: 0,
    };
    // SAFETY: adjtimex(2) reads and writes only the `struct timex` it is given. `tx` is a
    // fully initialised `libc::timex` (libc's `#[repr(C)]` mirror of the C struct, padding
    // fields included) owned by this function and borrowed mutably for the call alone, so
    // the pointer is valid, aligned and unaliased; nothing is kept after the call returns.
    // With `modes == 0` the kernel only reports its state.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("adjtimex(2) (read-only): {e}"));
    }
    Ok(KernelClock {
        state: state.into(),
        offset: tx.offset.into(),
        freq: tx.freq.into(),
        maxerror: tx.maxerror.into(),
        esterror: tx.esterror.into(),
        status: tx.status.into(),
        constant: tx.constant.into(),
        tick: tx.tick.into(),
        ppsfreq: tx.ppsfreq.into(),
        jitter: tx.jitter.into(),
        shift: tx.shift.into(),
        stabil: tx.stabil.into(),
        jitcnt: tx.jitcnt.into(),
        calcnt: tx.calcnt.into(),
        errcnt: tx.errcnt.into(),
        stbcnt: tx.stbcnt.into(),
        tai: tx.tai.into(),
    })
}

#[cfg(not(target_os = "linux"))]
pub fn read_kernel_clock() -> Result<KernelClock, String> {
    Err("adjtimex(2) is Linux only".into())
}

/// The `node_timex_*` families from one reading, in node_exporter 1.5's units: offsets and
/// jitter in seconds (`STA_NANO` decides ns or µs), the frequency adjustment as a ratio
/// (1 = no adjustment), PPS frequency and stability in Hz (the 16-bit-fraction ppm scaled as
/// node_exporter does), and `sync_status` 0 when the kernel answers `TIME_ERROR`.
pub fn report(k: &KernelClock, out: &mut Snapshot) {
    let sub = if k.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    let g = |out: &mut Snapshot, name: &str, help: &str, v: f64| out.gauge(name, help, &[], v);
    let c = |out: &mut Snapshot, name: &str, help: &str, v: i64| out.counter(name, help, &[], v as f64);
    g(
        out,
        "node_timex_sync_status",
        "Whether the kernel deems the clock synchronised to a reliable source (1 yes, 0 no).",
        if k.state == TIME_ERROR { 0.0 } else { 1.0 },
    );
    g(out, "node_timex_offset_seconds", "Offset of the local clock from its reference.", k.offset as f64 / sub);
    g(
        out,
        "node_timex_frequency_adjustment_ratio",
        "Frequency adjustment of the local clock (1: none).",
        1.0 + k.freq as f64 / PPM16,
    );
    g(out, "node_timex_maxerror_seconds", "Maximum error of the clock.", k.maxerror as f64 / 1e6);
    g(out, "node_timex_estimated_error_seconds", "Estimated error of the clock.", k.esterror as f64 / 1e6);
    g(out, "node_timex_status", "The kernel's clock status bits.", k.status as f64);
    g(out, "node_timex_loop_time_constant", "Time constant of the phase-locked loop.", k.constant as f64);
    g(out, "node_timex_tick_seconds", "Time between clock ticks.", k.tick as f64 / 1e6);
    g(out, "node_timex_pps_frequency_hertz", "Frequency of the pulse-per-second signal.", k.ppsfreq as f64 / PPM16);
    g(out, "node_timex_pps_jitter_seconds", "Jitter of the pulse-per-second signal.", k.jitter as f64 / sub);
    g(out, "node_timex_pps_shift_seconds", "Interval of the pulse-per-second signal.", k.shift as f64);
    g(
        out,
        "node_timex_pps_stability_hertz",
        "Stability of the pulse-per-second signal (mean of recent frequency changes).",
        k.stabil as f64 / PPM16,
    );
    c(out, "node_timex_pps_jitter_total", "Pulse-per-second events over the jitter limit.", k.jitcnt);
    c(out, "node_timex_pps_calibration_total", "Pulse-per-second calibration intervals.", k.calcnt);
    c(out, "node_timex_pps_error_total", "Pulse-per-second calibration errors.", k.errcnt);
    c(out, "node_timex_pps_stability_exceeded_total", "Pulse-per-second events over the stability limit.", k.stbcnt);
    g(out, "node_timex_tai_offset_seconds", "Offset of International Atomic Time from UTC.", k.tai as f64);
}

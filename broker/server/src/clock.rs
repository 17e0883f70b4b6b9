//! The broker's wall clock: Unix milliseconds that never jump.
//!
//! Kafka reads `System.currentTimeMillis()` wherever it needs "now", so a
//! wall clock stepped forward by a day makes it delete a day's worth of
//! fresh segments by time retention, expire every consumer group member at
//! once and abort every open transaction; a step backwards stalls all of
//! those. Rivulet reads the wall clock once, at start, and from then on
//! advances it by `CLOCK_BOOTTIME` (the kernel's monotonic clock that also
//! counts time spent suspended): Unix time as it was at start plus the time
//! that really passed. NTP's gradual corrections slew both clocks alike, so
//! the two agree; only a step of the wall clock makes them differ, and that
//! step is ignored (and reported: [`watch`] logs it and exports the offset)
//! until the broker restarts. Leases, sessions and timeouts measured with
//! `Instant` are monotonic anyway.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;

/// How far the wall clock may drift from the broker's clock before it
/// counts as a step worth a warning.
const STEP: i64 = 1_000;
/// How often [`watch`] compares the two.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The wall clock at start, and the boot clock at that moment.
struct Anchor {
    wall_ms: i64,
    boot_ms: i64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

fn anchor() -> &'static Anchor {
    ANCHOR.get_or_init(|| Anchor {
        wall_ms: wall_ms(),
        boot_ms: boot_ms(),
    })
}

/// The system's wall clock, in Unix milliseconds (0 before 1970).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// `CLOCK_BOOTTIME` in milliseconds.
fn boot_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own; BOOTTIME exists
    // on every Linux this runs on (since 2.6.39).
    unsafe {
        libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts);
    }
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

/// Now, in Unix milliseconds, immune to wall clock steps after start.
pub fn now_ms() -> i64 {
    let a = anchor();
    anchored(a.wall_ms, a.boot_ms, boot_ms())
}

fn anchored(wall_at_anchor: i64, boot_at_anchor: i64, boot_now: i64) -> i64 {
    wall_at_anchor + (boot_now - boot_at_anchor).max(0)
}

/// How far the system's wall clock is from the broker's, in milliseconds
/// (positive: the wall clock is ahead).
pub fn wall_offset_ms() -> i64 {
    wall_ms() - now_ms()
}

/// Watches for wall clock steps until `stop`: logs each new one once and
/// keeps `offset` (seconds, the `rivulet_broker_wall_clock_offset_seconds`
/// gauge) current.
pub async fn watch(offset: prometheus::Gauge, mut stop: watch::Receiver<bool>) {
    let mut reported = 0i64;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = wall_offset_ms();
        offset.set(now as f64 / 1000.0);
        if new_step(reported, now) {
            tracing::warn!(
                offset_ms = now,
                "the system clock was stepped; the broker keeps counting time from its start \
                 (retention, group sessions and transaction timeouts are unaffected) until it \
                 restarts"
            );
            reported = now;
        }
    }
}

/// Whether `offset` differs from the last reported one by a step.
fn new_step(reported: i64, offset: i64) -> bool {
    (offset - reported).abs() > STEP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_advances_by_the_boot_clock_only() {
        assert_eq!(anchored(1_000_000, 50, 50), 1_000_000);
        assert_eq!(anchored(1_000_000, 50, 1_050), 1_001_000);
        // A boot clock read before the anchor (never happens) cannot go back.
        assert_eq!(anchored(1_000_000, 50, 40), 1_000_000);
    }

    #[test]
    fn now_tracks_the_wall_clock_when_nobody_steps_it() {
        let (a, b) = (now_ms(), wall_ms());
        assert!((a - b).abs() < 2_000, "broker {a} vs wall {b}");
        let later = now_ms();
        assert!(later >= a);
    }

    #[test]
    fn only_steps_are_reported_and_each_once() {
        assert!(!new_step(0, 300));
        assert!(new_step(0, 86_400_000));
        assert!(!new_step(86_400_000, 86_400_400));
        assert!(new_step(86_400_000, -3_600_000));
    }
}

//! Kafka's sampled rate and throttle time, as pure functions of explicit
//! times (milliseconds on any monotonic clock), so tests need no clock.
//!
//! A rate keeps up to `samples` samples of `sample_ms` each. Its window is
//! the time since the oldest sample began, but never less than
//! `samples - 1` whole samples: a new client is measured as if it had been
//! idle before, so a short burst is not throttled at once (Kafka's
//! `Rate.windowSize`). A sample older than the whole window is reset.

/// One sample: when it began and what was recorded in it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// A rate per second over a window of samples (Kafka's `Rate` over a
/// `SampledStat`).
#[derive(Debug, Clone)]
pub struct SampledRate {
    samples: Vec<Sample>,
    current: usize,
    max_samples: usize,
    sample_ms: u64,
}

impl SampledRate {
    /// An empty rate of `samples` samples of `sample_ms` each.
    pub fn new(samples: u32, sample_ms: u64) -> Self {
        SampledRate {
            samples: Vec::new(),
            current: 0,
            max_samples: samples.max(1) as usize,
            sample_ms: sample_ms.max(1),
        }
    }

    /// Adds `value` (may be negative, to take back a recording) at `now`.
    pub fn record(&mut self, value: f64, now: u64) {
        if self.samples.is_empty() {
            self.samples.push(Sample {
                start_ms: now,
                value: 0.0,
            });
        } else if now.saturating_sub(self.samples[self.current].start_ms) >= self.sample_ms {
            let fresh = Sample {
                start_ms: now,
                value: 0.0,
            };
            self.current = (self.current + 1) % self.max_samples;
            if self.current == self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// Resets samples that fell out of the whole window.
    fn purge(&mut self, now: u64) {
        let expiry = self.max_samples as u64 * self.sample_ms;
        for s in &mut self.samples {
            if now.saturating_sub(s.start_ms) >= expiry {
                *s = Sample {
                    start_ms: now,
                    value: 0.0,
                };
            }
        }
    }

    /// The window the rate is measured over at `now`, in milliseconds.
    pub fn window_ms(&mut self, now: u64) -> u64 {
        self.purge(now);
        let oldest = self.samples.iter().map(|s| s.start_ms).min().unwrap_or(now);
        let elapsed = now.saturating_sub(oldest);
        let full = elapsed / self.sample_ms;
        let min_full = self.max_samples as u64 - 1;
        elapsed + min_full.saturating_sub(full) * self.sample_ms
    }

    /// The rate per second at `now`.
    pub fn measure(&mut self, now: u64) -> f64 {
        self.purge(now);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        let window = self.window_ms(now);
        if window == 0 {
            return 0.0;
        }
        total * 1000.0 / window as f64
    }

    /// When the last recording happened (for expiring idle rates).
    pub fn last_ms(&self) -> Option<u64> {
        self.samples.get(self.current).map(|s| s.start_ms)
    }
}

/// Kafka's throttle time: how long the client must stay idle for its rate
/// to come back to `bound`, `(rate - bound) / bound * window`.
pub fn throttle_ms(rate: f64, bound: f64, window_ms: u64) -> u64 {
    if bound <= 0.0 || rate <= bound {
        return 0;
    }
    ((rate - bound) / bound * window_ms as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_rate_is_measured_over_the_minimum_window() {
        let mut r = SampledRate::new(11, 1000);
        r.record(10_000.0, 0);
        // Ten whole samples at least: 10 kB over 10 s.
        assert_eq!(r.window_ms(0), 10_000);
        assert_eq!(r.measure(0), 1000.0);
        // Half a second later the window is still padded to ten samples.
        assert_eq!(r.window_ms(500), 10_500);
    }

    #[test]
    fn samples_roll_and_old_ones_are_forgotten() {
        let mut r = SampledRate::new(3, 1000);
        for t in 0..10u64 {
            r.record(100.0, t * 1000);
        }
        // Three samples kept (7, 8 and 9 s), oldest began at 7 s.
        assert_eq!(r.window_ms(9000), 2000);
        assert_eq!(r.measure(9000), 150.0);
        // Long idle: everything is purged, the rate is zero.
        assert_eq!(r.measure(60_000), 0.0);
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_bound() {
        assert_eq!(throttle_ms(1000.0, 1000.0, 10_000), 0);
        assert_eq!(throttle_ms(500.0, 1000.0, 10_000), 0);
        // Twice the bound over 10 s: wait another 10 s.
        assert_eq!(throttle_ms(2000.0, 1000.0, 10_000), 10_000);
        // A steady client at 1.5 times its bound over a full window of
        // 2 s waits half of it.
        let mut r = SampledRate::new(3, 1000);
        for t in [0, 1000, 2000] {
            r.record(1000.0, t);
        }
        assert_eq!(r.measure(2000), 1500.0);
        assert_eq!(
            throttle_ms(r.measure(2000), 1000.0, r.window_ms(2000)),
            1000
        );
    }

    #[test]
    fn a_recording_can_be_taken_back() {
        let mut r = SampledRate::new(11, 1000);
        r.record(5000.0, 0);
        r.record(-5000.0, 0);
        assert_eq!(r.measure(0), 0.0);
        assert_eq!(r.last_ms(), Some(0));
    }
}

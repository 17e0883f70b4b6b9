//! Client quota throttling metrics (Kafka's `quota` families).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Registry};

use super::counter;

/// Client quota throttling, by quota type (`produce`, `fetch`, `request`).
#[derive(Clone)]
pub struct QuotaMetrics {
    /// `kafka_server_quota_throttle_time_seconds{quota}`: how long throttled
    /// connections were muted.
    pub throttle_time: HistogramVec,
    /// `kafka_server_quota_throttled_requests_total{quota}`.
    pub throttled: IntCounterVec,
}

impl QuotaMetrics {
    pub(super) fn register(r: &Registry) -> Self {
        let throttle_time = HistogramVec::new(
            HistogramOpts::new(
                "kafka_server_quota_throttle_time_seconds",
                "Throttle time given to clients over a quota, by quota type",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["quota"],
        )
        .expect("valid metric");
        r.register(Box::new(throttle_time.clone()))
            .expect("unique metric");
        QuotaMetrics {
            throttle_time,
            throttled: counter(
                r,
                "kafka_server_quota_throttled_requests_total",
                "Requests answered with a throttle time, by quota type",
                &["quota"],
            ),
        }
    }

    /// Counts one throttled request of quota type `quota`.
    pub fn observe(&self, quota: &str, throttle_ms: u64) {
        self.throttled.with_label_values(&[quota]).inc();
        self.throttle_time
            .with_label_values(&[quota])
            .observe(throttle_ms as f64 / 1000.0);
    }
}

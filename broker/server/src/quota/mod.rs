//! Client quota enforcement, as Kafka does it (KIP-13, KIP-55, KIP-219).
//!
//! Every answered request is judged after its handler ran: produce counts
//! the request's bytes, a consumer's fetch the record bytes of the answer
//! (replica fetches of other brokers are exempt), and every request its
//! handler time (`request_percentage`, percent of one thread). The quota
//! comes from the metadata image with KIP-55's precedence; the rate is the
//! one of the entity that quota was set on, so clients sharing a user quota
//! share one rate while a default quota gives each name its own.
//!
//! A violation answers at once with `throttle_time_ms` and mutes the
//! connection for that long (the caller does the muting); a fetch that
//! would break its quota is answered empty and not counted, like Kafka's.
//! Rates idle for an hour are dropped, like Kafka's quota sensors.

mod rate;
mod response;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use rivulet_quorum::metadata::{
    ClusterMetadata, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};

pub use self::{
    rate::{throttle_ms, SampledRate},
    response::client_throttles,
};
use crate::{config::QuotaWindow, metrics::QuotaMetrics};

/// Rates not recorded to for this long are forgotten.
const IDLE_EXPIRY_MS: u64 = 3_600_000;
/// How often idle rates are looked for.
const PURGE_EVERY_MS: u64 = 60_000;

/// The three kinds of client quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaType {
    /// `producer_byte_rate`.
    Produce,
    /// `consumer_byte_rate`.
    Fetch,
    /// `request_percentage`.
    Request,
}

impl QuotaType {
    fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => PRODUCER_BYTE_RATE,
            QuotaType::Fetch => CONSUMER_BYTE_RATE,
            QuotaType::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The `quota` label of the throttle metrics.
    pub fn label(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::Request => "request",
        }
    }
}

/// What the quotas need to know of a request, taken before its handler
/// consumes it.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    api: ApiKey,
    version: i16,
    client_id: String,
    request_bytes: usize,
    /// A follower broker's fetch: exempt from every quota.
    replica_fetch: bool,
}

impl RequestFacts {
    /// Facts of a decoded request of `request_bytes` bytes on the wire.
    pub fn new(
        api: ApiKey,
        version: i16,
        client_id: Option<&str>,
        body: &RequestKind,
        request_bytes: usize,
    ) -> Self {
        let replica_fetch = matches!(body, RequestKind::Fetch(f)
            if f.replica_id.0 >= 0 || f.replica_state.replica_id.0 >= 0);
        RequestFacts {
            api,
            version,
            client_id: client_id.unwrap_or_default().to_owned(),
            request_bytes,
            replica_fetch,
        }
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttle {
    /// How long the connection stays muted; zero when not throttled.
    pub time: Duration,
    /// Whether the answer waits for the throttle time (clients older than
    /// KIP-219) instead of going out at once.
    pub delay_response: bool,
}

/// The rates of every quota entity seen, and the throttle metrics.
pub struct QuotaManager {
    window: QuotaWindow,
    /// Origin of the millisecond clock the rates use.
    epoch: Instant,
    /// Rates by quota type and the entity's (user, client id) tags; a tag
    /// is empty when the quota's entity has no such component.
    rates: Mutex<HashMap<(QuotaType, String, String), SampledRate>>,
    last_purge_ms: AtomicU64,
    metrics: QuotaMetrics,
}

impl QuotaManager {
    /// A manager measuring over `window`, reporting to `metrics`.
    pub fn new(window: QuotaWindow, metrics: QuotaMetrics) -> Self {
        QuotaManager {
            window,
            epoch: Instant::now(),
            rates: Mutex::new(HashMap::new()),
            last_purge_ms: AtomicU64::new(0),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Records `value` against `user`'s and `client_id`'s quota of `kind`
    /// at `now`; returns the throttle time in milliseconds (0 without a
    /// quota or within it).
    pub fn record(
        &self,
        image: &ClusterMetadata,
        kind: QuotaType,
        user: &str,
        client_id: &str,
        value: f64,
        now: u64,
    ) -> u64 {
        let Some((entity, bound)) = image.client_quota(user, client_id, kind.key()) else {
            return 0;
        };
        let tag = |present: bool, name: &str| if present { name } else { "" }.to_owned();
        let key = (
            kind,
            tag(entity.user.is_some(), user),
            tag(entity.client_id.is_some(), client_id),
        );
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        self.purge_idle(&mut rates, now);
        let rate = rates.entry(key).or_insert_with(|| {
            SampledRate::new(self.window.samples, self.window.sample.as_millis() as u64)
        });
        rate.record(value, now);
        let measured = rate.measure(now);
        throttle_ms(measured, bound, rate.window_ms(now))
    }

    fn purge_idle(&self, rates: &mut HashMap<(QuotaType, String, String), SampledRate>, now: u64) {
        if now.saturating_sub(self.last_purge_ms.load(Ordering::Relaxed)) < PURGE_EVERY_MS {
            return;
        }
        self.last_purge_ms.store(now, Ordering::Relaxed);
        rates.retain(|_, r| {
            r.last_ms()
                .is_some_and(|t| now.saturating_sub(t) < IDLE_EXPIRY_MS)
        });
    }

    /// Before a consumer's fetch is handled: caps its size at what the
    /// quota allows in one window, so no single answer is too big to ever
    /// fit (Kafka's `getMaxValueInQuotaWindow`).
    pub fn prepare(
        &self,
        image: &ClusterMetadata,
        facts: &RequestFacts,
        user: &str,
        body: &mut RequestKind,
    ) {
        let RequestKind::Fetch(fetch) = body else {
            return;
        };
        if facts.replica_fetch {
            return;
        }
        let Some((_, bound)) = image.client_quota(user, &facts.client_id, QuotaType::Fetch.key())
        else {
            return;
        };
        let window = f64::from(self.window.samples.saturating_sub(1).max(1))
            * self.window.sample.as_secs_f64();
        let cap = (bound * window).clamp(1.0, f64::from(i32::MAX)) as i32;
        fetch.max_bytes = fetch.max_bytes.min(cap);
    }

    /// Judges an answered request: records what it used, and when a quota
    /// is broken sets the answer's throttle time (emptying a consumer's
    /// fetch) and says how long to mute the connection.
    pub fn judge(
        &self,
        image: &ClusterMetadata,
        facts: &RequestFacts,
        user: &str,
        handler_time: Duration,
        body: Option<&mut ResponseKind>,
    ) -> Throttle {
        if image.quotas.is_empty() || facts.replica_fetch || facts.api == ApiKey::ApiVersions {
            return Throttle::default();
        }
        let now = self.now_ms();
        let client = facts.client_id.as_str();
        let mut fetched = None;
        let bandwidth = match (facts.api, &body) {
            (ApiKey::Produce, _) => Some((
                QuotaType::Produce,
                self.record(
                    image,
                    QuotaType::Produce,
                    user,
                    client,
                    facts.request_bytes as f64,
                    now,
                ),
            )),
            (ApiKey::Fetch, Some(ResponseKind::Fetch(r))) => {
                let bytes = response::fetch_bytes(r) as f64;
                fetched = Some(bytes);
                Some((
                    QuotaType::Fetch,
                    self.record(image, QuotaType::Fetch, user, client, bytes, now),
                ))
            }
            _ => None,
        };
        // Percent of one thread: seconds of handler time times 100.
        let busy = handler_time.as_secs_f64() * 100.0;
        let request = self.record(image, QuotaType::Request, user, client, busy, now);
        let mut ms = request;
        for (kind, throttled) in bandwidth.into_iter().chain([(QuotaType::Request, request)]) {
            if throttled > 0 {
                self.metrics.observe(kind.label(), throttled);
                ms = ms.max(throttled);
            }
        }
        if ms == 0 {
            return Throttle::default();
        }
        if let Some(body) = body {
            if let (ResponseKind::Fetch(r), Some(bytes)) = (&mut *body, fetched) {
                // The client gets nothing, so it is charged nothing.
                self.record(image, QuotaType::Fetch, user, client, -bytes, now);
                response::empty_fetch(r);
            }
            response::set_throttle_time(body, i32::try_from(ms).unwrap_or(i32::MAX));
        }
        Throttle {
            time: Duration::from_millis(ms),
            delay_response: !client_throttles(facts.api, facts.version),
        }
    }
}

#[cfg(test)]
mod tests;

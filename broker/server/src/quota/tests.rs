//! The manager on an image with quotas: which requests are charged, what
//! a throttled answer looks like.

use std::collections::BTreeSet;

use kafka_protocol::messages::{
    fetch_response::{FetchableTopicResponse, PartitionData},
    BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
};
use rivulet_quorum::metadata::{MetadataCommand, QuotaEntity, QuotaValue};

use super::*;
use crate::metrics::Metrics;

fn image(client: &str, key: &str, value: f64) -> ClusterMetadata {
    let mut md = ClusterMetadata::default();
    let command = MetadataCommand::AlterClientQuota {
        entity: QuotaEntity::of(None, Some(Some(client))),
        set: [(key.to_string(), QuotaValue(value))].into(),
        remove: BTreeSet::new(),
    };
    md.apply(1, &command).unwrap();
    md
}

fn manager() -> (QuotaManager, Metrics) {
    let metrics = Metrics::new(&[]);
    let window = QuotaWindow {
        samples: 2,
        sample: Duration::from_secs(1),
    };
    (QuotaManager::new(window, metrics.quotas.clone()), metrics)
}

fn produce(client: &str, bytes: usize) -> RequestFacts {
    let body = RequestKind::Produce(ProduceRequest::default());
    RequestFacts::new(ApiKey::Produce, 9, Some(client), &body, bytes)
}

#[test]
fn a_producer_over_its_byte_rate_is_throttled_and_others_are_not() {
    let (quotas, metrics) = manager();
    let md = image("slow", PRODUCER_BYTE_RATE, 1000.0);
    let mut body = ResponseKind::Produce(ProduceResponse::default());
    let within = quotas.judge(
        &md,
        &produce("slow", 900),
        "ANONYMOUS",
        Duration::ZERO,
        Some(&mut body),
    );
    assert_eq!(within, Throttle::default());
    let over = quotas.judge(
        &md,
        &produce("slow", 2100),
        "ANONYMOUS",
        Duration::ZERO,
        Some(&mut body),
    );
    // 3000 bytes over a 1 s minimum window against 1000/s: two windows more.
    assert_eq!(over.time, Duration::from_millis(2000));
    assert!(!over.delay_response);
    let ResponseKind::Produce(r) = &body else {
        unreachable!()
    };
    assert_eq!(r.throttle_time_ms, 2000);
    let other = quotas.judge(
        &md,
        &produce("fast", 1 << 20),
        "ANONYMOUS",
        Duration::ZERO,
        None,
    );
    assert_eq!(other, Throttle::default());
    assert!(metrics
        .render()
        .contains("kafka_server_quota_throttled_requests_total{quota=\"produce\"} 1"));
    // A Produce v5 client does not throttle itself: its answer waits.
    let old = RequestFacts::new(
        ApiKey::Produce,
        5,
        Some("slow"),
        &RequestKind::Produce(ProduceRequest::default()),
        10,
    );
    assert!(
        quotas
            .judge(&md, &old, "ANONYMOUS", Duration::ZERO, None)
            .delay_response
    );
}

fn fetch_response(bytes: usize) -> ResponseKind {
    let partition =
        PartitionData::default().with_records(Some(bytes::Bytes::from(vec![0u8; bytes])));
    ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default().with_partitions(vec![partition]),
    ]))
}

#[test]
fn a_fetch_over_the_consumer_byte_rate_is_answered_empty_and_not_charged() {
    let (quotas, _metrics) = manager();
    let md = image("reader", CONSUMER_BYTE_RATE, 1000.0);
    let mut request = RequestKind::Fetch(
        FetchRequest::default()
            .with_max_bytes(50 << 20)
            .with_replica_id(BrokerId(-1)),
    );
    let facts = RequestFacts::new(ApiKey::Fetch, 12, Some("reader"), &request, 100);
    quotas.prepare(&md, &facts, "ANONYMOUS", &mut request);
    let RequestKind::Fetch(f) = &request else {
        unreachable!()
    };
    assert_eq!(f.max_bytes, 1000, "one window's worth at most");
    let mut body = fetch_response(5000);
    let verdict = quotas.judge(&md, &facts, "ANONYMOUS", Duration::ZERO, Some(&mut body));
    assert!(verdict.time > Duration::ZERO);
    let ResponseKind::Fetch(r) = &body else {
        unreachable!()
    };
    assert!(r.responses.is_empty());
    assert_eq!(r.throttle_time_ms as u128, verdict.time.as_millis());
    // Nothing was charged, so a fetch within the rate goes through.
    let mut small = fetch_response(500);
    assert_eq!(
        quotas.judge(&md, &facts, "ANONYMOUS", Duration::ZERO, Some(&mut small)),
        Throttle::default()
    );
}

#[test]
fn replica_fetches_are_exempt() {
    let (quotas, _metrics) = manager();
    let md = image("broker", CONSUMER_BYTE_RATE, 1.0);
    let request = RequestKind::Fetch(FetchRequest::default().with_replica_id(BrokerId(2)));
    let facts = RequestFacts::new(ApiKey::Fetch, 12, Some("broker"), &request, 100);
    let mut body = fetch_response(1 << 20);
    assert_eq!(
        quotas.judge(&md, &facts, "ANONYMOUS", Duration::ZERO, Some(&mut body)),
        Throttle::default()
    );
}

#[test]
fn handler_time_counts_against_the_request_percentage() {
    let (quotas, metrics) = manager();
    let md = image("busy", REQUEST_PERCENTAGE, 10.0);
    let body = RequestKind::Metadata(Default::default());
    let facts = RequestFacts::new(ApiKey::Metadata, 12, Some("busy"), &body, 10);
    // 500 ms of handler time in a 1 s window is 50 %, five times 10 %.
    let verdict = quotas.judge(&md, &facts, "ANONYMOUS", Duration::from_millis(500), None);
    assert_eq!(verdict.time, Duration::from_millis(4000));
    assert!(metrics
        .render()
        .contains("kafka_server_quota_throttled_requests_total{quota=\"request\"} 1"));
}

//! Fetch semantics in process: long polls woken by new data, max-wait
//! expiry, byte limits with the KIP-74 first-batch exception, and offsets
//! out of range.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::Compression;
use rivulet_wire::client::{Client, OwnedRecord};

mod common;
use common::Running;

async fn setup(dir: &std::path::Path) -> (Running, Client) {
    let broker = Running::start(dir).await;
    let mut client = Client::connect(&broker.addr).await.unwrap();
    client
        .create_topics("t", 1, 1, Default::default())
        .await
        .unwrap();
    (broker, client)
}

fn batch(n: usize, size: usize) -> Vec<OwnedRecord> {
    (0..n)
        .map(|i| OwnedRecord::from_value(Bytes::from(vec![b'a' + (i % 26) as u8; size])))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn long_poll_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client) = setup(dir.path()).await;
    let addr = broker.addr.clone();
    let started = Instant::now();
    // Nothing to read yet: this fetch parks for up to 20 s.
    let waiter = tokio::spawn(async move {
        let mut consumer = Client::connect(&addr).await.unwrap();
        let result = consumer.fetch("t", 0, 0, 1 << 20, 20_000).await.unwrap();
        (result, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "fetch returned before any data existed"
    );
    client
        .produce("t", 0, &batch(1, 10), 1, Compression::None)
        .await
        .unwrap();
    let (result, elapsed) = waiter.await.unwrap();
    assert_eq!(
        result.records.len(),
        1,
        "the woken fetch carries the new record"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "fetch was not woken by the append (took {elapsed:?} of a 20 s wait)"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_fetch_waits_for_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client) = setup(dir.path()).await;
    let started = Instant::now();
    let result = client.fetch("t", 0, 0, 1 << 20, 400).await.unwrap();
    assert!(result.records.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "an empty fetch returned after {:?}, before max_wait",
        started.elapsed()
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_limits_return_whole_batches_and_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client) = setup(dir.path()).await;
    for _ in 0..3 {
        client
            .produce("t", 0, &batch(10, 100), 1, Compression::None)
            .await
            .unwrap();
    }
    // A limit smaller than one batch still returns that whole batch (KIP-74).
    let tiny = client.fetch("t", 0, 0, 100, 0).await.unwrap();
    assert_eq!(tiny.records.len(), 10);
    // Room for two batches (each is a bit over 1 KiB) but not three.
    let two = client.fetch("t", 0, 0, 2600, 0).await.unwrap();
    assert_eq!(two.records.len(), 20);
    // Reading from the middle of a batch returns that batch; the client
    // drops the records before the requested offset.
    let mid = client.fetch("t", 0, 15, 1 << 20, 0).await.unwrap();
    assert_eq!(mid.records.first().map(|r| r.offset), Some(15));
    assert_eq!(mid.records.last().map(|r| r.offset), Some(29));
    assert_eq!(mid.high_watermark, 30);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_past_the_end_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut client) = setup(dir.path()).await;
    client
        .produce("t", 0, &batch(2, 10), 1, Compression::None)
        .await
        .unwrap();
    let err = client.fetch("t", 0, 50, 1 << 20, 0).await.unwrap_err();
    assert_eq!(
        err.kafka_code(),
        Some(1),
        "expected OFFSET_OUT_OF_RANGE, got {err}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_answers_parked_fetches_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _client) = setup(dir.path()).await;
    let addr = broker.addr.clone();
    let waiter = tokio::spawn(async move {
        let mut consumer = Client::connect(&addr).await.unwrap();
        let started = Instant::now();
        let _ = consumer.fetch("t", 0, 0, 1 << 20, 25_000).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    broker.stop().await;
    let parked_for = waiter.await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "shutdown waited {:?} for a parked fetch",
        stopping.elapsed()
    );
    assert!(
        parked_for < Duration::from_secs(20),
        "fetch held for {parked_for:?}"
    );
}

//! Size-based retention: with small segments and `retention.bytes`, old
//! segments are deleted and the log start offset moves forward.

use std::{
    thread,
    time::{Duration, Instant},
};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    segments::{log_segments, partition_dir, segment_base_offset},
    unique_topic, BrokerProcess, Msg, EARLIEST, LATEST,
};

const SEGMENT_BYTES: u64 = 16_384;
const RETENTION_BYTES: u64 = 32_768;

#[test]
fn retention_bytes_deletes_old_segments() {
    let broker = BrokerProcess::builder()
        .config("log.retention.check.interval.ms", "500")
        .start();
    let topic = unique_topic("ret");
    broker.create_topic(
        &topic,
        1,
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.bytes", &RETENTION_BYTES.to_string()),
        ],
    );

    // ~200 KB in 50 batches of 4 records of ~1 KB.
    let mut client = broker.client();
    let filler = "x".repeat(1000);
    for b in 0..50 {
        let msgs: Vec<Msg> = (0..4)
            .map(|i| Msg::new(None, &format!("{:04}-{filler}", b * 4 + i)))
            .collect();
        client
            .produce(&topic, 0, &msgs, Compression::None)
            .expect("produce");
    }
    assert_eq!(client.list_offset(&topic, 0, LATEST).expect("latest"), 200);

    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let first_segment = dir.join("00000000000000000000.log");
    // Kafka keeps deleting the oldest segment while the rest would still
    // exceed retention.bytes, so what is left exceeds it by less than one
    // segment (which may overshoot segment.bytes by one batch).
    let bound = RETENTION_BYTES + SEGMENT_BYTES + 4_400;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (earliest, segments) = loop {
        let earliest = client.list_offset(&topic, 0, EARLIEST).expect("earliest");
        let segments = log_segments(&dir);
        let sizes: Vec<u64> = segments
            .iter()
            .map(|s| std::fs::metadata(s).map(|m| m.len()).unwrap_or(0))
            .collect();
        let total: u64 = sizes.iter().sum();
        if earliest > 0 && !first_segment.exists() && total <= bound {
            break (earliest, segments);
        }
        assert!(
            Instant::now() < deadline,
            "after 20 s retention has not brought the partition within bounds: earliest \
             offset {earliest}, {total} bytes (limit {bound} for retention.bytes=\
             {RETENTION_BYTES}) in segments {segments:?} of sizes {sizes:?}"
        );
        thread::sleep(Duration::from_millis(200));
    };

    assert_eq!(
        earliest,
        segment_base_offset(&segments[0]),
        "the log start offset is the base offset of the oldest remaining segment"
    );

    // What is left reads back from the new start.
    let records = client
        .fetch_all(&topic, 0, earliest)
        .expect("fetch from earliest");
    assert_eq!(records.len() as i64, 200 - earliest);
    for r in &records {
        let v = r.value.as_deref().expect("value");
        assert_eq!(
            &v[..4],
            format!("{:04}", r.offset).as_bytes(),
            "value at {}",
            r.offset
        );
    }
}

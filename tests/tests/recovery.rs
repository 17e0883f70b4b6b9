//! Restarts: a torn write at the tail of the active segment is cut off on
//! start-up, and a SIGTERM shuts the broker down cleanly with all data kept.

use std::{fs::OpenOptions, time::Instant};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    segments::{partition_dir, read_batches, segment_name},
    unique_topic, BrokerProcess, Msg, LATEST,
};

/// Produces `batches` batches of 3 records each to partition 0; record `i`
/// of batch `b` has value `b<b>-r<i>`.
fn produce_batches(broker: &BrokerProcess, topic: &str, batches: usize) -> Vec<String> {
    let mut client = broker.client();
    let mut values = Vec::new();
    for b in 0..batches {
        let msgs: Vec<Msg> = (0..3)
            .map(|i| {
                Msg::new(Some(&format!("k{b}")), &format!("b{b}-r{i}")).header("b", &b.to_string())
            })
            .collect();
        let base = client
            .produce(topic, 0, &msgs, Compression::None)
            .expect("produce");
        assert_eq!(base, (b * 3) as i64, "base offset of batch {b}");
        values.extend(
            msgs.iter()
                .map(|m| String::from_utf8_lossy(m.value.as_ref().unwrap()).into_owned()),
        );
    }
    values
}

/// The values of partition 0 from offset 0, with a check that offsets are
/// consecutive.
fn stored_values(broker: &BrokerProcess, topic: &str) -> Vec<String> {
    let records = broker.client().fetch_all(topic, 0, 0).expect("fetch");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "offsets must be consecutive");
    }
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

#[test]
fn torn_tail_is_truncated_on_restart() {
    let mut broker = BrokerProcess::start();
    let topic = unique_topic("torn");
    broker.create_topic(&topic, 1, &[]);
    let values = produce_batches(&broker, &topic, 5);
    broker.kill9();

    let segment = partition_dir(broker.data_dir(), &topic, 0).join(segment_name(0));
    let batches = read_batches(&segment);
    assert_eq!(
        batches.len(),
        5,
        "5 produced batches should be 5 stored batches in {}: {batches:?}",
        segment.display()
    );
    let last = batches.last().expect("a batch");
    let cut = last.position + last.size / 2;
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(cut))
        .expect("truncate segment");

    broker.restart();
    assert_eq!(
        stored_values(&broker, &topic),
        values[..12].to_vec(),
        "after cutting the last batch in half, the first 4 batches must be intact"
    );
    let mut client = broker.client();
    assert_eq!(
        client
            .list_offset(&topic, 0, LATEST)
            .expect("ListOffsets latest"),
        12,
        "log end offset after dropping the torn batch"
    );
    let next = client
        .produce(
            &topic,
            0,
            &[Msg::new(None, "after-restart")],
            Compression::None,
        )
        .expect("produce after restart");
    assert_eq!(next, 12, "new records continue at the next offset");
    let mut expected = values[..12].to_vec();
    expected.push("after-restart".to_string());
    assert_eq!(stored_values(&broker, &topic), expected);

    // The torn bytes are gone from the file, not just hidden: the new batch
    // follows the 4th directly.
    let batches = read_batches(&segment);
    let file_len = std::fs::metadata(&segment).expect("segment metadata").len();
    let end = batches.last().map(|b| b.position + b.size).unwrap_or(0);
    assert_eq!(
        batches.iter().map(|b| b.base_offset).collect::<Vec<_>>(),
        vec![0, 3, 6, 9, 12],
        "batches in the segment after recovery and one more produce"
    );
    assert_eq!(
        file_len, end,
        "segment file has bytes after its last complete batch"
    );
}

#[test]
fn sigterm_shuts_down_cleanly_and_keeps_data() {
    let mut broker = BrokerProcess::start();
    let topic = unique_topic("term");
    broker.create_topic(&topic, 1, &[]);
    let values = produce_batches(&broker, &topic, 4);

    // An idle client connection must not hold up shutdown.
    let _idle = broker.client();
    let started = Instant::now();
    let status = broker.terminate();
    let took = started.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(took.as_secs_f64() < 10.0, "shutdown took {took:?}");

    broker.restart();
    assert_eq!(
        stored_values(&broker, &topic),
        values,
        "data after a clean restart"
    );
    let log = broker.log_since_last_start().to_lowercase();
    assert!(
        !log.contains("torn") && !log.contains("truncat"),
        "after a clean shutdown the restart should find nothing to repair, but it logged:\n{log}"
    );
}

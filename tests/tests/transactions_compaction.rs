//! Transaction markers leave a compacted topic, as in Kafka: once the
//! cleaner has removed a transaction's records (superseded, or aborted)
//! and `delete.retention.ms` has passed, its COMMIT or ABORT marker goes
//! too, with the aborted transaction's index entry; a transaction with a
//! record left keeps its marker. read_committed reads the same before and
//! after, and after a kill -9 nothing is left open.

use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    segments::{log_segments, partition_dir},
    txn_raw::{fetch_records, read_committed, values, Fetched, Producer},
    unique_topic, BrokerProcess, KafkaConn, Msg,
};

/// Offsets of the markers of `topic`-0 (read_uncommitted).
fn markers(c: &mut KafkaConn, topic: &str) -> Vec<i64> {
    let (records, _) = fetch_records(c, topic, 0, 0);
    records
        .iter()
        .filter(|r| r.control)
        .map(|r| r.offset)
        .collect()
}

/// The values read_committed sees, fillers left out.
fn committed_values(c: &mut KafkaConn, topic: &str) -> Vec<String> {
    read_committed(c, topic, 0)
        .into_iter()
        .filter(|v| !v.starts_with("fill"))
        .collect()
}

#[test]
fn markers_of_emptied_transactions_leave_compacted_topics() {
    let mut broker = BrokerProcess::builder()
        .config("log.cleaner.backoff.ms", "300")
        .config("transaction.state.log.num.partitions", "1")
        .start();
    let topic = unique_topic("txn-compact");
    broker.create_topic(
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "1024"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "1000"),
        ],
    );
    let mut c = broker.client();
    let plain = |c: &mut KafkaConn, key: &str, value: &str| {
        c.produce(&topic, 0, &[Msg::new(Some(key), value)], Compression::None)
            .unwrap_or_else(|e| panic!("produce {key}: {e:#}"))
    };
    // The log's first batch (a leader epoch's start) stays whatever it holds.
    plain(&mut c, "first", "first");
    let mut p = Producer::init(&mut c, "compact-tx");
    // 1 is committed and then superseded, 2 aborted, 3 committed and kept.
    for (name, commit) in [("t1", true), ("t2", false), ("t3", true)] {
        p.produce(&mut c, &topic, &[(0, values(name, 1))]);
        p.end(&mut c, commit);
    }
    let before = markers(&mut c, &topic);
    assert_eq!(before.len(), 3, "{before:?}");
    plain(&mut c, "t1-0", "new");
    let expected = ["first", "t1-0", "t3-0", "new"].map(String::from).to_vec();
    let committed = committed_values(&mut c, &topic);
    assert_eq!(committed, expected);
    // Fill until the markers lie two segment rolls back (below the oldest
    // producer snapshot kept), so compaction may take them.
    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let mut fillers = 0;
    while log_segments(&dir).len() < 4 {
        assert!(fillers < 500, "no segment rolls after {fillers} fillers");
        plain(&mut c, &format!("fill-{fillers}"), "filler");
        fillers += 1;
    }

    // The cleaner removes t1's superseded and t2's aborted record, then,
    // delete.retention.ms later, their markers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = markers(&mut c, &topic);
        if left == [before[2]] {
            break;
        }
        if Instant::now() >= deadline {
            let (records, _) = fetch_records(&mut c, &topic, 0, 0);
            panic!("markers left: {left:?} of {before:?}: {records:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let check = |c: &mut KafkaConn| {
        let (records, aborted) = fetch_records(c, &topic, 0, 1);
        assert!(aborted.is_empty(), "the aborted entry went: {aborted:?}");
        let t2 = |r: &Fetched| r.value == "t2-0";
        assert!(!records.iter().any(t2), "the aborted record is gone");
        assert_eq!(
            committed_values(c, &topic),
            ["first", "t3-0", "new"].map(String::from).to_vec()
        );
    };
    check(&mut c);
    // Nothing is left open after a crash: the LSO reaches the high
    // watermark (fetch_records waits for that), and the producer goes on.
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    check(&mut c);
    p.produce(&mut c, &topic, &[(0, values("t4", 1))]);
    p.end(&mut c, true);
    assert_eq!(committed_values(&mut c, &topic).last().unwrap(), "t4-0");
}

//! Produce rules that Kafka clients rely on, seen from the wire and from
//! confluent-kafka:
//! - a compacted topic refuses records without a key with INVALID_RECORD and
//!   KIP-467 per-record errors (`record_errors`, `error_message`), and stores
//!   nothing of the refused batch;
//! - a topic's `compression.type` other than `producer` recompresses batches
//!   in another codec on append (the records read back unchanged), while a
//!   batch already in the topic's codec is stored byte for byte;
//! - configs Kafka 3.x accepts and ignores are accepted and reported.

use kafka_protocol::records::Compression;
use rivulet_tests::{
    require_py, run_py,
    segments::{log_segments, partition_dir, read_batches},
    unique_topic, BrokerProcess, Msg, EARLIEST, LATEST,
};

/// Codec ids as stored in batch attributes.
const NONE: i16 = 0;
const GZIP: i16 = 1;
const LZ4: i16 = 3;
const ZSTD: i16 = 4;

/// The codec of every batch stored in partition 0 of `topic`.
fn stored_codecs(broker: &BrokerProcess, topic: &str) -> Vec<i16> {
    let dir = partition_dir(broker.data_dir(), topic, 0);
    log_segments(&dir)
        .iter()
        .flat_map(|s| read_batches(s))
        .map(|b| b.codec())
        .collect()
}

#[test]
fn keyless_records_on_a_compacted_topic_get_per_record_errors() {
    let broker = BrokerProcess::start();
    let topic = unique_topic("compacted");
    broker.create_topic(&topic, 1, &[("cleanup.policy", "compact")]);
    let mut c = broker.client();
    for compression in [Compression::None, Compression::Zstd] {
        let batch = rivulet_tests::encode_batch(
            &[
                Msg::new(Some("a"), "1"),
                Msg::new(None, "2"),
                Msg::new(Some("c"), "3"),
                Msg::new(None, "4"),
            ],
            compression,
        );
        let resp = c.produce_batch(&topic, 0, batch, -1).unwrap();
        assert_eq!(resp.error_code, 87, "INVALID_RECORD, got {resp:?}");
        let indices: Vec<i32> = resp.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indices, vec![1, 3], "{compression:?}: {resp:?}");
        for e in &resp.record_errors {
            let text = e.batch_index_error_message.as_deref().unwrap_or_default();
            assert!(
                text.contains("Compacted topic cannot accept message without key"),
                "{text}"
            );
        }
        let summary = resp.error_message.as_deref().unwrap_or_default();
        assert!(summary.contains("2 record errors"), "{summary}");
    }
    // Nothing of the refused batches was stored; keyed records are.
    assert_eq!(c.list_offset(&topic, 0, LATEST).unwrap(), 0);
    let base = c
        .produce(&topic, 0, &[Msg::new(Some("k"), "v")], Compression::None)
        .unwrap();
    assert_eq!(base, 0);
    // The same topic without compaction takes keyless records.
    let plain = unique_topic("plain");
    broker.create_topic(&plain, 1, &[]);
    c.produce(&plain, 0, &[Msg::new(None, "v")], Compression::None)
        .unwrap();
}

#[test]
fn compression_type_recompresses_batches_in_another_codec() {
    let broker = BrokerProcess::start();
    let mut c = broker.client();
    let zstd = unique_topic("zstd");
    broker.create_topic(&zstd, 1, &[("compression.type", "zstd")]);
    let msgs: Vec<Msg> = (0..50)
        .map(|i| {
            Msg::new(
                Some(&format!("k{i}")),
                &format!("value {i} {}", "x".repeat(i)),
            )
            .header("n", &i.to_string())
        })
        .collect();
    for (i, codec) in [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let base = c.produce(&zstd, 0, &msgs, codec).unwrap();
        assert_eq!(base, (i * msgs.len()) as i64);
    }
    assert_eq!(stored_codecs(&broker, &zstd), vec![ZSTD; 3]);
    let records = c.fetch_all(&zstd, 0, 0).unwrap();
    assert_eq!(records.len(), 3 * msgs.len());
    for (i, r) in records.iter().enumerate() {
        let m = &msgs[i % msgs.len()];
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key, m.key, "record {i}");
        assert_eq!(r.value, m.value, "record {i}");
        assert_eq!(r.timestamp, m.timestamp, "record {i}");
        assert_eq!(r.headers.len(), 1, "record {i}");
    }
    // `uncompressed` stores plain batches; `producer` keeps every codec.
    let plain = unique_topic("uncompressed");
    broker.create_topic(&plain, 1, &[("compression.type", "uncompressed")]);
    c.produce(&plain, 0, &msgs, Compression::Lz4).unwrap();
    assert_eq!(stored_codecs(&broker, &plain), vec![NONE]);
    let asis = unique_topic("producer");
    broker.create_topic(&asis, 1, &[]);
    c.produce(&asis, 0, &msgs, Compression::Lz4).unwrap();
    c.produce(&asis, 0, &msgs, Compression::Gzip).unwrap();
    assert_eq!(stored_codecs(&broker, &asis), vec![LZ4, GZIP]);
    assert_eq!(c.list_offset(&asis, 0, EARLIEST).unwrap(), 0);
}

#[test]
fn confluent_kafka_sees_record_errors_and_recompressed_topics() {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::start();
    let keyless = unique_topic("keyless");
    let out = run_py(
        "produce_rules.py",
        &["keyless", &broker.bootstrap(), &keyless],
    );
    assert!(
        out.contains("INVALID_RECORD") && out.contains("_INVALID_DIFFERENT_RECORD"),
        "{out}"
    );

    let zstd = unique_topic("zstd-py");
    run_py("produce_rules.py", &["zstd", &broker.bootstrap(), &zstd]);
    let codecs = stored_codecs(&broker, &zstd);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|&c| c == ZSTD),
        "{codecs:?}"
    );

    let configs = unique_topic("configs");
    run_py(
        "produce_rules.py",
        &["configs", &broker.bootstrap(), &configs],
    );
    assert_eq!(stored_codecs(&broker, &configs), vec![LZ4]);
}

//! confluent-kafka (librdkafka) for Python against one broker: the admin
//! API, idempotent produce with every compression codec, exact round trips
//! with assign()/seek(), offsets by time, and DeleteRecords.
//!
//! The client work and its checks live in `tests/py/*.py`; these tests start
//! the broker, run a script, and look at what the broker stored.

use rivulet_tests::{
    require_py, run_py,
    segments::{log_segments, partition_dir, read_batches},
    unique_topic, BrokerProcess,
};

fn admin_scenario(scenario: &str) {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::start();
    let topic = unique_topic(&format!("adm-{scenario}"));
    run_py(
        "confluent_admin.py",
        &[scenario, &broker.bootstrap(), &topic],
    );
}

#[test]
fn admin_create_list_describe_topics() {
    admin_scenario("topics");
}

#[test]
fn admin_alter_and_incremental_alter_configs() {
    admin_scenario("configs");
}

#[test]
fn admin_create_partitions_grows_and_refuses_shrink() {
    admin_scenario("partitions");
}

#[test]
fn admin_delete_topics() {
    admin_scenario("delete");
}

#[test]
fn admin_describe_cluster() {
    admin_scenario("cluster");
}

/// Runs the round-trip script with `codec`, then checks on disk that the
/// batches were stored as the producer made them: compressed with `codec`
/// and carrying the idempotent producer's id.
fn roundtrip(codec: &str, codec_id: i16) {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::start();
    let topic = unique_topic(&format!("rt-{codec}"));
    broker.create_topic(&topic, 1, &[]);
    run_py(
        "confluent_roundtrip.py",
        &[&broker.bootstrap(), &topic, codec],
    );

    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let batches: Vec<_> = log_segments(&dir)
        .iter()
        .flat_map(|seg| read_batches(seg))
        .collect();
    let records: i32 = batches.iter().map(|b| b.record_count).sum();
    assert_eq!(
        records,
        60,
        "records stored on disk in {}: {batches:?}",
        dir.display()
    );
    for b in &batches {
        assert_eq!(
            b.codec(),
            codec_id,
            "batch at offset {} is stored with codec {} but the producer was configured with \
             {codec}: either the broker re-encoded it (batches must be stored as produced) or \
             the client fell back to no compression because of what ApiVersions advertised \
             (librdkafka enables LZ4 only if the broker lists FindCoordinator v0)",
            b.base_offset,
            b.codec()
        );
        assert!(
            b.producer_id >= 0,
            "batch at offset {} lost the idempotent producer id: {b:?}",
            b.base_offset
        );
    }
}

#[test]
fn idempotent_roundtrip_uncompressed() {
    roundtrip("none", 0);
}

#[test]
fn idempotent_roundtrip_gzip() {
    roundtrip("gzip", 1);
}

#[test]
fn idempotent_roundtrip_snappy() {
    roundtrip("snappy", 2);
}

#[test]
fn idempotent_roundtrip_lz4() {
    roundtrip("lz4", 3);
}

#[test]
fn idempotent_roundtrip_zstd() {
    roundtrip("zstd", 4);
}

#[test]
fn delete_records_moves_the_low_watermark() {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::start();
    let topic = unique_topic("delrec");
    broker.create_topic(&topic, 1, &[]);
    run_py("delete_records.py", &[&broker.bootstrap(), &topic]);

    // The new log start survives a clean restart.
    let mut broker = broker;
    let status = broker.terminate();
    assert!(status.success(), "broker exited with {status} on SIGTERM");
    broker.restart();
    let mut c = broker.client();
    assert_eq!(
        c.list_offset(&topic, 0, rivulet_tests::EARLIEST)
            .expect("ListOffsets earliest"),
        20,
        "log start offset after delete_records and a restart"
    );
}

//! A single broker is a cluster of one: its topics live in the metadata log
//! like any cluster's. A data directory written by a standalone broker of an
//! earlier version (topics in `meta.json`, partition directories without
//! `partition.metadata`, no metadata log) is imported at the first start:
//! every topic keeps its id, partition count, config overrides and records.

use kafka_protocol::records::Compression;
use rivulet_tests::{unique_topic, BrokerProcess, Msg, LATEST};

#[test]
fn a_standalone_data_directory_is_imported_with_its_records() {
    let mut broker = BrokerProcess::start();
    let topic = unique_topic("legacy");
    broker.create_topic(&topic, 2, &[("retention.ms", "86400000")]);
    let mut c = broker.client();
    for p in 0..2 {
        for b in 0..3 {
            let msgs = [Msg::new(Some("k"), &format!("p{p}-b{b}"))];
            c.produce(&topic, p, &msgs, Compression::None).unwrap();
        }
    }
    let id = c.metadata(Some(&[topic.as_str()])).unwrap().topics[0].topic_id;
    drop(c);
    broker.terminate();

    // Turn the directory into what a standalone broker left: no metadata
    // log, no identity, no id files, no checkpoint, and the topic in
    // meta.json.
    let data = broker.data_dir().to_path_buf();
    std::fs::remove_dir_all(data.join("__cluster_metadata")).unwrap();
    std::fs::remove_file(data.join("meta.properties")).unwrap();
    let _ = std::fs::remove_file(data.join("replication-offset-checkpoint"));
    for p in 0..2 {
        let dir = data.join(format!("{topic}-{p}"));
        std::fs::remove_file(dir.join("partition.metadata")).unwrap();
    }
    let meta_path = data.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["topics"] = serde_json::json!({
        topic.clone(): {
            "id": id.to_string(),
            "partitions": 2,
            "replication_factor": 1,
            "configs": {"retention.ms": "86400000"}
        }
    });
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();

    broker.restart();
    let mut c = broker.client();
    let md = c.metadata(Some(&[topic.as_str()])).unwrap();
    assert_eq!(md.topics[0].error_code, 0, "{md:?}");
    assert_eq!(md.topics[0].topic_id, id, "the topic keeps its id");
    assert_eq!(md.topics[0].partitions.len(), 2);
    for p in 0..2 {
        let values: Vec<String> = c
            .fetch_all(&topic, p, 0)
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.value.unwrap()).into_owned())
            .collect();
        assert_eq!(
            values,
            (0..3).map(|b| format!("p{p}-b{b}")).collect::<Vec<_>>()
        );
        // The imported topic takes writes at the next offset.
        let base = c
            .produce(&topic, p, &[Msg::new(None, "after")], Compression::None)
            .unwrap();
        assert_eq!(base, 3);
        assert_eq!(c.list_offset(&topic, p, LATEST).unwrap(), 4);
    }
    let configs = c.topic_configs(&topic).unwrap();
    assert_eq!(configs["retention.ms"].value.as_deref(), Some("86400000"));
    // meta.json forgets the topics once imported, and a restart keeps them.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["topics"], serde_json::json!({}), "{meta}");
    drop(c);
    broker.restart();
    let mut c = broker.client();
    assert_eq!(c.list_offset(&topic, 1, LATEST).unwrap(), 4);
}

//! Seed corpus for the `decode_request` fuzz target (`/fuzz`).
//!
//! Valid requests of the APIs a Rivulet broker serves, at old and flexible
//! versions, so the fuzzer starts from inputs that reach deep into the
//! decoders instead of failing on the header. Regenerate the committed seeds
//! with:
//!
//! ```text
//! RIVULET_FUZZ_SEEDS=fuzz/seeds/decode_request \
//!     cargo test -p rivulet-wire --test fuzz_seeds -- --ignored
//! ```
//!
//! The non-ignored test checks that every seed decodes, so the seeds stay
//! meaningful as the codec evolves.

use std::collections::BTreeMap;

use bytes::Bytes;
use rivulet_wire::{
    client::{encode_batch, encode_request, OwnedRecord},
    kafka_protocol::{
        messages::{
            create_topics_request::{CreatableTopic, CreatableTopicConfig},
            delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic},
            fetch_request::{FetchPartition, FetchTopic},
            incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
            list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
            metadata_request::MetadataRequestTopic,
            produce_request::{PartitionProduceData, TopicProduceData},
            ApiVersionsRequest, CreateTopicsRequest, DeleteRecordsRequest, FetchRequest,
            IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
            TopicName,
        },
        protocol::{Request, StrBytes},
        records::Compression,
    },
    request::decode_request,
};
use uuid::Uuid;

fn s(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

/// A frame body (no size prefix): what the fuzz target receives.
fn body<R: Request>(version: i16, req: &R) -> Bytes {
    encode_request(7, Some("seed"), version, req)
        .unwrap()
        .slice(4..)
}

fn seeds() -> BTreeMap<String, Bytes> {
    let mut out = BTreeMap::new();
    let api_versions = ApiVersionsRequest::default()
        .with_client_software_name(s("seed"))
        .with_client_software_version(s("1.0"));
    for v in [0, 3] {
        out.insert(format!("api_versions_v{v}"), body(v, &api_versions));
    }
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(s("orders")))),
    ]));
    for v in [1, 9, 12] {
        out.insert(format!("metadata_v{v}"), body(v, &metadata));
    }
    let batch = encode_batch(
        &[OwnedRecord {
            timestamp: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"value")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
            ..Default::default()
        }],
        Compression::None,
    )
    .unwrap();
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s("orders")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    for v in [3, 9] {
        out.insert(format!("produce_v{v}"), body(v, &produce));
    }
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s("orders")))
            .with_topic_id(Uuid::from_u128(1))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(5)
                .with_partition_max_bytes(1 << 20)])]);
    for v in [4, 12, 13] {
        out.insert(format!("fetch_v{v}"), body(v, &fetch));
    }
    let list = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(s("orders")))
        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
    for v in [1, 7] {
        out.insert(format!("list_offsets_v{v}"), body(v, &list));
    }
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(s("orders")))
        .with_num_partitions(3)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(s("cleanup.policy"))
            .with_value(Some(s("compact")))])]);
    for v in [2, 5] {
        out.insert(format!("create_topics_v{v}"), body(v, &create));
    }
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("1000")))]),
    ]);
    out.insert("incremental_alter_configs_v1".into(), body(1, &alter));
    let delete = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(s("orders")))
        .with_partitions(vec![DeleteRecordsPartition::default().with_offset(3)])]);
    out.insert("delete_records_v2".into(), body(2, &delete));
    out
}

#[test]
fn seeds_decode() {
    for (name, frame) in seeds() {
        decode_request(frame).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
}

#[test]
#[ignore = "writes the committed fuzz seeds; run on purpose"]
fn write_fuzz_seeds() {
    let dir = std::env::var("RIVULET_FUZZ_SEEDS").expect("set RIVULET_FUZZ_SEEDS to a directory");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, frame) in seeds() {
        std::fs::write(format!("{dir}/{name}"), &frame).unwrap();
    }
}

//! The client against a scripted in-process broker.
//!
//! The fake broker is built from this crate's own server-side pieces
//! (`read_frame`, `decode_request`, `encode_response`), so these tests also
//! check that the two halves of the crate agree on the wire format.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use rivulet_wire::{
    client::{decode_records, encode_batch, Client, Connection, OwnedRecord},
    frame::{read_frame, write_frame, DEFAULT_MAX_FRAME_SIZE},
    kafka_protocol::{
        messages::{
            api_versions_response::ApiVersion,
            create_topics_response::CreatableTopicResult,
            fetch_response::{FetchableTopicResponse, PartitionData},
            metadata_response::{
                MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
            },
            produce_response::{PartitionProduceResponse, TopicProduceResponse},
            ApiKey, ApiVersionsResponse, CreateTopicsResponse, FetchResponse, MetadataResponse,
            ProduceResponse, RequestKind, ResponseKind,
        },
        protocol::StrBytes,
        records::Compression,
    },
    request::{decode_request, encode_response, peek_header},
    ClientError,
};
use tokio::net::TcpListener;
use uuid::Uuid;

const TOPIC_ID: Uuid = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);

/// What the fake broker offers and how it misbehaves.
struct Script {
    /// (api key, min, max) the broker advertises.
    versions: Vec<(ApiKey, i16, i16)>,
    /// Highest ApiVersions version the broker understands.
    api_versions_max: i16,
    /// Produce attempts answered NOT_LEADER_OR_FOLLOWER before succeeding.
    produce_failures: usize,
}

/// Everything the fake broker saw: (api, version) per request, in order.
type Seen = Arc<Mutex<Vec<(ApiKey, i16)>>>;

/// Starts a fake broker; returns its address and the request log.
async fn fake_broker(script: Script) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let script = Arc::new(Mutex::new(script));
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (log, script) = (log.clone(), script.clone());
            tokio::spawn(async move {
                while let Some(frame) = read_frame(&mut sock, DEFAULT_MAX_FRAME_SIZE).await.unwrap()
                {
                    let out = respond(frame.freeze(), &script, &log, &addr.to_string());
                    write_frame(&mut sock, &out).await.unwrap();
                }
            });
        }
    });
    (addr.to_string(), seen)
}

/// Answers one request frame with a complete response frame.
fn respond(
    frame: Bytes,
    script: &Mutex<Script>,
    log: &Mutex<Vec<(ApiKey, i16)>>,
    addr: &str,
) -> Bytes {
    let info = peek_header(&frame).unwrap();
    let api_key = ApiKey::try_from(info.api_key).unwrap();
    let mut script = script.lock().unwrap();
    // Like Kafka: an ApiVersions version we do not know gets a v0 answer
    // with UNSUPPORTED_VERSION and our range.
    if api_key == ApiKey::ApiVersions && info.api_version > script.api_versions_max {
        log.lock().unwrap().push((api_key, info.api_version));
        let body = api_versions(&script).with_error_code(35);
        return encode_response(
            info.correlation_id,
            api_key,
            0,
            &ResponseKind::ApiVersions(body),
        )
        .unwrap();
    }
    let req = decode_request(frame).unwrap();
    log.lock().unwrap().push((req.api_key, req.version));
    let body = answer(&mut script, &req.body, addr);
    encode_response(info.correlation_id, req.api_key, req.version, &body).unwrap()
}

fn api_versions(script: &Script) -> ApiVersionsResponse {
    let mut keys = vec![ApiVersion::default()
        .with_api_key(ApiKey::ApiVersions as i16)
        .with_min_version(0)
        .with_max_version(script.api_versions_max)];
    keys.extend(script.versions.iter().map(|(k, min, max)| {
        ApiVersion::default()
            .with_api_key(*k as i16)
            .with_min_version(*min)
            .with_max_version(*max)
    }));
    ApiVersionsResponse::default().with_api_keys(keys)
}

fn answer(script: &mut Script, req: &RequestKind, addr: &str) -> ResponseKind {
    let (host, port) = addr.rsplit_once(':').unwrap();
    match req {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions(script)),
        RequestKind::Metadata(m) => {
            let topics = m
                .topics
                .iter()
                .flatten()
                .map(|t| {
                    let name = t.name.clone().unwrap();
                    let known = name.0.as_str() == "t";
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(if known { 0 } else { 3 })
                        .with_topic_id(if known { TOPIC_ID } else { Uuid::nil() })
                        .with_partitions(if known {
                            vec![MetadataResponsePartition::default()
                                .with_partition_index(0)
                                .with_leader_id(1.into())
                                .with_replica_nodes(vec![1.into()])
                                .with_isr_nodes(vec![1.into()])]
                        } else {
                            vec![]
                        })
                })
                .collect();
            ResponseKind::Metadata(
                MetadataResponse::default()
                    .with_controller_id(1.into())
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(1.into())
                        .with_host(StrBytes::from_string(host.to_owned()))
                        .with_port(port.parse().unwrap())])
                    .with_topics(topics),
            )
        }
        RequestKind::Produce(p) => {
            let t = &p.topic_data[0];
            let (code, base) = if script.produce_failures > 0 {
                script.produce_failures -= 1;
                (6, -1)
            } else {
                (0, 42)
            };
            ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(t.partition_data[0].index)
                        .with_error_code(code)
                        .with_base_offset(base)]),
            ]))
        }
        RequestKind::Fetch(f) => {
            let t = &f.topics[0];
            // At v13+ the client must name the topic by id.
            assert_eq!(t.topic_id, TOPIC_ID);
            let mut data = encode_batch(
                &[OwnedRecord::from_value("a"), OwnedRecord::from_value("b")],
                Compression::Lz4,
            )
            .unwrap()
            .to_vec();
            data[..8].copy_from_slice(&10i64.to_be_bytes());
            ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(0)
                        .with_high_watermark(12)
                        .with_log_start_offset(10)
                        .with_records(Some(Bytes::from(data)))]),
            ]))
        }
        RequestKind::CreateTopics(c) => ResponseKind::CreateTopics(
            CreateTopicsResponse::default().with_topics(vec![CreatableTopicResult::default()
                .with_name(c.topics[0].name.clone())
                .with_error_code(36)
                .with_error_message(Some(StrBytes::from_static_str("Topic 't' already exists.")))]),
        ),
        other => panic!("fake broker got an unscripted request {other:?}"),
    }
}

fn rivulet_like_versions() -> Vec<(ApiKey, i16, i16)> {
    vec![
        (ApiKey::Produce, 3, 9),
        (ApiKey::Fetch, 4, 13),
        (ApiKey::Metadata, 1, 12),
        (ApiKey::CreateTopics, 2, 7),
    ]
}

#[tokio::test]
async fn negotiates_versions_and_falls_back_from_api_versions_v3() {
    let (addr, seen) = fake_broker(Script {
        versions: rivulet_like_versions(),
        api_versions_max: 2,
        produce_failures: 0,
    })
    .await;
    let conn = Connection::connect(&addr).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![(ApiKey::ApiVersions, 3), (ApiKey::ApiVersions, 2)]
    );
    let fetch = conn.broker_versions()[&(ApiKey::Fetch as i16)];
    assert_eq!((fetch.min, fetch.max), (4, 13));
    assert_eq!(
        conn.version_for::<rivulet_wire::kafka_protocol::messages::MetadataRequest>()
            .unwrap(),
        12
    );
    // DeleteRecords is not advertised: no common version.
    let err = conn
        .version_for::<rivulet_wire::kafka_protocol::messages::DeleteRecordsRequest>()
        .unwrap_err();
    assert!(
        matches!(err, ClientError::UnsupportedVersion { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn produce_retries_once_after_not_leader_and_fetch_uses_topic_ids() {
    let (addr, seen) = fake_broker(Script {
        versions: rivulet_like_versions(),
        api_versions_max: 3,
        produce_failures: 1,
    })
    .await;
    let mut client = Client::connect(&addr).await.unwrap();
    let md = client
        .metadata(Some(vec!["t".into(), "missing".into()]))
        .await
        .unwrap();
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.topics[0].topic_id, TOPIC_ID);
    assert_eq!(md.topics[1].error_code, 3);

    let records = [OwnedRecord::from_key_value("k", "v")];
    let base = client
        .produce("t", 0, &records, -1, Compression::None)
        .await
        .unwrap();
    assert_eq!(base, 42);
    let produces: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == ApiKey::Produce)
        .copied()
        .collect();
    assert_eq!(produces, vec![(ApiKey::Produce, 9), (ApiKey::Produce, 9)]);

    let fetched = client.fetch("t", 0, 11, 1 << 20, 100).await.unwrap();
    assert_eq!(fetched.high_watermark, 12);
    assert_eq!(fetched.log_start_offset, 10);
    assert_eq!(
        fetched.records.len(),
        1,
        "offset 10 is before the fetch offset"
    );
    assert_eq!(fetched.records[0].offset, 11);
    assert_eq!(fetched.records[0].value.as_deref(), Some(&b"b"[..]));
    assert!(seen.lock().unwrap().contains(&(ApiKey::Fetch, 13)));

    // Unknown topics surface as Kafka errors, named as Kafka names them.
    let err = client
        .produce("missing", 0, &records, 1, Compression::None)
        .await
        .unwrap_err();
    match err {
        ClientError::Kafka { code, name, .. } => {
            assert_eq!(code, 3);
            assert_eq!(name, "UNKNOWN_TOPIC_OR_PARTITION");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn kafka_error_codes_become_typed_errors() {
    let (addr, _) = fake_broker(Script {
        versions: rivulet_like_versions(),
        api_versions_max: 3,
        produce_failures: 0,
    })
    .await;
    let mut client = Client::connect(&addr).await.unwrap();
    let err = client
        .create_topics(
            "t",
            3,
            1,
            BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
        )
        .await
        .unwrap_err();
    match err {
        ClientError::Kafka {
            code,
            name,
            message,
        } => {
            assert_eq!(code, 36);
            assert_eq!(name, "TOPIC_ALREADY_EXISTS");
            assert_eq!(message.as_deref(), Some("Topic 't' already exists."));
        }
        other => panic!("unexpected {other:?}"),
    }
    // DeleteRecords is not offered by this broker.
    let err = client.delete_records("t", 0, 5).await.unwrap_err();
    assert!(
        matches!(err, ClientError::UnsupportedVersion { .. }),
        "{err}"
    );
}

#[test]
fn fetched_bytes_decode_like_the_client_does() {
    let data = encode_batch(&[OwnedRecord::from_value("x")], Compression::Zstd).unwrap();
    let records = decode_records(&data, 0).unwrap();
    assert_eq!(records[0].value.as_deref(), Some(&b"x"[..]));
}

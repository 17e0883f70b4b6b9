//! Version negotiation at the wire level: a too-new ApiVersions gets Kafka's
//! v0-encoded UNSUPPORTED_VERSION answer listing what the broker speaks
//! (KIP-511), and unsupported versions of other APIs close only that
//! connection.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

mod common;
use common::Running;

/// A request frame with a v1 header (api key, version, correlation id,
/// client id) and an arbitrary body.
fn request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&correlation_id.to_be_bytes());
    payload.extend_from_slice(&4i16.to_be_bytes());
    payload.extend_from_slice(b"test");
    payload.extend_from_slice(body);
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut size))
        .await
        .expect("broker answered or closed within 5 s")
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[tokio::test(flavor = "multi_thread")]
async fn too_new_api_versions_gets_the_v0_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path()).await;
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    // ApiVersions v99: a version from the future with a body we cannot know.
    stream
        .write_all(&request(18, 99, 7, &[0xde, 0xad]))
        .await
        .unwrap();
    let resp = read_frame(&mut stream)
        .await
        .expect("an answer, not a close");
    // v0 response header: correlation id only. v0 body: error code, then
    // an array of (api key, min, max) with a plain i32 length.
    assert_eq!(i32_at(&resp, 0), 7);
    assert_eq!(i16_at(&resp, 4), 35, "UNSUPPORTED_VERSION");
    let count = i32_at(&resp, 6) as usize;
    assert!(count > 10, "the supported APIs are listed");
    let entries: Vec<(i16, i16, i16)> = (0..count)
        .map(|i| {
            let at = 10 + i * 6;
            (
                i16_at(&resp, at),
                i16_at(&resp, at + 2),
                i16_at(&resp, at + 4),
            )
        })
        .collect();
    assert!(
        entries.contains(&(18, 0, 3)),
        "ApiVersions 0-3 in {entries:?}"
    );
    assert!(
        entries.iter().any(|&(k, min, _)| k == 0 && min == 3),
        "Produce from v3"
    );
    // The connection stays usable: a supported ApiVersions v0 now works.
    stream.write_all(&request(18, 0, 8, &[])).await.unwrap();
    let resp = read_frame(&mut stream).await.expect("second answer");
    assert_eq!(i32_at(&resp, 0), 8);
    assert_eq!(i16_at(&resp, 4), 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_version_of_another_api_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path()).await;
    let mut bad = TcpStream::connect(&broker.addr).await.unwrap();
    let mut good = TcpStream::connect(&broker.addr).await.unwrap();
    // Produce v2 is below Kafka 4.0's floor (v3).
    bad.write_all(&request(0, 2, 1, &[0, 0, 0, 0]))
        .await
        .unwrap();
    assert!(read_frame(&mut bad).await.is_none(), "connection closed");
    good.write_all(&request(18, 0, 2, &[])).await.unwrap();
    let resp = read_frame(&mut good)
        .await
        .expect("other clients are still served");
    assert_eq!(i32_at(&resp, 0), 2);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_listener_advertises_its_own_addresses_and_the_rack() {
    use kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest};
    use rivulet_server::config::{BrokerConfig, ListenerConfig};
    use rivulet_wire::client::Connection;

    let dir = tempfile::tempdir().unwrap();
    let listener = |name: &str, advertised: (&str, u16)| ListenerConfig {
        name: name.into(),
        addr: "127.0.0.1:0".parse().unwrap(),
        advertised: Some((advertised.0.into(), advertised.1)),
        protocol: rivulet_server::security::SecurityProtocol::Plaintext,
    };
    let config = BrokerConfig::new(
        0,
        vec![
            listener("INTERNAL", ("kafka-0.internal", 9092)),
            listener("EXTERNAL", ("203.0.113.7", 31000)),
        ],
        dir.path().to_path_buf(),
        None,
        [("broker.rack".to_string(), "zone-a".to_string())].into(),
    )
    .unwrap();
    let broker = Running::start_with(config).await;
    let expected = [
        ("INTERNAL", "kafka-0.internal", 9092),
        ("EXTERNAL", "203.0.113.7", 31000),
    ];
    for (name, host, port) in expected {
        let addr = broker.listeners.iter().find(|(n, _)| n == name).unwrap().1;
        let mut conn = Connection::connect(&addr.to_string()).await.unwrap();
        let meta = conn.send(MetadataRequest::default()).await.unwrap();
        let b = &meta.brokers[0];
        assert_eq!(
            (b.host.as_str(), b.port),
            (host, port),
            "Metadata on {name}"
        );
        assert_eq!(b.rack.as_deref(), Some("zone-a"));
        let cluster = conn.send(DescribeClusterRequest::default()).await.unwrap();
        let b = &cluster.brokers[0];
        assert_eq!(
            (b.host.as_str(), b.port),
            (host, port),
            "DescribeCluster on {name}"
        );
    }
    broker.stop().await;
}

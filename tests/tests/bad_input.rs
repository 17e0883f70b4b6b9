//! Hostile and broken clients: oversized frames, unknown API keys, garbage
//! and truncated bodies, absurd array lengths, corrupt record batches. The
//! broker must drop the offending connection (or answer with an error) and
//! keep serving everyone else; it must never die of bad input.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use kafka_protocol::{
    messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        ProduceRequest, RequestHeader,
    },
    protocol::{Encodable, HeaderVersion, StrBytes},
    records::Compression,
};
use rivulet_tests::{
    kafka::{encode_batch, topic_name},
    unique_topic, BrokerProcess, KafkaConn, Msg,
};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka's CORRUPT_MESSAGE error code.
const CORRUPT_MESSAGE: i16 = 2;

fn connect(broker: &BrokerProcess) -> TcpStream {
    let s = TcpStream::connect(broker.kafka_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    s.set_write_timeout(Some(CLOSE_TIMEOUT)).expect("timeout");
    s
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request header v1 (non-flexible): key, version, correlation id, client id.
fn header_v1(api_key: i16, version: i16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api_key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&7i32.to_be_bytes());
    h.extend_from_slice(&4i16.to_be_bytes());
    h.extend_from_slice(b"evil");
    h
}

/// A request header v2 (flexible): v1 plus an empty tagged-field section.
fn header_v2(api_key: i16, version: i16) -> Vec<u8> {
    let mut h = header_v1(api_key, version);
    h.push(0);
    h
}

/// Sends `bytes` and waits for the broker to close the connection. Bytes the
/// broker sends first (an error response) are allowed; staying open is not.
fn expect_closed(broker: &BrokerProcess, bytes: &[u8], what: &str) {
    let mut s = connect(broker);
    if let Err(e) = s.write_all(bytes) {
        // Closed while we were still writing: that is a refusal too.
        assert!(
            matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
            "{what}: write failed oddly: {e}"
        );
        return;
    }
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{what}: read failed: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the broker kept the connection open for {CLOSE_TIMEOUT:?}"
        );
    }
}

/// Sends `bytes` and gives the broker a moment to react, whatever it does
/// with this connection.
fn send_and_linger(broker: &BrokerProcess, bytes: &[u8]) {
    let mut s = connect(broker);
    if s.write_all(bytes).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// The broker process is alive and a fresh client gets metadata.
fn assert_healthy(broker: &mut BrokerProcess, after: &str) {
    broker.assert_alive();
    let mut c = KafkaConn::connect(&broker.bootstrap())
        .unwrap_or_else(|e| panic!("after {after}: a fresh client cannot connect: {e:#}"));
    let md = c
        .metadata(None)
        .unwrap_or_else(|e| panic!("after {after}: metadata failed: {e:#}"));
    assert_eq!(md.brokers.len(), 1, "after {after}: metadata {md:?}");
}

#[test]
fn oversized_frames_are_refused() {
    let mut broker = BrokerProcess::start();
    // Declares ~2 GiB, then starts sending it.
    let mut huge = 0x7fff_fff0u32.to_be_bytes().to_vec();
    huge.extend_from_slice(&header_v1(3, 1));
    huge.resize(huge.len() + 64 * 1024, 0);
    expect_closed(&broker, &huge, "a frame declaring 2 GiB");
    assert_healthy(&mut broker, "a 2 GiB frame");

    expect_closed(&broker, &(-1i32).to_be_bytes(), "a frame of negative size");
    assert_healthy(&mut broker, "a negative frame size");
}

#[test]
fn unknown_api_key_closes_the_connection() {
    let mut broker = BrokerProcess::start();
    expect_closed(&broker, &frame(&header_v1(9999, 0)), "API key 9999");
    assert_healthy(&mut broker, "an unknown API key");
    expect_closed(&broker, &frame(&header_v1(-5, 0)), "API key -5");
    assert_healthy(&mut broker, "a negative API key");
}

#[test]
fn garbage_and_truncated_bodies_close_the_connection() {
    let mut broker = BrokerProcess::start();

    // Metadata v12 (flexible) whose tagged-field count is a runaway varint.
    let mut garbage = header_v1(3, 12);
    garbage.extend_from_slice(&[0xff; 16]);
    expect_closed(
        &broker,
        &frame(&garbage),
        "a Metadata request of 0xff bytes",
    );
    assert_healthy(&mut broker, "a garbage body");

    // A frame too short to hold even a request header.
    expect_closed(&broker, &frame(&[0, 3]), "a 2-byte frame");
    assert_healthy(&mut broker, "a 2-byte frame");

    // A valid Produce v7 request, cut in the middle of its record batch; the
    // frame size matches what is sent, so the body itself ends early.
    let topic = unique_topic("trunc");
    broker.create_topic(&topic, 1, &[]);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(encode_batch(
                    &[Msg::new(Some("k"), "a value that will be cut")],
                    Compression::None,
                )))])]);
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(7)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("evil")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ProduceRequest::header_version(7))
        .expect("encode header");
    req.encode(&mut body, 7).expect("encode produce");
    let cut = &body[..body.len() - 20];
    expect_closed(&broker, &frame(cut), "a Produce request cut short");
    assert_healthy(&mut broker, "a truncated Produce request");

    let mut c = broker.client();
    assert_eq!(
        c.list_offset(&topic, 0, rivulet_tests::LATEST)
            .expect("latest"),
        0,
        "nothing from the truncated request may be stored"
    );
}

#[test]
fn absurd_array_lengths_do_not_kill_the_broker() {
    let mut broker = BrokerProcess::start();

    // Produce v7: transactional id null, acks -1, timeout, then a topic
    // array claiming i32::MAX entries.
    let mut produce_v7 = header_v1(0, 7);
    produce_v7.extend_from_slice(&(-1i16).to_be_bytes());
    produce_v7.extend_from_slice(&(-1i16).to_be_bytes());
    produce_v7.extend_from_slice(&5000i32.to_be_bytes());
    produce_v7.extend_from_slice(&i32::MAX.to_be_bytes());

    // Produce v7 with one topic whose partition array claims i32::MAX.
    let mut produce_v7_parts = header_v1(0, 7);
    produce_v7_parts.extend_from_slice(&(-1i16).to_be_bytes());
    produce_v7_parts.extend_from_slice(&(-1i16).to_be_bytes());
    produce_v7_parts.extend_from_slice(&5000i32.to_be_bytes());
    produce_v7_parts.extend_from_slice(&1i32.to_be_bytes());
    produce_v7_parts.extend_from_slice(&1i16.to_be_bytes());
    produce_v7_parts.push(b'x');
    produce_v7_parts.extend_from_slice(&i32::MAX.to_be_bytes());

    // Produce v9 (flexible): a compact topic array of u32::MAX - 1 entries.
    let mut produce_v9 = header_v2(0, 9);
    produce_v9.push(0); // null transactional id
    produce_v9.extend_from_slice(&(-1i16).to_be_bytes());
    produce_v9.extend_from_slice(&5000i32.to_be_bytes());
    produce_v9.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);

    // Metadata v12 (flexible): a compact topic array of u32::MAX - 1 entries.
    let mut metadata_v12 = header_v2(3, 12);
    metadata_v12.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);

    // CreateTopics v4: a topic array claiming i32::MAX entries.
    let mut create_v4 = header_v1(19, 4);
    create_v4.extend_from_slice(&i32::MAX.to_be_bytes());

    for (what, body) in [
        ("Produce v7 with i32::MAX topics", produce_v7),
        ("Produce v7 with i32::MAX partitions", produce_v7_parts),
        (
            "Produce v9 with a 4-billion compact topic array",
            produce_v9,
        ),
        (
            "Metadata v12 with a 4-billion compact topic array",
            metadata_v12,
        ),
        ("CreateTopics v4 with i32::MAX topics", create_v4),
    ] {
        send_and_linger(&broker, &frame(&body));
        assert_healthy(&mut broker, what);
    }
}

#[test]
fn corrupt_batches_get_corrupt_message() {
    let mut broker = BrokerProcess::start();
    let topic = unique_topic("crc");
    broker.create_topic(&topic, 1, &[]);
    let mut c = broker.client();
    let msgs = [
        Msg::new(Some("k1"), "first"),
        Msg::new(Some("k2"), "second"),
    ];

    // Flip one bit of the last record: the CRC no longer matches.
    let mut bad = encode_batch(&msgs, Compression::None).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let resp = c
        .produce_batch(&topic, 0, bad.into(), -1)
        .expect("the broker answers a produce with a bad CRC");
    assert_eq!(
        resp.error_code, CORRUPT_MESSAGE,
        "error code for a batch whose CRC does not match: {resp:?}"
    );

    // A batch whose record count lies (with a correct CRC over the lie).
    let mut lying = encode_batch(&msgs, Compression::None).to_vec();
    lying[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let resp = c
        .produce_batch(&topic, 0, lying.into(), -1)
        .expect("the broker answers a produce with a lying record count");
    assert_ne!(
        resp.error_code, 0,
        "a batch claiming i32::MAX records was accepted: {resp:?}"
    );
    broker.assert_alive();

    // Neither was stored, and the same connection still works.
    let base = c
        .produce(&topic, 0, &msgs, Compression::None)
        .expect("a good produce on the same connection");
    assert_eq!(base, 0, "rejected batches must not take offsets");
    let stored = c.fetch_all(&topic, 0, 0).expect("fetch");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].value.as_deref(), Some(&b"second"[..]));
    assert_healthy(&mut broker, "corrupt batches");
}

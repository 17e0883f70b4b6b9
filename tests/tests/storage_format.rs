//! DESIGN.md: "Store batches exactly as produced". A batch sent with any
//! codec lands in the segment file byte for byte, except for the two fields
//! the broker owns (base offset and partition leader epoch).

use kafka_protocol::records::Compression;
use rivulet_tests::{
    kafka::encode_batch,
    segments::{partition_dir, read_batches, segment_name},
    unique_topic, BrokerProcess, Msg,
};

#[test]
fn batches_are_stored_byte_for_byte() {
    let mut broker = BrokerProcess::start();
    let topic = unique_topic("bytes");
    broker.create_topic(&topic, 1, &[]);
    let mut client = broker.client();

    let codecs = [
        (Compression::None, 0),
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ];
    let mut sent = Vec::new();
    for (n, (codec, _)) in codecs.iter().enumerate() {
        let msgs: Vec<Msg> = (0..5)
            .map(|i| {
                Msg::new(
                    Some(&format!("k{i}")),
                    &format!("{codec:?}-{i}-").repeat(30),
                )
                .header("h", "x")
            })
            .collect();
        let batch = encode_batch(&msgs, *codec);
        let resp = client
            .produce_batch(&topic, 0, batch.clone(), -1)
            .expect("produce");
        assert_eq!(resp.error_code, 0, "produce {codec:?}: {resp:?}");
        assert_eq!(
            resp.base_offset,
            (n * 5) as i64,
            "base offset of the {codec:?} batch"
        );
        sent.push(batch);
    }
    let status = broker.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let segment = partition_dir(broker.data_dir(), &topic, 0).join(segment_name(0));
    let data = std::fs::read(&segment).expect("read segment");
    let stored = read_batches(&segment);
    assert_eq!(stored.len(), codecs.len(), "stored batches: {stored:?}");
    for ((batch, (codec, id)), info) in sent.iter().zip(codecs).zip(&stored) {
        assert_eq!(info.codec(), id, "codec of the stored {codec:?} batch");
        let bytes = &data[info.position as usize..(info.position + info.size) as usize];
        assert_eq!(
            bytes.len(),
            batch.len(),
            "size of the stored {codec:?} batch"
        );
        assert_eq!(
            bytes[8..12],
            batch[8..12],
            "length field of the {codec:?} batch"
        );
        assert!(
            bytes[16..] == batch[16..],
            "the {codec:?} batch was re-encoded: stored bytes from the magic byte on differ"
        );
    }
}

//! Tests of [`super`]: inputs are built by `kafka-protocol`'s encoder (or by
//! hand, for the fields that encoder cannot write) and outputs are read back
//! with its decoder, so neither side is checked only against itself.

use bytes::Bytes;
use kafka_protocol::{
    indexmap::IndexMap,
    protocol::StrBytes,
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    },
};

use super::*;
use crate::batch::{check_crc, validate_batches};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Records of a transactional producer (id 4242, epoch 7, sequences from
/// 77) at offsets from 1000 with the given keys, distinct timestamps, one
/// null value and headers on every other record.
fn sample_records(keys: &[Option<&str>]) -> Vec<Record> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let mut headers = IndexMap::new();
            if i % 2 == 0 {
                headers.insert(StrBytes::from_string(format!("trace-{i}")), Some(bytes(i)));
                headers.insert(StrBytes::from_static_str("empty"), None);
            }
            Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 9,
                producer_id: 4242,
                producer_epoch: 7,
                timestamp_type: TimestampType::Creation,
                offset: 1000 + i as i64,
                sequence: 77 + i as i32,
                timestamp: 1_700_000_000_000 + 37 * i as i64,
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: (i != 2).then(|| bytes(i)),
                headers,
            }
        })
        .collect()
}

fn bytes(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}-{}", "x".repeat(i * 5)))
}

fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).expect("encodable");
    buf.to_vec()
}

fn decode(batches: &[u8]) -> Vec<Record> {
    let mut buf = Bytes::copy_from_slice(batches);
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decodable")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

/// The uncompressed records section of the one batch in `batch`.
fn section_of(batch: &[u8]) -> Vec<u8> {
    let batch = Batches::new(batch).next().unwrap().unwrap();
    batch.records_section().unwrap().to_vec()
}

fn rewritten(records: &[u8], target: CompressionType) -> Vec<u8> {
    match recompress(records, target).unwrap() {
        Recompressed::Rewritten(out) => out,
        Recompressed::Unchanged => panic!("{target} kept the batch"),
    }
}

fn type_of(codec: Compression) -> CompressionType {
    CompressionType::ALL
        .into_iter()
        .find(|t| t.codec() == Some(codec))
        .unwrap()
}

const KEYS: [Option<&str>; 5] = [Some("a"), None, Some("b"), None, None];

#[test]
fn every_codec_pair_keeps_every_field() {
    let records = sample_records(&KEYS);
    for source in CODECS {
        let input = encode(&records, source);
        let before = validate_batches(&input).unwrap()[0];
        assert_eq!(before.compression(), source as u8);
        for target in CompressionType::ALL {
            let case = format!("{source:?} -> {target}");
            let out = match recompress(&input, target).unwrap() {
                Recompressed::Unchanged => {
                    assert!(target.codec().is_none_or(|c| c == source), "{case} kept");
                    continue;
                }
                Recompressed::Rewritten(out) => out,
            };
            let codec = target.codec().unwrap();
            assert_ne!(codec, source, "{case} rewrote a matching batch");
            // validate_batches checks the CRC, sizes and counts.
            let after = validate_batches(&out).unwrap();
            assert_eq!(after.len(), 1, "{case}");
            let after = after[0];
            assert_eq!(after.compression(), codec as u8, "{case}");
            let expected = BatchHeader {
                attributes: (before.attributes & !0x07) | codec as i16,
                batch_length: after.batch_length,
                crc: after.crc,
                ..before
            };
            assert_eq!(after, expected, "{case}: header fields changed");
            assert_eq!(decode(&out), records, "{case}: records changed");
            assert_eq!(section_of(&out), section_of(&input), "{case}");
        }
    }
}

/// Writes a v2 record with the given raw fields.
fn raw_record(
    attributes: u8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> Vec<u8> {
    let mut body = vec![attributes];
    put_varlong(&mut body, timestamp_delta);
    put_varlong(&mut body, offset_delta.into());
    put_nullable(&mut body, key);
    put_nullable(&mut body, value);
    put_varlong(&mut body, headers.len() as i64);
    for (k, v) in headers {
        put_nullable(&mut body, Some(k));
        put_nullable(&mut body, *v);
    }
    let mut record = Vec::new();
    put_varlong(&mut record, body.len() as i64);
    record.extend(body);
    record
}

fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_nullable(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(buf, -1),
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

/// An uncompressed batch with `header`'s fields (length and CRC computed).
fn assemble(header: &BatchHeader, section: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(header.base_offset.to_be_bytes());
    out.extend(((BatchHeader::SIZE - LOG_OVERHEAD + section.len()) as i32).to_be_bytes());
    out.extend(header.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend([0; 4]);
    out.extend(header.attributes.to_be_bytes());
    out.extend(header.last_offset_delta.to_be_bytes());
    out.extend(header.base_timestamp.to_be_bytes());
    out.extend(header.max_timestamp.to_be_bytes());
    out.extend(header.producer_id.to_be_bytes());
    out.extend(header.producer_epoch.to_be_bytes());
    out.extend(header.base_sequence.to_be_bytes());
    out.extend(header.records_count.to_be_bytes());
    out.extend_from_slice(section);
    fix_crc(&mut out);
    out
}

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

fn header(records_count: i32, last_offset_delta: i32, attributes: i16) -> BatchHeader {
    BatchHeader {
        base_offset: 5000,
        batch_length: 0,
        partition_leader_epoch: 11,
        magic: 2,
        crc: 0,
        attributes,
        last_offset_delta,
        base_timestamp: 2_000,
        max_timestamp: 2_500,
        producer_id: 99,
        producer_epoch: 3,
        base_sequence: 10,
        records_count,
    }
}

/// What `kafka-protocol`'s encoder cannot write: LogAppendTime, a base
/// timestamp above a record's (negative delta), a gap in offset deltas
/// (a compacted batch), duplicate header keys, record attributes.
fn unusual_batch() -> Vec<u8> {
    let mut section = raw_record(
        0x5a,
        0,
        0,
        Some(b"a"),
        Some(b"1"),
        &[(b"h", Some(b"x")), (b"h", Some(b"y"))],
    );
    section.extend(raw_record(0, -500, 1, None, Some(b"2"), &[]));
    section.extend(raw_record(0, 500, 3, Some(b"c"), None, &[(b"k", None)]));
    // Transactional + LogAppendTime.
    assemble(&header(3, 3, 0x10 | 0x08), &section)
}

#[test]
fn fields_the_encoder_cannot_write_survive_every_codec() {
    let original = unusual_batch();
    for codec in CODECS.into_iter().skip(1) {
        let compressed = rewritten(&original, type_of(codec));
        let h = BatchHeader::parse(&compressed).unwrap();
        check_crc(&compressed, &h).unwrap();
        assert_eq!(h.compression(), codec as u8);
        assert!(h.is_log_append_time() && h.is_transactional(), "{codec:?}");
        // An independent decoder reads what was written.
        let seen: Vec<_> = decode(&compressed)
            .iter()
            .map(|r| (r.offset, r.timestamp, r.sequence, r.timestamp_type))
            .collect();
        let log_append = TimestampType::LogAppend;
        assert_eq!(
            seen,
            [
                (5000, 2_000, 10, log_append),
                (5001, 1_500, 11, log_append),
                (5003, 2_500, 13, log_append),
            ],
            "{codec:?}"
        );
        // And back to uncompressed, byte for byte.
        let back = rewritten(&compressed, CompressionType::Uncompressed);
        assert_eq!(back, original, "{codec:?}");
        let keyless = keyless_records(&compressed, "t", 0).unwrap().unwrap();
        assert_eq!(keyless.batch_indices, [1], "{codec:?}");
    }
}

#[test]
fn only_batches_with_another_codec_are_rewritten() {
    let gzip = encode(&sample_records(&[Some("a")]), Compression::Gzip);
    let plain = encode(&sample_records(&[Some("b"), None]), Compression::None);
    let zstd = encode(&sample_records(&[Some("c")]), Compression::Zstd);
    let payload = [gzip.clone(), plain.clone(), zstd].concat();

    let out = rewritten(&payload, CompressionType::Gzip);
    assert_eq!(
        out[..gzip.len()],
        gzip[..],
        "a matching batch is copied as is"
    );
    let headers = validate_batches(&out).unwrap();
    assert!(headers.iter().all(|h| h.compression() == 1));
    assert_eq!(decode(&out), decode(&payload));

    assert_eq!(
        recompress(&payload, CompressionType::Producer).unwrap(),
        Recompressed::Unchanged
    );
    let both_gzip = [gzip.clone(), gzip].concat();
    assert_eq!(
        recompress(&both_gzip, CompressionType::Gzip).unwrap(),
        Recompressed::Unchanged
    );
    assert_eq!(
        recompress(&plain, CompressionType::Uncompressed).unwrap(),
        Recompressed::Unchanged
    );
    assert_eq!(
        recompress(&[], CompressionType::Zstd).unwrap(),
        Recompressed::Unchanged
    );
}

#[test]
fn an_emptied_batch_is_kept_as_it_is() {
    // What the compactor leaves for an idempotent producer's last sequence.
    let empty = assemble(&header(0, 1, 0), &[]);
    assert_eq!(
        recompress(&empty, CompressionType::Zstd).unwrap(),
        Recompressed::Unchanged
    );
    assert_eq!(keyless_records(&empty, "t", 0).unwrap(), None);
}

#[test]
fn keyless_records_are_found_in_every_codec() {
    for codec in CODECS {
        let batch = encode(&sample_records(&KEYS), codec);
        let keyless = keyless_records(&batch, "orders", 3).unwrap().unwrap();
        assert_eq!(keyless.batch_indices, [1, 3, 4], "{codec:?}");
        assert_eq!(
            keyless.message,
            "Compacted topic cannot accept message without key in topic partition orders-3"
        );
        let keyed = encode(&sample_records(&[Some("a"), Some("")]), codec);
        assert_eq!(
            keyless_records(&keyed, "orders", 3).unwrap(),
            None,
            "{codec:?}"
        );
    }
    // Indices count across batches (Kafka allows only one per partition).
    let payload = [
        encode(&sample_records(&[Some("a"), None]), Compression::Lz4),
        encode(&sample_records(&[None, Some("b")]), Compression::None),
    ]
    .concat();
    let keyless = keyless_records(&payload, "t", 0).unwrap().unwrap();
    assert_eq!(keyless.batch_indices, [1, 2]);
    assert_eq!(keyless_records(&[], "t", 0).unwrap(), None);
}

#[test]
fn summary_quotes_the_first_three_errors_like_kafka() {
    let keyless = KeylessRecords {
        batch_indices: vec![0, 2, 5, 6],
        message: "m".into(),
    };
    assert_eq!(
        keyless.summary(),
        "One or more records have been rejected due to 4 record errors in total, and only \
         showing the first three errors at most: [RecordError(batchIndex=0, message='m'), \
         RecordError(batchIndex=2, message='m'), RecordError(batchIndex=5, message='m')]"
    );
}

#[test]
fn compression_type_takes_exactly_kafkas_values() {
    for t in CompressionType::ALL {
        assert_eq!(t.as_str().parse::<CompressionType>().unwrap(), t);
        assert_eq!(t.to_string(), t.as_str());
    }
    assert_eq!(CompressionType::default(), CompressionType::Producer);
    assert_eq!(CompressionType::Producer.codec(), None);
    assert_eq!(
        CompressionType::Uncompressed.codec(),
        Some(Compression::None)
    );
    for bad in ["none", "GZIP", "", "lz5", " zstd"] {
        let err = bad.parse::<CompressionType>().unwrap_err();
        assert_eq!(
            err,
            RewriteError::InvalidCompressionType { value: bad.into() }
        );
        assert!(err
            .to_string()
            .contains("producer, uncompressed, gzip, snappy, lz4, zstd"));
    }
}

fn both_fail(payload: &[u8]) -> RewriteError {
    let keyless = keyless_records(payload, "t", 0).unwrap_err();
    let recompressed = recompress(payload, CompressionType::Gzip).unwrap_err();
    assert_eq!(keyless, recompressed);
    keyless
}

#[test]
fn malformed_records_are_errors() {
    let record = raw_record(0, 0, 0, Some(b"k"), Some(b"v"), &[]);
    // The record claims a header it does not have.
    let mut bad = record.clone();
    let at = bad.len() - 1;
    bad[at] = 2;
    let err = both_fail(&assemble(&header(1, 0, 0), &bad));
    assert!(
        matches!(
            err,
            RewriteError::MalformedRecord {
                position: 0,
                index: 0,
                ..
            }
        ),
        "{err}"
    );
    // More records claimed than present, and fewer.
    let two = [record.clone(), record.clone()].concat();
    let err = both_fail(&assemble(&header(3, 2, 0), &two));
    assert!(
        matches!(err, RewriteError::MalformedRecord { index: 2, .. }),
        "{err}"
    );
    let err = both_fail(&assemble(&header(1, 0, 0), &two));
    assert!(
        matches!(err, RewriteError::MalformedRecord { index: 1, .. }),
        "{err}"
    );
    // A bad second batch is reported at its position.
    let good = assemble(&header(1, 0, 0), &record);
    let payload = [good.clone(), assemble(&header(1, 0, 0), &bad)].concat();
    let err = both_fail(&payload);
    assert!(
        matches!(err, RewriteError::MalformedRecord { position, .. } if position == good.len())
    );
    // Unknown codec, truncated payload, wrong magic.
    let mut codec7 = good.clone();
    codec7[ATTRIBUTES_AT + 1] |= 0x07;
    fix_crc(&mut codec7);
    assert!(matches!(
        both_fail(&codec7),
        RewriteError::UnknownCodec { codec: 7, .. }
    ));
    let err = both_fail(&good[..good.len() - 1]);
    assert!(matches!(
        err,
        RewriteError::InvalidBatch {
            source: BatchError::Truncated,
            ..
        }
    ));
    let mut magic1 = good;
    magic1[crate::batch::MAGIC_AT] = 1;
    let err = both_fail(&magic1);
    assert!(matches!(
        err,
        RewriteError::InvalidBatch {
            source: BatchError::UnsupportedMagic(1),
            ..
        }
    ));
}

#[test]
fn corrupt_compressed_data_is_an_error() {
    for codec in CODECS.into_iter().skip(1) {
        let mut batch = encode(&sample_records(&KEYS), codec);
        let end = batch.len();
        batch[end - 8..].fill(0xff);
        fix_crc(&mut batch);
        let keyless = keyless_records(&batch, "t", 0);
        let recompressed = recompress(&batch, CompressionType::Uncompressed);
        // Some codecs only notice through the record walk.
        assert!(keyless.is_err(), "{codec:?}: {keyless:?}");
        assert!(recompressed.is_err(), "{codec:?}: {recompressed:?}");
    }
}

#[test]
fn impossible_snappy_lengths_are_refused_before_allocating() {
    // Raw snappy declaring 4 GiB, then xerial framing declaring the same.
    let raw = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let mut framed = SNAPPY_XERIAL_MAGIC.to_vec();
    framed.extend((raw.len() as u32).to_be_bytes());
    framed.extend(raw);
    for body in [&raw[..], &framed[..]] {
        let batch = assemble(&header(1, 0, 2), body);
        let err = both_fail(&batch);
        assert!(
            matches!(&err, RewriteError::Decompress { reason, .. } if reason.contains("claims")),
            "{err}"
        );
    }
    // A truncated frame is refused too, not read past.
    let batch = assemble(&header(1, 0, 2), &framed[..framed.len() - 2]);
    assert!(matches!(both_fail(&batch), RewriteError::Decompress { .. }));
}

/// Flips every byte after the CRC of a batch in every codec to several
/// values (fixing the CRC each time): whatever comes out, nothing panics.
#[test]
fn no_mutation_panics() {
    let records = sample_records(&[Some("a"), None, Some("b")]);
    for codec in CODECS {
        let original = encode(&records, codec);
        for at in CRC_COVERED_FROM..original.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut batch = original.clone();
                batch[at] = value;
                fix_crc(&mut batch);
                let _ = keyless_records(&batch, "t", 0);
                let _ = recompress(&batch, CompressionType::Uncompressed);
                let _ = recompress(&batch, CompressionType::Lz4);
            }
        }
    }
}

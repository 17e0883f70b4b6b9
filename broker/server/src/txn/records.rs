//! Kafka's record formats of `__transaction_state`: the key is the
//! transactional id, the value the transaction's metadata (Kafka's
//! `TransactionLogKey` v0 and `TransactionLogValue` v0, or v1 with the
//! transaction version 2 fields as tagged fields: `PreviousProducerId`,
//! `NextProducerId`, `ClientTransactionVersion`), so the topic reads the
//! same as Kafka's. A tombstone removes an expired transactional id.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState};

/// A record that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("undecodable __transaction_state record: {0}")]
pub struct DecodeError(pub String);

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn get_string(buf: &mut Bytes) -> Result<String, DecodeError> {
    need(buf, 2)?;
    let len = buf.get_i16();
    if len < 0 {
        return Err(DecodeError("null string".into()));
    }
    need(buf, len as usize)?;
    let bytes = buf.split_to(len as usize);
    String::from_utf8(bytes.to_vec()).map_err(|e| DecodeError(e.to_string()))
}

fn need(buf: &Bytes, n: usize) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        return Err(DecodeError(format!(
            "truncated: {n} bytes needed, {} left",
            buf.remaining()
        )));
    }
    Ok(())
}

/// The key of a transactional id's record.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(0);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

/// The transactional id of a key.
pub fn decode_key(mut key: Bytes) -> Result<String, DecodeError> {
    need(&key, 2)?;
    let version = key.get_i16();
    if version != 0 {
        return Err(DecodeError(format!("key version {version}")));
    }
    get_string(&mut key)
}

/// Kafka's tags of `TransactionLogValue` v1's tagged fields.
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

/// The value version to write `meta` in: version 1 (flexible, with the
/// transaction version 2 fields as tagged fields) from `transaction.version`
/// 1 on, as Kafka does, and whenever `meta` carries one of those fields;
/// version 0 otherwise, which older releases read.
pub fn value_version(meta: &TxnMetadata, transaction_version: i16) -> i16 {
    let has_tagged =
        meta.previous_producer_id >= 0 || meta.next_producer_id >= 0 || meta.client_version != 0;
    i16::from(transaction_version >= 1 || has_tagged)
}

/// Partitions grouped by topic, as Kafka writes them.
fn by_topic(meta: &TxnMetadata) -> Vec<(&str, Vec<i32>)> {
    let mut by_topic: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, p) in &meta.partitions {
        match by_topic.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*p),
            _ => by_topic.push((topic.as_str(), vec![*p])),
        }
    }
    by_topic
}

/// The value of a transaction's metadata, in value `version` 0 or 1
/// (see [`value_version`]).
pub fn encode_value(meta: &TxnMetadata, version: i16) -> Bytes {
    let flexible = version >= 1;
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(i16::from(flexible));
    buf.put_i64(meta.producer_id);
    buf.put_i16(meta.producer_epoch);
    buf.put_i32(meta.timeout_ms);
    buf.put_i8(meta.state.code());
    let topics = by_topic(meta);
    if flexible {
        put_uvarint(&mut buf, topics.len() as u32 + 1);
    } else {
        buf.put_i32(topics.len() as i32);
    }
    for (topic, ps) in topics {
        if flexible {
            put_uvarint(&mut buf, topic.len() as u32 + 1);
            buf.put_slice(topic.as_bytes());
            put_uvarint(&mut buf, ps.len() as u32 + 1);
        } else {
            put_string(&mut buf, topic);
            buf.put_i32(ps.len() as i32);
        }
        for p in ps {
            buf.put_i32(p);
        }
        if flexible {
            put_uvarint(&mut buf, 0); // no tagged fields per topic
        }
    }
    buf.put_i64(meta.update_ms);
    buf.put_i64(meta.start_ms);
    if flexible {
        let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
        if meta.previous_producer_id >= 0 {
            tagged.push((
                TAG_PREVIOUS_PRODUCER_ID,
                meta.previous_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if meta.next_producer_id >= 0 {
            tagged.push((
                TAG_NEXT_PRODUCER_ID,
                meta.next_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if meta.client_version != 0 {
            tagged.push((
                TAG_CLIENT_TRANSACTION_VERSION,
                meta.client_version.to_be_bytes().to_vec(),
            ));
        }
        put_uvarint(&mut buf, tagged.len() as u32);
        for (tag, data) in tagged {
            put_uvarint(&mut buf, tag);
            put_uvarint(&mut buf, data.len() as u32);
            buf.put_slice(&data);
        }
    }
    buf.freeze()
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_uvarint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        need(buf, 1)?;
        let b = buf.get_u8();
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint longer than 5 bytes".into()))
}

/// A compact array or string length (`uvarint(n + 1)`; 0 is null).
fn get_compact_len(buf: &mut Bytes) -> Result<usize, DecodeError> {
    Ok(get_uvarint(buf)?.saturating_sub(1) as usize)
}

/// Skips a tagged-field section, handing known ones to `field`.
fn get_tagged(
    buf: &mut Bytes,
    mut field: impl FnMut(u32, Bytes) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let count = get_uvarint(buf)?;
    for _ in 0..count {
        let tag = get_uvarint(buf)?;
        let size = get_uvarint(buf)? as usize;
        need(buf, size)?;
        field(tag, buf.split_to(size))?;
    }
    Ok(())
}

/// A transaction's metadata from its value (version 0 or 1).
pub fn decode_value(transactional_id: &str, mut value: Bytes) -> Result<TxnMetadata, DecodeError> {
    need(&value, 2 + 8 + 2 + 4 + 1 + 1)?;
    let version = value.get_i16();
    if !(0..=1).contains(&version) {
        return Err(DecodeError(format!("value version {version}")));
    }
    let flexible = version == 1;
    let producer_id = value.get_i64();
    let producer_epoch = value.get_i16();
    let timeout_ms = value.get_i32();
    let code = value.get_i8();
    let state = TxnState::from_code(code)
        .ok_or_else(|| DecodeError(format!("transaction state {code}")))?;
    let topics = if flexible {
        get_compact_len(&mut value)?
    } else {
        need(&value, 4)?;
        value.get_i32().max(0) as usize
    };
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..topics {
        let (topic, count) = if flexible {
            let len = get_compact_len(&mut value)?;
            need(&value, len)?;
            let topic = String::from_utf8(value.split_to(len).to_vec())
                .map_err(|e| DecodeError(e.to_string()))?;
            (topic, get_compact_len(&mut value)?)
        } else {
            let topic = get_string(&mut value)?;
            need(&value, 4)?;
            (topic, value.get_i32().max(0) as usize)
        };
        need(&value, 4 * count)?;
        for _ in 0..count {
            partitions.insert((topic.clone(), value.get_i32()));
        }
        if flexible {
            get_tagged(&mut value, |_, _| Ok(()))?;
        }
    }
    need(&value, 16)?;
    let update_ms = value.get_i64();
    let start_ms = value.get_i64();
    let mut meta = TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
        previous_producer_id: -1,
        next_producer_id: -1,
        client_version: 0,
    };
    if flexible {
        get_tagged(&mut value, |tag, mut data| {
            let size = data.len();
            let bad = || DecodeError(format!("tagged field {tag} of {size} bytes"));
            match tag {
                TAG_PREVIOUS_PRODUCER_ID if size == 8 => meta.previous_producer_id = data.get_i64(),
                TAG_NEXT_PRODUCER_ID if size == 8 => meta.next_producer_id = data.get_i64(),
                TAG_CLIENT_TRANSACTION_VERSION if size == 2 => meta.client_version = data.get_i16(),
                TAG_PREVIOUS_PRODUCER_ID
                | TAG_NEXT_PRODUCER_ID
                | TAG_CLIENT_TRANSACTION_VERSION => return Err(bad()),
                _ => {} // a newer release's field: ignored, as Kafka does
            }
            Ok(())
        })?;
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_kafkas_layout() {
        let meta = TxnMetadata {
            transactional_id: "tx-1".into(),
            producer_id: 42,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 1),
                ("a".to_string(), 0),
                ("b".to_string(), 7),
            ]
            .into_iter()
            .collect(),
            start_ms: 1_000,
            update_ms: 2_000,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_version: 0,
        };
        let key = encode_key("tx-1");
        assert_eq!(&key[..], &[0, 0, 0, 4, b't', b'x', b'-', b'1']);
        assert_eq!(decode_key(key).unwrap(), "tx-1");
        let value = encode_value(&meta, 0);
        // version, pid, epoch, timeout, state: 17 bytes, then 2 topics.
        assert_eq!(&value[..2], &[0, 0]);
        assert_eq!(value[16], TxnState::Ongoing.code() as u8);
        assert_eq!(&value[17..21], &[0, 0, 0, 2]);
        assert_eq!(decode_value("tx-1", value).unwrap(), meta);
        assert_eq!(value_version(&meta, 0), 0);
        assert_eq!(value_version(&meta, 1), 1);
    }

    #[test]
    fn version_1_values_carry_the_transaction_version_2_fields() {
        let mut meta = TxnMetadata {
            transactional_id: "tx-2".into(),
            producer_id: 42,
            producer_epoch: i16::MAX,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("orders".to_string(), 3), ("orders".to_string(), 1)]
                .into_iter()
                .collect(),
            start_ms: 1_000,
            update_ms: 2_000,
            previous_producer_id: 7,
            next_producer_id: 43,
            client_version: 2,
        };
        assert_eq!(value_version(&meta, 0), 1, "tagged fields need version 1");
        let value = encode_value(&meta, 1);
        // version 1, pid, epoch, timeout, state, then a compact array of 1 topic.
        assert_eq!(&value[..2], &[0, 1]);
        assert_eq!(value[17], 2);
        // Kafka's layout: compact string "orders", compact array of 2 ids.
        assert_eq!(&value[18..25], &[7, b'o', b'r', b'd', b'e', b'r', b's']);
        assert_eq!(value[25], 3);
        // The tagged fields close the value: 3 of them, tags 0, 1, 2.
        let tail = &value[value.len() - (1 + 10 + 10 + 4)..];
        assert_eq!(&tail[..3], &[3, 0, 8]);
        assert_eq!(&tail[tail.len() - 4..], &[2, 2, 0, 2]);
        assert_eq!(decode_value("tx-2", value).unwrap(), meta);
        // Defaults are left out; the value still decodes to them.
        meta.previous_producer_id = -1;
        meta.next_producer_id = -1;
        meta.client_version = 0;
        let value = encode_value(&meta, 1);
        assert_eq!(value[value.len() - 1], 0, "no tagged fields");
        assert_eq!(decode_value("tx-2", value).unwrap(), meta);
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        let meta = TxnMetadata {
            transactional_id: "t".into(),
            producer_id: 1,
            producer_epoch: 0,
            timeout_ms: 1000,
            state: TxnState::Empty,
            partitions: Default::default(),
            start_ms: -1,
            update_ms: 5,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_version: 0,
        };
        let mut value = BytesMut::from(&encode_value(&meta, 1)[..]);
        value.truncate(value.len() - 1);
        value.put_slice(&[1, 9, 2, 0xAB, 0xCD]); // one field, tag 9, 2 bytes
        assert_eq!(decode_value("t", value.freeze()).unwrap(), meta);
    }

    #[test]
    fn truncated_or_unknown_records_are_errors_not_panics() {
        assert!(decode_key(Bytes::from_static(&[0, 1])).is_err());
        assert!(decode_key(Bytes::from_static(&[0, 0, 0, 9, b'x'])).is_err());
        assert!(decode_value("t", Bytes::from_static(&[0, 0, 1])).is_err());
        let mut bad = BytesMut::new();
        bad.put_i16(0);
        bad.put_i64(1);
        bad.put_i16(0);
        bad.put_i32(1000);
        bad.put_i8(99);
        bad.put_i32(0);
        bad.put_i64(0);
        bad.put_i64(0);
        assert!(decode_value("t", bad.freeze()).is_err());
    }
}

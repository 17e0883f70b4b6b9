//! Kafka's record formats of `__transaction_state`: the key is the
//! transactional id, the value the transaction's metadata (Kafka's
//! `TransactionLogKey` v0 and `TransactionLogValue` v0), so the topic reads
//! the same as Kafka's. A tombstone removes an expired transactional id.

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

/// The value of a transaction's metadata.
pub fn encode_value(meta: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(0);
    buf.put_i64(meta.producer_id);
    buf.put_i16(meta.producer_epoch);
    buf.put_i32(meta.timeout_ms);
    buf.put_i8(meta.state.code());
    // Partitions grouped by topic, as Kafka writes them.
    let mut by_topic: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, p) in &meta.partitions {
        match by_topic.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*p),
            _ => by_topic.push((topic.as_str(), vec![*p])),
        }
    }
    buf.put_i32(by_topic.len() as i32);
    for (topic, ps) in by_topic {
        put_string(&mut buf, topic);
        buf.put_i32(ps.len() as i32);
        for p in ps {
            buf.put_i32(p);
        }
    }
    buf.put_i64(meta.update_ms);
    buf.put_i64(meta.start_ms);
    buf.freeze()
}

/// A transaction's metadata from its value.
pub fn decode_value(transactional_id: &str, mut value: Bytes) -> Result<TxnMetadata, DecodeError> {
    need(&value, 2 + 8 + 2 + 4 + 1 + 4)?;
    let version = value.get_i16();
    if version != 0 {
        return Err(DecodeError(format!("value version {version}")));
    }
    let producer_id = value.get_i64();
    let producer_epoch = value.get_i16();
    let timeout_ms = value.get_i32();
    let code = value.get_i8();
    let state = TxnState::from_code(code)
        .ok_or_else(|| DecodeError(format!("transaction state {code}")))?;
    let topics = value.get_i32();
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut value)?;
        need(&value, 4)?;
        let count = value.get_i32();
        need(&value, 4 * count.max(0) as usize)?;
        for _ in 0..count.max(0) {
            partitions.insert((topic.clone(), value.get_i32()));
        }
    }
    need(&value, 16)?;
    let update_ms = value.get_i64();
    let start_ms = value.get_i64();
    Ok(TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
    })
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
        };
        let key = encode_key("tx-1");
        assert_eq!(&key[..], &[0, 0, 0, 4, b't', b'x', b'-', b'1']);
        assert_eq!(decode_key(key).unwrap(), "tx-1");
        let value = encode_value(&meta);
        // version, pid, epoch, timeout, state: 17 bytes, then 2 topics.
        assert_eq!(&value[..2], &[0, 0]);
        assert_eq!(value[16], TxnState::Ongoing.code() as u8);
        assert_eq!(&value[17..21], &[0, 0, 0, 2]);
        assert_eq!(decode_value("tx-1", value).unwrap(), meta);
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

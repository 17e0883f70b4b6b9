//! Persistence of groups and offsets in `__consumer_offsets`: records are
//! written as one uncompressed v2 batch per change and appended to the
//! group's partition; at start every partition is read back and the last
//! record per key wins (a tombstone deletes).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    protocol::StrBytes,
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    },
};
use rivulet_storage::StorageError;

use super::{
    records::{GroupValue, OffsetValue, RecordKey},
    state::Group,
};
use crate::partition::Partition;

/// Reading a partition of `__consumer_offsets` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The log could not be read.
    #[error("read __consumer_offsets-{partition} at offset {offset}: {source}")]
    Read {
        /// The partition.
        partition: i32,
        /// Where the read started.
        offset: i64,
        /// The cause.
        #[source]
        source: StorageError,
    },
}

/// One record to write: a key and a value, or `None` for a tombstone.
pub type StoreRecord = (RecordKey, Option<Bytes>);

/// Encodes records as one batch (offsets from 0; the log assigns real ones).
pub fn encode_batch(records: &[StoreRecord], now_ms: i64) -> Bytes {
    let records: Vec<(Bytes, Option<Bytes>)> = records
        .iter()
        .map(|(key, value)| (key.encode(), value.clone()))
        .collect();
    encode_raw_batch(&records, now_ms)
}

/// Encodes (key, value) records as one uncompressed v2 batch without a
/// producer (offsets from 0; the log assigns real ones).
pub fn encode_raw_batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Bytes {
    encode_producer_batch(records, None, now_ms)
}

/// Offset records of a transaction: one transactional batch of producer
/// (id, epoch), without a sequence (Kafka's coordinator-written batches).
pub fn encode_txn_batch(
    records: &[StoreRecord],
    producer_id: i64,
    producer_epoch: i16,
    now_ms: i64,
) -> Bytes {
    let records: Vec<(Bytes, Option<Bytes>)> = records
        .iter()
        .map(|(key, value)| (key.encode(), value.clone()))
        .collect();
    encode_producer_batch(&records, Some((producer_id, producer_epoch)), now_ms)
}

fn encode_producer_batch(
    records: &[(Bytes, Option<Bytes>)],
    producer: Option<(i64, i16)>,
    now_ms: i64,
) -> Bytes {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .expect("uncompressed v2 batches always encode");
    buf.freeze()
}

/// Appends records to `partition`; returns the offset after the last one
/// (what [`Partition::flush_to`] must reach for them to be durable).
pub fn append(
    partition: &Partition,
    records: &[StoreRecord],
    now_ms: i64,
) -> Result<i64, StorageError> {
    let batch = encode_batch(records, now_ms);
    let info = partition.append(&batch, now_ms)?;
    Ok(info.last_offset + 1)
}

/// Offsets committed in a transaction, by producer id, until its marker.
pub type PendingOffsets = std::collections::HashMap<i64, Vec<(String, (String, i32), OffsetValue)>>;

/// Everything one partition holds: the last group metadata and offsets per key.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Offsets of transactions with no marker yet (TxnOffsetCommit).
    pub pending: PendingOffsets,
    /// Group metadata by group id.
    pub groups: BTreeMap<String, GroupValue>,
    /// Committed offsets by group id, topic and partition.
    pub offsets: BTreeMap<String, BTreeMap<(String, i32), OffsetValue>>,
}

impl Loaded {
    fn apply(&mut self, key: RecordKey, value: Option<Bytes>) {
        match key {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                let decoded = value.map(OffsetValue::decode);
                match decoded {
                    Some(Ok(v)) => {
                        self.offsets
                            .entry(group)
                            .or_default()
                            .insert((topic, partition), v);
                    }
                    None => {
                        if let Some(g) = self.offsets.get_mut(&group) {
                            g.remove(&(topic, partition));
                            if g.is_empty() {
                                self.offsets.remove(&group);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(group, error = %e, "skipping undecodable offset record")
                    }
                }
            }
            RecordKey::Group { group } => match value.map(GroupValue::decode) {
                Some(Ok(v)) => {
                    self.groups.insert(group, v);
                }
                None => {
                    self.groups.remove(&group);
                }
                Some(Err(e)) => {
                    tracing::warn!(group, error = %e, "skipping undecodable group record")
                }
            },
        }
    }

    /// The groups these records describe, as of `now`.
    pub fn into_groups(self, now_ms: i64) -> Vec<Group> {
        let mut out: BTreeMap<String, Group> = self
            .groups
            .into_iter()
            .map(|(id, value)| (id.clone(), Group::from_stored(&id, value, now_ms)))
            .collect();
        for (id, offsets) in self.offsets {
            let group = out.entry(id.clone()).or_insert_with(|| {
                // Offsets without metadata: a group that only stores offsets.
                let mut g = Group::new(&id, now_ms);
                g.state_timestamp = None;
                g
            });
            group.offsets = offsets.into_iter().map(|(k, v)| (k, v.into())).collect();
        }
        out.into_values().collect()
    }
}

/// Reads a whole `__consumer_offsets` partition.
pub fn load(partition: &Partition) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    read_records(partition, |record| {
        if record.control {
            // A transaction marker: its offsets count (commit) or vanish.
            let commit = record.key.as_ref().is_some_and(|k| is_commit_marker(k));
            if let Some(offsets) = loaded.pending.remove(&record.producer_id) {
                if commit {
                    for (group, tp, value) in offsets {
                        loaded.offsets.entry(group).or_default().insert(tp, value);
                    }
                }
            }
            return;
        }
        let Some(key) = record.key else { return };
        match RecordKey::decode(key) {
            Ok(RecordKey::Offset {
                group,
                topic,
                partition,
            }) if record.transactional && record.producer_id >= 0 => {
                match record.value.map(OffsetValue::decode) {
                    Some(Ok(v)) => loaded.pending.entry(record.producer_id).or_default().push((
                        group,
                        (topic, partition),
                        v,
                    )),
                    _ => tracing::warn!(group, "skipping a transactional offset record"),
                }
            }
            Ok(key) => loaded.apply(key, record.value),
            Err(e) => {
                tracing::warn!(offset = record.offset, error = %e, "skipping record with unknown key")
            }
        }
    })?;
    Ok(loaded)
}

/// Whether a control record's key is a COMMIT marker (version i16, type
/// i16: 0 abort, 1 commit).
pub fn is_commit_marker(key: &[u8]) -> bool {
    key.len() >= 4 && i16::from_be_bytes([key[2], key[3]]) == 1
}

/// Calls `f` on every record of a partition up to its high watermark, in
/// offset order (coordinators load their internal topics with it).
/// Undecodable batches are skipped with a warning.
pub fn read_records(
    partition: &Partition,
    mut f: impl FnMut(kafka_protocol::records::Record),
) -> Result<(), LoadError> {
    let (mut offset, end) = {
        let log = partition.read_log();
        (log.log_start_offset(), log.log_end_offset())
    };
    while offset < end {
        let read = partition
            .read(offset, 1 << 20, true)
            .map_err(|source| LoadError::Read {
                partition: partition.index,
                offset,
                source,
            })?;
        if read.bytes.is_empty() {
            break;
        }
        let mut at = 0usize;
        let bytes = read.bytes;
        while at + 61 <= bytes.len() {
            let base = i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let len = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
            let delta = i32::from_be_bytes(bytes[at + 23..at + 27].try_into().expect("4 bytes"));
            let total = 12 + len.max(0) as usize;
            if at + total > bytes.len() {
                break;
            }
            let mut batch = bytes.slice(at..at + total);
            at += total;
            offset = base + i64::from(delta) + 1;
            match RecordBatchDecoder::decode(&mut batch) {
                Ok(set) => set.records.into_iter().for_each(&mut f),
                Err(e) => tracing::warn!(offset = base, error = %e, "skipping undecodable batch"),
            }
        }
        if at == 0 {
            break;
        }
    }
    Ok(())
}

/// The metadata record of a group: its value, or a tombstone once it is Dead.
pub fn group_record(group: &Group) -> StoreRecord {
    let key = RecordKey::Group {
        group: group.id.clone(),
    };
    if group.state == super::state::GroupState::Dead {
        (key, None)
    } else {
        (key, Some(group.to_stored().encode()))
    }
}

/// The record of one committed offset (`None`: a tombstone).
pub fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    value: Option<&OffsetValue>,
) -> StoreRecord {
    let key = RecordKey::Offset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    };
    (key, value.map(OffsetValue::encode))
}

/// `StrBytes` from a `String` (handlers build responses with it).
pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{group::state::GroupState, metrics::Metrics};

    /// The partition as its only replica leads it (what it reads stops at
    /// the high watermark).
    fn open(dir: &std::path::Path) -> Partition {
        let metrics = Metrics::new(&[]);
        let health = std::sync::Arc::new(crate::log_dir::LogDirHealth::new(
            dir,
            metrics.series.offline_log_dirs.clone(),
        ));
        let p = Partition::open(
            0,
            dir,
            rivulet_storage::config::LogConfig::default(),
            metrics.partition("__consumer_offsets", 0),
            health,
        )
        .unwrap();
        p.become_leader(0, 0, 0, &[0], &[0]);
        p
    }

    #[test]
    fn written_records_load_back_with_last_write_winning() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path());
        let v = |offset| OffsetValue {
            offset,
            leader_epoch: 1,
            metadata: "m".into(),
            commit_timestamp: 5,
            expire_timestamp: -1,
        };
        append(
            &p,
            &[
                offset_record("g", "t", 0, Some(&v(10))),
                offset_record("g", "t", 1, Some(&v(20))),
            ],
            5,
        )
        .unwrap();
        append(&p, &[offset_record("g", "t", 0, Some(&v(11)))], 6).unwrap();
        append(&p, &[offset_record("g", "t", 1, None)], 7).unwrap();
        append(
            &p,
            &[
                offset_record("gone", "t", 0, Some(&v(1))),
                offset_record("gone", "t", 0, None),
            ],
            7,
        )
        .unwrap();
        let mut group = Group::new("g", 1);
        group.protocol_type = Some("consumer".into());
        group.generation = 3;
        append(&p, &[group_record(&group)], 8).unwrap();
        let mut dead = Group::new("dead", 1);
        append(&p, &[group_record(&dead)], 8).unwrap();
        dead.state = GroupState::Dead;
        append(&p, &[group_record(&dead)], 8).unwrap();
        let p = {
            p.close().unwrap();
            open(dir.path())
        };
        let groups = load(&p).unwrap().into_groups(100);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(
            (g.id.as_str(), g.generation, g.state),
            ("g", 3, GroupState::Empty)
        );
        assert_eq!(g.offsets.len(), 1);
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 11);
    }
}

//! Transactions in raw Kafka protocol, for what no installed client
//! speaks (transaction version 2, KIP-890 part 2): a transactional
//! producer that sends Produce v12, TxnOffsetCommit v5 and EndTxn v5
//! itself, and read_committed as a consumer applies it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        offset_fetch_request::OffsetFetchRequestTopic,
        produce_request::{PartitionProduceData, TopicProduceData},
        txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic},
        EndTxnRequest, EndTxnResponse, GroupId, InitProducerIdRequest, OffsetFetchRequest,
        ProduceRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
    },
    protocol::StrBytes,
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    },
    ResponseError,
};

use crate::kafka::{fetch_request, now_ms, topic_name, KafkaConn};

/// A protocol string.
pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Errors a client retries while a coordinator starts, moves or finishes
/// the previous transaction's markers.
pub fn retriable(code: i16) -> bool {
    [
        ResponseError::CoordinatorNotAvailable,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::NotCoordinator,
        ResponseError::ConcurrentTransactions,
        ResponseError::NotEnoughReplicas,
        ResponseError::NotLeaderOrFollower,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// Runs `attempt` until it answers something not retriable (20 s at most).
pub fn retry<T>(what: &str, mut attempt: impl FnMut() -> (i16, T)) -> (i16, T) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, value) = attempt();
        if !retriable(code) || Instant::now() > deadline {
            return (code, value);
        }
        assert!(Instant::now() < deadline, "{what}: still {code}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One transactional batch of `values` (each keyed by itself, so that
/// compacted topics take it too) from producer `pid`/`epoch`, starting at
/// sequence `seq`, stamped now.
pub fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[impl AsRef<str>]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: now_ms(),
            key: Some(Bytes::copy_from_slice(v.as_ref().as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_ref().as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.freeze()
}

/// A transactional producer speaking raw protocol: its id, producer id and
/// epoch, and the next sequence per partition (reset at every new epoch).
pub struct Producer {
    /// The transactional id.
    pub id: String,
    /// The producer id.
    pub pid: i64,
    /// The current epoch.
    pub epoch: i16,
    /// The next sequence per partition in this epoch.
    pub sequences: BTreeMap<(String, i32), i32>,
}

impl Producer {
    /// InitProducerId for `id` (retried while the coordinator starts).
    pub fn init(c: &mut KafkaConn, id: &str) -> Producer {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let (code, ids) = retry("InitProducerId", || {
            let r = c.call(&req, 5).expect("InitProducerId");
            (r.error_code, (r.producer_id.0, r.producer_epoch))
        });
        assert_eq!(code, 0, "InitProducerId");
        Producer {
            id: id.to_string(),
            pid: ids.0,
            epoch: ids.1,
            sequences: BTreeMap::new(),
        }
    }

    /// One transactional batch of `values` for `topic`-`partition` with
    /// epoch `epoch`; only batches of the current epoch advance the
    /// sequence (a zombie's start at 0).
    pub fn batch(&mut self, topic: &str, partition: i32, epoch: i16, values: &[String]) -> Bytes {
        let mut scratch = 0;
        let seq = if epoch == self.epoch {
            self.sequences
                .entry((topic.to_string(), partition))
                .or_default()
        } else {
            &mut scratch
        };
        let batch = txn_batch(self.pid, epoch, *seq, values);
        *seq += values.len() as i32;
        batch
    }

    /// Produce (of `version`) of `values` to each partition of `topic` in
    /// one request, with epoch `epoch`; the error code per partition.
    pub fn produce_with(
        &mut self,
        c: &mut KafkaConn,
        version: i16,
        epoch: i16,
        topic: &str,
        parts: &[(i32, Vec<String>)],
    ) -> Vec<i16> {
        let data = parts
            .iter()
            .map(|(p, values)| {
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(self.batch(topic, *p, epoch, values)))
            })
            .collect();
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_transactional_id(Some(TransactionalId(s(&self.id))))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(data)]);
        let (_, codes) = retry("Produce", || {
            let r = c.send(&req, version).expect("Produce");
            let codes: Vec<i16> = r.responses[0]
                .partition_responses
                .iter()
                .map(|p| p.error_code)
                .collect();
            let worst = codes.iter().copied().find(|c| *c != 0).unwrap_or(0);
            (worst, codes)
        });
        codes
    }

    /// Produce v12 of the current epoch, which must succeed.
    pub fn produce(&mut self, c: &mut KafkaConn, topic: &str, parts: &[(i32, Vec<String>)]) {
        let codes = self.produce_with(c, 12, self.epoch, topic, parts);
        assert!(codes.iter().all(|c| *c == 0), "Produce v12: {codes:?}");
    }

    /// TxnOffsetCommit v5 of `offset` for `group` on `topic`-0.
    pub fn commit_offset(&self, c: &mut KafkaConn, group: &str, topic: &str, offset: i64) -> i16 {
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(self.pid))
            .with_producer_epoch(self.epoch)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        retry("TxnOffsetCommit", || {
            let r = c.send(&req, 5).expect("TxnOffsetCommit v5");
            (r.topics[0].partitions[0].error_code, ())
        })
        .0
    }

    /// EndTxn v5 with `(pid, epoch)`, retried while retriable.
    pub fn end_as(&self, c: &mut KafkaConn, pid: i64, epoch: i16, commit: bool) -> EndTxnResponse {
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        retry("EndTxn", || {
            let r = c.send(&req, 5).expect("EndTxn v5");
            (r.error_code, r)
        })
        .1
    }

    /// Ends the transaction; the epoch must be bumped by one, and the
    /// producer continues with it (sequences start over).
    pub fn end(&mut self, c: &mut KafkaConn, commit: bool) {
        let r = self.end_as(c, self.pid, self.epoch, commit);
        assert_eq!(r.error_code, 0, "EndTxn v5");
        assert_eq!(
            (r.producer_id.0, r.producer_epoch),
            (self.pid, self.epoch + 1),
            "every end bumps the epoch"
        );
        self.epoch = r.producer_epoch;
        self.sequences.clear();
    }
}

/// `prefix-0` .. `prefix-{n-1}`.
pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// One record of a fetch: its offset, whether it is a marker's, its
/// producer and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its offset.
    pub offset: i64,
    /// A control record (transaction marker).
    pub control: bool,
    /// Its producer id.
    pub producer_id: i64,
    /// A transactional record.
    pub transactional: bool,
    /// Its value as text.
    pub value: String,
}

/// Fetch (`isolation` 0: read_uncommitted, 1: read_committed) of
/// `topic`-`partition` from its start to its high watermark, once no
/// transaction is open there (markers can lag the EndTxn answer): every
/// record, markers included, and the aborted transactions (first offset,
/// producer id).
pub fn fetch_records(
    c: &mut KafkaConn,
    topic: &str,
    partition: i32,
    isolation: i8,
) -> (Vec<Fetched>, Vec<(i64, i64)>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    'stable: loop {
        let mut out = Vec::new();
        let mut aborted: Vec<(i64, i64)> = Vec::new();
        let mut next = 0;
        loop {
            let req = fetch_request(topic, partition, next, isolation);
            let resp = c.send(&req, 12).expect("Fetch");
            let p = &resp.responses[0].partitions[0];
            assert_eq!(
                p.error_code, 0,
                "fetch {topic}-{partition}@{next}: log start {}, high watermark {}",
                p.log_start_offset, p.high_watermark
            );
            if p.last_stable_offset < p.high_watermark {
                assert!(Instant::now() < deadline, "{topic}-{partition}: LSO stuck");
                std::thread::sleep(Duration::from_millis(50));
                continue 'stable;
            }
            aborted.extend(
                p.aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| (a.first_offset, a.producer_id.0)),
            );
            let mut records = p.records.clone().unwrap_or_default();
            // Past whole batches, also those compaction left without records.
            let after = rivulet_wire::client::next_fetch_offset(&records);
            for set in RecordBatchDecoder::decode_all(&mut records).expect("decode") {
                for r in set.records.into_iter().filter(|r| r.offset >= next) {
                    let value = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                    out.push(Fetched {
                        offset: r.offset,
                        control: r.control,
                        producer_id: r.producer_id,
                        transactional: r.transactional,
                        value: value.unwrap_or_default(),
                    });
                }
            }
            next = after.unwrap_or(p.high_watermark).max(next);
            if next >= p.high_watermark {
                aborted.sort();
                aborted.dedup();
                return (out, aborted);
            }
            assert!(
                Instant::now() < deadline,
                "{topic}-{partition}: stuck at {next}"
            );
        }
    }
}

/// read_committed Fetch of `topic`-`partition` (see [`fetch_records`]):
/// the values of the committed records, as a client keeps them.
pub fn read_committed(c: &mut KafkaConn, topic: &str, partition: i32) -> Vec<String> {
    let (records, mut aborted) = fetch_records(c, topic, partition, 1);
    let mut aborting = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for r in records {
        while aborted.first().is_some_and(|(first, _)| *first <= r.offset) {
            aborting.insert(aborted.remove(0).1);
        }
        if r.control {
            aborting.remove(&r.producer_id);
        } else if !(r.transactional && aborting.contains(&r.producer_id)) {
            out.push(r.value);
        }
    }
    out
}

/// The committed offset of `group` on `topic`-0 (stable).
pub fn committed(c: &mut KafkaConn, group: &str, topic: &str) -> i64 {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![0])]))
        .with_require_stable(true);
    let unstable = ResponseError::UnstableOffsetCommit.code();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.send(&req, 7).expect("OffsetFetch");
        let p = &r.topics[0].partitions[0];
        if p.error_code != unstable && r.error_code == 0 {
            assert_eq!(p.error_code, 0);
            return p.committed_offset;
        }
        assert!(Instant::now() < deadline, "offsets stay unstable");
        std::thread::sleep(Duration::from_millis(50));
    }
}

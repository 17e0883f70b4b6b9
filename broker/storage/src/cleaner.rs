//! What compaction keeps of one batch: the pure decision, no I/O.
//!
//! Kafka's rules, applied record by record with the offset map (key ->
//! latest offset of that key in the log):
//! - a keyed record survives only if it is the latest for its key;
//! - a record without a key is kept (Kafka refuses them on compacted
//!   topics at produce time, but a topic may have changed policy);
//! - a tombstone (null value) that is the latest for its key is kept until
//!   its batch's delete horizon has passed. The horizon is stamped the
//!   first time compaction keeps the tombstone, as `now +
//!   delete.retention.ms`, in the batch itself (KIP-534: attribute bit 6
//!   set, base timestamp = horizon, record timestamp deltas re-encoded
//!   against it), so it survives merges and needs no side file;
//! - a transaction marker (control batch) stays while any batch of its
//!   transaction is kept before it. Once none is (compaction removed them,
//!   or the transaction wrote nothing here), the marker gets a delete
//!   horizon as a tombstone does, and goes when the horizon has passed,
//!   as in Kafka: a read_committed consumer that fetched the transaction's
//!   data before it was removed has `delete.retention.ms` to see the
//!   marker. [`MarkerTracker`] follows the transactions batch by batch;
//!   a marker whose batch holds a leader epoch's start stays;
//! - the records of an aborted transaction are all removed, and never
//!   enter the offset map, so they cannot supersede committed values;
//!   their batches go as emptied ones do;
//! - a batch whose records are all gone is dropped, except the last batch
//!   of an idempotent producer, which is kept without records (as Kafka
//!   does) so that the producer's last sequence survives a restart.
//!
//! Offsets never change: a rewritten batch keeps its base offset and
//! `lastOffsetDelta`, so its records may have gaps between them.

use std::collections::{HashMap, HashSet};

use crate::{
    batch::{BatchHeader, DELETE_HORIZON_FLAG},
    records::{encode_batch, DecodedBatch, RecordError, RecordView, Rewrite},
    txn::AbortedTxn,
};

/// Offset ranges (first offset to marker) of the aborted transactions of
/// a log, by producer id.
#[derive(Debug, Default)]
pub(crate) struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    /// The ranges of `aborted`.
    pub(crate) fn new(aborted: &[AbortedTxn]) -> Self {
        let mut ranges: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in aborted {
            ranges
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        AbortedRanges(ranges)
    }

    /// Whether `header` is a data batch of an aborted transaction.
    pub(crate) fn holds(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.0.get(&header.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, last)| (first..=last).contains(&header.base_offset))
            })
    }
}

/// Follows, in offset order over the batches a run keeps, which producers
/// have a batch of their current transaction kept, to tell which markers
/// close a transaction with nothing left before them.
#[derive(Debug)]
pub(crate) struct MarkerTracker {
    /// Producers with a data batch kept since their last marker.
    open: HashSet<i64>,
    /// Markers at or past this offset stay: a producer state snapshot at or
    /// below it may describe their transaction as open, and a log replayed
    /// from that snapshot must meet the marker that closes it.
    bound: i64,
    /// Whether this pass may find markers removable: only one that sees
    /// every batch from the log's start in order knows (the merge pass of a
    /// run does not; it only drops markers whose horizon has passed).
    finding: bool,
}

impl MarkerTracker {
    /// A tracker for markers below `bound`; `finding` as above.
    pub(crate) fn new(bound: i64, finding: bool) -> Self {
        MarkerTracker {
            open: HashSet::new(),
            bound,
            finding,
        }
    }

    /// The data batch `header` is kept.
    pub(crate) fn kept(&mut self, header: &BatchHeader) {
        if header.is_transactional() && !header.is_control() {
            self.open.insert(header.producer_id);
        }
    }

    /// Meets the marker `header`: whether no batch of its transaction was
    /// kept before it (so it may get a delete horizon).
    pub(crate) fn marker(&mut self, header: &BatchHeader) -> bool {
        let had_data = self.open.remove(&header.producer_id);
        self.finding && !had_data && header.base_offset < self.bound
    }
}

/// Key -> offset of the latest record with that key. Full keys, not
/// digests as in Kafka, so a hash collision can never drop a live record;
/// the cost is memory proportional to the distinct keys of one partition.
pub(crate) type OffsetMap = HashMap<Vec<u8>, i64>;

/// Adds the keys of `batch`'s records below `upper_bound` to `map`.
/// Batches are fed in offset order, so later records overwrite.
pub(crate) fn index_keys(
    batch: &[u8],
    header: BatchHeader,
    upper_bound: i64,
    map: &mut OffsetMap,
) -> Result<(), RecordError> {
    if header.is_control() {
        return Ok(());
    }
    let decoded = DecodedBatch::decode(batch, header)?;
    for record in decoded.records()? {
        let Some(key) = record.key else { continue };
        if record.offset >= upper_bound {
            break;
        }
        match map.get_mut(key) {
            Some(latest) => *latest = record.offset,
            None => {
                map.insert(key.to_vec(), record.offset);
            }
        }
    }
    Ok(())
}

/// Inputs of the per-batch decision that are the same for a whole run.
pub(crate) struct CleanContext<'a> {
    /// Latest offset per key over the whole log.
    pub latest: &'a OffsetMap,
    /// Time of the run, to stamp and check delete horizons.
    pub now_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// The outcome for one batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cleaned {
    /// Keep the stored bytes as they are.
    Unchanged,
    /// Replace the batch with these bytes.
    Rewritten {
        /// The new batch.
        batch: Vec<u8>,
        /// Records removed from it.
        removed: u64,
    },
    /// Remove the whole batch.
    Dropped {
        /// Records it held.
        removed: u64,
    },
}

/// Decides what survives of `batch` (exactly one whole batch). With
/// `keep_empty` a batch left without records is kept as a header (the
/// caller sets it for an idempotent producer's last batch and for a batch
/// holding a leader epoch's start). Of an `aborted` batch (an aborted
/// transaction's) no record survives. A marker stays unless
/// `marker_removable` (see [`MarkerTracker::marker`]) or its delete
/// horizon has passed.
pub(crate) fn clean_batch(
    batch: &[u8],
    header: BatchHeader,
    cx: &CleanContext<'_>,
    keep_empty: bool,
    aborted: bool,
    marker_removable: bool,
) -> Result<Cleaned, RecordError> {
    if header.is_control() {
        return clean_marker(
            batch,
            header,
            cx,
            marker_removable && !keep_empty,
            keep_empty,
        );
    }
    let decoded = DecodedBatch::decode(batch, header)?;
    let records = decoded.records()?;
    let horizon = header.delete_horizon();
    let horizon_passed = horizon.is_some_and(|h| cx.now_ms >= h);
    let is_live = |r: &RecordView<'_>| match r.key {
        _ if aborted => false,
        None => true,
        Some(key) if cx.latest.get(key).is_some_and(|&latest| latest > r.offset) => false,
        Some(_) => !(r.tombstone && horizon_passed),
    };
    let kept: Vec<RecordView<'_>> = records.iter().copied().filter(is_live).collect();
    let removed = (records.len() - kept.len()) as u64;
    let keeps_tombstones = kept.iter().any(|r| r.tombstone && r.key.is_some());

    let (attributes, base_timestamp) = if keeps_tombstones {
        let horizon = horizon.unwrap_or_else(|| cx.now_ms.saturating_add(cx.delete_retention_ms));
        (header.attributes | DELETE_HORIZON_FLAG, horizon)
    } else {
        // Back to a plain batch: the base timestamp is the first record's.
        let base = match (horizon, kept.first()) {
            (Some(_), Some(first)) => first.timestamp,
            (Some(_), None) => header.max_timestamp,
            (None, _) => header.base_timestamp,
        };
        (header.attributes & !DELETE_HORIZON_FLAG, base)
    };
    if removed == 0 && attributes == header.attributes {
        return Ok(Cleaned::Unchanged);
    }
    if kept.is_empty() && !keep_empty {
        return Ok(Cleaned::Dropped { removed });
    }
    // With LogAppendTime the batch's max timestamp is the append time,
    // which clients use instead of the record timestamps: keep it.
    let max_timestamp = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        kept.iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(header.max_timestamp)
    };
    let rewrite = Rewrite {
        attributes,
        base_timestamp,
        max_timestamp,
    };
    let batch = encode_batch(&header, rewrite, &kept)?;
    Ok(Cleaned::Rewritten { batch, removed })
}

/// A marker: stamped with a delete horizon when it first becomes
/// `removable`, dropped once that horizon has passed (unless it must stay
/// for `keep_empty`), kept as it is otherwise.
fn clean_marker(
    batch: &[u8],
    header: BatchHeader,
    cx: &CleanContext<'_>,
    removable: bool,
    keep_empty: bool,
) -> Result<Cleaned, RecordError> {
    match header.delete_horizon() {
        Some(horizon) if cx.now_ms >= horizon && !keep_empty => Ok(Cleaned::Dropped {
            removed: header.records_count.max(0) as u64,
        }),
        None if removable => {
            let decoded = DecodedBatch::decode(batch, header)?;
            let records = decoded.records()?;
            let rewrite = Rewrite {
                attributes: header.attributes | DELETE_HORIZON_FLAG,
                base_timestamp: cx.now_ms.saturating_add(cx.delete_retention_ms),
                max_timestamp: header.max_timestamp,
            };
            let batch = encode_batch(&header, rewrite, &records)?;
            Ok(Cleaned::Rewritten { batch, removed: 0 })
        }
        _ => Ok(Cleaned::Unchanged),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;

    use super::*;
    use crate::{
        batch::check_crc,
        test_util::{decode_records, keyed_batch, keyed_batch_from},
    };

    /// Parses and CRC-checks one batch (rewritten ones included, which
    /// produce validation would refuse for their record count).
    fn header(batch: &[u8]) -> BatchHeader {
        let header = BatchHeader::parse(batch).unwrap();
        check_crc(batch, &header).unwrap();
        header
    }

    fn map(entries: &[(&str, i64)]) -> OffsetMap {
        entries
            .iter()
            .map(|(k, o)| (k.as_bytes().to_vec(), *o))
            .collect()
    }

    fn cx(latest: &OffsetMap, now_ms: i64) -> CleanContext<'_> {
        CleanContext {
            latest,
            now_ms,
            delete_retention_ms: 100,
        }
    }

    #[test]
    fn index_keys_keeps_the_last_offset() {
        let batch = keyed_batch(
            &[
                (Some("a"), Some("1")),
                (Some("b"), Some("2")),
                (Some("a"), Some("3")),
                (None, Some("4")),
            ],
            0,
            Compression::Lz4,
        );
        let mut m = OffsetMap::new();
        index_keys(&batch, header(&batch), i64::MAX, &mut m).unwrap();
        assert_eq!(m, map(&[("a", 2), ("b", 1)]));
        let mut bounded = OffsetMap::new();
        index_keys(&batch, header(&batch), 2, &mut bounded).unwrap();
        assert_eq!(bounded, map(&[("a", 0), ("b", 1)]));
    }

    #[test]
    fn superseded_records_go_and_null_keys_stay() {
        let batch = keyed_batch(
            &[
                (Some("a"), Some("1")),
                (None, Some("x")),
                (Some("b"), Some("2")),
            ],
            10,
            Compression::None,
        );
        let latest = map(&[("a", 7), ("b", 2)]);
        let Cleaned::Rewritten {
            batch: out,
            removed,
        } = clean_batch(&batch, header(&batch), &cx(&latest, 0), false, false, false).unwrap()
        else {
            panic!("expected a rewrite")
        };
        assert_eq!(removed, 1);
        assert_eq!(
            decode_records(&out),
            [
                (1, 11, None, Some("x".into())),
                (2, 12, Some("b".into()), Some("2".into()))
            ]
        );
        let h = header(&out);
        assert_eq!(
            (h.base_offset, h.last_offset_delta, h.max_timestamp),
            (0, 2, 12)
        );
    }

    #[test]
    fn unchanged_and_dropped() {
        let batch = keyed_batch(&[(Some("a"), Some("1"))], 0, Compression::None);
        let latest = map(&[("a", 0)]);
        assert_eq!(
            clean_batch(&batch, header(&batch), &cx(&latest, 0), false, false, false).unwrap(),
            Cleaned::Unchanged
        );
        let newer = map(&[("a", 5)]);
        assert_eq!(
            clean_batch(&batch, header(&batch), &cx(&newer, 0), false, false, false).unwrap(),
            Cleaned::Dropped { removed: 1 }
        );
    }

    #[test]
    fn producer_last_batch_is_kept_empty() {
        let batch = keyed_batch_from(
            &[(Some("a"), Some("1")), (Some("a"), Some("2"))],
            0,
            Compression::Gzip,
            (9, 1, 40),
        );
        let newer = map(&[("a", 5)]);
        let Cleaned::Rewritten {
            batch: out,
            removed: 2,
        } = clean_batch(&batch, header(&batch), &cx(&newer, 0), true, false, false).unwrap()
        else {
            panic!("expected an empty batch")
        };
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!((h.records_count, h.last_offset_delta), (0, 1));
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.last_sequence()),
            (9, 1, 41)
        );
        assert!(decode_records(&out).is_empty());
    }

    #[test]
    fn aborted_records_all_go_and_only_aborted_batches_are_aborted() {
        let batch = keyed_batch_from(
            &[(Some("a"), Some("1")), (None, Some("2"))],
            0,
            Compression::None,
            (9, 0, 0),
        );
        let latest = map(&[("a", 0)]);
        assert_eq!(
            clean_batch(&batch, header(&batch), &cx(&latest, 0), false, true, false).unwrap(),
            Cleaned::Dropped { removed: 2 }
        );
        let ranges = AbortedRanges::new(&[AbortedTxn {
            producer_id: 9,
            first_offset: 10,
            last_offset: 20,
            last_stable_offset: 21,
        }]);
        let mut h = header(&batch);
        h.base_offset = 15;
        assert!(!ranges.holds(&h), "not transactional");
        h.attributes |= 0x10;
        assert!(ranges.holds(&h));
        h.base_offset = 21;
        assert!(!ranges.holds(&h), "after the marker");
        h.base_offset = 15;
        h.producer_id = 8;
        assert!(!ranges.holds(&h), "another producer");
    }

    #[test]
    fn tombstones_get_a_horizon_then_go() {
        let batch = keyed_batch(
            &[(Some("a"), None), (Some("b"), Some("1"))],
            50,
            Compression::Zstd,
        );
        let latest = map(&[("a", 0), ("b", 1)]);
        let Cleaned::Rewritten {
            batch: stamped,
            removed: 0,
        } = clean_batch(
            &batch,
            header(&batch),
            &cx(&latest, 1_000),
            false,
            false,
            false,
        )
        .unwrap()
        else {
            panic!("expected the horizon to be stamped")
        };
        let h = header(&stamped);
        assert_eq!(h.delete_horizon(), Some(1_100));
        // Record timestamps are unchanged although the base moved.
        assert_eq!(
            decode_records(&stamped),
            [
                (0, 50, Some("a".into()), None),
                (1, 51, Some("b".into()), Some("1".into()))
            ]
        );
        // Before the horizon nothing changes, at it the tombstone goes.
        assert_eq!(
            clean_batch(&stamped, h, &cx(&latest, 1_099), false, false, false).unwrap(),
            Cleaned::Unchanged
        );
        let Cleaned::Rewritten {
            batch: out,
            removed: 1,
        } = clean_batch(&stamped, h, &cx(&latest, 1_100), false, false, false).unwrap()
        else {
            panic!("expected the tombstone to go")
        };
        let h = header(&out);
        assert_eq!((h.delete_horizon(), h.base_timestamp), (None, 51));
        assert_eq!(
            decode_records(&out),
            [(1, 51, Some("b".into()), Some("1".into()))]
        );
    }

    #[test]
    fn a_marker_goes_after_its_transaction_and_the_delete_horizon() {
        use crate::txn::{encode_marker_batch, Marker};
        let commit = Marker {
            commit: true,
            coordinator_epoch: 0,
        };
        let marker = encode_marker_batch(9, 0, commit, 500);
        let data = crate::test_util::transactional(9, 0, 0, 1);
        let latest = OffsetMap::new();
        // A transaction with a batch kept before its marker keeps it.
        let mut tracker = MarkerTracker::new(i64::MAX, true);
        tracker.kept(&header(&data));
        assert!(!tracker.marker(&header(&marker)));
        // The next one has nothing kept: removable, once.
        assert!(tracker.marker(&header(&marker)));
        // Not at or past the bound, and not in a pass that only merges.
        assert!(!MarkerTracker::new(0, true).marker(&header(&marker)));
        assert!(!MarkerTracker::new(i64::MAX, false).marker(&header(&marker)));

        let h = header(&marker);
        assert_eq!(
            clean_batch(&marker, h, &cx(&latest, 1_000), false, false, false).unwrap(),
            Cleaned::Unchanged
        );
        let Cleaned::Rewritten {
            batch: stamped,
            removed: 0,
        } = clean_batch(&marker, h, &cx(&latest, 1_000), false, false, true).unwrap()
        else {
            panic!("expected the horizon to be stamped")
        };
        let s = header(&stamped);
        assert_eq!(s.delete_horizon(), Some(1_100));
        assert!(s.is_control() && s.is_transactional());
        assert_eq!((s.producer_id, s.records_count), (9, 1));
        // The record is the same marker, at its original time.
        let original = decode_records(&marker);
        assert_eq!(decode_records(&stamped), original);
        assert_eq!(
            clean_batch(&stamped, s, &cx(&latest, 1_099), false, false, false).unwrap(),
            Cleaned::Unchanged
        );
        assert_eq!(
            clean_batch(&stamped, s, &cx(&latest, 1_100), false, false, false).unwrap(),
            Cleaned::Dropped { removed: 1 }
        );
        // A marker holding a leader epoch's start stays.
        assert_eq!(
            clean_batch(&stamped, s, &cx(&latest, 1_100), true, false, true).unwrap(),
            Cleaned::Unchanged
        );
    }
}

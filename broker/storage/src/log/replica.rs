//! Replication: appending what a follower fetched from the partition
//! leader, and the leader epoch queries that tell a follower where its log
//! diverges from the leader's.
//!
//! A follower stores the leader's batches byte for byte: offsets and
//! partition leader epochs were assigned by the leader, and the leader
//! already checked producer sequences. The follower still records producer
//! state (open transactions included), transaction markers (into its
//! aborted index) and leader epochs from the headers, so that it can
//! become leader and go on deduplicating retries, serving read_committed
//! fetches and answering OffsetsForLeaderEpoch.
//!
//! Fetching needs nothing new: [`Log::read`] with `upper_bound` set to the
//! log end offset serves followers, and with the high watermark serves
//! consumers (followers only ever cut at batch boundaries, so the high
//! watermark, a minimum of their log end offsets, is one too).

use tracing::debug;

use super::Log;
use crate::{
    batch::{check_crc, check_stored_fields, BatchError, BatchHeader},
    error::StorageError,
    files::sync_dir,
    segment::Segment,
    AppendInfo,
};

impl Log {
    /// Appends batches fetched from the partition leader, keeping their base
    /// offsets and partition leader epochs exactly as given.
    ///
    /// `buf` holds whole RecordBatch v2 batches as the leader stores them
    /// (compacted ones included), each checked for format and CRC. A
    /// trailing partial batch, which a fetch response cut at `max_bytes`
    /// may end with, is ignored, as Kafka followers do: the returned
    /// `last_offset + 1` is where to fetch next. A buffer with no whole
    /// batch (empty, or only a partial one) appends nothing and returns
    /// `first_offset` = the log end offset, `last_offset` one below it.
    ///
    /// Offsets must move forward: the first batch must start at or after
    /// the log end offset and each later one after the previous one's last
    /// offset, otherwise nothing is written and
    /// [`StorageError::NonMonotonicOffset`] is returned. Gaps are legal
    /// (the leader's log may be compacted). If the log holds no records
    /// (start offset = end offset) and the first batch starts above the end,
    /// the log restarts there as with [`Log::truncate_fully_and_start_at`],
    /// so its start offset follows the leader's.
    ///
    /// No duplicate or sequence checks are made, but producer state and the
    /// leader epoch cache are updated; segments roll and `flush.messages` /
    /// `flush.ms` apply as for [`Log::append`]. `duplicate` is always false.
    pub fn append_replicated(
        &mut self,
        buf: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let headers = parse_fetched(buf)?;
        let end = self.log_end_offset();
        let mut info = AppendInfo {
            first_offset: end,
            last_offset: end - 1,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            duplicate: false,
            log_append_time: -1,
        };
        let Some(first) = headers.first() else {
            return Ok(info);
        };
        check_monotonic(&headers, end)?;
        if first.base_offset > end && self.log_start_offset == end {
            self.truncate_fully_and_start_at(first.base_offset)?;
        }
        info.first_offset = first.base_offset;

        let mut records = 0u64;
        let (mut from, mut at) = (0, 0);
        while from < headers.len() {
            let run = &headers[from..one_segment_run_end(&headers, from)];
            let len = run.iter().map(BatchHeader::total_size).sum::<usize>();
            self.write_replicated(&buf[at..at + len], run, now_ms)?;
            let mut batch_at = at;
            for header in run {
                if header.is_control() {
                    let batch = &buf[batch_at..batch_at + header.total_size()];
                    self.note_control_batch(header, batch)?;
                } else {
                    self.producers.record(header);
                }
                batch_at += header.total_size();
                self.epochs
                    .assign(header.partition_leader_epoch, header.base_offset);
                records += header.records_count as u64;
                info.note_max_timestamp(header);
                info.last_offset = header.last_offset();
            }
            (from, at) = (from + run.len(), at + len);
        }
        self.count_unflushed(records, now_ms)?;
        Ok(info)
    }

    /// Writes batches whose offsets fit one segment, rolling first as
    /// [`Log::append`] would. A new segment is named by the first batch's
    /// base offset, as Kafka names segments, even across a gap.
    fn write_replicated(
        &mut self,
        bytes: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let first = headers[0].base_offset;
        let last = headers[headers.len() - 1].last_offset();
        let active = self.active();
        if active.size() == 0 && active.base_offset() < first {
            self.replace_empty_active(first)?;
        } else if self.should_roll(bytes.len(), headers.len(), last, now_ms) {
            self.roll_at(first)?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(bytes, headers, interval, now_ms)
    }

    /// Replaces the empty active segment with one starting at `base`, above
    /// it, so offsets past a gap stay within reach of the segment's
    /// relative index offsets. The new segment is created first: a log
    /// always has a segment.
    fn replace_empty_active(&mut self, base: i64) -> Result<(), StorageError> {
        let old = self.active().base_offset();
        let segment = Segment::create(&self.dir, base, self.config.segment_index_bytes)?;
        self.segments.insert(base, segment);
        if let Some(empty) = self.segments.remove(&old) {
            empty.delete()?;
        }
        sync_dir(&self.dir)?;
        debug!(dir = %self.dir.display(), from = old, to = base, "moved empty active segment");
        Ok(())
    }

    /// The newest leader epoch that wrote to this log, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader epoch cache: `(epoch, first offset written in it)`, oldest
    /// first, strictly increasing in both (for tests and diagnostics).
    /// Entries start at or above the log start offset and below or at the
    /// log end offset.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries()
    }

    /// OffsetsForLeaderEpoch: where `epoch` ends in this log, as
    /// `(epoch, end offset)`.
    ///
    /// For the latest epoch that is the log end offset. For an older one it
    /// is the start offset of the first cached epoch above it, reported
    /// with the largest cached epoch not above `epoch` (or `epoch` itself
    /// when every cached epoch is above it), as Kafka does. `None`
    /// (Kafka's UNDEFINED) when the cache is empty, `epoch` is negative or
    /// above every cached epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }
}

/// Headers of the whole batches at the start of `buf`, each checked as a
/// stored batch (compacted batches may hold fewer records than their
/// offset range) with its CRC. A trailing partial batch ends the list; any
/// other defect rejects the buffer.
fn parse_fetched(buf: &[u8]) -> Result<Vec<BatchHeader>, StorageError> {
    let mut headers = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let checked = BatchHeader::parse(rest)
            .and_then(|header| check_stored_fields(&header, rest.len() as u64).map(|()| header));
        let header = match checked {
            Ok(header) => header,
            Err(BatchError::Truncated) => {
                debug!(
                    kept = at,
                    dropped = rest.len(),
                    "ignoring partial batch at end of fetch"
                );
                break;
            }
            Err(e) => return Err(e.into()),
        };
        check_crc(&rest[..header.total_size()], &header)?;
        at += header.total_size();
        headers.push(header);
    }
    Ok(headers)
}

/// Checks that `headers` start at or after `end` and each starts after the
/// one before it ends.
fn check_monotonic(headers: &[BatchHeader], end: i64) -> Result<(), StorageError> {
    let mut expected_at_least = end;
    for header in headers {
        if header.base_offset < expected_at_least {
            return Err(StorageError::NonMonotonicOffset {
                expected_at_least,
                found: header.base_offset,
            });
        }
        expected_at_least = header.last_offset() + 1;
    }
    Ok(())
}

/// End (exclusive) of the run of batches from `from` whose offsets fit one
/// segment starting at the first one's base offset: index entries hold
/// offsets relative to the segment base as `u32`, and a fetch may span a
/// compaction gap wider than that.
fn one_segment_run_end(headers: &[BatchHeader], from: usize) -> usize {
    let base = headers[from].base_offset;
    let fits = |h: &BatchHeader| h.last_offset() - base <= i64::from(u32::MAX);
    from + 1 + headers[from + 1..].iter().take_while(|h| fits(h)).count()
}

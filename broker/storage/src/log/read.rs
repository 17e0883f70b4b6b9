//! Reads: fetches, timestamp lookups and header walks, all through `&self`.
//!
//! Reads use positional I/O only, so any number of them can run at once
//! under a read lock while no append holds the write lock.

use bytes::Bytes;

use super::Log;
use crate::{
    batch::BatchHeader,
    error::StorageError,
    scan::{BatchScanner, Scanned},
    segment::Segment,
    ReadResult,
};

impl Log {
    /// Reads whole batches starting with the one containing `offset`.
    ///
    /// Following batches of the same segment are added while the total
    /// stays within `max_bytes`; with `min_one` the first batch is returned
    /// even when larger. No batch whose base offset is >= `upper_bound` (an
    /// exclusive bound such as the high watermark) is included. `offset ==`
    /// log end offset gives empty bytes; outside `[start, end]` it is
    /// [`StorageError::OffsetOutOfRange`].
    ///
    /// After compaction batches may hold fewer records than their offset
    /// range and offsets may be missing altogether: an offset in such a gap
    /// is served from the next batch that has later records, which Kafka
    /// clients handle by skipping to the offsets they find.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        self.check_range(offset)?;
        let mut result = ReadResult {
            bytes: Bytes::new(),
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        };
        let Some((segment, position, first, mut scan)) = self.locate(offset)? else {
            return Ok(result);
        };
        if first.base_offset >= upper_bound || (first.total_size() > max_bytes && !min_one) {
            return Ok(result);
        }
        let mut len = first.total_size();
        loop {
            match scan.next_batch()? {
                Scanned::Batch(_, h)
                    if h.base_offset < upper_bound && len + h.total_size() <= max_bytes =>
                {
                    len += h.total_size();
                }
                Scanned::Batch(..) | Scanned::End => break,
                Scanned::Invalid(pos, e) => return Err(segment.corrupt(pos, e)),
            }
        }
        result.bytes = segment.read_bytes(position, len)?;
        Ok(result)
    }

    /// The first batch whose max timestamp is >= `timestamp`, found through
    /// the time indexes, or `None` if every batch is older. Batches wholly
    /// below the log start offset are skipped.
    pub fn batch_for_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>, StorageError> {
        for segment in self.segments.values() {
            let candidate = segment.next_offset() > self.log_start_offset
                && segment
                    .max_timestamp()
                    .is_some_and(|(max, _)| max >= timestamp);
            if !candidate {
                continue;
            }
            if let Some((pos, header)) = segment.find_timestamp(timestamp, self.log_start_offset)? {
                return segment.read_bytes(pos, header.total_size()).map(Some);
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the base offset of the first
    /// batch holding it (ListOffsets MAX_TIMESTAMP; the server finds the
    /// exact record in that batch).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments
            .values()
            .filter_map(Segment::max_timestamp)
            .fold(None, |best, (ts, offset)| match best {
                Some((best_ts, _)) if best_ts >= ts => best,
                _ => Some((ts, offset)),
            })
    }

    /// Headers of every batch from the one containing `from_offset` to the
    /// end of the log (for compaction and replication).
    pub fn batch_headers(&self, from_offset: i64) -> Result<Vec<BatchHeader>, StorageError> {
        self.check_range(from_offset)?;
        let mut headers = Vec::new();
        let Some((first_segment, _, first, scan)) = self.locate(from_offset)? else {
            return Ok(headers);
        };
        headers.push(first);
        collect_headers(first_segment, scan, &mut headers)?;
        let later = self
            .segments
            .range(first_segment.base_offset() + 1..)
            .map(|(_, s)| s);
        for segment in later {
            collect_headers(segment, segment.scanner_from(0), &mut headers)?;
        }
        Ok(headers)
    }

    fn check_range(&self, offset: i64) -> Result<(), StorageError> {
        let (start, end) = (self.log_start_offset, self.log_end_offset());
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange { offset, start, end });
        }
        Ok(())
    }

    /// Finds the batch containing `offset`, or the first one after it if
    /// `offset` falls in a gap between segments.
    fn locate(
        &self,
        offset: i64,
    ) -> Result<Option<(&Segment, u64, BatchHeader, BatchScanner<'_>)>, StorageError> {
        let from = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in self.segments.range(from..).map(|(_, s)| s) {
            if let Some((pos, header, scan)) = segment.find_batch(offset)? {
                return Ok(Some((segment, pos, header, scan)));
            }
        }
        Ok(None)
    }
}

fn collect_headers(
    segment: &Segment,
    mut scan: BatchScanner<'_>,
    headers: &mut Vec<BatchHeader>,
) -> Result<(), StorageError> {
    loop {
        match scan.next_batch()? {
            Scanned::Batch(_, h) => headers.push(h),
            Scanned::End => return Ok(()),
            Scanned::Invalid(pos, e) => return Err(segment.corrupt(pos, e)),
        }
    }
}

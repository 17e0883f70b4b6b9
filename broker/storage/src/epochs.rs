//! The leader epoch cache: for each partition leader epoch, the first
//! offset written in it (Kafka's `leader-epoch-checkpoint`).
//!
//! Followers ask the leader "where does my latest epoch end in your log?"
//! (OffsetsForLeaderEpoch) and truncate to the answer before fetching, so a
//! replica that missed a leader change drops exactly the records the new
//! leader never had. This module is the pure bookkeeping behind that
//! answer; the log feeds it batch headers and offset moves.
//!
//! Entries are kept strictly increasing in both epoch and start offset, as
//! Kafka keeps them: assigning an epoch removes any entry that would break
//! that order. Nothing here touches the disk: the log stores the entries in
//! its producer state snapshots (`snapshot.rs`, in place of Kafka's
//! `leader-epoch-checkpoint`) and on open extends them from the batch
//! headers after the snapshot (see `Log::open`).

/// Start offsets of leader epochs, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    /// `(epoch, start offset)`, strictly increasing in both.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Records that `epoch` wrote at `start_offset`. Negative epochs (batches
    /// written without one) are ignored, as are later batches of the latest
    /// epoch. An epoch or offset lower than a cached one removes the cached
    /// entries at or above it first, so the order stays strict.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) {
        if epoch < 0 {
            return;
        }
        if let Some(&(latest, start)) = self.entries.last() {
            if latest == epoch && start <= start_offset {
                return;
            }
        }
        self.entries
            .retain(|&(e, start)| e < epoch && start < start_offset);
        self.entries.push((epoch, start_offset));
    }

    /// A cache holding `entries`, or `None` unless they are as
    /// [`LeaderEpochCache::assign`] keeps them: non-negative epochs and
    /// offsets, strictly increasing in both.
    pub(crate) fn from_entries(entries: Vec<(i32, i64)>) -> Option<Self> {
        let ordered = entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let valid = entries
            .iter()
            .all(|&(epoch, start)| epoch >= 0 && start >= 0);
        (ordered && valid).then_some(LeaderEpochCache { entries })
    }

    /// Drops the entries starting at or after `end_offset` (the new log end
    /// offset after a truncation).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) {
        self.entries.retain(|&(_, start)| start < end_offset);
    }

    /// Drops the entries wholly below `start_offset` (the new log start
    /// offset) and moves the start of the one holding it up to it.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) {
        let below = self
            .entries
            .partition_point(|&(_, start)| start <= start_offset);
        if below > 0 {
            self.entries.drain(..below - 1);
            self.entries[0].1 = start_offset;
        }
    }

    /// Forgets everything (the log was emptied).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// The newest epoch, if any.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    /// Start offset of the newest epoch, if any.
    pub(crate) fn latest_start(&self) -> Option<i64> {
        self.entries.last().map(|&(_, start)| start)
    }

    /// A copy of the entries, oldest first.
    pub(crate) fn entries(&self) -> Vec<(i32, i64)> {
        self.entries.clone()
    }

    /// Whether the batch `[base_offset, last_offset]` written in `epoch`
    /// holds the start of that epoch's entry, so that rebuilding the cache
    /// from the log needs the batch to stay.
    pub(crate) fn starts_in(&self, epoch: i32, base_offset: i64, last_offset: i64) -> bool {
        self.entries
            .iter()
            .any(|&(e, start)| e == epoch && (base_offset..=last_offset).contains(&start))
    }

    /// Kafka's OffsetsForLeaderEpoch answer for `epoch` in a log ending at
    /// `log_end_offset`: the latest epoch ends at the log end offset; an
    /// older one ends where the next higher cached epoch starts, and is
    /// reported as the largest cached epoch not above it (or itself when
    /// none is). `None` (UNDEFINED) for a negative epoch, an empty cache or
    /// an epoch above every cached one.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let latest = self.latest_epoch()?;
        if epoch < 0 {
            return None;
        }
        if epoch == latest {
            return Some((latest, log_end_offset));
        }
        let higher = self.entries.partition_point(|&(e, _)| e <= epoch);
        let &(_, next_start) = self.entries.get(higher)?;
        let floor = higher.checked_sub(1).map_or(epoch, |i| self.entries[i].0);
        Some((floor, next_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            cache.assign(epoch, start);
        }
        cache
    }

    #[test]
    fn assign_keeps_the_first_offset_of_each_epoch() {
        let c = cache(&[(-1, 0), (0, 0), (0, 3), (2, 5), (2, 6), (5, 7)]);
        assert_eq!(c.entries(), vec![(0, 0), (2, 5), (5, 7)]);
        assert_eq!(c.latest_epoch(), Some(5));
        assert_eq!(LeaderEpochCache::default().latest_epoch(), None);
    }

    #[test]
    fn assign_out_of_order_removes_what_breaks_the_order() {
        // A lower epoch wins over the entries at or above it.
        let mut c = cache(&[(0, 0), (2, 5), (5, 7)]);
        c.assign(3, 8);
        assert_eq!(c.entries(), vec![(0, 0), (2, 5), (3, 8)]);
        // The same epoch at a lower offset moves its start down.
        c.assign(3, 6);
        assert_eq!(c.entries(), vec![(0, 0), (2, 5), (3, 6)]);
        // A higher epoch at a lower offset replaces the entries above it.
        c.assign(4, 5);
        assert_eq!(c.entries(), vec![(0, 0), (4, 5)]);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(0, 0), (2, 5), (5, 7)]);
        let end = 10;
        assert_eq!(c.end_offset_for(0, end), Some((0, 5)));
        assert_eq!(c.end_offset_for(1, end), Some((0, 5)));
        assert_eq!(c.end_offset_for(2, end), Some((2, 7)));
        assert_eq!(c.end_offset_for(3, end), Some((2, 7)));
        assert_eq!(c.end_offset_for(5, end), Some((5, 10)));
        assert_eq!(c.end_offset_for(6, end), None);
        assert_eq!(c.end_offset_for(-1, end), None);
        // Below the oldest cached epoch the requested epoch is echoed.
        let c = cache(&[(3, 100), (4, 150)]);
        assert_eq!(c.end_offset_for(1, 200), Some((1, 100)));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), None);
    }

    #[test]
    fn truncate_from_end_drops_entries_at_or_after_the_end() {
        let mut c = cache(&[(0, 0), (2, 5), (5, 7)]);
        c.truncate_from_end(7);
        assert_eq!(c.entries(), vec![(0, 0), (2, 5)]);
        c.truncate_from_end(5);
        assert_eq!(c.entries(), vec![(0, 0)]);
        c.truncate_from_end(0);
        assert_eq!(c.entries(), vec![]);
    }

    #[test]
    fn truncate_from_start_collapses_entries_below_the_start() {
        let mut c = cache(&[(0, 0), (2, 5), (5, 7)]);
        c.truncate_from_start(0);
        assert_eq!(c.entries(), vec![(0, 0), (2, 5), (5, 7)]);
        c.truncate_from_start(6);
        assert_eq!(c.entries(), vec![(2, 6), (5, 7)]);
        c.truncate_from_start(7);
        assert_eq!(c.entries(), vec![(5, 7)]);
        c.truncate_from_start(20);
        assert_eq!(c.entries(), vec![(5, 20)]);
        // A start below every entry changes nothing.
        let mut c = cache(&[(3, 100)]);
        c.truncate_from_start(50);
        assert_eq!(c.entries(), vec![(3, 100)]);
    }

    #[test]
    fn from_entries_accepts_only_what_assign_keeps() {
        let c = cache(&[(0, 0), (2, 5), (5, 7)]);
        assert_eq!(LeaderEpochCache::from_entries(c.entries()), Some(c));
        assert_eq!(
            LeaderEpochCache::from_entries(vec![]),
            Some(LeaderEpochCache::default())
        );
        for bad in [
            vec![(0, 5), (1, 5)],
            vec![(1, 0), (1, 5)],
            vec![(2, 0), (1, 5)],
            vec![(-1, 0)],
            vec![(0, -1)],
        ] {
            assert_eq!(LeaderEpochCache::from_entries(bad), None);
        }
    }

    #[test]
    fn starts_in_finds_the_batch_holding_an_epoch_start() {
        let mut c = cache(&[(0, 0), (2, 5)]);
        c.truncate_from_start(2);
        assert!(c.starts_in(0, 0, 3));
        assert!(!c.starts_in(0, 3, 4));
        assert!(c.starts_in(2, 5, 5));
        assert!(!c.starts_in(1, 5, 5));
    }
}

//! The coordinator's background task and the periodic work it drives:
//! firing group timers, expiring committed offsets and refreshing metrics.

use std::{
    collections::BTreeMap,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::sync::watch;

use super::{lock, outbox::Outbox, Coordinator, SlotRef};
use crate::{
    broker::now_ms,
    group::{
        state::GroupState,
        store::{self, StoreRecord},
    },
};

impl Coordinator {
    /// Fires the timers that are due.
    async fn fire_due(&self) {
        let broker = self.cluster.broker();
        let now = now_ms();
        let due: Vec<String> = {
            let mut timers = lock(&self.timers);
            let mut due = Vec::new();
            while let Some(first) = timers.first().cloned() {
                if first.0 > now {
                    break;
                }
                timers.remove(&first);
                due.push(first.1);
            }
            due
        };
        for id in due {
            let Some(slot) = self.slot(&id, false) else {
                continue;
            };
            let mut out = Outbox::default();
            {
                let mut s = lock(&slot);
                s.deadline = None;
                let mut fx = Vec::new();
                s.group.tick(&self.config.group, now_ms(), &mut fx);
                self.settle(&slot, &mut s, fx, &mut out);
            }
            out.finish(broker.config.acks_all_fsync).await;
        }
    }

    /// Expires offsets past retention and removes groups left with nothing.
    pub async fn expire_offsets(&self) {
        let broker = self.cluster.broker();
        let slots: Vec<SlotRef> = lock(&self.groups).values().cloned().collect();
        let mut expired_total = 0;
        for slot in slots {
            let mut out = Outbox::default();
            {
                let mut s = lock(&slot);
                let now = now_ms();
                let expired = s
                    .group
                    .expire_offsets(now, self.config.offsets_retention_ms);
                expired_total += expired.len();
                let id = s.group.id.clone();
                let records: Vec<StoreRecord> = expired
                    .iter()
                    .map(|(t, p)| store::offset_record(&id, t, *p, None))
                    .collect();
                self.write(&id, &records, &mut out);
                self.settle(&slot, &mut s, Vec::new(), &mut out);
            }
            out.finish(broker.config.acks_all_fsync).await;
        }
        if expired_total > 0 {
            tracing::info!(offsets = expired_total, "expired committed offsets");
        }
    }

    /// Refreshes the group gauges and per-partition consumer lag.
    pub fn refresh_metrics(&self) {
        let broker = self.cluster.broker();
        let slots: Vec<SlotRef> = lock(&self.groups).values().cloned().collect();
        let mut by_state: BTreeMap<GroupState, i64> =
            GroupState::ALL.iter().map(|s| (*s, 0)).collect();
        let mut offsets = 0i64;
        self.metrics.lag.reset();
        self.metrics.committed.reset();
        self.metrics.lag_sum.reset();
        self.metrics.members.reset();
        let per_partition = self.metrics.per_partition.load(Ordering::Relaxed);
        for slot in slots {
            let s = lock(&slot);
            *by_state.entry(s.group.state).or_default() += 1;
            offsets += s.group.offsets.len() as i64;
            let group = s.group.id.as_str();
            self.metrics
                .members
                .with_label_values(&[group])
                .set(s.group.members.len() as i64);
            let mut lag_by_topic: BTreeMap<&str, i64> = BTreeMap::new();
            for ((topic, p), o) in &s.group.offsets {
                let Some(partition) = broker.topic(topic).and_then(|t| t.partition(*p)) else {
                    continue;
                };
                let lag = (partition.high_watermark() - o.offset).max(0);
                *lag_by_topic.entry(topic.as_str()).or_default() += lag;
                if !per_partition {
                    continue;
                }
                let labels = [group, topic.as_str(), &p.to_string()];
                self.metrics.lag.with_label_values(&labels).set(lag);
                self.metrics
                    .committed
                    .with_label_values(&labels)
                    .set(o.offset);
            }
            for (topic, lag) in lag_by_topic {
                self.metrics
                    .lag_sum
                    .with_label_values(&[group, topic])
                    .set(lag);
            }
        }
        for (state, n) in by_state {
            self.metrics
                .groups
                .with_label_values(&[state.name()])
                .set(n);
        }
        self.metrics.offsets.set(offsets);
    }
}

/// The coordinator's background task until `stop`: follow leadership of
/// `__consumer_offsets` as each metadata image becomes local state (loading
/// the partitions this broker now leads), fire group timers, expire
/// offsets and refresh metrics.
pub async fn run(c: Arc<Coordinator>, mut stop: watch::Receiver<bool>) {
    let _broker = c.cluster.broker().clone();
    let mut applied = c.cluster.subscribe_applied();
    c.on_leadership_change(&applied.borrow_and_update().clone());
    let mut retention = tokio::time::interval(c.config.retention_check_interval);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges = tokio::time::interval(Duration::from_secs(10));
    gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = lock(&c.timers).first().map(|(d, _)| *d);
        let wait = next.map_or(Duration::from_secs(3600), |d| {
            Duration::from_millis((d - now_ms()).max(0) as u64)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => c.fire_due().await,
            _ = c.wake.notified() => {}
            _ = retention.tick() => c.expire_offsets().await,
            _ = gauges.tick() => c.refresh_metrics(),
            changed = applied.changed() => match changed {
                Ok(()) => c.on_leadership_change(&applied.borrow_and_update().clone()),
                Err(_) => return,
            },
            _ = stop.changed() => {
                c.unload();
                return;
            }
        }
    }
}

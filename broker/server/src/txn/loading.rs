//! How a broker becomes (and stops being) the transaction coordinator of
//! `__transaction_state` partitions: it follows their leadership in the
//! metadata image, loads a partition it now leads (the last record of each
//! transactional id wins, a tombstone forgets it) and completes the
//! transactions found prepared, whose markers the previous coordinator may
//! not have finished; its background task also runs expiry.

use std::{collections::HashMap, sync::Arc, time::Duration};

use rivulet_quorum::metadata::ClusterMetadata;
use tokio::sync::Mutex as AsyncMutex;

use super::{
    coordinator::{lock, Ownership},
    records,
    state::TxnMetadata,
    TxnCoordinator, TRANSACTION_TOPIC,
};
use crate::group::{partition_for, store};

impl TxnCoordinator {
    /// Follows leadership of `__transaction_state` partitions: loads the
    /// ones this broker now leads (completing their prepared transactions)
    /// and drops the ones it no longer leads.
    pub fn on_leadership_change(self: &Arc<Self>, image: &ClusterMetadata) {
        let Some(meta) = image.topics.get(TRANSACTION_TOPIC) else {
            return;
        };
        let n = meta.partitions.len();
        let me = self.cluster.node_id;
        let mut to_load = Vec::new();
        let mut dropped = Vec::new();
        {
            let mut owned = lock(&self.owned);
            owned.resize(n, Ownership::NotLeader);
            for (&p, state) in &meta.partitions {
                let Some(slot) = owned.get_mut(p as usize) else {
                    continue;
                };
                let leads = state.leader == Some(me);
                let epoch = state.leader_epoch;
                match (*slot, leads) {
                    (Ownership::NotLeader, true) => {
                        *slot = Ownership::Loading;
                        to_load.push((p, epoch));
                    }
                    (Ownership::Loaded(e), true) if e != epoch => {
                        *slot = Ownership::Loading;
                        to_load.push((p, epoch));
                    }
                    (Ownership::Loading | Ownership::Loaded(_), false) => {
                        *slot = Ownership::NotLeader;
                        dropped.push(p);
                    }
                    _ => {}
                }
            }
        }
        if !dropped.is_empty() {
            let n = n as i32;
            lock(&self.entries).retain(|id, _| !dropped.contains(&partition_for(id, n)));
        }
        for (p, epoch) in to_load {
            let coordinator = self.clone();
            tokio::spawn(async move { coordinator.load_partition(p, epoch).await });
        }
    }

    async fn load_partition(self: Arc<Self>, p: i32, epoch: i32) {
        let broker = self.cluster.broker().clone();
        let Some(partition) = broker.topic(TRANSACTION_TOPIC).and_then(|t| t.partition(p)) else {
            if let Some(slot) = lock(&self.owned).get_mut(p as usize) {
                *slot = Ownership::NotLeader;
            }
            return;
        };
        let end = partition.read_log().log_end_offset();
        let _ = partition.wait_for_hw(end, Duration::from_secs(10)).await;
        let loaded = tokio::task::spawn_blocking(move || {
            let mut txns: HashMap<String, TxnMetadata> = HashMap::new();
            store::read_records(&partition, |record| {
                if record.control {
                    return;
                }
                let Some(key) = record.key else { return };
                let id = match records::decode_key(key) {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping a __transaction_state record");
                        return;
                    }
                };
                match record.value.map(|v| records::decode_value(&id, v)) {
                    Some(Ok(m)) => {
                        txns.insert(id, m);
                    }
                    None => {
                        txns.remove(&id);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "skipping a __transaction_state record")
                    }
                }
            })
            .map(|()| txns)
        })
        .await;
        let txns = match loaded {
            Ok(Ok(txns)) => txns,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "loading transactions failed");
                HashMap::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "loading transactions panicked");
                HashMap::new()
            }
        };
        let mut prepared = Vec::new();
        {
            let mut owned = lock(&self.owned);
            if owned.get(p as usize) != Some(&Ownership::Loading) {
                return;
            }
            let mut entries = lock(&self.entries);
            let count = txns.len();
            for (id, m) in txns {
                if m.state.is_preparing() {
                    prepared.push(m.clone());
                }
                entries.insert(id, Arc::new(AsyncMutex::new(Some(m))));
            }
            owned[p as usize] = Ownership::Loaded(epoch);
            tracing::info!(
                partition = p,
                transactions = count,
                "now coordinating the transactions of this partition"
            );
        }
        for m in prepared {
            self.spawn_completion(m, epoch);
        }
    }

    /// The coordinator's background task: follows leadership of
    /// `__transaction_state` and checks for expired transactions, until
    /// `stop` fires.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut images = self.cluster.subscribe_applied();
        let initial = images.borrow_and_update().clone();
        self.on_leadership_change(&initial);
        let mut tick = tokio::time::interval(self.config.abort_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = images.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let image = images.borrow_and_update().clone();
                    self.on_leadership_change(&image);
                }
                _ = tick.tick() => self.expire().await,
                _ = stop.changed() => return,
            }
        }
    }
}

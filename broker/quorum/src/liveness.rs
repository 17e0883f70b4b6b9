//! When each broker last proved it is alive, as this node saw it.
//!
//! Kept beside the state machine, not in the image: the instant a
//! registration or heartbeat was applied differs from node to node, so it
//! cannot be part of a replicated, deterministic image. The active
//! controller reads it to fence brokers whose heartbeats stopped (Kafka's
//! `broker.session.timeout.ms`). After a restart the record starts empty;
//! a new controller gives every broker a full session before fencing.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::time::Instant;

use crate::metadata::{BrokerId, MetadataCommand};

/// The last applied registration or heartbeat of each broker; clones share
/// the record.
#[derive(Debug, Clone, Default)]
pub struct BrokerLiveness {
    last_seen: Arc<Mutex<BTreeMap<BrokerId, Instant>>>,
}

impl BrokerLiveness {
    /// When a registration or heartbeat of `broker` was last applied here.
    pub fn last_seen(&self, broker: BrokerId) -> Option<Instant> {
        self.lock().get(&broker).copied()
    }

    /// Every broker's last sign of life.
    pub fn snapshot(&self) -> BTreeMap<BrokerId, Instant> {
        self.lock().clone()
    }

    /// Notes an accepted command applied at `at`: registrations and
    /// heartbeats (also inside batches) refresh a broker, unregistering
    /// forgets it. Rejected commands prove nothing and are not passed here.
    pub(crate) fn record(&self, command: &MetadataCommand, at: Instant) {
        let mut last_seen = self.lock();
        record_into(&mut last_seen, command, at);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<BrokerId, Instant>> {
        self.last_seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn record_into(
    last_seen: &mut BTreeMap<BrokerId, Instant>,
    command: &MetadataCommand,
    at: Instant,
) {
    match command {
        MetadataCommand::RegisterBroker { broker_id, .. }
        | MetadataCommand::BrokerHeartbeat { broker_id, .. } => {
            last_seen.insert(*broker_id, at);
        }
        MetadataCommand::UnregisterBroker { broker_id } => {
            last_seen.remove(broker_id);
        }
        MetadataCommand::Batch(commands) => {
            for c in commands {
                record_into(last_seen, c, at);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    #[test]
    fn registrations_and_heartbeats_refresh_and_unregister_forgets() {
        let liveness = BrokerLiveness::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let register = MetadataCommand::RegisterBroker {
            broker_id: 1,
            incarnation_id: Uuid::new_v4(),
            rack: None,
            endpoints: BTreeMap::new(),
            directory_id: None,
        };
        liveness.record(&register, t0);
        liveness.record(&MetadataCommand::FenceBroker { broker_id: 2 }, t0);
        assert_eq!(liveness.snapshot(), BTreeMap::from([(1, t0)]));
        let heartbeats = MetadataCommand::Batch(vec![
            MetadataCommand::BrokerHeartbeat {
                broker_id: 1,
                broker_epoch: 1,
            },
            MetadataCommand::BrokerHeartbeat {
                broker_id: 2,
                broker_epoch: 2,
            },
        ]);
        liveness.record(&heartbeats, t1);
        assert_eq!(liveness.last_seen(1), Some(t1));
        assert_eq!(liveness.last_seen(2), Some(t1));
        liveness.record(&MetadataCommand::UnregisterBroker { broker_id: 1 }, t1);
        assert_eq!(liveness.last_seen(1), None);
    }
}

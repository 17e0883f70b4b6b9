//! Watches this broker's leader lease (see `rivulet_quorum::BrokerLease`
//! and `broker::LeaderLease`): publishes it, so that acks=all requests
//! waiting on a leader whose lease ran out are answered
//! NOT_LEADER_OR_FOLLOWER at once (the producer retries at the new leader
//! instead of waiting out its request timeout), says so in the log when it
//! runs out and when it is regained, and keeps the lease gauge current.
//! The checks on the request path need no task: each reads the clock.

use std::{sync::Arc, time::Duration};

use crate::broker::Broker;

/// How often the lease is looked at: well below any session timeout.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Runs until aborted (the membership's shutdown).
pub(crate) async fn watch(broker: Arc<Broker>) {
    let mut held = true;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let now = broker.lease.publish();
        broker.metrics.leader_lease.set(i64::from(now));
        if now != held {
            if now {
                tracing::info!("leader lease regained: leading partitions again");
            } else {
                tracing::warn!(
                    "leader lease lost: no heartbeat accepted by the quorum within \
                     broker.session.timeout.ms; partitions led here answer NOT_LEADER_OR_FOLLOWER"
                );
            }
            held = now;
        }
    }
}

//! The group membership APIs: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup. Each runs the pure transition under the group's lock and
//! parks the JoinGroup or SyncGroup answer on a oneshot when it must wait.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::{lock, outbox::Outbox, Coordinator};
use crate::{
    broker::now_ms,
    group::state::{JoinRequest, JoinResult, Reply, SyncResult},
};

impl Coordinator {
    /// JoinGroup; waits while the answer is parked.
    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        let broker = self.cluster.broker();
        let member_id = req.member_id.clone();
        if let Err(e) = self.check_serving(group_id) {
            return JoinResult::error(&member_id, e);
        }
        let Some(slot) = self.slot(group_id, member_id.is_empty()) else {
            return JoinResult::error(&member_id, ResponseError::UnknownMemberId);
        };
        let mut out = Outbox::default();
        let (reply, rx) = {
            let mut s = lock(&slot);
            let mut fx = Vec::new();
            let reply = s.group.join(req, &self.config.group, now_ms(), &mut fx);
            let rx = park(&reply, &mut s.joins);
            self.settle(&slot, &mut s, fx, &mut out);
            (reply, rx)
        };
        let ok = out.finish(broker.config.acks_all_fsync).await;
        match (reply, rx) {
            (Reply::Now(r), _) if !ok && r.error.is_none() => {
                JoinResult::error(&r.member_id, ResponseError::CoordinatorNotAvailable)
            }
            (Reply::Now(r), _) => r,
            (Reply::Parked(id), Some(rx)) => rx
                .await
                .unwrap_or_else(|_| JoinResult::error(&id, ResponseError::RebalanceInProgress)),
            (Reply::Parked(id), None) => JoinResult::error(&id, ResponseError::UnknownServerError),
        }
    }

    /// SyncGroup; followers wait here until the leader's assignment arrives.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let broker = self.cluster.broker();
        match self.check_serving(group_id) {
            // The rebalance state was lost with the old coordinator: rejoin.
            Err(ResponseError::CoordinatorLoadInProgress) => {
                return SyncResult::error(ResponseError::RebalanceInProgress)
            }
            Err(e) => return SyncResult::error(e),
            Ok(()) => {}
        }
        let Some(slot) = self.slot(group_id, false) else {
            return SyncResult::error(ResponseError::UnknownMemberId);
        };
        let mut out = Outbox::default();
        let (reply, rx) = {
            let mut s = lock(&slot);
            let mut fx = Vec::new();
            let reply = s.group.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol,
                assignments,
                now_ms(),
                &mut fx,
            );
            let rx = park(&reply, &mut s.syncs);
            self.settle(&slot, &mut s, fx, &mut out);
            (reply, rx)
        };
        out.finish(broker.config.acks_all_fsync).await;
        match (reply, rx) {
            (Reply::Now(r), _) => r,
            (Reply::Parked(_), Some(rx)) => rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress)),
            (Reply::Parked(_), None) => SyncResult::error(ResponseError::UnknownServerError),
        }
    }

    /// Heartbeat; `None` is success.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        let _broker = self.cluster.broker();
        match self.check_serving(group_id) {
            // Kafka answers blindly while loading; the member learns more once it is done.
            Err(ResponseError::CoordinatorLoadInProgress) => return None,
            Err(e) => return Some(e),
            Ok(()) => {}
        }
        let Some(slot) = self.slot(group_id, false) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let mut s = lock(&slot);
        let result = s
            .group
            .heartbeat(member_id, instance_id, generation, now_ms());
        self.reschedule(&slot, &mut s);
        result
    }

    /// LeaveGroup: one result per member, or a group-level error.
    pub async fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let broker = self.cluster.broker();
        self.check_serving(group_id)?;
        let Some(slot) = self.slot(group_id, false) else {
            return Ok(vec![Some(ResponseError::UnknownMemberId); members.len()]);
        };
        let mut out = Outbox::default();
        let result = {
            let mut s = lock(&slot);
            let mut fx = Vec::new();
            let result = s
                .group
                .leave(members, &self.config.group, now_ms(), &mut fx);
            self.settle(&slot, &mut s, fx, &mut out);
            result
        };
        out.finish(broker.config.acks_all_fsync).await;
        result
    }
}

/// Registers the answer channel of a parked JoinGroup or SyncGroup; `None`
/// when the reply is answered now.
fn park<T>(
    reply: &Reply<T>,
    parked: &mut HashMap<String, oneshot::Sender<T>>,
) -> Option<oneshot::Receiver<T>> {
    match reply {
        Reply::Parked(id) => {
            let (tx, rx) = oneshot::channel();
            parked.insert(id.clone(), tx);
            Some(rx)
        }
        Reply::Now(_) => None,
    }
}

//! SyncGroup: followers park until the leader's assignment arrives, which
//! makes the group Stable.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{Effect, Group, GroupState, Reply};

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// The error, if any.
    pub error: Option<ResponseError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol: Option<String>,
    /// The receiver's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    /// An error answer.
    pub fn error(error: ResponseError) -> Self {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

impl Group {
    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment,
        }
    }

    /// Handles a SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Reply<SyncResult> {
        let fail = |e| Reply::Now(SyncResult::error(e));
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(instance_id, member_id) {
            return fail(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t))
            || protocol.is_some_and(|p| self.protocol.as_deref() != Some(p))
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                self.pending_sync.remove(member_id);
                let m = self.members.get_mut(member_id).expect("checked above");
                m.awaiting_sync = true;
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                if self.is_leader(member_id) {
                    let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    fx.push(Effect::StoreGroup);
                    self.transition(GroupState::Stable, now);
                    fx.push(Effect::RebalanceCompleted);
                    let result = self.sync_result(Bytes::new());
                    for m in self.members.values_mut() {
                        if m.awaiting_sync {
                            m.awaiting_sync = false;
                            m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                            let r = SyncResult {
                                assignment: m.assignment.clone(),
                                ..result.clone()
                            };
                            fx.push(Effect::Sync(m.member_id.clone(), r));
                        }
                    }
                }
                Reply::Parked(member_id.to_string())
            }
            GroupState::Stable => {
                self.pending_sync.remove(member_id);
                let m = self.members.get_mut(member_id).expect("checked above");
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                let assignment = m.assignment.clone();
                Reply::Now(self.sync_result(assignment))
            }
        }
    }
}

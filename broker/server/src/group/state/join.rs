//! JoinGroup: the request and answer types, and how a join is handled for a
//! new member, a known member and a static member coming back.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{
    Effect, Group, GroupConfig, GroupState, Member, Reply, SyncResult, NEW_MEMBER_JOIN_TIMEOUT_MS,
};

/// A JoinGroup, decoded and defaulted by the handler.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The member id ("" for a new member).
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// Session timeout (already checked against the broker's bounds).
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a dynamic member must first get its id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
    /// v9+: the response can tell a static leader to skip the assignment.
    pub supports_skip_assignment: bool,
    /// A fresh unique suffix for a new member id (a UUID in production).
    pub fresh_id: String,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// The error, if any.
    pub error: Option<ResponseError>,
    /// The generation (-1 on error).
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// Whether the leader must not compute an assignment (v9+).
    pub skip_assignment: bool,
    /// The member id of the receiver.
    pub member_id: String,
    /// Every member, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    /// An error answer.
    pub fn error(member_id: &str, error: ResponseError) -> Self {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

impl Group {
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty || self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    pub(super) fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if with_members {
                self.member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    /// Handles a JoinGroup whose session timeout and group id the caller
    /// already checked.
    pub fn join(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Reply<JoinResult> {
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                &req.member_id,
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinResult::error(
                &req.member_id,
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        let reply = if req.member_id.is_empty() {
            self.join_new_member(req, cfg, now, fx)
        } else {
            self.join_known_member(req, cfg, now, fx)
        };
        self.maybe_complete_join(now, fx);
        reply
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Reply<JoinResult> {
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let member_id = format!("{prefix}-{}", req.fresh_id);
        if let Some(instance) = req.group_instance_id.clone() {
            return match self.static_members.get(&instance).cloned() {
                Some(old) => self.replace_static_member(req, &old, member_id, cfg, now, fx),
                None => self.add_member_and_rebalance(req, member_id, cfg, now, fx),
            };
        }
        if req.require_known_member_id {
            self.pending_members
                .insert(member_id.clone(), now + i64::from(req.session_timeout_ms));
            return Reply::Now(JoinResult::error(
                &member_id,
                ResponseError::MemberIdRequired,
            ));
        }
        self.add_member_and_rebalance(req, member_id, cfg, now, fx)
    }

    fn join_known_member(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Reply<JoinResult> {
        let member_id = req.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            return self.add_member_and_rebalance(req, member_id, cfg, now, fx);
        }
        let instance = req.group_instance_id.as_deref();
        if self.is_fenced(instance, &member_id) {
            return Reply::Now(JoinResult::error(
                &member_id,
                ResponseError::FencedInstanceId,
            ));
        }
        let unknown_instance = instance.is_some_and(|i| !self.static_members.contains_key(i));
        if !self.members.contains_key(&member_id) || unknown_instance {
            return Reply::Now(JoinResult::error(
                &member_id,
                ResponseError::UnknownMemberId,
            ));
        }
        let matches = self.members[&member_id].matches(&req.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(&req, cfg, now, fx),
            GroupState::CompletingRebalance if matches => {
                // It lost the first response: answer with the current generation.
                let leader = self.is_leader(&member_id);
                Reply::Now(self.join_result(&member_id, leader))
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(&req, cfg, now, fx),
            GroupState::Stable if self.is_leader(&member_id) || !matches => {
                // A rejoining leader asks for a new assignment (e.g. topics changed).
                self.update_member_and_rebalance(&req, cfg, now, fx)
            }
            GroupState::Stable => Reply::Now(self.join_result(&member_id, false)),
            GroupState::Empty | GroupState::Dead => Reply::Now(JoinResult::error(
                &member_id,
                ResponseError::UnknownMemberId,
            )),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        member_id: String,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Reply<JoinResult> {
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.pending_members.remove(&member_id);
        self.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                awaiting_join: true,
                awaiting_sync: false,
                is_new: true,
                heartbeat_deadline: now + NEW_MEMBER_JOIN_TIMEOUT_MS,
            },
        );
        self.maybe_prepare_rebalance(cfg, now, fx);
        Reply::Parked(member_id)
    }

    fn update_member(&mut self, req: &JoinRequest, member_id: &str) {
        let m = self
            .members
            .get_mut(member_id)
            .expect("caller checked membership");
        m.protocols = req.protocols.clone();
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.awaiting_join = true;
    }

    fn update_member_and_rebalance(
        &mut self,
        req: &JoinRequest,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Reply<JoinResult> {
        self.update_member(req, &req.member_id);
        self.maybe_prepare_rebalance(cfg, now, fx);
        Reply::Parked(req.member_id.clone())
    }

    /// A static member came back with a new member id: the old id is fenced
    /// and its place (assignment, leadership) passes to the new id.
    fn replace_static_member(
        &mut self,
        req: JoinRequest,
        old_id: &str,
        new_id: String,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Reply<JoinResult> {
        let leader_before = self.leader.clone().unwrap_or_default();
        let mut member = self
            .members
            .remove(old_id)
            .expect("static members are members");
        if member.awaiting_join {
            fx.push(Effect::Join(
                old_id.to_string(),
                JoinResult::error(old_id, ResponseError::FencedInstanceId),
            ));
        }
        if member.awaiting_sync {
            fx.push(Effect::Sync(
                old_id.to_string(),
                SyncResult::error(ResponseError::FencedInstanceId),
            ));
        }
        member.awaiting_join = false;
        member.awaiting_sync = false;
        member.member_id = new_id.clone();
        member.heartbeat_deadline = now + i64::from(req.session_timeout_ms);
        self.members.insert(new_id.clone(), member);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        let instance = req.group_instance_id.clone().expect("static join");
        self.static_members.insert(instance, new_id.clone());
        let req = JoinRequest {
            member_id: new_id.clone(),
            ..req
        };
        match self.state {
            GroupState::Stable => {
                self.update_member(&req, &new_id);
                self.members
                    .get_mut(&new_id)
                    .expect("just inserted")
                    .awaiting_join = false;
                if self.select_protocol() == self.protocol {
                    // Nothing the assignment depends on changed: no rebalance.
                    fx.push(Effect::StoreGroup);
                    let is_leader = self.is_leader(&new_id);
                    let result = if is_leader && req.supports_skip_assignment {
                        JoinResult {
                            skip_assignment: true,
                            ..self.join_result(&new_id, true)
                        }
                    } else {
                        // Older clients must not think they lead (they would
                        // assign with no members): name the leader as it was.
                        JoinResult {
                            leader: leader_before,
                            ..self.join_result(&new_id, false)
                        }
                    };
                    Reply::Now(result)
                } else {
                    self.members
                        .get_mut(&new_id)
                        .expect("just inserted")
                        .awaiting_join = true;
                    self.maybe_prepare_rebalance(cfg, now, fx);
                    Reply::Parked(new_id)
                }
            }
            GroupState::CompletingRebalance => {
                // The leader may already have assigned to the old id.
                self.update_member(&req, &new_id);
                self.prepare_rebalance(cfg, now, fx);
                Reply::Parked(new_id)
            }
            _ => {
                self.update_member(&req, &new_id);
                Reply::Parked(new_id)
            }
        }
    }
}

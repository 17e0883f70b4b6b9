//! The classic group protocol as a pure state machine: one [`Group`], its
//! members and committed offsets, and the transitions JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, timer expiry and offset expiry cause.
//!
//! Nothing here does I/O or reads a clock: every call takes `now` (ms since
//! the epoch) and records what the caller must do afterwards as [`Effect`]s
//! (answer a parked JoinGroup or SyncGroup, persist the group). Timers are
//! deadlines the caller reads with [`Group::next_deadline`] and fires with
//! [`Group::tick`]. The rules follow Kafka's classic coordinator, including
//! where each error code is returned.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::records::{subscribed_topics, GroupValue, MemberValue, OffsetValue};

/// How long a new member's first JoinGroup may stay parked before the member
/// is dropped (Kafka's `NewMemberJoinTimeoutMs`): it has no member id yet,
/// so it cannot heartbeat.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

/// The protocol type of Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A group's state, as DescribeGroups and ListGroups name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    /// No members; may still hold offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
    /// Removed; about to disappear.
    Dead,
}

impl GroupState {
    /// Every state, for metrics.
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// The state named `s` (case-insensitive, as ListGroups filters are).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.name().eq_ignore_ascii_case(s))
    }
}

/// Broker settings the state machine needs.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member id the coordinator handed out.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client id of its JoinGroup.
    pub client_id: String,
    /// The client host of its JoinGroup.
    pub client_host: String,
    /// How long it may go without heartbeating.
    pub session_timeout_ms: i32,
    /// How long it may take to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// Its protocols in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Its assignment in the current generation.
    pub assignment: Bytes,
    /// A JoinGroup of this member is parked.
    pub awaiting_join: bool,
    /// A SyncGroup of this member is parked.
    pub awaiting_sync: bool,
    /// Joined in the rebalance in progress (may expire while awaiting join).
    pub is_new: bool,
    /// When it is dropped unless it heartbeats (or is exempt, see [`Group::tick`]).
    pub heartbeat_deadline: i64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset.
    pub offset: i64,
    /// The leader epoch (-1 unknown).
    pub leader_epoch: i32,
    /// The client's metadata.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
    /// An explicit expiry from an old record format.
    pub expire_timestamp: Option<i64>,
}

impl From<OffsetValue> for CommittedOffset {
    fn from(v: OffsetValue) -> Self {
        CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp: v.commit_timestamp,
            expire_timestamp: (v.expire_timestamp >= 0).then_some(v.expire_timestamp),
        }
    }
}

impl CommittedOffset {
    /// The stored form.
    pub fn to_value(&self) -> OffsetValue {
        OffsetValue {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp: self.commit_timestamp,
            expire_timestamp: -1,
        }
    }
}

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

/// What the caller must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer the parked JoinGroup of a member.
    Join(String, JoinResult),
    /// Answer the parked SyncGroup of a member.
    Sync(String, SyncResult),
    /// Persist the group's metadata (as it is after the call).
    StoreGroup,
    /// A rebalance completed (the group became Stable with a new assignment).
    RebalanceCompleted,
}

/// What happens to the JoinGroup or SyncGroup being handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// Answer now.
    Now(T),
    /// Park it under this member id until an [`Effect`] answers it.
    Parked(String),
}

/// The rebalance timer while preparing a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// New group: wait `group.initial.rebalance.delay.ms` (again while members
    /// keep arriving) up to the rebalance timeout.
    Initial { deadline: i64, remaining_ms: i64 },
    /// Complete when everyone rejoined or at the deadline.
    Normal { deadline: i64 },
}

/// Which offsets of a group have expired.
type ExpiryRule = Box<dyn Fn(&(String, i32), &CommittedOffset) -> bool>;

/// A group and its committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group id.
    pub id: String,
    /// The state.
    pub state: GroupState,
    /// When the state was entered (ms; `None` if loaded from an old record).
    pub state_timestamp: Option<i64>,
    /// The protocol type of its members (`None` for offsets-only groups).
    pub protocol_type: Option<String>,
    /// The protocol selected for the current generation.
    pub protocol: Option<String>,
    /// The generation.
    pub generation: i32,
    /// The leader's member id.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Static members: instance id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with the deadline for their second JoinGroup.
    pending_members: BTreeMap<String, i64>,
    /// Members that joined the current generation but have not synced yet.
    pending_sync: BTreeSet<String>,
    /// When members still in `pending_sync` are dropped.
    sync_deadline: Option<i64>,
    join_timer: Option<JoinTimer>,
    /// A member joined while the initial delay ran: wait another round.
    new_member_added: bool,
    /// Topics the members subscribe to (`consumer` protocol), if known.
    subscribed_topics: Option<BTreeSet<String>>,
    /// Committed offsets by topic and partition.
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, now: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_timestamp: Some(now),
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            join_timer: None,
            new_member_added: false,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
        }
    }

    /// A group rebuilt from its stored metadata: Stable if it has members
    /// (they keep heartbeating their generation), else Empty.
    pub fn from_stored(id: &str, value: GroupValue, now: i64) -> Self {
        let mut group = Group::new(id, now);
        group.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        group.generation = value.generation;
        group.protocol = value.protocol;
        group.leader = value.leader;
        group.state_timestamp =
            (value.current_state_timestamp >= 0).then_some(value.current_state_timestamp);
        let protocol = group.protocol.clone().unwrap_or_default();
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                awaiting_join: false,
                awaiting_sync: false,
                is_new: false,
                heartbeat_deadline: now + i64::from(m.session_timeout_ms),
            };
            group.members.insert(m.member_id, member);
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if group
            .leader
            .as_ref()
            .is_some_and(|l| !group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.subscribed_topics = group.compute_subscribed_topics();
        group
    }

    /// The stored form of the group's metadata.
    pub fn to_stored(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp = Some(now);
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Whether `member_id` is not the member registered for `instance_id`.
    fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    /// Whether the topic may be in use by the members (unknown counts as yes).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_none_or(|t| t.contains(topic))
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

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

    /// The protocol every member supports that most members prefer.
    fn select_protocol(&self) -> Option<String> {
        let candidates: BTreeSet<&str> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        // Most votes wins; ties go to the alphabetically first, deterministically.
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(n, _)| n.to_string())
    }

    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscribed_topics(&m.metadata(protocol))?);
        }
        Some(topics)
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

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
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

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment,
        }
    }

    // ---- JoinGroup ----

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

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    fn maybe_prepare_rebalance(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Vec<Effect>) {
        if self.can_rebalance() {
            self.prepare_rebalance(cfg, now, fx);
        }
    }

    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Vec<Effect>) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_assignments(ResponseError::RebalanceInProgress, fx);
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let delay = cfg.initial_rebalance_delay_ms;
        self.join_timer = Some(if self.state == GroupState::Empty && delay > 0 {
            self.new_member_added = false;
            JoinTimer::Initial {
                deadline: now + delay,
                remaining_ms: (self.rebalance_timeout_ms() - delay).max(0),
            }
        } else {
            JoinTimer::Normal {
                deadline: now + self.rebalance_timeout_ms(),
            }
        });
        self.transition(GroupState::PreparingRebalance, now);
        // Everyone may already be back (a lone member rejoining, or nobody left).
        self.maybe_complete_join(now, fx);
    }

    /// Clears every assignment and fails parked SyncGroups with `error`.
    fn reset_assignments(&mut self, error: ResponseError, fx: &mut Vec<Effect>) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if m.awaiting_sync {
                m.awaiting_sync = false;
                fx.push(Effect::Sync(m.member_id.clone(), SyncResult::error(error)));
            }
        }
    }

    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    /// Completes the join phase early when everyone is back (not during the initial delay).
    fn maybe_complete_join(&mut self, now: i64, fx: &mut Vec<Effect>) {
        if self.state == GroupState::PreparingRebalance
            && matches!(self.join_timer, Some(JoinTimer::Normal { .. }))
            && self.all_joined()
        {
            self.complete_join(now, fx);
        }
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, starts
    /// the next generation and answers every parked JoinGroup.
    fn complete_join(&mut self, now: i64, fx: &mut Vec<Effect>) {
        self.join_timer = None;
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in missing {
            self.remove_member(&id);
        }
        if !self.members.is_empty() && !self.members.values().any(|m| m.awaiting_join) {
            // Only static members that did not rejoin are left: wait another
            // round for them to rejoin or for their sessions to expire.
            self.join_timer = Some(JoinTimer::Normal {
                deadline: now + self.rebalance_timeout_ms(),
            });
            return;
        }
        if let Some(leader) = self.leader.clone() {
            if !self.members.get(&leader).is_some_and(|m| m.awaiting_join) {
                self.leader = self
                    .members
                    .values()
                    .find(|m| m.awaiting_join)
                    .map(|m| m.member_id.clone());
            }
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(GroupState::Empty, now);
            fx.push(Effect::StoreGroup);
            return;
        }
        self.protocol = self.select_protocol();
        self.subscribed_topics = self.compute_subscribed_topics();
        self.transition(GroupState::CompletingRebalance, now);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let with_members = self.is_leader(id);
            let result = self.join_result(id, with_members);
            let m = self.members.get_mut(id).expect("listed above");
            m.is_new = false;
            m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
            if m.awaiting_join {
                m.awaiting_join = false;
                fx.push(Effect::Join(id.clone(), result));
            }
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline = Some(now + self.rebalance_timeout_ms());
    }

    /// Removes a member from every index (no state change).
    fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let m = self.members.remove(member_id)?;
        if let Some(instance) = &m.group_instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|id| id == member_id)
            {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_sync.remove(member_id);
        Some(m)
    }

    /// Removes a member that left or expired and moves the group on.
    fn remove_member_and_update(
        &mut self,
        member_id: &str,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        let Some(m) = self.remove_member(member_id) else {
            return;
        };
        if m.awaiting_join {
            fx.push(Effect::Join(
                member_id.to_string(),
                JoinResult::error(member_id, ResponseError::UnknownMemberId),
            ));
        }
        if m.awaiting_sync {
            fx.push(Effect::Sync(
                member_id.to_string(),
                SyncResult::error(ResponseError::UnknownMemberId),
            ));
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(cfg, now, fx)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- SyncGroup ----

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

    // ---- Heartbeat ----

    /// Handles a Heartbeat; `None` is success.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(instance_id, member_id) {
            return Some(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        let state = self.state;
        let m = self.members.get_mut(member_id).expect("checked above");
        match state {
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                None
            }
        }
    }

    // ---- LeaveGroup ----

    /// Handles LeaveGroup for each `(member id, instance id)`; one result each.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(leaving.len());
        for (member_id, instance) in leaving {
            let result = if member_id.is_empty() {
                // Administrative removal by instance id.
                match instance
                    .as_ref()
                    .and_then(|i| self.static_members.get(i))
                    .cloned()
                {
                    Some(current) => {
                        self.remove_member_and_update(&current, cfg, now, fx);
                        None
                    }
                    None => Some(ResponseError::UnknownMemberId),
                }
            } else if self.pending_members.remove(member_id).is_some() {
                if self.state == GroupState::PreparingRebalance {
                    self.maybe_complete_join(now, fx);
                }
                None
            } else if self.is_fenced(instance.as_deref(), member_id) {
                Some(ResponseError::FencedInstanceId)
            } else if !self.members.contains_key(member_id) {
                Some(ResponseError::UnknownMemberId)
            } else {
                self.remove_member_and_update(member_id, cfg, now, fx);
                None
            };
            results.push(result);
        }
        Ok(results)
    }

    // ---- Timers ----

    /// The earliest time [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter(|m| m.is_new || !(m.awaiting_join || m.awaiting_sync))
            .map(|m| m.heartbeat_deadline);
        let join = self.join_timer.map(|t| match t {
            JoinTimer::Initial { deadline, .. } | JoinTimer::Normal { deadline } => deadline,
        });
        let sync = if self.pending_sync.is_empty() {
            None
        } else {
            self.sync_deadline
        };
        members
            .chain(self.pending_members.values().copied())
            .chain(join)
            .chain(sync)
            .min()
    }

    /// Fires every timer due at `now`: session expiry, pending-member expiry,
    /// the end of the join phase and the sync deadline.
    pub fn tick(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Vec<Effect>) {
        if self.state == GroupState::Dead {
            return;
        }
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending_members.remove(&id);
            self.maybe_complete_join(now, fx);
        }
        // Members awaiting a rebalance are exempt: the rebalance timeout covers them.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.heartbeat_deadline <= now && (m.is_new || !(m.awaiting_join || m.awaiting_sync))
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update(&id, cfg, now, fx);
        }
        match self.join_timer {
            Some(JoinTimer::Initial {
                deadline,
                remaining_ms,
            }) if deadline <= now => {
                if self.new_member_added && remaining_ms > 0 {
                    self.new_member_added = false;
                    let delay = cfg.initial_rebalance_delay_ms.min(remaining_ms);
                    self.join_timer = Some(JoinTimer::Initial {
                        deadline: now + delay,
                        remaining_ms: remaining_ms - delay,
                    });
                } else {
                    self.complete_join(now, fx);
                }
            }
            Some(JoinTimer::Normal { deadline }) if deadline <= now => self.complete_join(now, fx),
            _ => {}
        }
        if self.sync_deadline.is_some_and(|d| d <= now) && !self.pending_sync.is_empty() {
            self.sync_deadline = None;
            if matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) {
                let lagging: Vec<String> =
                    std::mem::take(&mut self.pending_sync).into_iter().collect();
                for id in lagging {
                    self.remove_member_and_update(&id, cfg, now, fx);
                }
            }
        }
    }

    // ---- Offsets ----

    /// Checks that a member may commit (Kafka's rules; `generation < 0`
    /// with an Empty group is a commit of a group not using the coordinator).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(instance_id, member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
        Ok(())
    }

    /// Drops offsets whose retention ran out (Kafka 2.1+ rules) and returns
    /// their keys: for an Empty group, `retention_ms` after it became empty;
    /// for a Stable consumer group, offsets of topics it no longer subscribes
    /// to, `retention_ms` after their commit; for an offsets-only group,
    /// `retention_ms` after their commit.
    pub fn expire_offsets(&mut self, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let empty_since = self.state_timestamp;
        let rule: ExpiryRule = match self.protocol_type.as_deref() {
            Some(_) if self.state == GroupState::Empty => Box::new(move |_, o| {
                let base = empty_since.unwrap_or(o.commit_timestamp);
                o.expire_timestamp
                    .map_or(now - base >= retention_ms, |e| now >= e)
            }),
            Some(CONSUMER_PROTOCOL_TYPE)
                if self.state == GroupState::Stable && self.subscribed_topics.is_some() =>
            {
                let subscribed = self.subscribed_topics.clone().unwrap_or_default();
                Box::new(move |(topic, _), o| {
                    !subscribed.contains(topic)
                        && o.expire_timestamp
                            .map_or(now - o.commit_timestamp >= retention_ms, |e| now >= e)
                })
            }
            None => Box::new(move |_, o| {
                o.expire_timestamp
                    .map_or(now - o.commit_timestamp >= retention_ms, |e| now >= e)
            }),
            _ => return Vec::new(),
        };
        let expired: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|(k, o)| rule(k, o))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.offsets.remove(k);
        }
        expired
    }

    /// An Empty group with no offsets is gone: marks it Dead and says so.
    pub fn try_remove(&mut self, now: i64) -> bool {
        if self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
        {
            self.transition(GroupState::Dead, now);
            return true;
        }
        false
    }

    /// DeleteGroups: only an Empty group can go.
    pub fn delete(&mut self, now: i64) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.offsets.clear();
                self.transition(GroupState::Dead, now);
                Ok(())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// Members as DescribeGroups shows them: metadata and assignment only when Stable.
    pub fn describe_members(&self) -> Vec<(&Member, Bytes, Bytes)> {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                if stable {
                    (m, m.metadata(&protocol), m.assignment.clone())
                } else {
                    (m, Bytes::new(), Bytes::new())
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

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
//!
//! This file holds the types and the small helpers every transition uses;
//! the transitions live beside it, one file per concern:
//!
//! - `join`: JoinGroup, including static members rejoining.
//! - `rebalance`: preparing and completing a rebalance, protocol
//!   selection, and removing members.
//! - `sync`: SyncGroup and the leader's assignment.
//! - `liveness`: Heartbeat, LeaveGroup and the timers.
//! - `offsets`: committed offsets: who may commit, expiry, and the end
//!   of a group left with none.
//! - `stored`: conversion to and from the `__consumer_offsets` records.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

mod join;
mod liveness;
mod offsets;
mod rebalance;
mod stored;
mod sync;

pub use join::{JoinRequest, JoinResult, JoinedMember};
pub use offsets::CommittedOffset;
pub use sync::SyncResult;

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
mod tests;

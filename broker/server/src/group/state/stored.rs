//! Conversion between a [`Group`] and its records in `__consumer_offsets`
//! (the formats themselves are in [`crate::group::records`]).

use super::{CommittedOffset, Group, GroupState, Member};
use crate::group::records::{GroupValue, MemberValue, OffsetValue};

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

impl Group {
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
}

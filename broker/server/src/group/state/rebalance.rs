//! The rebalance itself: entering PreparingRebalance, completing the join
//! phase into a new generation, choosing the protocol, and removing members
//! (which may start or finish a rebalance).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{
    Effect, Group, GroupConfig, GroupState, JoinResult, JoinTimer, Member, SyncResult,
    CONSUMER_PROTOCOL_TYPE,
};
use crate::group::records::subscribed_topics;

impl Group {
    /// The protocol every member supports that most members prefer.
    pub(super) fn select_protocol(&self) -> Option<String> {
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

    pub(super) fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
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

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    pub(super) fn maybe_prepare_rebalance(
        &mut self,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        if self.can_rebalance() {
            self.prepare_rebalance(cfg, now, fx);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Vec<Effect>) {
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
    pub(super) fn maybe_complete_join(&mut self, now: i64, fx: &mut Vec<Effect>) {
        if self.state == GroupState::PreparingRebalance
            && matches!(self.join_timer, Some(JoinTimer::Normal { .. }))
            && self.all_joined()
        {
            self.complete_join(now, fx);
        }
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, starts
    /// the next generation and answers every parked JoinGroup.
    pub(super) fn complete_join(&mut self, now: i64, fx: &mut Vec<Effect>) {
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
    pub(super) fn remove_member_and_update(
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
}

//! How members stay in a group and how they go: Heartbeat, LeaveGroup, and
//! the timers (session expiry, pending members, the end of the join phase,
//! the sync deadline) that remove members that fell silent.

use kafka_protocol::ResponseError;

use super::{Effect, Group, GroupConfig, GroupState, JoinTimer};

impl Group {
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
}

//! Committed offsets: who may commit them and when they expire; and the end
//! of a group, which can only go once it has no members (and, unless
//! deleted by DeleteGroups, no offsets).

use kafka_protocol::ResponseError;

use super::{Group, GroupState, CONSUMER_PROTOCOL_TYPE};

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

/// Which offsets of a group have expired.
type ExpiryRule = Box<dyn Fn(&(String, i32), &CommittedOffset) -> bool>;

impl Group {
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
}

//! Group administration: ListGroups, DescribeGroups and DeleteGroups.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{lock, outbox::Outbox, Coordinator, SlotRef};
use crate::{
    broker::now_ms,
    group::{
        state::GroupState,
        store::{self, StoreRecord},
    },
};

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// The state.
    pub state: GroupState,
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// The selected protocol, when Stable.
    pub protocol: String,
    /// Members: (id, instance id, client id, client host, metadata, assignment).
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

impl Coordinator {
    /// ListGroups: (id, protocol type, state) of every live group.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let slots: Vec<SlotRef> = lock(&self.groups).values().cloned().collect();
        slots
            .iter()
            .map(|s| {
                let s = lock(s);
                (
                    s.group.id.clone(),
                    s.group.protocol_type.clone().unwrap_or_default(),
                    s.group.state,
                )
            })
            .filter(|(_, _, st)| *st != GroupState::Dead)
            .collect()
    }

    /// DescribeGroups of one group (a missing group is reported Dead, as Kafka does).
    pub fn describe(&self, group_id: &str) -> Result<GroupSummary, ResponseError> {
        let _broker = self.cluster.broker();
        self.check_serving(group_id)?;
        let Some(slot) = self.slot(group_id, false) else {
            return Ok(GroupSummary {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let s = lock(&slot);
        let g = &s.group;
        Ok(GroupSummary {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .describe_members()
                .into_iter()
                .map(|(m, meta, asg)| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        meta,
                        asg,
                    )
                })
                .collect(),
        })
    }

    /// DeleteGroups of one group.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let broker = self.cluster.broker();
        self.check_serving(group_id)?;
        let slot = self
            .slot(group_id, false)
            .ok_or(ResponseError::GroupIdNotFound)?;
        let mut out = Outbox::default();
        {
            let mut s = lock(&slot);
            let keys: Vec<(String, i32)> = s.group.offsets.keys().cloned().collect();
            s.group.delete(now_ms())?;
            let mut records: Vec<StoreRecord> = keys
                .iter()
                .map(|(t, p)| store::offset_record(group_id, t, *p, None))
                .collect();
            records.push(store::group_record(&s.group));
            self.write(group_id, &records, &mut out);
            self.reschedule(&slot, &mut s);
        }
        if out.finish(broker.config.acks_all_fsync).await {
            Ok(())
        } else {
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

//! Client quotas: DescribeClientQuotas and AlterClientQuotas (KIP-546).
//!
//! An entity is a list of `(type, name)` components, `type` being `user`
//! or `client-id` and a `None` name Kafka's default entity. Any broker
//! answers; the change is replicated by the cluster's metadata quorum.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    alter_client_quotas_request::{EntityData, EntryData, OpData},
    describe_client_quotas_request::ComponentData,
    AlterClientQuotasRequest, DescribeClientQuotasRequest,
};

use super::{admin::str_bytes, Client};
use crate::error::ClientError;

/// One component of a quota entity: its type and name (`None`: default).
pub type QuotaComponent = (String, Option<String>);

/// How a describe filter matches the names of one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    /// Exactly this name.
    Exact(String),
    /// The default entity.
    Default,
    /// Any name, the default included.
    Any,
}

/// An entity and its quota values, as DescribeClientQuotas reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEntry {
    /// The entity's components, in the broker's order.
    pub entity: Vec<QuotaComponent>,
    /// Quota keys and values.
    pub values: BTreeMap<String, f64>,
}

impl Client {
    /// The quotas of entities matching `filter` (one match per entity
    /// type); `strict` leaves out entities with types the filter does not
    /// name.
    pub async fn describe_client_quotas(
        &mut self,
        filter: &[(String, QuotaMatch)],
        strict: bool,
    ) -> Result<Vec<QuotaEntry>, ClientError> {
        let components = filter
            .iter()
            .map(|(kind, m)| {
                let (match_type, name) = match m {
                    QuotaMatch::Exact(name) => (0, Some(str_bytes(name))),
                    QuotaMatch::Default => (1, None),
                    QuotaMatch::Any => (2, None),
                };
                ComponentData::default()
                    .with_entity_type(str_bytes(kind))
                    .with_match_type(match_type)
                    .with_match(name)
            })
            .collect();
        let request = DescribeClientQuotasRequest::default()
            .with_components(components)
            .with_strict(strict);
        let response = self.send_any(request).await?;
        ClientError::check(response.error_code, response.error_message.as_deref())?;
        Ok(response
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| QuotaEntry {
                entity: e
                    .entity
                    .into_iter()
                    .map(|c| {
                        (
                            c.entity_type.to_string(),
                            c.entity_name.map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                values: e
                    .values
                    .into_iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect(),
            })
            .collect())
    }

    /// Sets the keys of `set` and removes those of `remove` on one entity;
    /// with `validate_only` the broker only checks the change.
    pub async fn alter_client_quotas(
        &mut self,
        entity: &[QuotaComponent],
        set: &BTreeMap<String, f64>,
        remove: &[String],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let entity = entity
            .iter()
            .map(|(kind, name)| {
                EntityData::default()
                    .with_entity_type(str_bytes(kind))
                    .with_entity_name(name.as_deref().map(str_bytes))
            })
            .collect();
        let ops = set
            .iter()
            .map(|(key, value)| {
                OpData::default()
                    .with_key(str_bytes(key))
                    .with_value(*value)
            })
            .chain(
                remove
                    .iter()
                    .map(|key| OpData::default().with_key(str_bytes(key)).with_remove(true)),
            )
            .collect();
        let request = AlterClientQuotasRequest::default()
            .with_entries(vec![EntryData::default().with_entity(entity).with_ops(ops)])
            .with_validate_only(validate_only);
        let response = self.send_any(request).await?;
        for entry in response.entries {
            ClientError::check(entry.error_code, entry.error_message.as_deref())?;
        }
        Ok(())
    }
}

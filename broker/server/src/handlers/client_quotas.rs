//! DescribeClientQuotas and AlterClientQuotas (KIP-546): client quotas in
//! the metadata image, with Kafka's filter semantics and error messages.
//!
//! A describe filter has at most one component per entity type, each
//! matching an exact name, the default, or any name ("specified"); a
//! strict filter also excludes entities with types it does not name.
//! Every alter entry is checked and proposed on its own, so one bad entry
//! does not fail the others, as in Kafka.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::{
    messages::{
        alter_client_quotas_request, alter_client_quotas_response, describe_client_quotas_response,
        AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
        DescribeClientQuotasResponse,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::{
    validate_quota, MetadataCommand, QuotaEntity, QuotaMap, QuotaName, QuotaValue,
    ENTITY_CLIENT_ID, ENTITY_USER,
};

use super::Node;

/// Kafka's entity type of IP quotas (KIP-612), which Rivulet does not keep.
const ENTITY_IP: &str = "ip";
/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// What a filter component accepts of one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NameMatch {
    Exact(String),
    Default,
    Specified,
}

/// A parsed filter: a match per entity type it names.
#[derive(Debug, Default)]
struct Filter {
    user: Option<NameMatch>,
    client_id: Option<NameMatch>,
    /// The filter names `ip`: nothing can match, since no IP quota exists.
    ip: bool,
    strict: bool,
}

fn parse_filter(request: &DescribeClientQuotasRequest) -> Result<Filter, String> {
    let mut filter = Filter {
        strict: request.strict,
        ..Filter::default()
    };
    let mut seen = BTreeSet::new();
    for c in &request.components {
        let kind = c.entity_type.as_str();
        if kind.is_empty() {
            return Err("Unexpected empty filter component entity type".into());
        }
        if !seen.insert(kind.to_owned()) {
            return Err(format!("Duplicate {kind} filter component entity type"));
        }
        let name_match = match (c.match_type, c._match.as_deref()) {
            (MATCH_EXACT, Some(name)) => NameMatch::Exact(name.to_owned()),
            (MATCH_EXACT, None) => return Err(format!("Unexpected null match for {kind}")),
            (MATCH_DEFAULT, _) => NameMatch::Default,
            (MATCH_SPECIFIED, _) => NameMatch::Specified,
            (other, _) => return Err(format!("Unexpected match type: {other}")),
        };
        match kind {
            ENTITY_USER => filter.user = Some(name_match),
            ENTITY_CLIENT_ID => filter.client_id = Some(name_match),
            ENTITY_IP => filter.ip = true,
            other => return Err(format!("Custom entity type '{other}' not supported")),
        }
    }
    if filter.ip && (filter.user.is_some() || filter.client_id.is_some()) {
        return Err("Invalid entity filter component combination, IP filter component should not be used with user or clientId filter component.".into());
    }
    Ok(filter)
}

/// Whether one component of an entity passes its part of the filter.
fn component_matches(
    component: Option<&QuotaName>,
    wanted: Option<&NameMatch>,
    strict: bool,
) -> bool {
    match (wanted, component) {
        (None, None) => true,
        (None, Some(_)) => !strict,
        (Some(_), None) => false,
        (Some(NameMatch::Specified), Some(_)) => true,
        (Some(NameMatch::Default), Some(name)) => *name == QuotaName::Default,
        (Some(NameMatch::Exact(want)), Some(name)) => name.as_wire() == Some(want.as_str()),
    }
}

fn filter_matches(filter: &Filter, entity: &QuotaEntity) -> bool {
    !filter.ip
        && component_matches(entity.user.as_ref(), filter.user.as_ref(), filter.strict)
        && component_matches(
            entity.client_id.as_ref(),
            filter.client_id.as_ref(),
            filter.strict,
        )
}

fn describe_entries(
    quotas: &QuotaMap,
    filter: &Filter,
) -> Vec<describe_client_quotas_response::EntryData> {
    use describe_client_quotas_response::{EntityData, EntryData, ValueData};
    quotas
        .iter()
        .filter(|(entity, _)| filter_matches(filter, entity))
        .map(|(entity, values)| {
            let entity = components(entity)
                .map(|(kind, name)| {
                    EntityData::default()
                        .with_entity_type(StrBytes::from_static_str(kind))
                        .with_entity_name(
                            name.as_wire().map(|n| StrBytes::from_string(n.to_owned())),
                        )
                })
                .collect();
            let values = values
                .iter()
                .map(|(key, value)| {
                    ValueData::default()
                        .with_key(StrBytes::from_string(key.clone()))
                        .with_value(value.0)
                })
                .collect();
            EntryData::default().with_entity(entity).with_values(values)
        })
        .collect()
}

/// An entity's components in Kafka's order (user first).
fn components(entity: &QuotaEntity) -> impl Iterator<Item = (&'static str, &QuotaName)> {
    [
        (ENTITY_USER, &entity.user),
        (ENTITY_CLIENT_ID, &entity.client_id),
    ]
    .into_iter()
    .filter_map(|(kind, name)| Some((kind, name.as_ref()?)))
}

/// Handles DescribeClientQuotas: a bad filter fails the whole request.
pub fn describe(node: &Node, request: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    let mut response = DescribeClientQuotasResponse::default();
    match parse_filter(&request) {
        Ok(filter) => {
            response.entries = Some(describe_entries(&node.cluster.image().quotas, &filter));
        }
        Err(message) => {
            response.error_code = ResponseError::InvalidRequest.code();
            response.error_message = Some(StrBytes::from_string(message));
            response.entries = None;
        }
    }
    response
}

/// One alter entry as a metadata command, or Kafka's reason to refuse it.
fn alter_command(
    entry: &alter_client_quotas_request::EntryData,
) -> Result<MetadataCommand, String> {
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    for component in &entry.entity {
        let kind = component.entity_type.as_str();
        let slot = match kind {
            ENTITY_USER => &mut entity.user,
            ENTITY_CLIENT_ID => &mut entity.client_id,
            ENTITY_IP => return Err("IP quotas (entity type ip) are not supported".into()),
            other => return Err(format!("Unhandled client quota entity type: {other}")),
        };
        if slot.is_some() {
            return Err(format!("Duplicate {kind} entity component"));
        }
        *slot = Some(QuotaName::from_wire(component.entity_name.as_deref()));
    }
    entity.validate()?;
    let mut set = BTreeMap::new();
    let mut remove = BTreeSet::new();
    for op in &entry.ops {
        let key = op.key.to_string();
        if set.contains_key(&key) || remove.contains(&key) {
            return Err(format!("Duplicate quota key {key} not updating quota."));
        }
        if op.remove {
            remove.insert(key);
        } else {
            validate_quota(&key, op.value)?;
            set.insert(key, QuotaValue(op.value));
        }
    }
    Ok(MetadataCommand::AlterClientQuota {
        entity,
        set,
        remove,
    })
}

/// Handles AlterClientQuotas: each entry gets its own result; with
/// `validate_only` nothing is proposed.
pub async fn alter(node: &Node, request: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let mut response = AlterClientQuotasResponse::default();
    for entry in &request.entries {
        let outcome = match alter_command(entry) {
            Err(message) => Err((ResponseError::InvalidRequest, message)),
            Ok(_) if request.validate_only => Ok(()),
            Ok(command) => node
                .cluster
                .propose(command)
                .await
                .map_err(|e| (e.code, e.message)),
        };
        let entity = entry
            .entity
            .iter()
            .map(|c| {
                alter_client_quotas_response::EntityData::default()
                    .with_entity_type(c.entity_type.clone())
                    .with_entity_name(c.entity_name.clone())
            })
            .collect();
        let mut result = alter_client_quotas_response::EntryData::default().with_entity(entity);
        if let Err((code, message)) = outcome {
            result.error_code = code.code();
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.entries.push(result);
    }
    response
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use rivulet_quorum::metadata::{ClusterMetadata, PRODUCER_BYTE_RATE};

    use super::*;

    fn component(kind: &str, match_type: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(StrBytes::from_string(kind.into()))
            .with_match_type(match_type)
            .with_match(name.map(|n| StrBytes::from_string(n.into())))
    }

    /// An image with one quota on each of these entities.
    fn image() -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        let entities = [
            QuotaEntity::of(Some(Some("alice")), None),
            QuotaEntity::of(Some(None), None),
            QuotaEntity::of(Some(Some("alice")), Some(Some("app"))),
            QuotaEntity::of(None, Some(Some("app"))),
            QuotaEntity::of(None, Some(None)),
        ];
        for e in entities {
            let command = MetadataCommand::AlterClientQuota {
                entity: e,
                set: [(PRODUCER_BYTE_RATE.to_string(), QuotaValue(1024.0))].into(),
                remove: BTreeSet::new(),
            };
            md.apply(1, &command).unwrap();
        }
        md
    }

    fn described(components: Vec<ComponentData>, strict: bool) -> Result<Vec<QuotaEntity>, String> {
        let request = DescribeClientQuotasRequest::default()
            .with_components(components)
            .with_strict(strict);
        let filter = parse_filter(&request)?;
        let md = image();
        Ok(md
            .quotas
            .keys()
            .filter(|e| filter_matches(&filter, e))
            .cloned()
            .collect())
    }

    #[test]
    fn filters_match_like_kafka() {
        assert_eq!(
            described(vec![], false).unwrap().len(),
            5,
            "no filter: everything"
        );
        assert!(
            described(vec![], true).unwrap().is_empty(),
            "strict and empty: nothing"
        );
        assert_eq!(
            described(vec![component("user", MATCH_EXACT, Some("alice"))], false).unwrap(),
            vec![
                QuotaEntity::of(Some(Some("alice")), None),
                QuotaEntity::of(Some(Some("alice")), Some(Some("app")))
            ]
        );
        assert_eq!(
            described(vec![component("user", MATCH_EXACT, Some("alice"))], true).unwrap(),
            vec![QuotaEntity::of(Some(Some("alice")), None)]
        );
        assert_eq!(
            described(vec![component("user", MATCH_DEFAULT, None)], true).unwrap(),
            vec![QuotaEntity::of(Some(None), None)]
        );
        assert_eq!(
            described(vec![component("client-id", MATCH_SPECIFIED, None)], true).unwrap(),
            vec![
                QuotaEntity::of(None, Some(None)),
                QuotaEntity::of(None, Some(Some("app")))
            ]
        );
        assert_eq!(
            described(vec![component("client-id", MATCH_SPECIFIED, None)], false)
                .unwrap()
                .len(),
            3
        );
        assert!(
            described(vec![component("ip", MATCH_SPECIFIED, None)], false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_filters_are_refused() {
        let err = |c| described(c, false).unwrap_err();
        assert_eq!(
            err(vec![component("", 0, Some("x"))]),
            "Unexpected empty filter component entity type"
        );
        assert_eq!(
            err(vec![component("user", 2, None), component("user", 1, None)]),
            "Duplicate user filter component entity type"
        );
        assert_eq!(
            err(vec![component("user", 7, None)]),
            "Unexpected match type: 7"
        );
        assert!(err(vec![component("topic", 2, None)]).contains("not supported"));
        assert!(
            err(vec![component("ip", 2, None), component("user", 2, None)]).contains("IP filter")
        );
    }

    fn entry(
        components: &[(&str, Option<&str>)],
        ops: &[(&str, f64, bool)],
    ) -> alter_client_quotas_request::EntryData {
        use alter_client_quotas_request::{EntityData, EntryData, OpData};
        EntryData::default()
            .with_entity(
                components
                    .iter()
                    .map(|(kind, name)| {
                        EntityData::default()
                            .with_entity_type(StrBytes::from_string((*kind).into()))
                            .with_entity_name(name.map(|n| StrBytes::from_string(n.into())))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(key, value, remove)| {
                        OpData::default()
                            .with_key(StrBytes::from_string((*key).into()))
                            .with_value(*value)
                            .with_remove(*remove)
                    })
                    .collect(),
            )
    }

    #[test]
    fn alter_entries_become_commands_or_kafkas_errors() {
        let ok = alter_command(&entry(
            &[("user", None), ("client-id", Some("app"))],
            &[
                ("producer_byte_rate", 1024.0, false),
                ("consumer_byte_rate", 0.0, true),
            ],
        ))
        .unwrap();
        let MetadataCommand::AlterClientQuota {
            entity: e,
            set,
            remove,
        } = ok
        else {
            panic!("{ok:?}");
        };
        assert_eq!(e, QuotaEntity::of(Some(None), Some(Some("app"))));
        assert_eq!(set.len(), 1);
        assert!(remove.contains("consumer_byte_rate"));
        let err = |components: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]| {
            alter_command(&entry(components, ops)).unwrap_err()
        };
        let rate = [("producer_byte_rate", 1.0, false)];
        assert_eq!(
            err(&[("group", Some("g"))], &rate),
            "Unhandled client quota entity type: group"
        );
        assert_eq!(err(&[], &rate), "Invalid empty client quota entity");
        assert_eq!(
            err(&[("user", Some(""))], &rate),
            "Empty user not supported"
        );
        assert!(err(&[("user", None), ("user", Some("a"))], &rate).starts_with("Duplicate user"));
        assert_eq!(
            err(&[("user", None)], &[("request_percentage", -5.0, false)]),
            "Quota request_percentage must be greater than 0"
        );
        assert_eq!(
            err(&[("user", None)], &[("bogus", 5.0, false)]),
            "Invalid configuration key bogus"
        );
        assert!(err(&[("ip", Some("1.2.3.4"))], &rate).contains("not supported"));
    }
}

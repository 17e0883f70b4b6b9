//! Client quotas in the image (KIP-13, KIP-55, KIP-546): rate limits for
//! entities made of a user and/or a client id, each a name or the default.
//! Replicated like topics, so every broker throttles by the same limits.
//!
//! Validation lives here (not only in the AlterClientQuotas handler) so a
//! command that reaches the log from anywhere is checked the same way; the
//! messages are Kafka's, which the handler passes on to clients.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    command::{ApplyError, ApplyOutcome, ApplyResult},
    types::ClusterMetadata,
};

/// Kafka's entity type names.
pub const ENTITY_USER: &str = "user";
/// Kafka's entity type names.
pub const ENTITY_CLIENT_ID: &str = "client-id";

/// Bytes per second a client may produce (Kafka's `producer_byte_rate`).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes per second a client may fetch (Kafka's `consumer_byte_rate`).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percentage of one request handler thread (Kafka's `request_percentage`).
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// The quota keys this broker stores and enforces, and whether each one is
/// integral (Kafka's LONG keys refuse fractions).
pub const QUOTA_KEYS: &[(&str, bool)] = &[
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
];

/// Kafka quota keys Rivulet does not enforce, refused with their own
/// message rather than stored and ignored.
const NOT_ENFORCED: &[&str] = &["controller_mutation_rate", "connection_creation_rate"];

/// One component of an entity: a name, or the default for every name
/// without its own quota (Kafka's `<default>`, a null name on the wire).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuotaName {
    /// The default entity.
    Default,
    /// A named user or client id.
    Name(String),
}

impl QuotaName {
    /// From the wire's nullable name.
    pub fn from_wire(name: Option<&str>) -> Self {
        name.map_or(QuotaName::Default, |n| QuotaName::Name(n.to_owned()))
    }

    /// The wire's nullable name.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            QuotaName::Default => None,
            QuotaName::Name(n) => Some(n),
        }
    }
}

/// A quota entity: `user`, `client-id`, or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    /// The user component, if the entity has one.
    pub user: Option<QuotaName>,
    /// The client-id component, if the entity has one.
    pub client_id: Option<QuotaName>,
}

impl QuotaEntity {
    /// An entity from the wire's nullable names: an outer `None` leaves
    /// the component out, `Some(None)` is its default.
    pub fn of(user: Option<Option<&str>>, client_id: Option<Option<&str>>) -> Self {
        QuotaEntity {
            user: user.map(QuotaName::from_wire),
            client_id: client_id.map(QuotaName::from_wire),
        }
    }

    /// Checks what Kafka checks of an entity; the message is Kafka's.
    pub fn validate(&self) -> Result<(), String> {
        if self.user.is_none() && self.client_id.is_none() {
            return Err("Invalid empty client quota entity".into());
        }
        for (kind, name) in [
            (ENTITY_USER, &self.user),
            (ENTITY_CLIENT_ID, &self.client_id),
        ] {
            if matches!(name, Some(QuotaName::Name(n)) if n.is_empty()) {
                return Err(format!("Empty {kind} not supported"));
            }
        }
        Ok(())
    }
}

/// A quota value. Validated values are finite and positive, so equality
/// of their bits is a true equivalence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl Eq for QuotaValue {}

/// Checks one quota key and value as Kafka does; the message is Kafka's.
pub fn validate_quota(key: &str, value: f64) -> Result<(), String> {
    let Some(&(_, integral)) = QUOTA_KEYS.iter().find(|(k, _)| *k == key) else {
        if NOT_ENFORCED.contains(&key) {
            return Err(format!("Quota {key} is not supported by this broker"));
        }
        return Err(format!("Invalid configuration key {key}"));
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("Quota {key} must be greater than 0"));
    }
    if integral && value.fract() != 0.0 {
        return Err(format!("{key} cannot be a fractional value."));
    }
    Ok(())
}

/// Every entity's quotas, in a fixed order.
pub type QuotaMap = BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>;

/// JSON keys must be strings, so the map is stored as a list of pairs.
pub(super) mod as_pairs {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{QuotaEntity, QuotaMap, QuotaValue};

    type Pair = (QuotaEntity, std::collections::BTreeMap<String, QuotaValue>);

    pub fn serialize<S: Serializer>(map: &QuotaMap, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<QuotaMap, D::Error> {
        Ok(Vec::<Pair>::deserialize(d)?.into_iter().collect())
    }
}

/// The entities a `(user, client id)` pair is looked up as, in KIP-55's
/// order of precedence: the first one with a quota wins.
pub fn precedence(user: &str, client_id: &str) -> [QuotaEntity; 8] {
    let name = |n: &str| Some(QuotaName::Name(n.to_owned()));
    let default = || Some(QuotaName::Default);
    let entity = |user, client_id| QuotaEntity { user, client_id };
    [
        entity(name(user), name(client_id)),
        entity(name(user), default()),
        entity(name(user), None),
        entity(default(), name(client_id)),
        entity(default(), default()),
        entity(default(), None),
        entity(None, name(client_id)),
        entity(None, default()),
    ]
}

impl ClusterMetadata {
    /// The quota `key` that applies to `user` with `client_id`, and the
    /// entity it was configured on.
    pub fn client_quota(
        &self,
        user: &str,
        client_id: &str,
        key: &str,
    ) -> Option<(QuotaEntity, f64)> {
        if self.quotas.is_empty() {
            return None;
        }
        precedence(user, client_id).into_iter().find_map(|entity| {
            let value = self.quotas.get(&entity)?.get(key)?.0;
            Some((entity, value))
        })
    }

    /// Sets and removes quota keys of one entity; an entity left without
    /// keys is forgotten.
    pub(super) fn alter_quota(
        &mut self,
        entity: &QuotaEntity,
        set: &BTreeMap<String, QuotaValue>,
        remove: &BTreeSet<String>,
    ) -> ApplyResult {
        entity.validate().map_err(ApplyError::InvalidQuota)?;
        for (key, value) in set {
            validate_quota(key, value.0).map_err(ApplyError::InvalidQuota)?;
        }
        if let Some(key) = remove.iter().find(|k| set.contains_key(*k)) {
            return Err(ApplyError::InvalidQuota(format!(
                "Duplicate quota key {key} not updating quota."
            )));
        }
        let before = self.quotas.get(entity).cloned().unwrap_or_default();
        let mut after = before.clone();
        after.retain(|k, _| !remove.contains(k));
        after.extend(set.iter().map(|(k, v)| (k.clone(), *v)));
        if after == before {
            return Ok(ApplyOutcome::Unchanged);
        }
        if after.is_empty() {
            self.quotas.remove(entity);
        } else {
            self.quotas.insert(entity.clone(), after);
        }
        Ok(ApplyOutcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataCommand;

    fn set(e: QuotaEntity, key: &str, value: f64) -> MetadataCommand {
        MetadataCommand::AlterClientQuota {
            entity: e,
            set: [(key.to_string(), QuotaValue(value))].into(),
            remove: BTreeSet::new(),
        }
    }

    fn remove(e: QuotaEntity, key: &str) -> MetadataCommand {
        MetadataCommand::AlterClientQuota {
            entity: e,
            set: BTreeMap::new(),
            remove: [key.to_string()].into(),
        }
    }

    #[test]
    fn quotas_are_set_replaced_and_removed() {
        let mut md = ClusterMetadata::default();
        let app = QuotaEntity::of(None, Some(Some("app")));
        assert_eq!(
            md.apply(1, &set(app.clone(), PRODUCER_BYTE_RATE, 1024.0)),
            Ok(ApplyOutcome::Applied)
        );
        assert_eq!(
            md.apply(2, &set(app.clone(), PRODUCER_BYTE_RATE, 1024.0)),
            Ok(ApplyOutcome::Unchanged)
        );
        assert_eq!(
            md.apply(3, &set(app.clone(), REQUEST_PERCENTAGE, 12.5)),
            Ok(ApplyOutcome::Applied)
        );
        assert_eq!(md.quotas[&app].len(), 2);
        assert_eq!(
            md.apply(4, &remove(app.clone(), PRODUCER_BYTE_RATE)),
            Ok(ApplyOutcome::Applied)
        );
        assert_eq!(
            md.apply(5, &remove(app.clone(), PRODUCER_BYTE_RATE)),
            Ok(ApplyOutcome::Unchanged)
        );
        assert_eq!(
            md.apply(6, &remove(app, REQUEST_PERCENTAGE)),
            Ok(ApplyOutcome::Applied)
        );
        assert!(md.quotas.is_empty(), "an entity without keys is gone");
    }

    #[test]
    fn bad_quotas_are_refused_with_kafkas_messages() {
        let mut md = ClusterMetadata::default();
        let app = QuotaEntity::of(None, Some(Some("app")));
        let refused = |md: &mut ClusterMetadata, c| match md.apply(1, &c) {
            Err(ApplyError::InvalidQuota(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(&mut md, set(app.clone(), "bogus", 1.0)),
            "Invalid configuration key bogus"
        );
        assert_eq!(
            refused(&mut md, set(app.clone(), "controller_mutation_rate", 1.0)),
            "Quota controller_mutation_rate is not supported by this broker"
        );
        assert_eq!(
            refused(&mut md, set(app.clone(), CONSUMER_BYTE_RATE, -1.0)),
            "Quota consumer_byte_rate must be greater than 0"
        );
        assert_eq!(
            refused(&mut md, set(app, PRODUCER_BYTE_RATE, 1.5)),
            "producer_byte_rate cannot be a fractional value."
        );
        assert_eq!(
            refused(
                &mut md,
                set(QuotaEntity::of(None, None), PRODUCER_BYTE_RATE, 1.0)
            ),
            "Invalid empty client quota entity"
        );
        assert_eq!(
            refused(
                &mut md,
                set(
                    QuotaEntity::of(Some(Some("")), None),
                    PRODUCER_BYTE_RATE,
                    1.0
                )
            ),
            "Empty user not supported"
        );
        assert!(md.quotas.is_empty());
    }

    #[test]
    fn the_most_specific_entity_wins_in_kip_55_order() {
        let mut md = ClusterMetadata::default();
        let entities = [
            QuotaEntity::of(Some(Some("alice")), Some(Some("app"))),
            QuotaEntity::of(Some(Some("alice")), Some(None)),
            QuotaEntity::of(Some(Some("alice")), None),
            QuotaEntity::of(Some(None), Some(Some("app"))),
            QuotaEntity::of(Some(None), Some(None)),
            QuotaEntity::of(Some(None), None),
            QuotaEntity::of(None, Some(Some("app"))),
            QuotaEntity::of(None, Some(None)),
        ];
        for (i, e) in entities.iter().enumerate() {
            md.apply(1, &set(e.clone(), PRODUCER_BYTE_RATE, (i + 1) as f64))
                .unwrap();
        }
        for (i, e) in entities.iter().enumerate() {
            let found = md.client_quota("alice", "app", PRODUCER_BYTE_RATE);
            assert_eq!(found, Some((e.clone(), (i + 1) as f64)));
            md.apply(2, &remove(e.clone(), PRODUCER_BYTE_RATE)).unwrap();
        }
        assert_eq!(md.client_quota("alice", "app", PRODUCER_BYTE_RATE), None);
        md.apply(
            3,
            &set(
                QuotaEntity::of(None, Some(Some("app"))),
                CONSUMER_BYTE_RATE,
                5.0,
            ),
        )
        .unwrap();
        assert_eq!(md.client_quota("bob", "other", CONSUMER_BYTE_RATE), None);
        assert!(md.client_quota("bob", "app", PRODUCER_BYTE_RATE).is_none());
    }

    #[test]
    fn quotas_survive_a_snapshot_and_old_images_still_load() {
        let mut md = ClusterMetadata::default();
        md.apply(
            1,
            &set(
                QuotaEntity::of(Some(None), Some(Some("app"))),
                PRODUCER_BYTE_RATE,
                1e6,
            ),
        )
        .unwrap();
        let json = serde_json::to_string(&md).unwrap();
        let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, md);
        let old: ClusterMetadata =
            serde_json::from_str(r#"{"offset":3,"brokers":{},"topics":{}}"#).unwrap();
        assert!(old.quotas.is_empty());
    }
}

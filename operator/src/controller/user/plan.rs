//! The pure core of the KafkaUser controller: a spec checked and turned
//! into what Kafka should hold ([`ValidatedUser`]), and the changes that
//! bring what Kafka holds there (credential, ACL and quota plans). Drift is
//! no special case: whatever Kafka holds that the spec does not say is
//! planned away, whatever is missing is planned back.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use rivulet_wire::scram::ScramMechanism;

use crate::crd::{
    AclOperation, AclPatternType, AclPermission, AclResourceType, AuthenticationType, KafkaUser,
    SecretKeyRef,
};

/// Ready reason: the spec asks for something the operator cannot do.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Ready reason: `tls` authentication needs the cluster's clients CA,
/// which exists once the cluster uses TLS.
pub const CLIENTS_CA_MISSING: &str = "ClientsCaMissing";
/// Kafka's name of the one cluster resource of ACLs.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

/// Kafka's quota keys.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Kafka's quota keys.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Kafka's quota keys.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// One Kafka ACL, with the protocol's codes (CreateAcls, DescribeAcls).
/// Ordered, so plans and requests come out the same every time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// TOPIC 2, GROUP 3, CLUSTER 4, TRANSACTIONAL_ID 5.
    pub resource_type: i8,
    /// The resource's name or prefix.
    pub resource_name: String,
    /// LITERAL 3, PREFIXED 4.
    pub pattern_type: i8,
    /// `User:<name>`.
    pub principal: String,
    /// The client address, `*` for any.
    pub host: String,
    /// ALL 2, READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
    /// CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
    /// IDEMPOTENT_WRITE 12.
    pub operation: i8,
    /// DENY 2, ALLOW 3.
    pub permission: i8,
}

/// Why a KafkaUser cannot be applied: the Ready condition's reason and
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `InvalidSpec` or `ClientsCaMissing`.
    pub reason: &'static str,
    /// What to change.
    pub message: String,
}

/// A KafkaUser checked, in Kafka's terms: what every later step works from.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedUser {
    /// The Kafka user name.
    pub username: String,
    /// The SCRAM mechanism of its credential, if it logs in with SCRAM.
    pub mechanism: Option<ScramMechanism>,
    /// A password the user gave, instead of a generated one.
    pub password_ref: Option<SecretKeyRef>,
    /// The user logs in with a client certificate from the clients CA.
    pub tls: bool,
    /// Every ACL of principal `User:<username>` Kafka should hold.
    pub acls: BTreeSet<AclBinding>,
    /// Quota values Kafka should hold for the `user` entity.
    pub quotas: BTreeMap<String, f64>,
}

impl ValidatedUser {
    /// `User:<username>`.
    pub fn principal(&self) -> String {
        principal(&self.username)
    }
}

/// The principal of Kafka user `name`.
pub fn principal(name: &str) -> String {
    format!("User:{name}")
}

fn resource_code(kind: AclResourceType) -> i8 {
    match kind {
        AclResourceType::Topic => 2,
        AclResourceType::Group => 3,
        AclResourceType::Cluster => 4,
        AclResourceType::TransactionalId => 5,
    }
}

fn operation_code(op: AclOperation) -> i8 {
    match op {
        AclOperation::All => 2,
        AclOperation::Read => 3,
        AclOperation::Write => 4,
        AclOperation::Create => 5,
        AclOperation::Delete => 6,
        AclOperation::Alter => 7,
        AclOperation::Describe => 8,
        AclOperation::ClusterAction => 9,
        AclOperation::DescribeConfigs => 10,
        AclOperation::AlterConfigs => 11,
        AclOperation::IdempotentWrite => 12,
    }
}

/// Checks a KafkaUser and says what Kafka should hold for it.
pub fn validate_user(user: &KafkaUser) -> Result<ValidatedUser, Invalid> {
    let username = user.name_any();
    let invalid = |message: String| Invalid {
        reason: INVALID_SPEC,
        message,
    };
    let tls = user
        .spec
        .authentication
        .as_ref()
        .is_some_and(|a| a.kind == AuthenticationType::Tls);
    let (mechanism, password_ref) =
        match &user.spec.authentication {
            None => (None, None),
            Some(auth) => match auth.kind {
                AuthenticationType::ScramSha512 => (
                    Some(ScramMechanism::Sha512),
                    auth.password
                        .as_ref()
                        .map(|p| p.value_from.secret_key_ref.clone()),
                ),
                AuthenticationType::ScramSha256 => (
                    Some(ScramMechanism::Sha256),
                    auth.password
                        .as_ref()
                        .map(|p| p.value_from.secret_key_ref.clone()),
                ),
                AuthenticationType::Tls if auth.password.is_some() => return Err(invalid(
                    "authentication.password is for SCRAM: a tls user logs in with its certificate"
                        .into(),
                )),
                AuthenticationType::Tls => (None, None),
            },
        };
    let principal = principal(&username);
    let mut acls = BTreeSet::new();
    for (index, rule) in user
        .spec
        .authorization
        .iter()
        .flat_map(|a| a.acls.iter())
        .enumerate()
    {
        let resource = &rule.resource;
        let name = match (resource.kind, &resource.name) {
            (AclResourceType::Cluster, _) => CLUSTER_RESOURCE_NAME.to_string(),
            (_, Some(name)) if !name.is_empty() => name.clone(),
            (kind, _) => {
                return Err(invalid(format!(
                    "authorization.acls[{index}]: a {kind:?} resource needs a name (`*` for all)"
                )))
            }
        };
        if rule.operations.is_empty() {
            return Err(invalid(format!(
                "authorization.acls[{index}]: name at least one operation"
            )));
        }
        let pattern_type = match resource.pattern_type {
            AclPatternType::Literal => 3,
            AclPatternType::Prefix if resource.kind == AclResourceType::Cluster => {
                return Err(invalid(format!(
                    "authorization.acls[{index}]: the cluster resource takes no prefix"
                )))
            }
            AclPatternType::Prefix => 4,
        };
        for op in &rule.operations {
            acls.insert(AclBinding {
                resource_type: resource_code(resource.kind),
                resource_name: name.clone(),
                pattern_type,
                principal: principal.clone(),
                host: if rule.host.is_empty() {
                    "*".into()
                } else {
                    rule.host.clone()
                },
                operation: operation_code(*op),
                permission: match rule.kind {
                    AclPermission::Allow => 3,
                    AclPermission::Deny => 2,
                },
            });
        }
    }
    let mut quotas = BTreeMap::new();
    if let Some(q) = &user.spec.quotas {
        if q.controller_mutation_rate.is_some() {
            return Err(invalid(
                "quotas.controllerMutationRate is not supported by Rivulet's brokers: remove it"
                    .into(),
            ));
        }
        for (key, value) in [
            (PRODUCER_BYTE_RATE, q.producer_byte_rate),
            (CONSUMER_BYTE_RATE, q.consumer_byte_rate),
            (REQUEST_PERCENTAGE, q.request_percentage),
        ] {
            let Some(value) = value else { continue };
            if value <= 0 {
                return Err(invalid(format!("quotas: {key} must be above 0")));
            }
            #[allow(clippy::cast_precision_loss)] // rates are far below 2^52
            quotas.insert(key.to_string(), value as f64);
        }
    }
    Ok(ValidatedUser {
        username,
        mechanism,
        password_ref,
        tls,
        acls,
        quotas,
    })
}

/// ACLs to create and to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclPlan {
    /// In the spec, not in Kafka.
    pub create: Vec<AclBinding>,
    /// In Kafka for the principal, not in the spec.
    pub delete: Vec<AclBinding>,
}

impl AclPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

/// Brings `current` (every ACL of the principal) to `desired`.
pub fn plan_acls(desired: &BTreeSet<AclBinding>, current: &BTreeSet<AclBinding>) -> AclPlan {
    AclPlan {
        create: desired.difference(current).cloned().collect(),
        delete: current.difference(desired).cloned().collect(),
    }
}

/// Quota keys to set and to remove.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaPlan {
    /// Keys missing or with another value.
    pub set: BTreeMap<String, f64>,
    /// Keys Kafka has that the spec does not.
    pub remove: Vec<String>,
}

impl QuotaPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// Brings the user's `current` quota values to `desired`.
pub fn plan_quotas(desired: &BTreeMap<String, f64>, current: &BTreeMap<String, f64>) -> QuotaPlan {
    QuotaPlan {
        set: desired
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        remove: current
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect(),
    }
}

/// SCRAM credentials to set and to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialPlan {
    /// The mechanism to (re)set with the user's password. Kafka never
    /// gives a password back, so the only way to be sure it is the
    /// Secret's is to set it again: this is every reconcile's, which also
    /// puts back a password changed behind the operator's back.
    pub set: Option<ScramMechanism>,
    /// Credentials of mechanisms the spec does not use.
    pub delete: Vec<ScramMechanism>,
}

/// The credential changes for `wanted` given the mechanisms Kafka holds.
pub fn plan_credentials(
    wanted: Option<ScramMechanism>,
    current: &[ScramMechanism],
) -> CredentialPlan {
    CredentialPlan {
        set: wanted,
        delete: current
            .iter()
            .copied()
            .filter(|m| Some(*m) != wanted)
            .collect(),
    }
}

#[cfg(test)]
mod tests;

//! `KafkaUser`: a Kafka user of a [`super::KafkaCluster`] in the same
//! namespace: its SCRAM credential, its ACLs and its quotas, kept through
//! the Kafka admin protocol, and a Secret for the application with the
//! keys Strimzi's `KafkaUser` Secrets have.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a Kafka user.
// Clippy reads the repeated `type_` of separate printcolumns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rivulet.dev",
    version = "v1alpha1",
    kind = "KafkaUser",
    plural = "kafkausers",
    shortname = "ku",
    category = "rivulet",
    namespaced,
    status = "KafkaUserStatus",
    derive = "PartialEq",
    doc = "A Kafka user of a KafkaCluster in the same namespace. The operator sets its SCRAM credential, ACLs and quotas through the Kafka admin protocol, puts back whatever is changed behind its back, removes them all when the KafkaUser is deleted, and writes a Secret (named like the KafkaUser) with the keys a Strimzi KafkaUser Secret has: `password` and `sasl.jaas.config` for SCRAM, `user.crt`, `user.key`, `user.p12`, `user.password` and `ca.crt` for TLS.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.cluster",
        description = "The KafkaCluster the user belongs to"
    ),
    printcolumn(
        name = "Authentication",
        type_ = "string",
        json_path = ".spec.authentication.type",
        description = "How the user logs in"
    ),
    printcolumn(
        name = "Authorization",
        type_ = "string",
        json_path = ".spec.authorization.type",
        description = "How the user's rights are given"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the user's credential, ACLs and quotas match the spec"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserSpec {
    /// Name of the KafkaCluster (in this namespace) the user belongs to.
    /// Cannot change. (Strimzi's `strimzi.io/cluster` label.)
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster cannot change: delete the KafkaUser and create it in the other cluster"))]
    pub cluster: String,

    /// How the user logs in. The Kafka user name is the KafkaUser's
    /// `metadata.name`. Without it the operator manages only ACLs and
    /// quotas, and removes any SCRAM credential of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<UserAuthentication>,

    /// The user's rights. Without it the user has no ACLs of its own: the
    /// operator removes every ACL whose principal is `User:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<UserAuthorization>,

    /// The user's client quotas (Kafka's `user` quota entity). Without it,
    /// or for a rate left out, the broker's defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,
}

/// How a user logs in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthentication {
    /// `scram-sha-512` or `scram-sha-256`: a SCRAM credential, and a
    /// Secret with `password` and `sasl.jaas.config`. `tls`: a client
    /// certificate with `CN=<user name>` signed by the cluster's clients
    /// CA, and a Secret with Strimzi's keys `user.crt`, `user.key`,
    /// `user.p12`, `user.password` and `ca.crt` (the cluster CA, to trust
    /// the brokers); it is issued again before it expires and after a
    /// clients CA key replacement. A cluster without TLS has no clients CA:
    /// the KafkaUser then reports Ready False, reason `ClientsCaMissing`.
    #[serde(rename = "type")]
    pub kind: AuthenticationType,

    /// Where the password comes from. Default: the operator generates 32
    /// random letters and digits once and keeps them in the user's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
}

/// The login mechanism of a user.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthenticationType {
    /// SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// A client certificate from the clients CA.
    #[serde(rename = "tls")]
    Tls,
}

/// A password given by the user, as Strimzi takes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSource {
    /// The password's source.
    pub value_from: PasswordValueFrom,
}

/// Where a given password is read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordValueFrom {
    /// A key of a Secret in the KafkaUser's namespace. A change of the
    /// password there is applied on the next reconcile (within 5 minutes).
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// A user's rights.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthorization {
    /// `simple`: Kafka ACLs (the brokers need `authorizer.class.name` set).
    #[serde(rename = "type")]
    pub kind: AuthorizationType,

    /// The user's ACLs; every other ACL of principal `User:<name>` is
    /// removed.
    #[serde(default)]
    pub acls: Vec<AclRule>,
}

/// How rights are given.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthorizationType {
    /// Kafka ACLs.
    Simple,
}

/// One ACL rule: every operation listed on one resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclRule {
    /// `allow` (the default) or `deny`.
    #[serde(default, rename = "type")]
    pub kind: AclPermission,

    /// The resource the rule is about.
    pub resource: AclResource,

    /// Kafka operations: `Read`, `Write`, `Create`, `Delete`, `Alter`,
    /// `Describe`, `ClusterAction`, `AlterConfigs`, `DescribeConfigs`,
    /// `IdempotentWrite` or `All`.
    #[x_kube(validation = Rule::new("size(self) >= 1").message("name at least one operation"))]
    pub operations: Vec<AclOperation>,

    /// The client address the rule applies to. Default `*`: any.
    #[serde(default = "any_host")]
    pub host: String,
}

fn any_host() -> String {
    "*".into()
}

/// Allow or deny.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclPermission {
    /// Allow the operations.
    #[default]
    Allow,
    /// Deny the operations (a deny wins over any allow).
    Deny,
}

/// The resource of an ACL rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclResource {
    /// `topic`, `group`, `cluster` or `transactionalId`.
    #[serde(rename = "type")]
    pub kind: AclResourceType,

    /// The resource's name, or its prefix with `patternType: prefix`; `*`
    /// for every resource of the type. Not used for `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// `literal` (the default): the name as written (`*` included);
    /// `prefix`: every name that starts with it.
    #[serde(default)]
    pub pattern_type: AclPatternType,
}

/// Resource types of ACL rules.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster.
    Cluster,
    /// A transactional id.
    TransactionalId,
}

/// How an ACL's resource name matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclPatternType {
    /// The name as written.
    #[default]
    Literal,
    /// Every name starting with it.
    Prefix,
}

/// Kafka ACL operations, spelled as Strimzi spells them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AclOperation {
    /// Read records, join a group.
    Read,
    /// Write records.
    Write,
    /// Create topics.
    Create,
    /// Delete topics, records, groups.
    Delete,
    /// Change partitions, ACLs.
    Alter,
    /// See the resource.
    Describe,
    /// Broker-to-broker requests.
    ClusterAction,
    /// Change configs.
    AlterConfigs,
    /// Read configs.
    DescribeConfigs,
    /// Idempotent producing.
    IdempotentWrite,
    /// Every operation.
    All,
}

/// Client quotas of a user, Kafka's quota keys in camel case.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserQuotas {
    /// Bytes per second the user may produce, per broker
    /// (`producer_byte_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_byte_rate: Option<i64>,
    /// Bytes per second the user may fetch, per broker
    /// (`consumer_byte_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_byte_rate: Option<i64>,
    /// Percent of one request handler thread's time the user may take, per
    /// broker (`request_percentage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_percentage: Option<i64>,
    /// Kafka's `controller_mutation_rate`. Not supported by Rivulet's
    /// brokers: a KafkaUser that sets it is reported with Ready False,
    /// reason `InvalidSpec`, and nothing is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_mutation_rate: Option<f64>,
}

/// The observed state of a Kafka user.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: the user's credential, ACLs and quotas are as the spec
    /// says and its Secret is written; its reason says what is wrong
    /// otherwise (`InvalidSpec`, `ClientsCaMissing`,
    /// `PasswordSecretNotFound`, `ClusterNotFound`, `KafkaUnavailable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The Kafka user name (principal `User:<username>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,

    /// The Secret with the user's credentials, in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

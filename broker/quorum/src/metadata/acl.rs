//! Kafka's ACL model and the decision of Kafka's `StandardAuthorizer`, as
//! pure data and functions: the image stores [`AclBinding`]s, CreateAcls
//! admits them through [`AclBinding::from_codes`] / [`validate`],
//! DescribeAcls and DeleteAcls select them with an [`AclFilter`], and every
//! request is checked with [`authorize`].
//!
//! The decision, as Kafka's `StandardAuthorizerData` makes it:
//! - a super user (`super.users`, compared as `Type:name`) may do anything;
//! - the ACLs on a resource are those of its type that are LITERAL with its
//!   name, LITERAL `*`, or PREFIXED with a prefix of its name;
//! - of those, the ones that apply to a request have the request's
//!   principal or `User:*`, and the request's host or `*`;
//! - one applicable DENY of the operation (or of ALL) refuses; otherwise an
//!   applicable ALLOW of the operation, of ALL or of an operation that
//!   implies it (READ/WRITE/DELETE/ALTER imply DESCRIBE, ALTER_CONFIGS
//!   implies DESCRIBE_CONFIGS) allows. Implication is for ALLOW only: a
//!   DENY of READ does not deny DESCRIBE (Kafka's `AclOperation` javadoc);
//! - with no ACL at all on the resource, whoever they are for, the answer
//!   is `allow.everyone.if.no.acl.found` (KAFKA-14435); with some but none
//!   applicable, it is a refusal.
//!
//! Cost: [`authorize`] scans every ACL once and allocates nothing. Thousands
//! of ACLs are fine per request but not per record; the next step is an
//! index by resource type then name (Kafka keeps a set sorted that way and
//! walks only the names that are prefixes of the resource's), built when
//! the image changes.

use std::{collections::BTreeSet, fmt};

use serde::{Deserialize, Serialize};

/// The only name a CLUSTER resource has (Kafka's `kafka-cluster`).
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

/// The resource name (LITERAL) and host that match any name or host.
pub const WILDCARD: &str = "*";

/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's INVALID_REQUEST error code, the answer to every malformed
/// binding or filter.
const INVALID_REQUEST: i16 = 42;

/// Defines a Kafka wire enum: the variants, their codes and upper-case
/// names, so the three tables cannot drift apart.
macro_rules! kafka_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal; )+ }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in code order.
            pub const VALUES: &'static [Self] = &[$(Self::$variant),+];

            /// Kafka's wire code.
            pub const fn code(self) -> i8 {
                match self { $(Self::$variant => $code,)+ }
            }

            /// The value with Kafka's wire code; `None` for UNKNOWN (0),
            /// for the filter-only codes and for codes Kafka has not defined.
            pub const fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)+ _ => None }
            }

            /// Kafka's upper-case name, as its tools and messages print it.
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum! {
    /// The kind of resource an ACL protects (Kafka's `ResourceType`; 0 is
    /// UNKNOWN and 1 is ANY, which only filters use).
    ResourceType {
        /// A topic.
        Topic = 2, "TOPIC";
        /// A consumer group.
        Group = 3, "GROUP";
        /// The cluster itself, always named `kafka-cluster`.
        Cluster = 4, "CLUSTER";
        /// A transactional producer's id.
        TransactionalId = 5, "TRANSACTIONAL_ID";
        /// A delegation token.
        DelegationToken = 6, "DELEGATION_TOKEN";
        /// A user (for CREATE_TOKENS / DESCRIBE_TOKENS on behalf of others).
        User = 7, "USER";
    }
}

kafka_enum! {
    /// How an ACL's resource name is read (Kafka's `PatternType`; ANY and
    /// MATCH are filter-only, see [`PatternFilter`]).
    PatternType {
        /// The exact name, or every name when it is `*`.
        Literal = 3, "LITERAL";
        /// Every name that starts with it. `*` has no special meaning here.
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// What an ACL allows or denies (Kafka's `AclOperation`; 1 is ANY,
    /// filter-only).
    Operation {
        /// Every operation.
        All = 2, "ALL";
        /// Fetch, consume, join a group.
        Read = 3, "READ";
        /// Produce.
        Write = 4, "WRITE";
        /// Create topics.
        Create = 5, "CREATE";
        /// Delete topics, records, groups.
        Delete = 6, "DELETE";
        /// Alter partitions, ACLs.
        Alter = 7, "ALTER";
        /// Metadata, offsets, describe groups and ACLs.
        Describe = 8, "DESCRIBE";
        /// Broker-to-broker requests.
        ClusterAction = 9, "CLUSTER_ACTION";
        /// Read configs.
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        /// Change configs.
        AlterConfigs = 11, "ALTER_CONFIGS";
        /// Idempotent produce (InitProducerId without a transactional id).
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        /// Create delegation tokens.
        CreateTokens = 13, "CREATE_TOKENS";
        /// Describe delegation tokens.
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
}

kafka_enum! {
    /// Whether an ACL allows or denies (Kafka's `AclPermissionType`; 1 is
    /// ANY, filter-only).
    Permission {
        /// Refuses, whatever ALLOWs say.
        Deny = 2, "DENY";
        /// Grants, unless something DENYs.
        Allow = 3, "ALLOW";
    }
}

kafka_enum! {
    /// The pattern-type part of a DescribeAcls / DeleteAcls filter.
    PatternFilter {
        /// Either pattern type; a name must then be equal.
        Any = 1, "ANY";
        /// The bindings that would apply to the named resource: LITERAL of
        /// that name, LITERAL `*`, PREFIXED with a prefix of it.
        Match = 2, "MATCH";
        /// LITERAL bindings only.
        Literal = 3, "LITERAL";
        /// PREFIXED bindings only.
        Prefixed = 4, "PREFIXED";
    }
}

impl Operation {
    /// Whether an ALLOW of `self` grants `requested`: ALL grants everything,
    /// and READ, WRITE, DELETE and ALTER grant DESCRIBE, ALTER_CONFIGS grants
    /// DESCRIBE_CONFIGS (Kafka's `AclOperation` javadoc). A DENY implies
    /// nothing beyond itself; that asymmetry is deliberate in Kafka.
    pub fn allow_implies(self, requested: Operation) -> bool {
        use Operation::*;
        self == All
            || self == requested
            || match requested {
                Describe => matches!(self, Read | Write | Delete | Alter),
                DescribeConfigs => self == AlterConfigs,
                _ => false,
            }
    }
}

/// One ACL (an AclBinding): principal like "User:alice" or "User:*", host
/// like "*" or "10.0.0.1".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The name, `*`, or a prefix, as `pattern_type` says.
    pub resource_name: String,
    /// How `resource_name` is read.
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`, or [`WILDCARD_PRINCIPAL`].
    pub principal: String,
    /// The client address as text, or [`WILDCARD`].
    pub host: String,
    /// What is allowed or denied.
    pub operation: Operation,
    /// Allowed or denied.
    pub permission: Permission,
}

impl AclBinding {
    /// Decodes a CreateAcls creation and [`validate`]s it. ANY, MATCH and
    /// UNKNOWN are refused with Kafka's `Invalid <field> <NAME>` message.
    #[allow(clippy::too_many_arguments)] // one argument per wire field
    pub fn from_codes(
        resource_type: i8,
        resource_name: String,
        pattern_type: i8,
        principal: String,
        host: String,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        let acl = AclBinding {
            resource_type: ResourceType::from_code(resource_type)
                .ok_or_else(|| AclError::invalid_code("resourceType", resource_type, false))?,
            resource_name,
            pattern_type: PatternType::from_code(pattern_type)
                .ok_or_else(|| AclError::invalid_code("patternType", pattern_type, true))?,
            principal,
            host,
            operation: Operation::from_code(operation)
                .ok_or_else(|| AclError::invalid_code("operation", operation, false))?,
            permission: Permission::from_code(permission)
                .ok_or_else(|| AclError::invalid_code("permissionType", permission, false))?,
        };
        validate(&acl)?;
        Ok(acl)
    }

    /// Whether this ACL is one of the resource's: same type, and LITERAL
    /// with its name, LITERAL `*`, or PREFIXED with a prefix of its name.
    pub fn applies_to_resource(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
            }
    }

    /// Whether this ACL speaks for `principal` connecting from `host`.
    /// Both are compared as text, so `host` must be written the way the ACL
    /// was (Kafka uses Java's `getHostAddress()` form).
    pub fn applies_to_principal(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == host || self.host == WILDCARD)
    }
}

/// Checks a binding before it enters the image. Refused, all with
/// INVALID_REQUEST:
/// - a CLUSTER resource not named `kafka-cluster` (Kafka's `AclApis`; it
///   checks this first, so an empty CLUSTER name gets this message);
/// - an empty resource name (Kafka: `AclApis`, `AclControlManager`);
/// - a principal without a colon (Kafka's message), and, stricter than
///   Kafka, one with an empty type or name: `User:` matches no session;
/// - an empty host, also stricter: no client has an empty address.
///
/// Accepted as Kafka accepts them: PREFIXED `*` (it is not a wildcard and
/// matches names that start with `*`, which group and transactional ids
/// may), any principal type (`Group:ops`), and any operation on any
/// resource type (one that is never asked about is inert).
pub fn validate(acl: &AclBinding) -> Result<(), AclError> {
    if acl.resource_type == ResourceType::Cluster && acl.resource_name != CLUSTER_RESOURCE_NAME {
        return Err(AclError::ClusterName);
    }
    if acl.resource_name.is_empty() {
        return Err(AclError::EmptyResourceName);
    }
    match acl.principal.split_once(':') {
        None => return Err(AclError::PrincipalWithoutColon(acl.principal.clone())),
        Some((kind, name)) if kind.is_empty() || name.is_empty() => {
            return Err(AclError::EmptyPrincipalPart(acl.principal.clone()))
        }
        Some(_) => {}
    }
    if acl.host.is_empty() {
        return Err(AclError::EmptyHost);
    }
    Ok(())
}

/// A DescribeAcls / DeleteAcls filter (Kafka's `AclBindingFilter`). `None`
/// means any; principal and host, when given, must be equal (`User:*` in a
/// filter selects the wildcard bindings, not everyone's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// The resource type, `None` for ANY (code 1).
    pub resource_type: Option<ResourceType>,
    /// The resource name, `None` for any.
    pub resource_name: Option<String>,
    /// How `resource_name` selects patterns.
    pub pattern: PatternFilter,
    /// The principal, `None` for any.
    pub principal: Option<String>,
    /// The host, `None` for any.
    pub host: Option<String>,
    /// The operation, `None` for ANY (code 1).
    pub operation: Option<Operation>,
    /// The permission, `None` for ANY (code 1).
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// The filter that matches every binding.
    pub fn any() -> Self {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// Decodes a filter from the wire. ANY (1) becomes `None`; UNKNOWN (0)
    /// and undefined codes are refused, as Kafka refuses filters that
    /// contain UNKNOWN elements.
    pub fn from_codes(
        resource_type: i8,
        resource_name: Option<String>,
        pattern: i8,
        principal: Option<String>,
        host: Option<String>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        fn any_or<T>(
            code: i8,
            field: &str,
            decode: fn(i8) -> Option<T>,
        ) -> Result<Option<T>, AclError> {
            match code {
                1 => Ok(None),
                _ => decode(code)
                    .map(Some)
                    .ok_or_else(|| AclError::UnknownFilterCode {
                        field: field.into(),
                        code,
                    }),
            }
        }
        Ok(AclFilter {
            resource_type: any_or(resource_type, "resourceType", ResourceType::from_code)?,
            resource_name,
            pattern: PatternFilter::from_code(pattern).ok_or_else(|| {
                AclError::UnknownFilterCode {
                    field: "patternType".into(),
                    code: pattern,
                }
            })?,
            principal,
            host,
            operation: any_or(operation, "operation", Operation::from_code)?,
            permission: any_or(permission, "permissionType", Permission::from_code)?,
        })
    }

    /// Whether the filter selects `acl`.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.matches_pattern(acl)
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }

    /// Kafka's `ResourcePatternFilter.matches`: type, then pattern type,
    /// then name, where MATCH reads the name as a resource to resolve.
    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        if self.resource_type.is_some_and(|t| t != acl.resource_type) {
            return false;
        }
        let wanted_type = match self.pattern {
            PatternFilter::Literal => Some(PatternType::Literal),
            PatternFilter::Prefixed => Some(PatternType::Prefixed),
            PatternFilter::Any | PatternFilter::Match => None,
        };
        if wanted_type.is_some_and(|t| t != acl.pattern_type) {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        match self.pattern {
            PatternFilter::Match => match acl.pattern_type {
                PatternType::Literal => acl.resource_name == *name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(acl.resource_name.as_str()),
            },
            _ => acl.resource_name == *name,
        }
    }
}

/// Why a binding or filter was refused. Every variant answers the client
/// with INVALID_REQUEST ([`AclError::code`]) and its message as
/// `error_message`; serializable so the metadata log's errors can carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AclError {
    /// A binding field holds UNKNOWN, a filter-only value, or no Kafka code.
    #[error("Invalid {field} {name}")]
    InvalidCode {
        /// Kafka's field name, e.g. `resourceType`.
        field: String,
        /// Kafka's name of the value: `UNKNOWN`, `ANY` or `MATCH`.
        name: String,
    },
    /// A filter field holds UNKNOWN or no Kafka code.
    #[error("Filter contains an UNKNOWN {field} (code {code})")]
    UnknownFilterCode {
        /// Kafka's field name, e.g. `operation`.
        field: String,
        /// The code received.
        code: i8,
    },
    /// A CLUSTER binding not named `kafka-cluster`.
    #[error("The only valid name for the CLUSTER resource is {CLUSTER_RESOURCE_NAME}")]
    ClusterName,
    /// An empty resource name.
    #[error("Invalid empty resource name")]
    EmptyResourceName,
    /// A principal that is not `Type:name`.
    #[error(
        "Could not parse principal from `{0}` (no colon is present separating the principal \
         type from the principal name)"
    )]
    PrincipalWithoutColon(String),
    /// A principal with an empty type or name.
    #[error("Invalid principal `{0}`: the principal type and name must not be empty")]
    EmptyPrincipalPart(String),
    /// An empty host.
    #[error("Invalid empty host (use * for any host)")]
    EmptyHost,
}

impl AclError {
    /// The Kafka error code to answer with: INVALID_REQUEST (42) for all.
    pub fn code(&self) -> i16 {
        INVALID_REQUEST
    }

    /// Kafka names a non-concrete code by what it means in filters.
    fn invalid_code(field: &str, code: i8, is_pattern: bool) -> Self {
        let name = match code {
            1 => "ANY",
            2 if is_pattern => "MATCH",
            _ => "UNKNOWN",
        };
        AclError::InvalidCode {
            field: field.into(),
            name: name.into(),
        }
    }
}

/// The authorizer's static configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals (`User:admin`) allowed everything (`super.users`).
    pub super_users: BTreeSet<String>,
    /// The answer for a resource with no ACL at all
    /// (`allow.everyone.if.no.acl.found`, default false).
    pub allow_everyone_if_no_acl_found: bool,
}

/// One question to the authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The session's principal, `User:alice`.
    pub principal: &'a str,
    /// The client's address as text, in the form ACLs are written in.
    pub host: &'a str,
    /// The operation asked for.
    pub operation: Operation,
    /// The resource's type.
    pub resource_type: ResourceType,
    /// The resource's name (`kafka-cluster` for the cluster).
    pub resource_name: &'a str,
}

/// Kafka's StandardAuthorizer decision (see the module doc). `acls` is
/// `Clone` so that an implementation may take more than one pass without
/// changing callers; this one takes one and stops at the first DENY.
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    config: &AuthorizerConfig,
    request: &Request,
) -> bool {
    if config.super_users.contains(request.principal) {
        return true;
    }
    let mut resource_has_acls = false;
    let mut allowed = false;
    for acl in acls {
        if !acl.applies_to_resource(request.resource_type, request.resource_name) {
            continue;
        }
        resource_has_acls = true;
        if !acl.applies_to_principal(request.principal, request.host) {
            continue;
        }
        match acl.permission {
            Permission::Deny
                if acl.operation == Operation::All || acl.operation == request.operation =>
            {
                return false;
            }
            Permission::Allow if acl.operation.allow_implies(request.operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!resource_has_acls && config.allow_everyone_if_no_acl_found)
}

/// Whether `principal` at `host` may WRITE to at least one topic, which
/// Kafka accepts in place of IDEMPOTENT_WRITE on the cluster (KIP-679), as
/// Kafka's default `authorizeByResourceType(WRITE, TOPIC)` decides it:
/// among the WRITE/ALL topic ACLs that apply to the principal and host, a
/// DENY on LITERAL `*` refuses, an ALLOW on LITERAL `*` allows, and
/// otherwise some ALLOW must survive the DENYs that cover it (a LITERAL
/// allow is covered by a DENY of the same literal or of a PREFIXED prefix
/// of it; a PREFIXED allow by a DENY of a PREFIXED prefix of it).
///
/// Approximation: Kafka starts by asking [`authorize`] about a topic named
/// `hardcode`, which lets super users in and, with
/// `allow.everyone.if.no.acl.found`, anyone when that one name has no ACL.
/// Here the second part asks the question Kafka's sample name stands for:
/// is there a topic name with no ACL, i.e. no LITERAL `*` topic ACL at all.
///
/// Allocation-free; costs up to one pass per applicable ALLOW, so callers
/// should ask once per producer (InitProducerId), not per batch.
pub fn may_write_any_topic<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    config: &AuthorizerConfig,
    principal: &str,
    host: &str,
) -> bool {
    if config.super_users.contains(principal) {
        return true;
    }
    let is_topic_wildcard = |acl: &AclBinding| {
        acl.resource_type == ResourceType::Topic
            && acl.pattern_type == PatternType::Literal
            && acl.resource_name == WILDCARD
    };
    if config.allow_everyone_if_no_acl_found && !acls.clone().into_iter().any(is_topic_wildcard) {
        return true;
    }
    let relevant = move |acl: &&AclBinding| {
        acl.resource_type == ResourceType::Topic
            && matches!(acl.operation, Operation::Write | Operation::All)
            && acl.applies_to_principal(principal, host)
    };
    let denies = || {
        acls.clone()
            .into_iter()
            .filter(relevant)
            .filter(|acl| acl.permission == Permission::Deny)
    };
    if denies().any(is_topic_wildcard) {
        return false;
    }
    let covered = |allow: &AclBinding| {
        denies().any(|deny| match (allow.pattern_type, deny.pattern_type) {
            (PatternType::Literal, PatternType::Literal) => {
                deny.resource_name == allow.resource_name
            }
            (_, PatternType::Prefixed) => {
                allow.resource_name.starts_with(deny.resource_name.as_str())
            }
            (PatternType::Prefixed, PatternType::Literal) => false,
        })
    };
    acls.clone()
        .into_iter()
        .filter(relevant)
        .filter(|acl| acl.permission == Permission::Allow)
        .any(|allow| is_topic_wildcard(allow) || !covered(allow))
}

#[cfg(test)]
mod tests;

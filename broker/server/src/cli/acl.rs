//! `rivulet acl`: ACLs through CreateAcls, DescribeAcls and DeleteAcls,
//! with the flags of Kafka's `kafka-acls.sh` (`--allow-principal`,
//! `--operation`, `--topic`, `--resource-pattern-type`, ...).

use anyhow::{bail, Context};
use kafka_protocol::{
    messages::{
        create_acls_request::AclCreation, delete_acls_request::DeleteAclsFilter, CreateAclsRequest,
        DeleteAclsRequest, DescribeAclsRequest,
    },
    protocol::StrBytes,
};
use rivulet_quorum::metadata::acl::{
    Operation, PatternFilter, PatternType, Permission, ResourceType, CLUSTER_RESOURCE_NAME,
};
use rivulet_wire::ClientError;
use serde_json::json;

use super::ConnectArgs;

/// `rivulet acl ...`
#[derive(clap::Args, Debug)]
pub struct AclArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: AclCommand,
}

/// The resources a command is about, as `kafka-acls.sh` names them.
#[derive(clap::Args, Debug, Default)]
struct Resources {
    /// A topic name (or prefix, with --resource-pattern-type prefixed); `*` for all.
    #[arg(long)]
    topic: Vec<String>,
    /// A consumer group id (or prefix).
    #[arg(long)]
    group: Vec<String>,
    /// A transactional id (or prefix).
    #[arg(long)]
    transactional_id: Vec<String>,
    /// The cluster itself.
    #[arg(long)]
    cluster: bool,
}

impl Resources {
    fn list(&self) -> Vec<(ResourceType, String)> {
        let named = |kind, names: &Vec<String>| {
            names
                .iter()
                .map(move |n| (kind, n.clone()))
                .collect::<Vec<_>>()
        };
        let mut all = named(ResourceType::Topic, &self.topic);
        all.extend(named(ResourceType::Group, &self.group));
        all.extend(named(ResourceType::TransactionalId, &self.transactional_id));
        if self.cluster {
            all.push((ResourceType::Cluster, CLUSTER_RESOURCE_NAME.to_string()));
        }
        all
    }

    /// The resources as (type code, name) filters of DescribeAcls and
    /// DeleteAcls.
    fn filters(&self) -> Vec<(i8, Option<String>)> {
        self.list()
            .into_iter()
            .map(|(kind, name)| (kind.code(), Some(name)))
            .collect()
    }
}

#[derive(clap::Subcommand, Debug)]
enum AclCommand {
    /// Add ACLs: every principal gets every operation on every resource.
    Add {
        #[command(flatten)]
        resources: Resources,
        /// A principal to allow, e.g. User:alice (repeatable).
        #[arg(long)]
        allow_principal: Vec<String>,
        /// A principal to deny (repeatable).
        #[arg(long)]
        deny_principal: Vec<String>,
        /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION,
        /// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE or ALL
        /// (repeatable; any case).
        #[arg(long, required = true)]
        operation: Vec<String>,
        /// The client address the ACL applies to; `*` for any.
        #[arg(long, default_value = "*")]
        host: String,
        /// literal (the default) or prefixed.
        #[arg(long, default_value = "literal")]
        resource_pattern_type: String,
    },
    /// List ACLs, all of them or those of the given resources.
    List {
        #[command(flatten)]
        resources: Resources,
        /// Only this principal's ACLs.
        #[arg(long)]
        principal: Option<String>,
        /// any (the default), match (what applies to the named resource),
        /// literal or prefixed.
        #[arg(long, default_value = "any")]
        resource_pattern_type: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove the ACLs that match: of the given resources and/or principal.
    Remove {
        #[command(flatten)]
        resources: Resources,
        /// Only this principal's ACLs.
        #[arg(long)]
        principal: Option<String>,
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        /// Only allow or deny ACLs.
        #[arg(long)]
        permission: Option<String>,
        /// any (the default), literal or prefixed.
        #[arg(long, default_value = "any")]
        resource_pattern_type: String,
    },
}

fn parse_named<T: Copy>(
    values: &[T],
    name: fn(T) -> &'static str,
    text: &str,
    what: &str,
) -> anyhow::Result<T> {
    let wanted = text.trim().to_ascii_uppercase().replace('-', "_");
    values
        .iter()
        .copied()
        .find(|v| name(*v) == wanted)
        .with_context(|| {
            let names: Vec<&str> = values.iter().map(|v| name(*v)).collect();
            format!("`{text}` is not a {what} ({})", names.join(", "))
        })
}

fn pattern_filter(text: &str) -> anyhow::Result<PatternFilter> {
    parse_named(
        PatternFilter::VALUES,
        PatternFilter::name,
        text,
        "pattern type filter",
    )
}

fn operation(text: &str) -> anyhow::Result<Operation> {
    parse_named(Operation::VALUES, Operation::name, text, "operation")
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Runs `rivulet acl`.
pub async fn run(args: AclArgs) -> anyhow::Result<()> {
    match args.command {
        AclCommand::Add {
            resources,
            allow_principal,
            deny_principal,
            operation: operations,
            host,
            resource_pattern_type,
        } => {
            let pattern = parse_named(
                PatternType::VALUES,
                PatternType::name,
                &resource_pattern_type,
                "pattern type for an ACL",
            )?;
            let resources = resources.list();
            if resources.is_empty() {
                bail!("name a resource: --topic, --group, --transactional-id or --cluster");
            }
            let principals: Vec<(Permission, String)> = allow_principal
                .into_iter()
                .map(|p| (Permission::Allow, p))
                .chain(deny_principal.into_iter().map(|p| (Permission::Deny, p)))
                .collect();
            if principals.is_empty() {
                bail!("name a principal: --allow-principal or --deny-principal (e.g. User:alice)");
            }
            let operations = operations
                .iter()
                .map(|o| operation(o))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut creations = Vec::new();
            for (kind, name) in &resources {
                for (permission, principal) in &principals {
                    for op in &operations {
                        creations.push(
                            AclCreation::default()
                                .with_resource_type(kind.code())
                                .with_resource_name(s(name))
                                .with_resource_pattern_type(pattern.code())
                                .with_principal(s(principal))
                                .with_host(s(&host))
                                .with_operation(op.code())
                                .with_permission_type(permission.code()),
                        );
                    }
                }
            }
            let count = creations.len();
            let mut client = args.connect.client().await?;
            let response = client
                .send_any(CreateAclsRequest::default().with_creations(creations))
                .await
                .context("create ACLs")?;
            for result in response.results {
                ClientError::check(result.error_code, result.error_message.as_deref())?;
            }
            println!("added {count} ACL(s)");
        }
        AclCommand::List {
            resources,
            principal,
            resource_pattern_type,
            json,
        } => {
            let pattern = pattern_filter(&resource_pattern_type)?;
            let mut filters = resources.filters();
            if filters.is_empty() {
                filters.push((1, None));
            }
            let mut client = args.connect.client().await?;
            let mut rows = Vec::new();
            for (kind, name) in filters {
                let request = DescribeAclsRequest::default()
                    .with_resource_type_filter(kind)
                    .with_resource_name_filter(name.as_deref().map(s))
                    .with_pattern_type_filter(pattern.code())
                    .with_principal_filter(principal.as_deref().map(s))
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1);
                let response = client.send_any(request).await.context("describe ACLs")?;
                ClientError::check(response.error_code, response.error_message.as_deref())?;
                for res in response.resources {
                    for acl in res.acls {
                        let name_of = |code, f: fn(i8) -> Option<&'static str>| {
                            f(code).unwrap_or("UNKNOWN").to_string()
                        };
                        rows.push(json!({
                            "resource_type": name_of(res.resource_type, |c| ResourceType::from_code(c).map(ResourceType::name)),
                            "resource_name": res.resource_name.as_str(),
                            "pattern_type": name_of(res.pattern_type, |c| PatternType::from_code(c).map(PatternType::name)),
                            "principal": acl.principal.as_str(),
                            "host": acl.host.as_str(),
                            "operation": name_of(acl.operation, |c| Operation::from_code(c).map(Operation::name)),
                            "permission": name_of(acl.permission_type, |c| Permission::from_code(c).map(Permission::name)),
                        }));
                    }
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(rows));
                return Ok(());
            }
            println!(
                "{:<17} {:<24} {:<9} {:<20} {:<10} {:<17} PERMISSION",
                "RESOURCE TYPE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION"
            );
            for r in rows {
                let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                println!(
                    "{:<17} {:<24} {:<9} {:<20} {:<10} {:<17} {}",
                    f("resource_type"),
                    f("resource_name"),
                    f("pattern_type"),
                    f("principal"),
                    f("host"),
                    f("operation"),
                    f("permission")
                );
            }
        }
        AclCommand::Remove {
            resources,
            principal,
            operation: op,
            permission,
            resource_pattern_type,
        } => {
            let pattern = pattern_filter(&resource_pattern_type)?;
            let op = op.as_deref().map(operation).transpose()?;
            let permission = permission
                .as_deref()
                .map(|p| parse_named(Permission::VALUES, Permission::name, p, "permission"))
                .transpose()?;
            let mut targets = resources.filters();
            if targets.is_empty() {
                if principal.is_none() {
                    bail!("name what to remove: a resource (--topic, --group, ...) and/or --principal");
                }
                targets.push((1, None));
            }
            let filters = targets
                .into_iter()
                .map(|(kind, name)| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(kind)
                        .with_resource_name_filter(name.as_deref().map(s))
                        .with_pattern_type_filter(pattern.code())
                        .with_principal_filter(principal.as_deref().map(s))
                        .with_host_filter(None)
                        .with_operation(op.map_or(1, Operation::code))
                        .with_permission_type(permission.map_or(1, Permission::code))
                })
                .collect();
            let mut client = args.connect.client().await?;
            let response = client
                .send_any(DeleteAclsRequest::default().with_filters(filters))
                .await
                .context("delete ACLs")?;
            let mut removed = 0;
            for result in response.filter_results {
                ClientError::check(result.error_code, result.error_message.as_deref())?;
                removed += result.matching_acls.len();
            }
            println!("removed {removed} ACL(s)");
        }
    }
    Ok(())
}

//! `rivulet quota`: client quotas, like Kafka's `kafka-configs.sh
//! --entity-type users|clients --alter --add-config producer_byte_rate=...`
//! and `--describe`.
//!
//! Goes through AlterClientQuotas and DescribeClientQuotas, so any broker
//! of the cluster takes it and the change is replicated to all of them.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use rivulet_wire::client::{QuotaComponent, QuotaEntry, QuotaMatch};

use super::ConnectArgs;

/// The keys `--delete` takes.
const KEYS: &[&str] = &[
    "producer_byte_rate",
    "consumer_byte_rate",
    "request_percentage",
];

/// `rivulet quota ...`
#[derive(clap::Args, Debug)]
pub struct QuotaArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: QuotaCommand,
}

/// The user and client-id of an entity.
#[derive(clap::Args, Debug, Clone, Default)]
struct EntityArgs {
    /// The user (principal name).
    #[arg(long, conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user: every user without a quota of its own.
    #[arg(long)]
    user_default: bool,
    /// The client id.
    #[arg(long, conflicts_with = "client_id_default")]
    client_id: Option<String>,
    /// The default client id: every client id without a quota of its own.
    #[arg(long)]
    client_id_default: bool,
}

#[derive(clap::Subcommand, Debug)]
enum QuotaCommand {
    /// Set or delete quotas of a user, a client id, or both.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Bytes per second the entity may produce.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        producer_byte_rate: Option<u64>,
        /// Bytes per second the entity may fetch.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        consumer_byte_rate: Option<u64>,
        /// Percentage of one request handler thread (e.g. 200 for two).
        #[arg(long, allow_negative_numbers = true)]
        request_percentage: Option<f64>,
        /// Remove this quota key (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Only check the change with the broker.
        #[arg(long)]
        validate_only: bool,
    },
    /// Show quotas; without entity flags, every entity's.
    Describe {
        #[command(flatten)]
        entity: EntityArgs,
        /// Only entities with exactly the given components (Kafka's strict
        /// filter): `--user alice` then leaves out alice's client ids.
        #[arg(long)]
        strict: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl EntityArgs {
    /// The components named, as `(type, name)`; `None` is the default.
    fn components(&self) -> Vec<QuotaComponent> {
        let mut out = Vec::new();
        if let Some(user) = &self.user {
            out.push(("user".to_string(), Some(user.clone())));
        } else if self.user_default {
            out.push(("user".to_string(), None));
        }
        if let Some(client) = &self.client_id {
            out.push(("client-id".to_string(), Some(client.clone())));
        } else if self.client_id_default {
            out.push(("client-id".to_string(), None));
        }
        out
    }
}

/// The changes `rivulet quota set` asks for, checked before any request.
fn changes(
    producer: Option<u64>,
    consumer: Option<u64>,
    percentage: Option<f64>,
    delete: &[String],
) -> anyhow::Result<(BTreeMap<String, f64>, Vec<String>)> {
    let mut set = BTreeMap::new();
    if let Some(v) = producer {
        set.insert("producer_byte_rate".to_string(), v as f64);
    }
    if let Some(v) = consumer {
        set.insert("consumer_byte_rate".to_string(), v as f64);
    }
    if let Some(v) = percentage {
        if !v.is_finite() || v <= 0.0 {
            bail!("--request-percentage must be greater than 0, got {v}");
        }
        set.insert("request_percentage".to_string(), v);
    }
    for key in delete {
        if !KEYS.contains(&key.as_str()) {
            bail!(
                "--delete {key}: not a quota key (one of {})",
                KEYS.join(", ")
            );
        }
        if set.contains_key(key) {
            bail!("{key} is both set and deleted");
        }
    }
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --producer-byte-rate, --consumer-byte-rate, --request-percentage or --delete KEY");
    }
    Ok((set, delete.to_vec()))
}

/// Runs `rivulet quota`.
pub async fn run(args: QuotaArgs) -> anyhow::Result<()> {
    match args.command {
        QuotaCommand::Set {
            entity,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
            delete,
            validate_only,
        } => {
            let components = entity.components();
            if components.is_empty() {
                bail!(
                    "name an entity: --user/--user-default and/or --client-id/--client-id-default"
                );
            }
            let (set, remove) = changes(
                producer_byte_rate,
                consumer_byte_rate,
                request_percentage,
                &delete,
            )?;
            let mut client = args.connect.client().await?;
            client
                .alter_client_quotas(&components, &set, &remove, validate_only)
                .await
                .with_context(|| format!("set quotas of {}", entity_text(&components)))?;
            let verb = if validate_only { "valid" } else { "updated" };
            println!("quotas of {}: {verb}", entity_text(&components));
        }
        QuotaCommand::Describe {
            entity,
            strict,
            json,
        } => {
            let filter: Vec<(String, QuotaMatch)> = entity
                .components()
                .into_iter()
                .map(|(kind, name)| (kind, name.map_or(QuotaMatch::Default, QuotaMatch::Exact)))
                .collect();
            let mut client = args.connect.client().await?;
            let entries = client
                .describe_client_quotas(&filter, strict)
                .await
                .context("describe client quotas")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&to_json(&entries))?);
            } else {
                print!("{}", table(&entries));
            }
        }
    }
    Ok(())
}

/// `user=alice, client-id=<default>`.
fn entity_text(components: &[QuotaComponent]) -> String {
    components
        .iter()
        .map(|(kind, name)| format!("{kind}={}", name.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An entity's name of type `kind`: `-` without one, `<default>` for the
/// default.
fn column(entry: &QuotaEntry, kind: &str) -> String {
    match entry.entity.iter().find(|(k, _)| k == kind) {
        None => "-".into(),
        Some((_, None)) => "<default>".into(),
        Some((_, Some(name))) => name.clone(),
    }
}

fn value_text(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        value.to_string()
    }
}

fn table(entries: &[QuotaEntry]) -> String {
    let mut out = format!("{:<20} {:<20} {:<20} VALUE\n", "USER", "CLIENT-ID", "KEY");
    for entry in entries {
        for (key, value) in &entry.values {
            out.push_str(&format!(
                "{:<20} {:<20} {:<20} {}\n",
                column(entry, "user"),
                column(entry, "client-id"),
                key,
                value_text(*value)
            ));
        }
    }
    out
}

/// `[{"entity": {"user": "alice", "client-id": null}, "values": {...}}]`,
/// null naming the default entity.
fn to_json(entries: &[QuotaEntry]) -> serde_json::Value {
    entries
        .iter()
        .map(|e| {
            let entity: serde_json::Map<String, serde_json::Value> = e
                .entity
                .iter()
                .map(|(kind, name)| (kind.clone(), name.clone().into()))
                .collect();
            serde_json::json!({ "entity": entity, "values": e.values })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_checked_before_any_request() {
        let (set, remove) =
            changes(Some(1024), None, Some(50.0), &["consumer_byte_rate".into()]).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(remove, ["consumer_byte_rate"]);
        assert!(changes(None, None, None, &[]).is_err());
        assert!(changes(None, None, Some(-1.0), &[]).is_err());
        assert!(changes(None, None, None, &["bogus".into()]).is_err());
        assert!(changes(Some(1), None, None, &["producer_byte_rate".into()]).is_err());
    }

    #[test]
    fn entries_print_as_a_table_and_json() {
        let entries = vec![QuotaEntry {
            entity: vec![
                ("user".into(), None),
                ("client-id".into(), Some("app".into())),
            ],
            values: [("producer_byte_rate".to_string(), 1048576.0)].into(),
        }];
        let text = table(&entries);
        assert!(text.contains("<default>"), "{text}");
        assert!(text.contains("app"));
        assert!(text.contains("1048576"));
        let json = to_json(&entries);
        assert_eq!(json[0]["entity"]["user"], serde_json::Value::Null);
        assert_eq!(json[0]["entity"]["client-id"], "app");
        assert_eq!(json[0]["values"]["producer_byte_rate"], 1048576.0);
    }
}

//! `rivulet topic`: create, list, describe, alter and delete topics through
//! the Kafka admin APIs (like `kafka-topics.sh` and `kafka-configs.sh`).

use anyhow::Context;

use super::{parse_kv, ConnectArgs};

/// `rivulet topic ...`
#[derive(clap::Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions (-1: the broker's num.partitions).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (-1: the broker's default.replication.factor).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config (repeatable), e.g. retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topic names.
    List,
    /// Show partitions, leaders and configs of one topic or all.
    Describe {
        /// Topic name (all topics when left out).
        name: Option<String>,
    },
    /// Add partitions and change configs.
    Alter {
        /// Topic name.
        name: String,
        /// New total partition count (can only grow).
        #[arg(long)]
        partitions: Option<i32>,
        /// Config to set (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Config override to remove (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Runs `rivulet topic`.
pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    let mut client = args.connect.client().await?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = parse_kv(&configs, "--config")?;
            client
                .create_topics(&name, partitions, replication_factor, configs)
                .await
                .with_context(|| format!("create topic `{name}`"))?;
            println!("Created topic {name}.");
        }
        TopicCommand::List => {
            let meta = client.metadata(None).await.context("list topics")?;
            for t in meta.topics {
                println!("{}", t.name);
            }
        }
        TopicCommand::Describe { name } => {
            let topics = name.clone().map(|n| vec![n]);
            let meta = client.metadata(topics).await.context("describe topics")?;
            for t in meta.topics {
                if t.error_code != 0 {
                    anyhow::bail!("topic `{}`: {}", t.name, super::code_name(t.error_code));
                }
                let configs = client
                    .describe_topic_configs(&t.name)
                    .await
                    .unwrap_or_default();
                let rf = t.partitions.first().map(|p| p.replicas.len()).unwrap_or(0);
                let set: Vec<String> = configs
                    .iter()
                    .filter(|(_, c)| !c.is_default())
                    .map(|(k, c)| format!("{k}={}", c.value.clone().unwrap_or_default()))
                    .collect();
                println!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name,
                    t.topic_id,
                    t.partitions.len(),
                    rf,
                    set.join(",")
                );
                for p in &t.partitions {
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        t.name,
                        p.partition,
                        p.leader,
                        join(&p.replicas),
                        join(&p.isr)
                    );
                }
            }
        }
        TopicCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                anyhow::bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            if let Some(count) = partitions {
                client
                    .create_partitions(&name, count)
                    .await
                    .with_context(|| format!("grow `{name}` to {count} partitions"))?;
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let set = parse_kv(&configs, "--config")?;
                client
                    .incremental_alter_topic_configs(&name, set, delete_configs)
                    .await
                    .with_context(|| format!("alter configs of `{name}`"))?;
            }
            println!("Altered topic {name}.");
        }
        TopicCommand::Delete { name } => {
            client
                .delete_topics(&[name.as_str()])
                .await
                .with_context(|| format!("delete topic `{name}`"))?;
            println!("Deleted topic {name}.");
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

//! `rivulet transactions`: Kafka's `kafka-transactions.sh` for operators:
//! list the transactions of the cluster, describe one, and abort a hanging
//! one at a partition (a transaction whose coordinator no longer knows it,
//! pinning the partition's last stable offset).

use anyhow::{bail, Context};
use kafka_protocol::{
    messages::{
        describe_producers_request::TopicRequest,
        write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
        DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
        TopicName, TransactionalId, WriteTxnMarkersRequest,
    },
    protocol::StrBytes,
};
use rivulet_wire::ClientError;
use serde_json::json;

use super::ConnectArgs;

/// `rivulet transactions ...`
#[derive(clap::Args, Debug)]
pub struct TransactionsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: TransactionsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TransactionsCommand {
    /// Every transactional id of the cluster with its producer and state.
    List {
        /// Only these states (Ongoing, PrepareCommit, CompleteAbort, ...).
        #[arg(long)]
        state: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One transactional id: state, producer, timeout, partitions.
    Describe {
        /// The transactional id.
        transactional_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Abort a hanging transaction at one partition by writing its ABORT
    /// marker there: name the transaction by the offset where it started
    /// (see DescribeProducers' current transaction start offset), or give
    /// its producer id, epoch and coordinator epoch.
    Abort {
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The partition.
        #[arg(long)]
        partition: i32,
        /// The first offset of the transaction to abort.
        #[arg(long, conflicts_with_all = ["producer_id", "producer_epoch", "coordinator_epoch"])]
        start_offset: Option<i64>,
        /// The producer id.
        #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
        producer_id: Option<i64>,
        /// The producer epoch.
        #[arg(long)]
        producer_epoch: Option<i16>,
        /// The coordinator epoch.
        #[arg(long)]
        coordinator_epoch: Option<i32>,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Runs `rivulet transactions`.
pub async fn run(args: TransactionsArgs) -> anyhow::Result<()> {
    let mut client = args.connect.client().await?;
    match args.command {
        TransactionsCommand::List { state, json } => {
            let md = client.metadata(Some(Vec::new())).await?;
            let mut rows = Vec::new();
            for broker in md.brokers {
                let request = ListTransactionsRequest::default()
                    .with_state_filters(state.iter().map(|st| s(st)).collect())
                    .with_duration_filter(-1);
                let response = client
                    .send_to(broker.node_id, request)
                    .await
                    .with_context(|| format!("list transactions of broker {}", broker.node_id))?;
                ClientError::check(response.error_code, None)?;
                if let Some(unknown) = response.unknown_state_filters.first() {
                    bail!("unknown transaction state `{unknown}`");
                }
                for t in response.transaction_states {
                    rows.push(json!({
                        "transactional_id": t.transactional_id.as_str(),
                        "coordinator": broker.node_id,
                        "producer_id": t.producer_id.0,
                        "state": t.transaction_state.as_str(),
                    }));
                }
            }
            rows.sort_by(|a, b| {
                a["transactional_id"]
                    .as_str()
                    .cmp(&b["transactional_id"].as_str())
            });
            if json {
                println!("{}", serde_json::Value::Array(rows));
                return Ok(());
            }
            println!(
                "{:<32} {:<12} {:<20} STATE",
                "TRANSACTIONAL ID", "COORDINATOR", "PRODUCER ID"
            );
            for r in rows {
                println!(
                    "{:<32} {:<12} {:<20} {}",
                    r["transactional_id"].as_str().unwrap_or_default(),
                    r["coordinator"].to_string(),
                    r["producer_id"].to_string(),
                    r["state"].as_str().unwrap_or_default()
                );
            }
        }
        TransactionsCommand::Describe {
            transactional_id,
            json,
        } => {
            let coordinator = client
                .find_transaction_coordinator(&transactional_id)
                .await
                .context("find the transaction coordinator")?;
            let request = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(&transactional_id))]);
            let response = client.send_to(coordinator, request).await?;
            let t = response
                .transaction_states
                .into_iter()
                .next()
                .context("the coordinator described nothing")?;
            ClientError::check(t.error_code, None)
                .with_context(|| format!("transactional id {transactional_id}"))?;
            let partitions: Vec<String> = t
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", topic.topic.as_str()))
                })
                .collect();
            let out = json!({
                "transactional_id": transactional_id,
                "coordinator": coordinator,
                "state": t.transaction_state.as_str(),
                "producer_id": t.producer_id.0,
                "producer_epoch": t.producer_epoch,
                "timeout_ms": t.transaction_timeout_ms,
                "start_time_ms": t.transaction_start_time_ms,
                "partitions": partitions,
            });
            if json {
                println!("{out}");
            } else {
                for (k, v) in out.as_object().into_iter().flatten() {
                    println!("{k:<17} {v}");
                }
            }
        }
        TransactionsCommand::Abort {
            topic,
            partition,
            start_offset,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let md = client.metadata(Some(vec![topic.clone()])).await?;
            let leader = md
                .topics
                .iter()
                .find(|t| t.name == topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
                .map(|p| p.leader)
                .filter(|l| *l >= 0)
                .with_context(|| format!("{topic}-{partition} has no leader"))?;
            let (pid, epoch, coordinator_epoch) = match (start_offset, producer_id) {
                (Some(start), _) => {
                    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                        .with_name(TopicName(s(&topic)))
                        .with_partition_indexes(vec![partition])]);
                    let response = client.send_to(leader, request).await?;
                    let p = response
                        .topics
                        .into_iter()
                        .flat_map(|t| t.partitions)
                        .next()
                        .context("the leader described no partition")?;
                    ClientError::check(p.error_code, p.error_message.as_deref())?;
                    let producer = p
                        .active_producers
                        .into_iter()
                        .find(|a| a.current_txn_start_offset == start)
                        .with_context(|| {
                            format!("no open transaction starts at offset {start} of {topic}-{partition}")
                        })?;
                    (
                        producer.producer_id.0,
                        i16::try_from(producer.producer_epoch).unwrap_or(i16::MAX),
                        producer.coordinator_epoch,
                    )
                }
                (None, Some(pid)) => (
                    pid,
                    producer_epoch.context("--producer-epoch is required")?,
                    coordinator_epoch.context("--coordinator-epoch is required")?,
                ),
                (None, None) => bail!("give --start-offset, or --producer-id with --producer-epoch and --coordinator-epoch"),
            };
            let marker = WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_transaction_result(false)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(TopicName(s(&topic)))
                    .with_partition_indexes(vec![partition])]);
            let response = client
                .send_to(
                    leader,
                    WriteTxnMarkersRequest::default().with_markers(vec![marker]),
                )
                .await
                .context("write the abort marker")?;
            for m in response.markers {
                for t in m.topics {
                    for p in t.partitions {
                        ClientError::check(p.error_code, None).with_context(|| {
                            format!("{}-{}", t.name.as_str(), p.partition_index)
                        })?;
                    }
                }
            }
            println!(
                "aborted the transaction of producer {pid} (epoch {epoch}) at {topic}-{partition}"
            );
        }
    }
    Ok(())
}

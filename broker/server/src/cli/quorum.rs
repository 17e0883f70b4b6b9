//! `rivulet quorum`: the controller quorum's voter set, like Kafka's
//! `kafka-metadata-quorum.sh` (describe, add-controller, remove-controller).
//!
//! Goes through DescribeQuorum, AddRaftVoter and RemoveRaftVoter, so it
//! works against any broker of the cluster (each forwards to the leader).

use anyhow::{bail, Context};
use rivulet_wire::client::{Client, QuorumDescription, QuorumReplica};

use super::ConnectArgs;
use crate::identity::{kafka_uuid, parse_uuid};

/// `rivulet quorum ...`
#[derive(clap::Args, Debug)]
pub struct QuorumArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: QuorumCommand,
}

#[derive(clap::Subcommand, Debug)]
enum QuorumCommand {
    /// Show the leader, the voters and the observers, and how far each has replicated.
    Describe,
    /// Make a broker that follows the metadata log a voter (once it has caught up).
    AddVoter {
        /// The broker's node id.
        id: i32,
        /// Its metadata directory id [default: the one it follows the log with].
        #[arg(long)]
        directory_id: Option<String>,
    },
    /// Make a voter an observer again (its broker keeps running).
    RemoveVoter {
        /// The voter's node id.
        id: i32,
        /// Its directory id [default: the one recorded for it].
        #[arg(long)]
        directory_id: Option<String>,
    },
}

/// Runs `rivulet quorum`.
pub async fn run(args: QuorumArgs) -> anyhow::Result<()> {
    let mut client = args.connect.client().await?;
    match args.command {
        QuorumCommand::Describe => {
            let quorum = client
                .describe_quorum()
                .await
                .context("describe the quorum")?;
            print!("{}", render(&quorum));
        }
        QuorumCommand::AddVoter { id, directory_id } => {
            let quorum = client
                .describe_quorum()
                .await
                .context("describe the quorum")?;
            let directory = match directory_id {
                Some(text) => parse_directory(&text)?,
                None => match quorum.observers.iter().find(|o| o.node_id == id) {
                    Some(o) => o.directory_id,
                    None if quorum.voter(id).is_some() => {
                        println!("node {id} is a voter already");
                        return Ok(());
                    }
                    None => bail!(
                        "node {id} does not follow the metadata log (not an observer): start it first"
                    ),
                },
            };
            let cluster_id = cluster_id(&mut client).await?;
            client
                .add_raft_voter(&cluster_id, id, directory)
                .await
                .with_context(|| format!("add voter {id}"))?;
            println!("node {id} is a voter");
        }
        QuorumCommand::RemoveVoter { id, directory_id } => {
            let directory = match directory_id {
                Some(text) => parse_directory(&text)?,
                None => {
                    let quorum = client
                        .describe_quorum()
                        .await
                        .context("describe the quorum")?;
                    match quorum.voter(id) {
                        Some(v) => v.directory_id,
                        None => bail!("node {id} is not a voter"),
                    }
                }
            };
            let cluster_id = cluster_id(&mut client).await?;
            client
                .remove_raft_voter(&cluster_id, id, directory)
                .await
                .with_context(|| format!("remove voter {id}"))?;
            println!("node {id} is an observer");
        }
    }
    Ok(())
}

async fn cluster_id(client: &mut Client) -> anyhow::Result<String> {
    client
        .metadata(Some(Vec::new()))
        .await?
        .cluster_id
        .context("the broker reports no cluster id")
}

fn parse_directory(text: &str) -> anyhow::Result<uuid::Uuid> {
    parse_uuid(text).with_context(|| format!("--directory-id `{text}` is not a Kafka uuid"))
}

/// The describe output: one header block, then one line per member.
fn render(quorum: &QuorumDescription) -> String {
    let mut out = format!(
        "LeaderId:       {}\nLeaderEpoch:    {}\nHighWatermark:  {}\nCurrentVoters:  {}\nCurrentObservers: {}\n\n",
        quorum.leader_id,
        quorum.leader_epoch,
        quorum.high_watermark,
        ids(&quorum.voters),
        ids(&quorum.observers),
    );
    out.push_str(&format!(
        "{:<8} {:<24} {:>12} {:>6}  {}\n",
        "NodeId", "DirectoryId", "LogEndOffset", "Lag", "Status"
    ));
    let rows = quorum
        .voters
        .iter()
        .map(|r| (r, "Voter"))
        .chain(quorum.observers.iter().map(|r| (r, "Observer")));
    for (r, role) in rows {
        let status = if r.node_id == quorum.leader_id {
            "Leader"
        } else {
            role
        };
        let lag = if r.log_end_offset < 0 {
            "?".to_owned()
        } else {
            (quorum.high_watermark - r.log_end_offset)
                .max(0)
                .to_string()
        };
        out.push_str(&format!(
            "{:<8} {:<24} {:>12} {:>6}  {}\n",
            r.node_id,
            kafka_uuid(r.directory_id),
            r.log_end_offset,
            lag,
            status
        ));
    }
    out
}

fn ids(replicas: &[QuorumReplica]) -> String {
    let ids: Vec<String> = replicas.iter().map(|r| r.node_id.to_string()).collect();
    format!("[{}]", ids.join(","))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn replica(node_id: i32, log_end_offset: i64) -> QuorumReplica {
        QuorumReplica {
            node_id,
            directory_id: Uuid::from_u128(node_id as u128 + 1),
            log_end_offset,
            last_fetch_timestamp: -1,
            last_caught_up_timestamp: -1,
        }
    }

    #[test]
    fn describe_names_the_leader_and_each_members_lag() {
        let quorum = QuorumDescription {
            leader_id: 0,
            leader_epoch: 3,
            high_watermark: 120,
            voters: vec![replica(0, 120), replica(1, 118)],
            observers: vec![replica(2, -1)],
            nodes: Vec::new(),
        };
        let text = render(&quorum);
        assert!(text.contains("LeaderId:       0\n"), "{text}");
        assert!(text.contains("CurrentVoters:  [0,1]"), "{text}");
        assert!(text.contains("CurrentObservers: [2]"), "{text}");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(char::is_numeric))
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("0  Leader"), "{}", lines[0]);
        assert!(lines[1].ends_with("2  Voter"), "{}", lines[1]);
        assert!(lines[2].ends_with("?  Observer"), "{}", lines[2]);
    }
}

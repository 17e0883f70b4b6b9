//! `rivulet format`: formats a data directory for a cluster, like Kafka's
//! `kafka-storage.sh format`. With `--bootstrap` the directory may found
//! the cluster's quorum (its first start creates the metadata log); without
//! it, the broker joins the quorum that exists.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context;

use crate::identity::{self, kafka_uuid};

/// `rivulet format ...`
#[derive(clap::Args, Debug)]
pub struct FormatArgs {
    /// The data directory (Kafka's log.dirs).
    #[arg(long, alias = "log-dirs")]
    data_dir: PathBuf,
    /// The broker's node.id.
    #[arg(long)]
    node_id: i32,
    /// The cluster id (e.g. from `rivulet format --random-cluster-id` output
    /// or a running cluster's `status.clusterId`).
    #[arg(long, required_unless_present = "random_cluster_id")]
    cluster_id: Option<String>,
    /// Make up a new cluster id (for a new cluster).
    #[arg(long, conflicts_with = "cluster_id")]
    random_cluster_id: bool,
    /// Found the quorum with these initial voters: id@host:port[,...]
    /// (Kafka's --initial-controllers; the node itself must be one).
    #[arg(long, value_name = "VOTERS")]
    bootstrap: Option<String>,
}

/// Runs `rivulet format`.
pub fn run(args: FormatArgs) -> anyhow::Result<()> {
    let cluster_id = match args.cluster_id {
        Some(id) => id,
        None => identity::random_cluster_id(),
    };
    let voters = match &args.bootstrap {
        Some(text) => {
            let voters = parse_voters(text)?;
            anyhow::ensure!(
                voters.contains_key(&args.node_id),
                "--bootstrap must list node {} itself",
                args.node_id
            );
            Some(voters)
        }
        None => None,
    };
    let formatted = identity::format(&args.data_dir, args.node_id, &cluster_id, voters.as_ref())
        .with_context(|| format!("format {}", args.data_dir.display()))?;
    println!(
        "cluster.id={}\nnode.id={}\ndirectory.id={}\nfounder={}",
        formatted.meta.cluster_id,
        formatted.meta.node_id,
        kafka_uuid(formatted.meta.directory_id),
        formatted.founder
    );
    Ok(())
}

fn parse_voters(text: &str) -> anyhow::Result<BTreeMap<i32, String>> {
    let mut voters = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .with_context(|| format!("`{entry}` is not id@host:port"))?;
        let id: i32 = id.parse().with_context(|| format!("voter id `{id}`"))?;
        anyhow::ensure!(addr.contains(':'), "`{entry}` has no port");
        voters.insert(id, addr.to_owned());
    }
    anyhow::ensure!(!voters.is_empty(), "--bootstrap names no voter");
    Ok(voters)
}

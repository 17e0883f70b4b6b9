//! Data directories of a standalone broker from before single brokers
//! became clusters of one kept their topics in `meta.json`. At the first
//! start of this version those topics are written into the new metadata
//! log with their ids, partition counts and config overrides, all on this
//! broker, so their partition directories are opened as they are and no
//! record is lost. `meta.json` then keeps only the producer-id block.

use rivulet_quorum::metadata::MetadataCommand;
use uuid::Uuid;

use super::Cluster;
use crate::broker::{ApiError, Broker};

/// Imports the legacy topics not yet in the image (a crash midway leaves
/// the rest for the next start), then forgets them in `meta.json`.
pub async fn import_topics(broker: &Broker, cluster: &Cluster) -> Result<usize, ApiError> {
    let legacy = broker.legacy_topics();
    if legacy.is_empty() {
        return Ok(0);
    }
    let me = broker.config.node_id;
    let mut imported = 0;
    for (name, record) in legacy {
        if cluster.image().topics.contains_key(&name) {
            continue;
        }
        let topic_id = Uuid::parse_str(&record.id).unwrap_or_else(|_| Uuid::new_v4());
        cluster
            .propose(MetadataCommand::CreateTopic {
                name: name.clone(),
                topic_id,
                assignments: vec![vec![me]; record.partitions.max(0) as usize],
                configs: record.configs.clone(),
            })
            .await?;
        tracing::info!(topic = %name, partitions = record.partitions, "imported a topic of the standalone data directory");
        imported += 1;
    }
    broker.forget_legacy_topics()?;
    Ok(imported)
}

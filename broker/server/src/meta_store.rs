//! The broker's persisted metadata: cluster id, topics (names, ids, partition
//! counts, config overrides) and the producer-id high-water mark.
//!
//! One JSON file, `meta.json`, in the data directory, replaced atomically
//! (write a temp file, fsync, rename, fsync the directory) so a crash leaves
//! either the old or the new version, never a torn one. Topics live in the
//! metadata log; the `topics` here are only read from data directories of
//! standalone brokers of earlier versions, to import them once.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// What is persisted about one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic id (a UUID, hyphenated).
    pub id: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor requested at creation.
    pub replication_factor: i16,
    /// Topic config overrides (only the keys the user set).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// The whole persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Format version of this file.
    pub version: u32,
    /// The cluster id reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// The node id that created this data directory; a different one is refused.
    pub node_id: i32,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicRecord>,
    /// Producer ids below this have been handed out (ids are reserved in blocks).
    pub producer_id_block_end: i64,
}

/// Reading or writing `meta.json` failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid metadata.
    #[error("parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The data directory belongs to another node.
    #[error("data directory belongs to node {found}, not {expected}")]
    NodeIdMismatch {
        /// The node id configured.
        expected: i32,
        /// The node id in the file.
        found: i32,
    },
}

const FILE: &str = "meta.json";
const CURRENT_VERSION: u32 = 1;

/// Loads the metadata of `dir`, or creates it for a fresh directory.
pub fn load_or_create(dir: &Path, node_id: i32) -> Result<Meta, MetaError> {
    let path = dir.join(FILE);
    let io = |op, source| MetaError::Io {
        op,
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| io("create directory for", e))?;
    match fs::read(&path) {
        Ok(bytes) => {
            let meta: Meta = serde_json::from_slice(&bytes).map_err(|source| MetaError::Parse {
                path: path.clone(),
                source,
            })?;
            if meta.node_id != node_id {
                return Err(MetaError::NodeIdMismatch {
                    expected: node_id,
                    found: meta.node_id,
                });
            }
            Ok(meta)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let meta = Meta {
                version: CURRENT_VERSION,
                cluster_id: new_cluster_id(),
                node_id,
                topics: BTreeMap::new(),
                producer_id_block_end: 0,
            };
            save(dir, &meta)?;
            Ok(meta)
        }
        Err(e) => Err(io("read", e)),
    }
}

/// Atomically replaces the metadata file of `dir`.
pub fn save(dir: &Path, meta: &Meta) -> Result<(), MetaError> {
    let path = dir.join(FILE);
    let tmp = dir.join("meta.json.tmp");
    let io = |op, source| MetaError::Io {
        op,
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(meta).expect("metadata always serializes");
    let mut file = File::create(&tmp).map_err(|e| io("create", e))?;
    file.write_all(&bytes).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("fsync", e))?;
    fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync directory of", e))?;
    Ok(())
}

/// A Kafka-style id: 16 random bytes in Kafka's text form. Kept in
/// `meta.json` for its format; the directory's identity is
/// `meta.properties` (see `identity`).
fn new_cluster_id() -> String {
    rivulet_wire::uuid_text::encode(uuid::Uuid::new_v4().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_guards_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = load_or_create(dir.path(), 3).unwrap();
        assert_eq!(meta.cluster_id.len(), 22);
        meta.topics.insert(
            "t".into(),
            TopicRecord {
                id: "x".into(),
                partitions: 2,
                replication_factor: 1,
                configs: BTreeMap::new(),
            },
        );
        save(dir.path(), &meta).unwrap();
        assert_eq!(load_or_create(dir.path(), 3).unwrap(), meta);
        assert!(matches!(
            load_or_create(dir.path(), 4),
            Err(MetaError::NodeIdMismatch { .. })
        ));
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(matches!(
            load_or_create(dir.path(), 0),
            Err(MetaError::Parse { .. })
        ));
    }
}

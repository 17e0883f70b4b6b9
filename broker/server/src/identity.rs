//! A data directory's identity, Kafka's way: `meta.properties` records the
//! cluster id, the node id and a directory id, written once by the format
//! step and checked at every start.
//!
//! Formatting is the only way a directory becomes a cluster's, and only a
//! directory formatted to *found* the quorum (`bootstrap.json` beside the
//! metadata log, consumed once the quorum has a membership) may start a
//! new metadata log. Any other empty directory joins the quorum that
//! exists; so a broker that lost its disk comes back as a member of the
//! same cluster, never as the founder of a second one.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use rivulet_wire::uuid_text;
use uuid::Uuid;

use crate::config::ClusterConfig;

/// The identity file, in the data directory (Kafka's name).
pub const META_PROPERTIES: &str = "meta.properties";
/// Where the metadata log lives inside the data directory.
pub const METADATA_DIR: &str = "__cluster_metadata";
/// The founder's marker, in the metadata directory: the initial voters.
const BOOTSTRAP_FILE: &str = "bootstrap.json";

/// What `meta.properties` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// The cluster the directory belongs to.
    pub cluster_id: String,
    /// The node (broker) it belongs to.
    pub node_id: i32,
    /// This directory's own id: a new one means a new disk.
    pub directory_id: Uuid,
}

/// The identity a broker starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// As recorded.
    pub meta: MetaProperties,
    /// Whether the directory may found the quorum (formatted to, and not
    /// yet part of one).
    pub founder: bool,
}

/// Why a broker refuses its data directory.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the identity failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// `meta.properties` is not readable as one.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory is another cluster's.
    #[error(
        "INCONSISTENT_CLUSTER_ID: data directory {dir} belongs to cluster {found}, not {wanted}; \
         point this broker at its own cluster's directory, or at an empty one to join {wanted}"
    )]
    OtherCluster {
        /// The directory.
        dir: PathBuf,
        /// Its cluster.
        found: String,
        /// The configured one.
        wanted: String,
    },
    /// The directory is another node's.
    #[error("data directory {dir} belongs to node {found}, not node {wanted}")]
    OtherNode {
        /// The directory.
        dir: PathBuf,
        /// Its node.
        found: i32,
        /// This broker's node id.
        wanted: i32,
    },
    /// An empty directory of a multi-broker cluster, with nothing saying
    /// which cluster it is for.
    #[error(
        "data directory {0} is not formatted: give the cluster id (--cluster-id, or cluster.id) \
         to join an existing cluster, add --bootstrap-quorum as well to found a new one, or run \
         `rivulet format`"
    )]
    Unformatted(PathBuf),
}

impl MetaProperties {
    /// Reads `meta.properties` of `dir`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<MetaProperties>, IdentityError> {
        let path = dir.join(META_PROPERTIES);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(IdentityError::Io {
                    what: "read",
                    path,
                    source,
                })
            }
        };
        let fields: BTreeMap<&str, &str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let malformed = |reason: String| IdentityError::Malformed {
            path: path.clone(),
            reason,
        };
        let field = |key: &str| {
            fields
                .get(key)
                .copied()
                .ok_or_else(|| malformed(format!("no {key}")))
        };
        if field("version")? != "1" {
            return Err(malformed(format!("version {} is not 1", field("version")?)));
        }
        let node_id = field("node.id")?
            .parse()
            .map_err(|e| malformed(format!("node.id: {e}")))?;
        let directory_id = parse_uuid(field("directory.id")?)
            .ok_or_else(|| malformed("directory.id is not a Kafka uuid".into()))?;
        Ok(Some(MetaProperties {
            cluster_id: field("cluster.id")?.to_owned(),
            node_id,
            directory_id,
        }))
    }

    /// Writes `meta.properties` into `dir` (atomically, durably).
    pub fn write(&self, dir: &Path) -> Result<(), IdentityError> {
        let path = dir.join(META_PROPERTIES);
        let io = |what, source| IdentityError::Io {
            what,
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
        let mut text = String::from("#\n# Written by rivulet format; do not edit.\n#\n");
        let _ = write!(
            text,
            "version=1\ncluster.id={}\nnode.id={}\ndirectory.id={}\n",
            self.cluster_id,
            self.node_id,
            kafka_uuid(self.directory_id)
        );
        write_durably(&path, text.as_bytes()).map_err(|e| io("write", e))
    }
}

/// Formats `dir` for node `node_id` of cluster `cluster_id`; with
/// `found`, as the founder of its quorum with those initial voters. A
/// directory already formatted for the same cluster and node is left as it
/// is (Kafka's `--ignore-formatted`); one of another is refused.
pub fn format(
    dir: &Path,
    node_id: i32,
    cluster_id: &str,
    found: Option<&BTreeMap<i32, String>>,
) -> Result<Identity, IdentityError> {
    if let Some(meta) = MetaProperties::read(dir)? {
        check(dir, &meta, node_id, Some(cluster_id))?;
        let founder = dir.join(METADATA_DIR).join(BOOTSTRAP_FILE).exists();
        return Ok(Identity { meta, founder });
    }
    if let Some(voters) = found {
        let metadata = dir.join(METADATA_DIR);
        let path = metadata.join(BOOTSTRAP_FILE);
        let io = |what, source| IdentityError::Io {
            what,
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&metadata).map_err(|e| io("create the directory of", e))?;
        let json = serde_json::to_vec(voters).map_err(|e| io("encode", io::Error::other(e)))?;
        write_durably(&path, &json).map_err(|e| io("write", e))?;
    }
    // meta.properties last: a directory is formatted once it exists.
    let meta = MetaProperties {
        cluster_id: cluster_id.to_owned(),
        node_id,
        directory_id: Uuid::new_v4(),
    };
    meta.write(dir)?;
    tracing::info!(
        cluster_id,
        node_id,
        directory_id = %kafka_uuid(meta.directory_id),
        founder = found.is_some(),
        "formatted the data directory"
    );
    Ok(Identity {
        meta,
        founder: found.is_some(),
    })
}

/// The identity a broker with `config` starts with in `dir`: its recorded
/// one (checked against the config), or a new one where the config says
/// how to format. See the module docs for the rules.
pub fn resolve(
    dir: &Path,
    node_id: i32,
    config: &ClusterConfig,
) -> Result<Identity, IdentityError> {
    let wanted = config.cluster_id.as_deref();
    if let Some(meta) = MetaProperties::read(dir)? {
        check(dir, &meta, node_id, wanted)?;
        let founder = dir.join(METADATA_DIR).join(BOOTSTRAP_FILE).exists();
        return Ok(Identity { meta, founder });
    }
    if has_metadata_log(dir) {
        // Written by a release before identities: it is a member of its
        // cluster already; keep the id it has always reported.
        let cluster_id = wanted
            .map(str::to_owned)
            .unwrap_or_else(|| legacy_cluster_id(&config.voters));
        let meta = MetaProperties {
            cluster_id,
            node_id,
            directory_id: Uuid::new_v4(),
        };
        meta.write(dir)?;
        tracing::info!(cluster_id = %meta.cluster_id, "recorded the identity of a data directory from an earlier release");
        return Ok(Identity {
            meta,
            founder: false,
        });
    }
    if config.single {
        // A single broker founds its own cluster, as `rivulet broker` on an
        // empty directory always has.
        let cluster_id = wanted.map_or_else(random_cluster_id, str::to_owned);
        return format(dir, node_id, &cluster_id, Some(&config.voters));
    }
    match wanted {
        Some(cluster_id) => format(
            dir,
            node_id,
            cluster_id,
            config.bootstrap.then_some(&config.voters),
        ),
        None => Err(IdentityError::Unformatted(dir.to_owned())),
    }
}

/// The initial voters a founder was formatted with, if it still is one.
pub fn bootstrap_voters(dir: &Path) -> Option<BTreeMap<i32, String>> {
    let bytes = fs::read(dir.join(METADATA_DIR).join(BOOTSTRAP_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Forgets that `dir` may found a quorum: called once its quorum has a
/// membership, so that nothing ever founds from it again.
pub fn clear_bootstrap(dir: &Path) {
    let path = dir.join(METADATA_DIR).join(BOOTSTRAP_FILE);
    match fs::remove_file(&path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                let _ = fs::File::open(parent).and_then(|d| d.sync_all());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the bootstrap marker")
        }
    }
}

fn check(
    dir: &Path,
    meta: &MetaProperties,
    node_id: i32,
    wanted: Option<&str>,
) -> Result<(), IdentityError> {
    if meta.node_id != node_id {
        return Err(IdentityError::OtherNode {
            dir: dir.to_owned(),
            found: meta.node_id,
            wanted: node_id,
        });
    }
    match wanted {
        Some(wanted) if wanted != meta.cluster_id => Err(IdentityError::OtherCluster {
            dir: dir.to_owned(),
            found: meta.cluster_id.clone(),
            wanted: wanted.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn has_metadata_log(dir: &Path) -> bool {
    fs::read_dir(dir.join(METADATA_DIR).join("log"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// A new cluster id: a random uuid as Kafka prints one.
pub fn random_cluster_id() -> String {
    kafka_uuid(Uuid::new_v4())
}

/// A uuid as Kafka prints one: base64url, no padding (22 characters).
pub fn kafka_uuid(id: Uuid) -> String {
    uuid_text::encode(id.as_bytes())
}

/// Parses a uuid printed by Kafka (22 base64url characters) or in the
/// usual hyphenated form.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    if let Ok(id) = Uuid::parse_str(text) {
        return Some(id);
    }
    uuid_text::decode(text).map(Uuid::from_bytes)
}

/// The id a cluster of an earlier release reported: derived from its
/// voter ids, stable across restarts.
pub fn legacy_cluster_id(voters: &BTreeMap<i32, String>) -> String {
    let ids: Vec<String> = voters.keys().map(|id| id.to_string()).collect();
    let name = format!("rivulet-cluster:{}", ids.join(","));
    // FNV-1a from two offsets: stable across releases, unlike std's hasher.
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    bytes[8..].copy_from_slice(&fnv(0x8422_2325_cbf2_9ce4).to_be_bytes());
    uuid_text::encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(single: bool, cluster_id: Option<&str>, bootstrap: bool) -> ClusterConfig {
        ClusterConfig {
            voters: BTreeMap::from([(0, "127.0.0.1:1".to_owned())]),
            controller_addr: "127.0.0.1:0".parse().unwrap(),
            controller_advertised: "127.0.0.1:0".into(),
            inter_broker_listener: "PLAINTEXT".into(),
            controller_listener: None,
            cluster_id: cluster_id.map(str::to_owned),
            bootstrap,
            single,
        }
    }

    #[test]
    fn uuids_print_and_parse_as_kafka_does() {
        let id = Uuid::new_v4();
        let text = kafka_uuid(id);
        assert_eq!(text.len(), 22);
        assert_eq!(parse_uuid(&text), Some(id));
        assert_eq!(parse_uuid(&id.to_string()), Some(id));
        assert_eq!(parse_uuid("not*base64"), None);
        let legacy = legacy_cluster_id(&BTreeMap::from([(0, "a:1".to_owned())]));
        assert_eq!(legacy.len(), 22);
        assert_ne!(
            legacy,
            legacy_cluster_id(&BTreeMap::from([(1, "a:1".to_owned())]))
        );
    }

    #[test]
    fn a_single_broker_formats_itself_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = resolve(dir.path(), 0, &cluster(true, None, false)).unwrap();
        assert!(first.founder);
        assert_eq!(bootstrap_voters(dir.path()).unwrap().len(), 1);
        clear_bootstrap(dir.path());
        let again = resolve(dir.path(), 0, &cluster(true, None, false)).unwrap();
        assert_eq!(again.meta, first.meta);
        assert!(!again.founder, "the marker is gone once the quorum formed");
    }

    #[test]
    fn an_empty_member_directory_joins_unless_told_to_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path(), 1, &cluster(false, None, false)).unwrap_err();
        assert!(matches!(err, IdentityError::Unformatted(_)), "{err}");
        assert!(MetaProperties::read(dir.path()).unwrap().is_none());
        let joiner = resolve(dir.path(), 1, &cluster(false, Some("abc"), false)).unwrap();
        assert!(!joiner.founder);
        assert_eq!(joiner.meta.cluster_id, "abc");
        let other = tempfile::tempdir().unwrap();
        let founder = resolve(other.path(), 0, &cluster(false, Some("abc"), true)).unwrap();
        assert!(founder.founder);
        // Once formatted, the bootstrap flag changes nothing.
        let again = resolve(dir.path(), 1, &cluster(false, Some("abc"), true)).unwrap();
        assert!(!again.founder);
        assert_eq!(again.meta.directory_id, joiner.meta.directory_id);
    }

    #[test]
    fn another_clusters_or_nodes_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        format(dir.path(), 2, "first", None).unwrap();
        let err = resolve(dir.path(), 2, &cluster(false, Some("second"), false)).unwrap_err();
        assert!(err.to_string().contains("INCONSISTENT_CLUSTER_ID"), "{err}");
        let err = resolve(dir.path(), 3, &cluster(false, Some("first"), false)).unwrap_err();
        assert!(
            matches!(err, IdentityError::OtherNode { found: 2, .. }),
            "{err}"
        );
        let err = format(dir.path(), 2, "second", None).unwrap_err();
        assert!(matches!(err, IdentityError::OtherCluster { .. }), "{err}");
    }

    #[test]
    fn a_directory_from_before_identities_keeps_its_reported_id() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(METADATA_DIR).join("log")).unwrap();
        fs::write(dir.path().join(METADATA_DIR).join("log").join("x"), b"x").unwrap();
        let config = cluster(false, None, false);
        let adopted = resolve(dir.path(), 0, &config).unwrap();
        assert_eq!(adopted.meta.cluster_id, legacy_cluster_id(&config.voters));
        assert!(!adopted.founder);
    }

    #[test]
    fn malformed_meta_properties_is_an_error_not_a_reformat() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(META_PROPERTIES), "version=1\nnode.id=0\n").unwrap();
        let err = resolve(dir.path(), 0, &cluster(true, None, false)).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
    }
}

//! Topic configs: the Kafka keys Rivulet honours, their defaults, validation,
//! and the mapping onto the storage engine's [`LogConfig`].
//!
//! A topic's effective config is the broker defaults with the topic's own
//! overrides on top; only the overrides are persisted, so a changed broker
//! default reaches every topic that did not set the key itself.

use std::collections::BTreeMap;

use rivulet_storage::{config::LogConfig, rewrite::CompressionType};

/// Kafka's `ConfigEntry.ConfigType` values, reported by DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// A boolean.
    Boolean = 1,
    /// A string.
    String = 2,
    /// A 32-bit integer.
    Int = 3,
    /// A 64-bit integer.
    Long = 5,
    /// A comma-separated list.
    List = 7,
}

/// One supported key: its name, type and documentation.
pub struct KeySpec {
    /// Kafka's name for the key.
    pub name: &'static str,
    /// Its type, as DescribeConfigs reports it.
    pub kind: ConfigType,
    /// One line for `kafka-configs --describe` users and `rivulet topic describe`.
    pub doc: &'static str,
}

/// Every topic config key Rivulet accepts.
pub const KEYS: &[KeySpec] = &[
    KeySpec { name: "cleanup.policy", kind: ConfigType::List, doc: "delete: old segments are removed by retention; compact: only the latest record per key is kept" },
    KeySpec { name: "compression.type", kind: ConfigType::String, doc: "producer: batches are stored as the producer compressed them; uncompressed, gzip, snappy, lz4 or zstd: batches in another codec are recompressed on append" },
    KeySpec { name: "delete.retention.ms", kind: ConfigType::Long, doc: "how long tombstones survive compaction" },
    KeySpec { name: "flush.messages", kind: ConfigType::Long, doc: "fsync after this many messages" },
    KeySpec { name: "flush.ms", kind: ConfigType::Long, doc: "fsync at least this often (ms)" },
    KeySpec { name: "index.interval.bytes", kind: ConfigType::Int, doc: "bytes of log between offset index entries" },
    KeySpec { name: "max.message.bytes", kind: ConfigType::Int, doc: "largest record batch accepted" },
    KeySpec { name: "message.timestamp.type", kind: ConfigType::String, doc: "CreateTime: timestamps are the producer's" },
    KeySpec { name: "min.cleanable.dirty.ratio", kind: ConfigType::String, doc: "share of uncompacted log that triggers compaction" },
    KeySpec { name: "min.compaction.lag.ms", kind: ConfigType::Long, doc: "records younger than this are not compacted" },
    KeySpec { name: "min.insync.replicas", kind: ConfigType::Int, doc: "replicas that must have an acks=all write" },
    KeySpec { name: "retention.bytes", kind: ConfigType::Long, doc: "partition size above which old segments are deleted (-1: no limit)" },
    KeySpec { name: "retention.ms", kind: ConfigType::Long, doc: "age after which segments are deleted (-1: forever)" },
    KeySpec { name: "segment.bytes", kind: ConfigType::Int, doc: "segment file size at which a new segment starts" },
    KeySpec { name: "segment.index.bytes", kind: ConfigType::Int, doc: "preallocated size of a segment's index" },
    KeySpec { name: "segment.ms", kind: ConfigType::Long, doc: "age at which the active segment is rolled" },
    KeySpec { name: "unclean.leader.election.enable", kind: ConfigType::Boolean, doc: "allow an out-of-sync replica to become leader" },
    KeySpec { name: "message.format.version", kind: ConfigType::String, doc: IGNORED_DOC },
    KeySpec { name: "message.downconversion.enable", kind: ConfigType::Boolean, doc: IGNORED_DOC },
    KeySpec { name: "file.delete.delay.ms", kind: ConfigType::Long, doc: IGNORED_DOC },
    KeySpec { name: "preallocate", kind: ConfigType::Boolean, doc: IGNORED_DOC },
    KeySpec { name: "segment.jitter.ms", kind: ConfigType::Long, doc: IGNORED_DOC },
    KeySpec { name: "leader.replication.throttled.replicas", kind: ConfigType::List, doc: IGNORED_DOC },
    KeySpec { name: "follower.replication.throttled.replicas", kind: ConfigType::List, doc: IGNORED_DOC },
];

/// What DescribeConfigs documents for a key in [`IGNORED`].
pub const IGNORED_DOC: &str = "accepted for compatibility with Kafka 3.x and ignored by Rivulet";

/// Topic configs that Kafka 3.x still accepts but that change nothing a
/// client can observe here (the message format is always v2, there is no
/// down-conversion, files are deleted at once, nothing is preallocated,
/// reassignment throttles come from the broker's own setting): accepted,
/// stored and echoed, and documented as ignored; with Kafka's defaults.
pub const IGNORED: &[(&str, &str)] = &[
    ("message.format.version", "3.0-IV1"),
    ("message.downconversion.enable", "true"),
    ("file.delete.delay.ms", "60000"),
    ("preallocate", "false"),
    ("segment.jitter.ms", "0"),
    ("leader.replication.throttled.replicas", ""),
    ("follower.replication.throttled.replicas", ""),
];

/// A topic config value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// Not a topic config Rivulet knows.
    #[error("unknown topic config `{0}`")]
    UnknownKey(String),
    /// A value that does not parse or is out of range.
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

/// The effective config of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `segment.bytes`.
    pub segment_bytes: i64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `retention.ms` (-1: forever).
    pub retention_ms: i64,
    /// `retention.bytes` (-1: no limit).
    pub retention_bytes: i64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: i64,
    /// `segment.index.bytes`.
    pub segment_index_bytes: i64,
    /// `flush.messages` (i64::MAX: never by count).
    pub flush_messages: i64,
    /// `flush.ms` (i64::MAX: never by time).
    pub flush_ms: i64,
    /// `max.message.bytes`.
    pub max_message_bytes: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i64,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
    /// `cleanup.policy` contains `delete` (retention removes old segments).
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact` (the latest record per key is kept).
    pub cleanup_compact: bool,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`, in thousandths (kept integral so the config is `Eq`).
    pub min_cleanable_dirty_permille: i64,
    /// `compression.type`: the codec batches are stored in.
    pub compression: CompressionType,
    /// Values given for [`IGNORED`] keys, echoed back by DescribeConfigs.
    pub ignored: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        TopicConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_permille: 500,
            compression: CompressionType::Producer,
            ignored: BTreeMap::new(),
        }
    }
}

impl TopicConfig {
    /// This config with `overrides` applied; every key is validated.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, TopicConfigError> {
        let mut config = self.clone();
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), TopicConfigError> {
        let invalid = |reason| TopicConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        };
        let int = |min: i64, max: i64| -> Result<i64, TopicConfigError> {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not an integer"))?;
            if v < min || v > max {
                return Err(invalid("out of range"));
            }
            Ok(v)
        };
        match key {
            "cleanup.policy" => {
                let policies: Vec<&str> = value.split(',').map(str::trim).collect();
                if policies.is_empty()
                    || !policies.iter().all(|p| matches!(*p, "delete" | "compact"))
                {
                    return Err(invalid("must be `delete`, `compact` or `compact,delete`"));
                }
                self.cleanup_delete = policies.contains(&"delete");
                self.cleanup_compact = policies.contains(&"compact");
            }
            "delete.retention.ms" => self.delete_retention_ms = int(0, i64::MAX)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(0, i64::MAX)?,
            "min.cleanable.dirty.ratio" => {
                let v: f64 = value.trim().parse().map_err(|_| invalid("not a number"))?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid("must be between 0 and 1"));
                }
                self.min_cleanable_dirty_permille = (v * 1000.0).round() as i64;
            }
            "compression.type" => {
                self.compression = value.parse().map_err(|_| {
                    invalid("must be one of producer, uncompressed, gzip, snappy, lz4, zstd")
                })?
            }
            "message.timestamp.type" => {
                if value != "CreateTime" {
                    return Err(invalid("only `CreateTime` is supported"));
                }
            }
            "segment.bytes" => self.segment_bytes = int(14, i32::MAX as i64)?,
            "segment.ms" => self.segment_ms = int(1, i64::MAX)?,
            "retention.ms" => self.retention_ms = int(-1, i64::MAX)?,
            "retention.bytes" => self.retention_bytes = int(-1, i64::MAX)?,
            "index.interval.bytes" => self.index_interval_bytes = int(0, i32::MAX as i64)?,
            "segment.index.bytes" => self.segment_index_bytes = int(4096, i32::MAX as i64)?,
            "flush.messages" => self.flush_messages = int(1, i64::MAX)?,
            "flush.ms" => self.flush_ms = int(0, i64::MAX)?,
            "max.message.bytes" => self.max_message_bytes = int(0, i32::MAX as i64)?,
            "min.insync.replicas" => self.min_insync_replicas = int(1, i32::MAX as i64)?,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("must be true or false")),
                }
            }
            _ if IGNORED.iter().any(|(k, _)| *k == key) => {
                self.ignored.insert(key.to_string(), value.to_string());
            }
            _ => return Err(TopicConfigError::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    /// The value of `key` as Kafka prints it.
    pub fn value_of(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => match (self.cleanup_compact, self.cleanup_delete) {
                (true, true) => "compact,delete".into(),
                (true, false) => "compact".into(),
                _ => "delete".into(),
            },
            "compression.type" => self.compression.as_str().into(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => {
                format!("{}", self.min_cleanable_dirty_permille as f64 / 1000.0)
            }
            "message.timestamp.type" => "CreateTime".into(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            _ => {
                let (key, default) = IGNORED.iter().find(|(k, _)| *k == key)?;
                self.ignored
                    .get(*key)
                    .cloned()
                    .unwrap_or_else(|| default.to_string())
            }
        })
    }

    /// The storage engine's view of this config.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes as u64,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            index_interval_bytes: self.index_interval_bytes as usize,
            segment_index_bytes: self.segment_index_bytes as usize,
            flush_messages: self.flush_messages as u64,
            flush_ms: self.flush_ms as u64,
            delete: self.cleanup_delete,
            compact: self.cleanup_compact,
            delete_retention_ms: self.delete_retention_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_permille as f64 / 1000.0,
        }
    }
}

/// Validates a set of overrides on their own (every key known, every value valid).
pub fn validate(overrides: &BTreeMap<String, String>) -> Result<(), TopicConfigError> {
    TopicConfig::default().with_overrides(overrides).map(|_| ())
}

/// Checks overrides against the replication factor they will serve: an
/// explicit `min.insync.replicas` above it would refuse every acks=all
/// write forever, so it is refused up front. (A broker-wide default is not
/// an error: it is capped per topic, see [`effective_min_insync`].)
pub fn check_replication(
    overrides: &BTreeMap<String, String>,
    replication_factor: i16,
) -> Result<(), TopicConfigError> {
    let Some(value) = overrides.get("min.insync.replicas") else {
        return Ok(());
    };
    match value.trim().parse::<i64>() {
        Ok(v) if v > replication_factor as i64 => Err(TopicConfigError::InvalidValue {
            key: "min.insync.replicas".into(),
            value: value.clone(),
            reason: "larger than the replication factor: acks=all writes could never succeed",
        }),
        _ => Ok(()),
    }
}

/// The `min.insync.replicas` a partition with `replicas` replicas enforces:
/// the topic's own override as set, a broker-wide default capped at the
/// replica count (a cluster default of 2 must not make every acks=all write
/// to a replication-factor-1 topic fail).
pub fn effective_min_insync(
    config: &TopicConfig,
    overrides: &BTreeMap<String, String>,
    replicas: usize,
) -> i64 {
    if overrides.contains_key("min.insync.replicas") {
        config.min_insync_replicas
    } else {
        config.min_insync_replicas.min(replicas.max(1) as i64)
    }
}

/// The spec of a key, if Rivulet knows it.
pub fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_apply_and_map_to_storage() {
        let c = TopicConfig::default()
            .with_overrides(&map(&[
                ("retention.ms", "1000"),
                ("segment.bytes", "16384"),
            ]))
            .unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.log_config().segment_bytes, 16384);
        assert_eq!(c.value_of("retention.ms").as_deref(), Some("1000"));
    }

    #[test]
    fn bad_values_are_refused_with_reasons() {
        let err = validate(&map(&[("segment.bytes", "10")])).unwrap_err();
        assert!(matches!(err, TopicConfigError::InvalidValue { .. }));
        assert!(matches!(
            validate(&map(&[("bogus", "1")])),
            Err(TopicConfigError::UnknownKey(_))
        ));
        assert!(validate(&map(&[("cleanup.policy", "bogus")])).is_err());
        assert!(validate(&map(&[("cleanup.policy", "delete,bogus")])).is_err());
        assert!(validate(&map(&[("retention.ms", "-1")])).is_ok());
    }

    #[test]
    fn cleanup_policy_maps_to_compact_and_delete() {
        let c = TopicConfig::default()
            .with_overrides(&map(&[("cleanup.policy", "compact")]))
            .unwrap();
        assert!(c.log_config().compact && !c.log_config().delete);
        assert_eq!(c.value_of("cleanup.policy").as_deref(), Some("compact"));
        let c = TopicConfig::default()
            .with_overrides(&map(&[("cleanup.policy", "delete,compact")]))
            .unwrap();
        assert!(c.log_config().compact && c.log_config().delete);
        assert_eq!(
            c.value_of("cleanup.policy").as_deref(),
            Some("compact,delete")
        );
        let c = TopicConfig::default();
        assert!(!c.log_config().compact && c.log_config().delete);
    }

    #[test]
    fn compaction_keys_validate_and_map() {
        assert!(validate(&map(&[("min.cleanable.dirty.ratio", "1.5")])).is_err());
        let c = TopicConfig::default()
            .with_overrides(&map(&[
                ("delete.retention.ms", "5"),
                ("min.cleanable.dirty.ratio", "0.25"),
            ]))
            .unwrap();
        assert_eq!(c.log_config().delete_retention_ms, 5);
        assert_eq!(c.log_config().min_cleanable_dirty_ratio, 0.25);
        assert_eq!(
            c.value_of("min.cleanable.dirty.ratio").as_deref(),
            Some("0.25")
        );
    }

    #[test]
    fn min_insync_default_is_capped_but_an_override_is_checked() {
        let defaults = TopicConfig::default()
            .with_overrides(&map(&[("min.insync.replicas", "2")]))
            .unwrap();
        // A broker default of 2 on a replication-factor-1 partition: 1.
        assert_eq!(effective_min_insync(&defaults, &map(&[]), 1), 1);
        assert_eq!(effective_min_insync(&defaults, &map(&[]), 3), 2);
        // The topic's own value is kept as set.
        let own = map(&[("min.insync.replicas", "2")]);
        assert_eq!(effective_min_insync(&defaults, &own, 1), 2);
        // ...and refused at creation when it exceeds the replication factor.
        assert!(check_replication(&own, 1).is_err());
        assert!(check_replication(&own, 2).is_ok());
        assert!(check_replication(&map(&[]), 1).is_ok());
    }

    #[test]
    fn kafka_3_keys_are_accepted_echoed_and_ignored() {
        let c = TopicConfig::default()
            .with_overrides(&map(&[
                ("message.format.version", "2.8-IV1"),
                ("preallocate", "true"),
            ]))
            .unwrap();
        assert_eq!(
            c.value_of("message.format.version").as_deref(),
            Some("2.8-IV1")
        );
        assert_eq!(
            c.value_of("message.downconversion.enable").as_deref(),
            Some("true")
        );
        // Nothing the log does changes.
        assert_eq!(c.log_config(), TopicConfig::default().log_config());
        assert_eq!(spec("preallocate").unwrap().doc, IGNORED_DOC);
    }

    #[test]
    fn compression_type_takes_kafkas_values() {
        for value in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
            let c = TopicConfig::default()
                .with_overrides(&map(&[("compression.type", value)]))
                .unwrap();
            assert_eq!(c.value_of("compression.type").as_deref(), Some(value));
        }
        assert_eq!(
            TopicConfig::default().compression,
            CompressionType::Producer
        );
        let err = validate(&map(&[("compression.type", "brotli")])).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
    }

    #[test]
    fn every_key_has_a_value() {
        let c = TopicConfig::default();
        for k in KEYS {
            assert!(c.value_of(k.name).is_some(), "{}", k.name);
        }
    }
}

//! The transaction coordinator's settings, Kafka's names and defaults.

use std::time::Duration;

use super::{parse_bool, parse_positive, ConfigError};

/// Kafka's `transaction.*` broker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `transaction.state.log.num.partitions` (default 50).
    pub partitions: i32,
    /// `transaction.state.log.replication.factor` (default 3; capped at
    /// the live brokers when `__transaction_state` is created).
    pub replication_factor: i16,
    /// `transaction.state.log.min.isr` (default 2; capped at the
    /// replication factor).
    pub min_isr: i16,
    /// `transaction.state.log.segment.bytes` (default 104857600).
    pub segment_bytes: i64,
    /// `transaction.max.timeout.ms` (default 900000): the longest
    /// `transaction.timeout.ms` a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms` (default 7 days): an idle
    /// transactional id is forgotten after this long.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    /// (default 10000): how often open transactions are checked for expiry.
    pub abort_check_interval: Duration,
    /// `transaction.partition.verification.enable` (default true): a
    /// leader asks the coordinator before accepting a transaction's first
    /// batch (KIP-890 part 1).
    pub partition_verification: bool,
    /// `producer.id.expiration.ms` (default 86400000): partitions forget a
    /// producer idle this long with no transaction open.
    pub producer_id_expiration_ms: i64,
    /// `transaction.version` (default 2, 0 to 2): the finalized level of
    /// Kafka's `transaction.version` feature this broker reports and
    /// applies. At 2 the transaction version 2 request forms (KIP-890
    /// part 2: Produce v12, EndTxn v5, TxnOffsetCommit v5,
    /// AddPartitionsToTxn v5) are advertised and served; below 2 they are
    /// neither advertised nor accepted. From 1 on, `__transaction_state`
    /// values are written in Kafka's flexible format (version 1). Every
    /// broker of a cluster should carry the same value.
    pub version: i16,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            partitions: 50,
            replication_factor: 3,
            min_isr: 2,
            segment_bytes: 104_857_600,
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_check_interval: Duration::from_millis(10_000),
            partition_verification: true,
            producer_id_expiration_ms: 86_400_000,
            version: TRANSACTION_VERSION_MAX,
        }
    }
}

/// The highest `transaction.version` this broker speaks (Kafka 4.0's).
pub const TRANSACTION_VERSION_MAX: i16 = 2;

/// The keys read here.
pub const KEYS: &[&str] = &[
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.partition.verification.enable",
    "producer.id.expiration.ms",
    "transaction.version",
];

impl TransactionConfig {
    /// Sets `key` (one of [`KEYS`]).
    pub fn set(
        &mut self,
        key: &str,
        value: &str,
        invalid: &dyn Fn(&str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if key == "transaction.partition.verification.enable" {
            self.partition_verification = parse_bool(value, invalid)?;
            return Ok(());
        }
        if key == "transaction.version" {
            self.version = match value.trim().parse::<i16>() {
                Ok(v) if (0..=TRANSACTION_VERSION_MAX).contains(&v) => v,
                _ => return Err(invalid("must be 0, 1 or 2")),
            };
            return Ok(());
        }
        let v = parse_positive(value, invalid)?;
        let small = |v: i64| i32::try_from(v).map_err(|_| invalid("too large"));
        let tiny = |v: i64| i16::try_from(v).map_err(|_| invalid("too large"));
        match key {
            "transaction.state.log.num.partitions" => self.partitions = small(v)?,
            "transaction.state.log.replication.factor" => self.replication_factor = tiny(v)?,
            "transaction.state.log.min.isr" => self.min_isr = tiny(v)?,
            "transaction.state.log.segment.bytes" => self.segment_bytes = v,
            "transaction.max.timeout.ms" => self.max_timeout_ms = small(v)?,
            "transactional.id.expiration.ms" => self.id_expiration_ms = v,
            "producer.id.expiration.ms" => self.producer_id_expiration_ms = v,
            _ => self.abort_check_interval = Duration::from_millis(v as u64),
        }
        Ok(())
    }
}

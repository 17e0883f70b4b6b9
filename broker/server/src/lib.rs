//! The Rivulet broker: a Kafka-compatible server over the `rivulet-storage`
//! log and the `rivulet-wire` protocol layer, plus the command-line tools
//! that drive it.
//!
//! Data flows one way: [`server`] (the composition root) builds everything
//! and accepts connections, [`connection`] reads frames and decodes
//! requests, [`handlers`] answer them from the metadata image ([`cluster`],
//! quorum-backed in every topology: a single broker is a cluster of one)
//! and the hosted state ([`broker::Broker`]), whose
//! [`partition::Partition`]s own the logs. Imports point down; the layers
//! and the test that keeps them are in `layering.rs`.

pub mod authenticate;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connection;
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod handlers;
pub mod http;
pub mod hw_checkpoint;
pub mod identity;
mod layering;
pub mod lease;
pub mod listeners;
pub mod log_dir;
pub mod meta_store;
pub mod metrics;
pub mod parallel;
pub mod partition;
pub mod quota;
pub mod scrape;
pub mod security;
pub mod series;
pub mod server;
pub mod topic_config;
pub mod txn;

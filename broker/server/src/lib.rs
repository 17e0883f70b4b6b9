//! The Rivulet broker: a Kafka-compatible server over the `rivulet-storage`
//! log and the `rivulet-wire` protocol layer, plus the command-line tools
//! that drive it.
//!
//! Data flows one way: [`server`] accepts connections, [`connection`] reads
//! frames and decodes requests, [`handlers`] answer them against the shared
//! [`broker::Broker`] state, whose [`partition::Partition`]s own the logs.

pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod group;
pub mod handlers;
pub mod http;
pub mod hw_checkpoint;
pub mod listeners;
pub mod meta_store;
pub mod metrics;
pub mod parallel;
pub mod partition;
pub mod server;
pub mod topic_config;

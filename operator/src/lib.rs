//! Rivulet's Kubernetes operator.
//!
//! Three controllers: `KafkaCluster` turns a spec into a running cluster
//! (ConfigMap, Services, StatefulSet, PodDisruptionBudget, monitoring
//! objects), `Topic` keeps a Kafka topic in shape and `KafkaUser` a user's
//! credential, ACLs and quotas, through the admin protocol of
//! `rivulet-wire`. Each cluster reconcile is a pipeline:
//! read -> [`validate`] (pure) -> [`build`] (pure) -> server-side apply in a
//! fixed order -> delete orphans -> status.

pub mod build;
pub mod certs;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod validate;

#[cfg(test)]
mod fixtures;

//! Errors of a reconcile, one variant per step that can fail. The variant
//! name is the `error` label of the failure counter, so a dashboard shows
//! which step fails, not just that something did.

use rivulet_wire::error::ClientError;

/// A reconcile step failed; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an object the reconcile depends on failed.
    #[error("reading {what} failed")]
    Read {
        /// What was read, e.g. `StatefulSet kafka/demo-broker`.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of a desired object failed.
    #[error("applying {what} failed")]
    Apply {
        /// The object, e.g. `ConfigMap kafka/demo-config`.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an orphaned object, or a pod during a roll, failed.
    #[error("deleting {what} failed")]
    Delete {
        /// The object.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the status subresource failed.
    #[error("writing the status of {what} failed")]
    Status {
        /// The custom resource.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A Kafka admin request (Topic controller) failed.
    #[error("Kafka admin request `{op}` for topic {topic} failed")]
    Admin {
        /// The request, e.g. `CreateTopics`.
        op: &'static str,
        /// The Kafka topic name.
        topic: String,
        /// The client error, with the Kafka error code if the broker answered.
        #[source]
        source: ClientError,
    },
    /// A Kafka admin request (KafkaUser controller) failed.
    #[error("Kafka admin request `{op}` for user {user} failed")]
    UserAdmin {
        /// The request, e.g. `CreateAcls`.
        op: &'static str,
        /// The Kafka user name.
        user: String,
        /// The client error, with the Kafka error code if the broker answered.
        #[source]
        source: ClientError,
    },
    /// Making or reading a certificate failed.
    #[error("certificates of {what}")]
    Certificate {
        /// Whose certificates, e.g. `KafkaCluster kafka/demo`.
        what: String,
        /// What went wrong.
        #[source]
        source: crate::certs::CertError,
    },
    /// A finalizer (Topic, KafkaUser) could not be added, run or removed.
    #[error("finalizer failed")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The `error` label value of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::Delete { .. } => "delete",
            Error::Status { .. } => "status",
            Error::Admin { .. } | Error::UserAdmin { .. } => "admin",
            Error::Certificate { .. } => "certificate",
            Error::Finalizer(inner) => match &**inner {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
        }
    }
}

//! ApiVersions: what this broker speaks. Also the v0 answer Kafka gives to an
//! ApiVersions request that is newer than the broker knows, so the client can
//! retry with a version both sides speak.
//!
//! From v3 on the answer also carries the features (KIP-584): the one
//! Rivulet has is Kafka's `transaction.version`, supported from 0 to 2 and
//! finalized at the broker's `transaction.version` setting. Clients (the
//! Java producer of Kafka 4.0 first) use transaction version 2 only when
//! it is finalized at 2. The finalized features' epoch is the offset of
//! the metadata image, as in KRaft, so it only grows.

use kafka_protocol::{
    messages::{
        api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey},
        ApiVersionsRequest, ApiVersionsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{supported_versions, Node, SUPPORTED};
use crate::config::TRANSACTION_VERSION_MAX;

/// Kafka's name of the transaction protocol feature.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";

fn api_keys(transaction_version: i16) -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .filter_map(|&(key, _, _)| {
            let range = supported_versions(key, transaction_version)?;
            Some(
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max),
            )
        })
        .collect()
}

/// Answers an ApiVersions request.
pub fn handle(node: &Node, _req: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    let level = node.config.transactions.version;
    let name = StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    let supported = SupportedFeatureKey::default()
        .with_name(name.clone())
        .with_min_version(0)
        .with_max_version(TRANSACTION_VERSION_MAX);
    // Kafka leaves a feature finalized at level 0 out of the list.
    let finalized: Vec<FinalizedFeatureKey> = (level > 0)
        .then(|| {
            FinalizedFeatureKey::default()
                .with_name(name)
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .into_iter()
        .collect();
    let epoch = i64::try_from(node.cluster.image().offset).unwrap_or(i64::MAX);
    ApiVersionsResponse::default()
        .with_api_keys(api_keys(level))
        .with_supported_features(vec![supported])
        .with_finalized_features_epoch(epoch)
        .with_finalized_features(finalized)
}

/// The response to an ApiVersions request of an unsupported version: encoded
/// as v0 with UNSUPPORTED_VERSION and the full list of supported versions.
pub fn unsupported_version_response(node: &Node) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys(node.config.transactions.version))
}

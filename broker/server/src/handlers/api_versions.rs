//! ApiVersions: what this broker speaks. Also the v0 answer Kafka gives to an
//! ApiVersions request that is newer than the broker knows, so the client can
//! retry with a version both sides speak.

use kafka_protocol::{
    messages::{api_versions_response::ApiVersion, ApiVersionsRequest, ApiVersionsResponse},
    ResponseError,
};

use super::SUPPORTED;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// Answers an ApiVersions request.
pub fn handle(_req: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The response to an ApiVersions request of an unsupported version: encoded
/// as v0 with UNSUPPORTED_VERSION and the full list of supported versions.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}

//! Server-side codec: request frames in, response frames out.
//!
//! The connection handler reads a frame with [`read_frame`](crate::frame::read_frame),
//! looks at [`peek_header`] to decide whether it supports the api and version
//! (that table belongs to the server, not to this crate), then calls
//! [`decode_request`] and later [`encode_response`].
//!
//! Decoding is where hostile bytes meet kafka-protocol. Two defences live
//! here: a panic inside the decoder is caught and reported as
//! [`DecodeError::Malformed`] rather than unwinding through the connection
//! task, and the process should install
//! [`LazyLargeAlloc`](crate::alloc::LazyLargeAlloc) so that an absurd array
//! length cannot abort it (see that module for why).

use std::panic::{self, AssertUnwindSafe};

use bytes::{Buf, Bytes};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind},
    protocol::{Decodable, Encodable},
};

use crate::{
    error::{DecodeError, EncodeError},
    frame::{finish_frame, start_frame},
};

/// Length of the fixed part of every request header: api key (2), api
/// version (2) and correlation id (4).
pub const FIXED_HEADER_LEN: usize = 8;

/// The fixed fields at the start of every request header.
///
/// Available even when the rest of the request is garbage, so the server can
/// answer `UNSUPPORTED_VERSION` or log the correlation id of a bad request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeaderInfo {
    /// The raw api key; may not be one this crate knows.
    pub api_key: i16,
    /// The version the client chose for this request.
    pub api_version: i16,
    /// The id the response must echo.
    pub correlation_id: i32,
}

/// Reads the fixed header fields from the first 8 bytes of a request frame
/// (the frame body, without its size prefix). `None` if the frame is shorter.
pub fn peek_header(frame: &[u8]) -> Option<RequestHeaderInfo> {
    let fixed: &[u8; FIXED_HEADER_LEN] = frame.get(..FIXED_HEADER_LEN)?.try_into().ok()?;
    Some(RequestHeaderInfo {
        api_key: i16::from_be_bytes([fixed[0], fixed[1]]),
        api_version: i16::from_be_bytes([fixed[2], fixed[3]]),
        correlation_id: i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
    })
}

/// A fully decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The complete request header, including the client id.
    pub header: RequestHeader,
    /// The api, already validated against kafka-protocol's list.
    pub api_key: ApiKey,
    /// The request version (same as `header.request_api_version`).
    pub version: i16,
    /// The typed request body.
    pub body: RequestKind,
}

/// Decodes a request frame body (without its size prefix).
///
/// The version is decoded as sent; checking it against what the broker
/// supports is the caller's job and should happen before this call, since
/// kafka-protocol rejects versions newer than it knows as malformed.
/// Bytes after the body are ignored, like Kafka does, so that newer clients
/// appending fields in a later version of a message remain readable.
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    let info = peek_header(&frame).ok_or(DecodeError::TooShort(frame.len()))?;
    let api_key = ApiKey::try_from(info.api_key).map_err(|()| DecodeError::UnknownApiKey {
        api_key: info.api_key,
        correlation_id: info.correlation_id,
    })?;
    let malformed = |message: String| DecodeError::Malformed {
        correlation_id: Some(info.correlation_id),
        message,
    };

    // The decoder is third-party code fed hostile input. A panic in it must
    // not take the connection task (or, with panic=abort, the broker) down
    // silently; surface it as a malformed request instead.
    let decoded = panic::catch_unwind(AssertUnwindSafe(move || {
        let mut buf = frame;
        let header_version = api_key.request_header_version(info.api_version);
        let header = RequestHeader::decode(&mut buf, header_version)
            .map_err(|e| format!("request header v{header_version}: {e:#}"))?;
        let body = RequestKind::decode(api_key, &mut buf, info.api_version)
            .map_err(|e| format!("{e:#}"))?;
        if buf.has_remaining() {
            tracing::debug!(
                ?api_key,
                version = info.api_version,
                trailing = buf.remaining(),
                "ignoring trailing bytes after request body"
            );
        }
        Ok::<_, String>((header, body))
    }));
    match decoded {
        Ok(Ok((header, body))) => Ok(DecodedRequest {
            header,
            api_key,
            version: info.api_version,
            body,
        }),
        Ok(Err(message)) => Err(malformed(message)),
        Err(panic) => Err(malformed(format!(
            "decoder panicked: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// The response header version for `api_key` at `version`.
///
/// ApiVersions is special in Kafka: its response always uses header v0 (no
/// tagged fields) even at flexible versions, because a client that does not
/// yet know what the broker speaks must be able to parse it. kafka-protocol
/// 0.18 already returns 0 for it; this is pinned here so the rule does not
/// depend on that.
pub fn response_header_version(api_key: ApiKey, version: i16) -> i16 {
    match api_key {
        ApiKey::ApiVersions => 0,
        _ => api_key.response_header_version(version),
    }
}

/// Encodes a complete response frame: size prefix, response header at the
/// right header version for `api_key`/`version`, then `body` at `version`.
///
/// To refuse an ApiVersions request whose version the broker does not know,
/// encode an `ApiVersionsResponse` with UNSUPPORTED_VERSION (35) and the
/// supported ranges at `version = 0`, as Kafka does; clients parse that.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let fail = |message: String| EncodeError::Message {
        api_key,
        version,
        message,
    };
    let mut buf = start_frame(256);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, response_header_version(api_key, version))
        .map_err(|e| fail(format!("response header: {e:#}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| fail(format!("{e:#}")))?;
    finish_frame(buf).map_err(EncodeError::TooLarge)
}

/// Best-effort text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::{
        messages::{
            api_versions_response::ApiVersion, metadata_request::MetadataRequestTopic,
            produce_request::TopicProduceData, ApiVersionsRequest, ApiVersionsResponse,
            MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
        },
        protocol::StrBytes,
    };

    use super::*;
    use crate::client::{decode_response, encode_request};

    /// Strips the size prefix from a frame, checking it first.
    fn body(frame: Bytes) -> Bytes {
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(size as usize, frame.len() - 4);
        frame.slice(4..)
    }

    fn metadata_request() -> MetadataRequest {
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))]))
    }

    #[test]
    fn peek_reads_fixed_fields() {
        let frame = body(encode_request(77, Some("c"), 9, &metadata_request()).unwrap());
        assert_eq!(
            peek_header(&frame),
            Some(RequestHeaderInfo {
                api_key: ApiKey::Metadata as i16,
                api_version: 9,
                correlation_id: 77,
            })
        );
        assert_eq!(peek_header(&frame[..7]), None);
    }

    #[test]
    fn requests_round_trip_at_every_header_version() {
        // v1 (header v1, non-flexible) and v12 (header v2, flexible).
        for version in [1, 4, 8, 9, 12] {
            let sent = metadata_request();
            let frame = body(encode_request(5, Some("tester"), version, &sent).unwrap());
            let decoded = decode_request(frame).unwrap();
            assert_eq!(decoded.api_key, ApiKey::Metadata);
            assert_eq!(decoded.version, version);
            assert_eq!(decoded.header.correlation_id, 5);
            assert_eq!(decoded.header.client_id.as_deref(), Some("tester"));
            assert_eq!(decoded.body, RequestKind::Metadata(sent), "v{version}");
        }
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![
                TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str("t")))
            ]);
        let frame = body(encode_request(6, None, 9, &produce).unwrap());
        let decoded = decode_request(frame).unwrap();
        assert_eq!(decoded.body, RequestKind::Produce(produce));
        assert_eq!(decoded.header.client_id, None);
    }

    #[test]
    fn unknown_key_short_and_malformed_are_distinguished() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0])),
            Err(DecodeError::TooShort(3))
        ));
        let unknown = Bytes::from_static(&[0x7f, 0x00, 0, 1, 0, 0, 0, 9, 0xff, 0xff]);
        assert!(matches!(
            decode_request(unknown),
            Err(DecodeError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 9
            })
        ));
        let frame = body(encode_request(42, Some("x"), 12, &metadata_request()).unwrap());
        let cut = frame.slice(..frame.len() - 3);
        match decode_request(cut) {
            Err(DecodeError::Malformed {
                correlation_id,
                message,
            }) => {
                assert_eq!(correlation_id, Some(42));
                assert!(!message.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn api_versions_response_always_uses_header_v0() {
        assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
        assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
        let response = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
            .with_api_key(18)
            .with_min_version(0)
            .with_max_version(3)]);
        let frame = body(
            encode_response(
                11,
                ApiKey::ApiVersions,
                3,
                &ResponseKind::ApiVersions(response.clone()),
            )
            .unwrap(),
        );
        // Header v0 is the bare correlation id, followed straight by the
        // body's error code; a v1 header would put a tagged-field count here.
        assert_eq!(&frame[..6], &[0, 0, 0, 11, 0, 0]);
        let (cid, back): (i32, ApiVersionsResponse) =
            decode_response(ApiKey::ApiVersions, 3, frame).unwrap();
        assert_eq!(cid, 11);
        assert_eq!(back, response);
    }

    #[test]
    fn flexible_responses_use_header_v1() {
        let response = MetadataResponse::default().with_controller_id(1.into());
        let kind = ResponseKind::Metadata(response.clone());
        let flexible = body(encode_response(3, ApiKey::Metadata, 12, &kind).unwrap());
        // Header v1 = correlation id + empty tagged fields (one zero byte).
        assert_eq!(response_header_version(ApiKey::Metadata, 12), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
        assert_eq!(&flexible[..5], &[0, 0, 0, 3, 0]);
        let (_, back): (i32, MetadataResponse) =
            decode_response(ApiKey::Metadata, 12, flexible).unwrap();
        assert_eq!(back, response);
    }

    #[test]
    fn request_encoding_uses_request_header_v2_when_flexible() {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("a"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let frame = body(encode_request(1, Some("id"), 3, &req).unwrap());
        let decoded = decode_request(frame).unwrap();
        assert_eq!(decoded.body, RequestKind::ApiVersions(req));
    }
}

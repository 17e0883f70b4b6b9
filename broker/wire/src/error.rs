//! Errors of the wire layer, one enum per step that can fail.
//!
//! The server side needs to tell "the peer sent something we cannot parse"
//! ([`FrameError`], [`DecodeError`]) apart from "we could not serialise our own
//! answer" ([`EncodeError`]): the first closes one connection, the second is a
//! bug. The client folds everything, including Kafka error codes returned by a
//! broker, into [`ClientError`] so callers (CLI, operator, tests) match on one type.

use std::io;

use kafka_protocol::ResponseError;

/// Reading one size-prefixed frame from a socket failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix announces more bytes than the configured maximum.
    /// The body was not read or allocated.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Size announced by the prefix.
        size: usize,
        /// The configured limit (Kafka's `socket.request.max.bytes`).
        max: usize,
    },
    /// The size prefix is negative.
    #[error("invalid frame size {0}")]
    Invalid(i32),
    /// The stream ended inside a size prefix or a body.
    #[error("connection closed in the middle of a frame ({read} of {expected} bytes read)")]
    Truncated {
        /// Bytes of the prefix or body that did arrive.
        read: usize,
        /// Bytes that were expected.
        expected: usize,
    },
    /// The underlying socket failed.
    #[error("i/o error while reading a frame")]
    Io(#[source] io::Error),
}

/// A request frame could not be turned into a typed request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is shorter than the fixed part of a request header
    /// (api key, api version, correlation id).
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
    /// The api key is not one kafka-protocol knows. Kafka answers this by
    /// closing the connection, since it cannot know the response format.
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        /// The api key from the header.
        api_key: i16,
        /// The correlation id from the header.
        correlation_id: i32,
    },
    /// The header or body does not parse at the requested version.
    #[error("malformed request (correlation id {correlation_id:?}): {message}")]
    Malformed {
        /// The correlation id, when the fixed part of the header was readable.
        correlation_id: Option<i32>,
        /// The decoder's error chain as text (kafka-protocol reports `anyhow` errors).
        message: String,
    },
}

/// A message could not be serialised.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// kafka-protocol refused to encode the message at this version.
    #[error("failed to encode {api_key:?} v{version}: {message}")]
    Message {
        /// The api whose message failed.
        api_key: kafka_protocol::messages::ApiKey,
        /// The version that was requested.
        version: i16,
        /// The encoder's error chain as text.
        message: String,
    },
    /// The encoded frame does not fit the i32 size prefix.
    #[error("encoded frame of {0} bytes does not fit a size prefix")]
    TooLarge(usize),
}

/// Anything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting to a broker failed.
    #[error("failed to connect to {addr}")]
    Connect {
        /// The address that was dialled.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// Writing a request failed.
    #[error("failed to send a request")]
    Send(#[source] io::Error),
    /// Reading a response frame failed.
    #[error("failed to read a response")]
    Receive(#[source] FrameError),
    /// The broker did not answer within the request timeout. The connection
    /// is not reused afterwards, since a late answer would be misread.
    #[error("request timed out")]
    Timeout,
    /// The broker closed the connection instead of answering, or an earlier
    /// failure left the connection unusable.
    #[error("the broker closed the connection")]
    Closed,
    /// The TLS handshake or the SASL login failed.
    #[error("authentication with {addr} failed: {reason}")]
    Authentication {
        /// The broker.
        addr: String,
        /// What failed, in the broker's words where it gave some.
        reason: String,
    },
    /// Serialising a request failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A response did not parse.
    #[error("malformed {api_key:?} v{version} response: {message}")]
    Decode {
        /// The api of the response.
        api_key: kafka_protocol::messages::ApiKey,
        /// The version it was decoded at.
        version: i16,
        /// The decoder's error chain as text.
        message: String,
    },
    /// The response carried a correlation id other than the one sent.
    #[error("correlation id mismatch: sent {sent}, received {received}")]
    CorrelationMismatch {
        /// The id of the request.
        sent: i32,
        /// The id in the response.
        received: i32,
    },
    /// No version of the api is supported by both this client and the broker.
    #[error("no common version for {api_key:?}: client supports {client}, broker {broker}")]
    UnsupportedVersion {
        /// The api in question.
        api_key: kafka_protocol::messages::ApiKey,
        /// The client's range, as `min..max`.
        client: String,
        /// The broker's range, or `none` if the broker does not offer the api.
        broker: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{name} (code {code}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// The Kafka error code.
        code: i16,
        /// Kafka's name for it, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
        name: String,
        /// The broker's error message, when the response carries one.
        message: Option<String>,
    },
    /// The bootstrap list was empty or no broker in it could be reached.
    #[error("no broker reachable in bootstrap list {0:?}")]
    NoBroker(String),
    /// The response lacked the topic, partition or broker the request was about.
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// Fetched record batches did not decode.
    #[error("invalid record batch: {0}")]
    Records(String),
}

impl ClientError {
    /// Turns a non-zero Kafka error code into [`ClientError::Kafka`], `Ok` for 0.
    pub fn check(code: i16, message: Option<&str>) -> Result<(), ClientError> {
        if code == 0 {
            Ok(())
        } else {
            Err(ClientError::kafka(code, message))
        }
    }

    /// A [`ClientError::Kafka`] for `code`, named as Kafka names it.
    pub fn kafka(code: i16, message: Option<&str>) -> ClientError {
        let name =
            ResponseError::try_from_code(code).map_or_else(|| "NONE".to_owned(), kafka_error_name);
        ClientError::Kafka {
            code,
            name,
            message: message.map(str::to_owned),
        }
    }

    /// The Kafka error code, if this is a [`ClientError::Kafka`].
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Kafka's own spelling of an error (`NOT_LEADER_OR_FOLLOWER`), derived from
/// kafka-protocol's variant name (`NotLeaderOrFollower`), because that is what
/// users find in Kafka's documentation and in other clients' logs.
pub fn kafka_error_name(err: ResponseError) -> String {
    if let ResponseError::Unknown(code) = err {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let camel = err.to_string();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_match_kafka_spelling() {
        assert_eq!(
            kafka_error_name(ResponseError::NotLeaderOrFollower),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(
            kafka_error_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            kafka_error_name(ResponseError::Unknown(999)),
            "UNKNOWN_ERROR_CODE_999"
        );
    }

    #[test]
    fn check_maps_codes() {
        assert!(ClientError::check(0, None).is_ok());
        let err = ClientError::check(36, Some("exists")).unwrap_err();
        assert_eq!(err.kafka_code(), Some(36));
        assert_eq!(err.to_string(), "TOPIC_ALREADY_EXISTS (code 36): exists");
    }
}

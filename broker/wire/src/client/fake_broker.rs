//! A scripted in-process broker for the client's unit tests, built from
//! this crate's own server-side pieces (`read_frame`, `decode_request`,
//! `encode_response`), so the tests also check that the two halves of the
//! crate agree on the wire format.

use std::sync::{Arc, Mutex};

use kafka_protocol::messages::{
    api_versions_response::ApiVersion, metadata_response::MetadataResponseBroker, ApiKey,
    ApiVersionsResponse, MetadataResponse, RequestKind, ResponseKind,
};
use tokio::net::TcpListener;

use super::admin::str_bytes;
use crate::{
    frame::{read_frame, write_frame, DEFAULT_MAX_FRAME_SIZE},
    request::{decode_request, encode_response},
};

/// Answers one request: (request, version, the broker's `host:port`).
pub type Handler = Box<dyn FnMut(&RequestKind, i16, &str) -> ResponseKind + Send>;

/// Requests the fake broker saw, in order, with their version.
pub type Seen = Arc<Mutex<Vec<(i16, RequestKind)>>>;

/// Starts a broker (node 1, the controller) that answers ApiVersions with `versions` and
/// Metadata itself, and everything else with `handler`.
pub async fn fake_broker(versions: Vec<(ApiKey, i16, i16)>, handler: Handler) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Seen = Arc::default();
    let handler = Arc::new(Mutex::new(handler));
    let (log, versions, me) = (seen.clone(), Arc::new(versions), addr.clone());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (log, versions, handler, me) =
                (log.clone(), versions.clone(), handler.clone(), me.clone());
            tokio::spawn(async move {
                while let Ok(Some(frame)) = read_frame(&mut sock, DEFAULT_MAX_FRAME_SIZE).await {
                    let req = decode_request(frame.freeze()).unwrap();
                    let body = match &req.body {
                        RequestKind::ApiVersions(_) => {
                            ResponseKind::ApiVersions(api_versions(&versions))
                        }
                        RequestKind::Metadata(_) => ResponseKind::Metadata(metadata(&me)),
                        other => {
                            log.lock().unwrap().push((req.version, other.clone()));
                            (handler.lock().unwrap())(other, req.version, &me)
                        }
                    };
                    let out =
                        encode_response(req.header.correlation_id, req.api_key, req.version, &body)
                            .unwrap();
                    if write_frame(&mut sock, &out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn api_versions(versions: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    let fixed = [(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 1, 12)];
    ApiVersionsResponse::default().with_api_keys(
        fixed
            .iter()
            .chain(versions)
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

fn metadata(addr: &str) -> MetadataResponse {
    let (host, port) = addr.rsplit_once(':').unwrap();
    MetadataResponse::default()
        .with_controller_id(1.into())
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(1.into())
            .with_host(str_bytes(host))
            .with_port(port.parse().unwrap())])
}

/// How many requests the broker saw that match `pred`.
pub fn count(seen: &Seen, pred: impl Fn(&RequestKind) -> bool) -> usize {
    seen.lock().unwrap().iter().filter(|(_, r)| pred(r)).count()
}

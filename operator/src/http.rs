//! The operator's HTTP endpoint: `/metrics` (Prometheus text format),
//! `/healthz` (the process serves requests) and `/readyz` (start-up is done:
//! the API server answered and the controllers or the leader wait began).

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the endpoint reports.
pub struct Probes {
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Set once start-up is complete.
    pub ready: AtomicBool,
}

fn respond(probes: &Probes, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            probes.metrics.render(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if probes.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ok\n".into())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Binds `addr`; the returned future serves until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    probes: Arc<Probes>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl Future<Output = ()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    Ok(async move {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let probes = probes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(&probes, request.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "http connection ended with an error");
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let probes = Probes {
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(false),
        };
        assert_eq!(respond(&probes, "/healthz").status(), StatusCode::OK);
        assert_eq!(
            respond(&probes, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        probes.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond(&probes, "/readyz").status(), StatusCode::OK);
        assert_eq!(respond(&probes, "/metrics").status(), StatusCode::OK);
        assert_eq!(respond(&probes, "/nope").status(), StatusCode::NOT_FOUND);
    }
}

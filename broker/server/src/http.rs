//! The broker's HTTP endpoint: `GET /metrics` in Prometheus' text
//! exposition format, and `GET /ready`, 200 once the broker serves clients
//! as a registered member of its cluster, else 503 saying why (a broker
//! that cannot reach its quorum is up but not ready). Anything else is 404.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{handlers::Node, scrape::Scraper};

/// Serves `/metrics` on `listener` until `shutdown` fires.
pub async fn serve(
    broker: Arc<Node>,
    listener: TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let scraper = Arc::new(Scraper::default());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let broker = broker.clone();
        let scraper = scraper.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let broker = broker.clone();
                let scraper = scraper.clone();
                async move { Ok::<_, Infallible>(respond(&broker, &scraper, req.uri().path())) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(broker: &Node, scraper: &Scraper, path: &str) -> Response<Full<Bytes>> {
    if path == "/ready" {
        let (status, body) = match broker.cluster.readiness() {
            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        };
        return Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid");
    }
    if path == "/metrics" {
        broker.groups.refresh_metrics();
        scraper.refresh(broker);
        Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(broker.metrics.render())))
            .expect("static response parts are valid")
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"not found: try /metrics or /ready\n",
            )))
            .expect("static response parts are valid")
    }
}

/// Binds the metrics address (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

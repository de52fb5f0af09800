//! Telemetry: one call sets up tracing for a service, and a Prometheus
//! registry is rendered at `/metrics`.
//!
//! Logs go to stderr, human-readable by default or JSON with
//! `TELEPATH_LOG_FORMAT=json`; `RUST_LOG` filters (default `info`). Metric
//! names follow `telepath_<thing>_<unit|total>`; labels stay low-cardinality.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Registry, TextEncoder};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Initialises tracing for `service`. Safe to call twice (the second call is a no-op).
pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TELEPATH_LOG_FORMAT").is_ok_and(|v| v == "json");
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}

/// Renders every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> Response {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "metrics unavailable",
        )
            .into_response();
    }
    ([(CONTENT_TYPE, encoder.format_type().to_owned())], buf).into_response()
}

/// Registers `metric` in `registry`, panicking on a name clash: metric names
/// are fixed at compile time, so a clash is a programming error found by the
/// first test that builds the service.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

/// Cancels `token` on SIGINT or SIGTERM: the start of every service's graceful shutdown.
pub async fn shutdown_on_signal(token: tokio_util::sync::CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_render_in_text_format() {
        let registry = Registry::new();
        let c = register(
            &registry,
            prometheus::IntCounter::new("telepath_test_total", "a test counter").unwrap(),
        );
        c.inc();
        let resp = render(&registry);
        assert!(
            resp.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("telepath_test_total 1"));
    }
}

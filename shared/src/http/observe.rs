//! Request telemetry for every service's router: a duration histogram by
//! method, route template and status, and (when traces are exported) a
//! server span that continues the caller's trace from its `traceparent`.
//!
//! Routes are labelled by their template (`/rooms/{id}/messages`), never by
//! the raw path, so ids never become labels; a request that matched no
//! route is `unmatched`. The URI is never recorded: `?token=` travels in it.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, Registry};
use tracing::Instrument;

use crate::telemetry::{self, register};

/// Buckets of the request duration histogram, seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The request duration histogram of one registry.
#[derive(Clone)]
pub struct HttpMetrics {
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers `telepath_http_request_duration_seconds` in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "telepath_http_request_duration_seconds",
                "HTTP requests by method, route template and status, with their duration",
            )
            .buckets(BUCKETS.to_vec()),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        HttpMetrics {
            duration: register(registry, duration),
        }
    }

    /// `router` with every route observed. Call it last: a layer only wraps
    /// the routes already in the router.
    pub fn layer<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), observe))
    }
}

/// Times one request and runs it inside its span.
async fn observe(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = if telemetry::tracing_enabled() {
        let span = tracing::info_span!(
            "http.request",
            otel.name = format!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        );
        telemetry::adopt_headers(&span, req.headers());
        span
    } else {
        tracing::Span::none()
    };
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    metrics
        .duration
        .with_label_values(&[method.as_str(), &route, status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let registry = Registry::new();
        let metrics = HttpMetrics::new(&registry);
        let app = metrics.layer(Router::new().route("/rooms/{id}", get(|| async { "ok" })));
        for uri in ["/rooms/a", "/rooms/b?token=secret"] {
            let req = Request::builder().uri(uri).body(axum::body::Body::empty());
            let resp = app.clone().oneshot(req.unwrap()).await.unwrap();
            assert_eq!(resp.status(), 200);
        }
        let h = metrics
            .duration
            .with_label_values(&["GET", "/rooms/{id}", "200"]);
        assert_eq!(h.get_sample_count(), 2);
        let text = format!("{:?}", registry.gather());
        assert!(!text.contains("secret") && !text.contains("/rooms/a"));
    }
}

//! Telemetry: one call sets up logs and traces for a service, a Prometheus
//! registry is rendered at `/metrics`, and trace context crosses process
//! boundaries as a W3C `traceparent`.
//!
//! - Logs go to stderr, human-readable by default (coloured on a terminal
//!   only) or JSON with `TELEPATH_LOG_FORMAT=json`; `RUST_LOG` filters
//!   (default `info`).
//! - Traces are exported over OTLP/HTTP (protobuf) only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise no exporter exists and
//!   the helpers here that carry context ([`traceparent`], [`inject`])
//!   return at once, so tracing costs nothing on the hot path.
//! - Metric names follow `telepath_<thing>_<unit|total>`; labels stay
//!   low-cardinality. [`registry`] adds the process metrics (CPU, memory,
//!   file descriptors) and `telepath_build_info` to every service's registry.
//!
//! It deliberately logs no request URIs or headers: tokens travel in both.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus::{Encoder, Registry, TextEncoder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Set once OTLP export is configured: spans then carry context across services.
static TRACING: AtomicBool = AtomicBool::new(false);

/// The W3C trace-context propagator (the `traceparent` header).
static PROPAGATOR: LazyLock<TraceContextPropagator> = LazyLock::new(TraceContextPropagator::new);

/// What [`init`] set up; [`Telemetry::shutdown`] flushes spans still buffered.
#[must_use = "keep it until the service stops, then call shutdown()"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the span exporter (if any). Blocking: call it after
    /// the server stopped, it waits for the last export at most a few seconds.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The exporter's own thread does the work; this only waits for it.
            let _ = std::thread::spawn(move || provider.shutdown()).join();
        }
    }
}

/// Initialises logs (and traces, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set)
/// for `service`. Safe to call twice: the second call sets nothing up.
///
/// `RUST_LOG` filters the logs only: exported traces always carry every
/// `info` span, so quiet logs do not mean empty traces.
pub fn init(service: &str, format: LogFormat, node_id: &str) -> Telemetry {
    let log_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The SDK logs every failed export; one line a minute is enough.
        .add_directive("opentelemetry_sdk=warn".parse().expect("valid directive"));
    let logs = if format == LogFormat::Json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(colour(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed()
    };
    let provider = otlp_provider(service, node_id);
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(format!("telepath-{service}")))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let result = tracing_subscriber::registry()
        .with(logs.with_filter(log_filter))
        .with(traces)
        .try_init();
    if result.is_err() {
        // Someone initialised tracing first (tests): their subscriber stays.
        return Telemetry { provider: None };
    }
    if provider.is_some() {
        TRACING.store(true, Ordering::Relaxed);
        tracing::info!(service, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// Whether text logs to `stream` may carry colour codes: only on a terminal
/// (a file, a pipe or a log collector gets plain text) and unless
/// `NO_COLOR` is set (<https://no-color.org>).
fn colour(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The OTLP tracer provider, when an endpoint is configured.
fn otlp_provider(service: &str, node_id: &str) -> Option<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    if endpoint.trim().is_empty() {
        return None;
    }
    // The exporter reads the endpoint (and OTEL_EXPORTER_OTLP_* settings) itself.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("OTLP export disabled: {e}");
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(format!("telepath-{service}"))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node_id.to_owned(),
        ));
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    )
}

/// Whether spans are exported (so worth creating on per-message paths).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// The current span's context as a W3C `traceparent`, when traces are exported.
pub fn traceparent() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    traceparent_of(&tracing::Span::current())
}

/// `span`'s context as a W3C `traceparent` (None when it has none).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    PROPAGATOR.inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Adds the current span's `traceparent` to outgoing request headers.
pub fn inject(headers: &mut HeaderMap) {
    if !tracing_enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    PROPAGATOR.inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
}

/// Makes the context in `headers` (a caller's `traceparent`) the parent of `span`.
pub fn adopt_headers(span: &tracing::Span, headers: &HeaderMap) {
    if !tracing_enabled() || headers.get("traceparent").is_none() {
        return;
    }
    let cx = PROPAGATOR.extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// Whether `traceparent` is a W3C `traceparent` naming a valid span context,
/// as the propagator that continues traces reads it.
pub fn is_valid_traceparent(traceparent: &str) -> bool {
    use opentelemetry::trace::TraceContextExt;
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    PROPAGATOR
        .extract(&carrier)
        .span()
        .span_context()
        .is_valid()
}

/// Makes the context of a `traceparent` (from a bus envelope) the parent of `span`.
pub fn adopt_traceparent(span: &tracing::Span, traceparent: &str) {
    if !tracing_enabled() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let _ = span.set_parent(PROPAGATOR.extract(&carrier));
}

/// A registry for `service` with the process metrics (`process_*`: CPU
/// seconds, resident memory, open file descriptors, threads),
/// `tokio_alive_tasks` and `telepath_build_info{service,version}` already
/// in it.
pub fn registry(service: &str) -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process metrics registered once");
    registry
        .register(Box::new(RuntimeCollector::new()))
        .expect("runtime metrics registered once");
    let info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "telepath_build_info",
            "Always 1; labels name the service and its version",
        ),
        &["service", "version"],
    )
    .expect("valid metric");
    info.with_label_values(&[service, env!("CARGO_PKG_VERSION")])
        .set(1);
    register(&registry, info);
    registry
}

/// `tokio_alive_tasks`: the tasks alive in the tokio runtime that renders
/// the metrics (read when scraped), so a leak of spawned tasks shows
/// before its memory does.
struct RuntimeCollector {
    alive: prometheus::IntGauge,
}

impl RuntimeCollector {
    fn new() -> Self {
        Self {
            alive: prometheus::IntGauge::new(
                "tokio_alive_tasks",
                "Tasks alive in the process's tokio runtime",
            )
            .expect("valid metric"),
        }
    }
}

impl prometheus::core::Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.alive.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let alive = handle.metrics().num_alive_tasks();
                self.alive.set(i64::try_from(alive).unwrap_or(i64::MAX));
                self.alive.collect()
            }
            Err(_) => Vec::new(),
        }
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

    #[tokio::test]
    async fn a_service_registry_carries_build_info_and_process_metrics() {
        let resp = render(&registry("api"));
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("telepath_build_info{service=\"api\""),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[tokio::test]
    async fn the_registry_counts_the_runtime_s_alive_tasks() {
        let registry = registry("api");
        let alive = |registry: &Registry| {
            registry
                .gather()
                .iter()
                .find(|f| f.name() == "tokio_alive_tasks")
                .map(|f| f.get_metric()[0].get_gauge().get_value() as i64)
                .expect("tokio_alive_tasks")
        };
        let before = alive(&registry);
        let (tx, rx) = tokio::sync::watch::channel(());
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let mut rx = rx.clone();
                tokio::spawn(async move { rx.changed().await })
            })
            .collect();
        assert_eq!(alive(&registry), before + 5);
        drop(tx);
        for t in tasks {
            let _ = t.await;
        }
        assert_eq!(alive(&registry), before);
    }

    #[test]
    fn without_an_exporter_no_context_is_carried() {
        assert_eq!(traceparent(), None);
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
    }
}

//! Presence metrics, registered once in the service's Prometheus registry.
//!
//! Names follow `telepath_presence_<thing>_<unit|total>`. The only labels
//! are `status` (five values) and `outbox` (one, `events`): nothing per
//! user, room or connection ever becomes a label.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use telepath_shared::bus::outbox::{OutboxMetricFamilies, OutboxMetrics};
use telepath_shared::telemetry::register;

/// Buckets of the event lag histogram, seconds: from "at once" (report
/// driven) to a few heartbeat intervals (a sweeper that fell behind).
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The counters, gauges and histograms presence keeps.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Heartbeat reports received from gateways.
    pub(crate) heartbeats: IntCounter,
    /// Connections removed by the sweeper because their heartbeats stopped.
    pub(crate) expired: IntCounter,
    /// Sweeps completed.
    pub(crate) sweeps: IntCounter,
    /// Users online as of the last count.
    pub(crate) online_users: IntGauge,
    /// Live connections as of the last count.
    pub(crate) connections: IntGauge,
    /// Presence events published, by the status announced.
    pub(crate) events: IntCounterVec,
    /// Typing events published (started and stopped).
    pub(crate) typing_events: IntCounter,
    /// The event outbox's depth, drops and failed publish attempts
    /// (`telepath_presence_publish_failures_total{outbox="events"}`).
    pub(crate) outbox: OutboxMetrics,
    /// Seconds from the moment a presence change became due to its publish.
    pub(crate) event_lag: Histogram,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (panics if registered twice).
    pub(crate) fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            register(registry, IntCounter::new(name, help).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str| {
            register(registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let events = IntCounterVec::new(
            Opts::new(
                "telepath_presence_events_total",
                "Presence events published on the bus, by announced status",
            ),
            &["status"],
        )
        .expect("valid metric");
        let lag = Histogram::with_opts(
            HistogramOpts::new(
                "telepath_presence_event_lag_seconds",
                "Seconds from when a presence change became due (report receipt, \
                 connection expirable, grace over) to its publish",
            )
            .buckets(LAG_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        // Every status starts at zero, so rate() works before the first event.
        for status in ["online", "away", "busy", "meditating", "offline"] {
            events.with_label_values(&[status]);
        }
        Metrics {
            heartbeats: counter(
                "telepath_presence_heartbeats_total",
                "Heartbeat reports received from gateways",
            ),
            expired: counter(
                "telepath_presence_connections_expired_total",
                "Connections expired by the sweeper after their heartbeats stopped",
            ),
            sweeps: counter(
                "telepath_presence_sweeps_total",
                "Presence sweeps completed",
            ),
            online_users: gauge(
                "telepath_presence_online_users",
                "Users with at least one live connection, as of the last count",
            ),
            connections: gauge(
                "telepath_presence_connections",
                "Live connections, as of the last count",
            ),
            events: register(registry, events),
            typing_events: counter(
                "telepath_presence_typing_events_total",
                "Typing events published on the bus",
            ),
            outbox: OutboxMetricFamilies::register(registry, "telepath_presence").outbox("events"),
            event_lag: register(registry, lag),
        }
    }
}

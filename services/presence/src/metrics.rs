//! Presence metrics, registered once in the service's Prometheus registry.
//!
//! Names follow `telepath_presence_<thing>_<unit|total>` and carry no labels:
//! nothing per user or per connection ever becomes a label.

use prometheus::{IntCounter, IntGauge, Registry};
use telepath_shared::telemetry::register;

/// The counters and gauges presence keeps.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Heartbeat reports received from gateways.
    pub(crate) heartbeats: IntCounter,
    /// Connections removed by the sweeper because their heartbeats stopped.
    pub(crate) expired: IntCounter,
    /// Sweeps completed.
    pub(crate) sweeps: IntCounter,
    /// Users online as of the last sweep.
    pub(crate) online_users: IntGauge,
    /// Live connections as of the last sweep.
    pub(crate) connections: IntGauge,
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
                "Users with at least one live connection, as of the last sweep",
            ),
            connections: gauge(
                "telepath_presence_connections",
                "Live connections, as of the last sweep",
            ),
        }
    }
}

//! The gateway's Prometheus metrics. Labels are frame types and close
//! reasons, never room or user ids.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use telepath_shared::telemetry::register;

/// Counters and gauges of one gateway.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// Connections accepted.
    pub connects: IntCounter,
    /// Connections ended, by close code.
    pub disconnects: IntCounterVec,
    /// Client frames received, by type.
    pub frames_in: IntCounterVec,
    /// Frames queued to clients.
    pub frames_out: IntCounter,
    /// Connections closed because their outbound queue was full.
    pub slow_consumers: IntCounter,
    /// Bus messages received.
    pub bus_in: IntCounter,
    /// Bus channels this node is subscribed to.
    pub subscriptions: IntGauge,
    /// Upgrade attempts refused before the upgrade, by reason.
    pub refused: IntCounterVec,
    /// Bus messages dropped because this node's inbound queue was full.
    pub bus_dropped: IntGauge,
    /// Liveness probes that did not come back in time.
    pub probe_failures: IntCounter,
    /// Messages fetched from the api to fill gaps or catch up.
    pub repaired: IntCounter,
}

impl GatewayMetrics {
    /// Registers the gateway's metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let counter =
            |name: &str, help: &str| register(registry, IntCounter::new(name, help).unwrap());
        let vec = |name: &str, help: &str, label: &str| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), &[label]).unwrap(),
            )
        };
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help).unwrap());
        GatewayMetrics {
            connections: gauge(
                "telepath_gateway_connections_active",
                "Open WebSocket connections",
            ),
            connects: counter(
                "telepath_gateway_connects_total",
                "WebSocket connections accepted",
            ),
            disconnects: vec(
                "telepath_gateway_disconnects_total",
                "WebSocket connections ended",
                "code",
            ),
            frames_in: vec(
                "telepath_gateway_frames_in_total",
                "Client frames received",
                "type",
            ),
            frames_out: counter(
                "telepath_gateway_frames_out_total",
                "Frames queued to clients",
            ),
            slow_consumers: counter(
                "telepath_gateway_slow_consumer_closes_total",
                "Connections closed as slow consumers",
            ),
            bus_in: counter(
                "telepath_gateway_bus_messages_in_total",
                "Messages received from the bus",
            ),
            subscriptions: gauge(
                "telepath_gateway_subscriptions_active",
                "Bus channels this node subscribes to",
            ),
            refused: vec(
                "telepath_gateway_handshakes_refused_total",
                "Upgrades refused before the upgrade",
                "reason",
            ),
            probe_failures: counter(
                "telepath_gateway_bus_probe_failures_total",
                "Bus liveness probes that did not come back in time",
            ),
            repaired: counter(
                "telepath_gateway_replayed_messages_total",
                "Room messages fetched from the api to repair gaps or catch up",
            ),
            bus_dropped: gauge(
                "telepath_gateway_bus_dropped_messages",
                "Bus messages dropped on a full inbound queue",
            ),
        }
    }
}

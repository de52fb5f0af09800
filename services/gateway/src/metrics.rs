//! The gateway's Prometheus metrics (names and meanings in docs/METRICS.md).
//!
//! Labels are frame types, error codes, close codes and close reasons: small
//! fixed sets, never room or user ids. Label sets that are known up front
//! start at zero, so `rate()` works from the first scrape. Hot-path counters
//! (frames out by type) are resolved once here, not looked up per frame.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use telepath_shared::protocol::{ClientOp, ErrorCode};
use telepath_shared::telemetry::register;

/// Frame types the gateway sends, for `telepath_gateway_frames_out_total{type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutKind {
    Welcome,
    Reply,
    Error,
    Message,
    Dm,
    Broadcast,
    Presence,
    Typing,
    Member,
    RoomClosed,
    Bye,
    MessageEdited,
    MessageDeleted,
    Reaction,
    Receipt,
    Invite,
    RoomCreated,
    RoomUpdated,
    Profile,
}

impl OutKind {
    const ALL: [OutKind; 19] = [
        OutKind::Welcome,
        OutKind::Reply,
        OutKind::Error,
        OutKind::Message,
        OutKind::Dm,
        OutKind::Broadcast,
        OutKind::Presence,
        OutKind::Typing,
        OutKind::Member,
        OutKind::RoomClosed,
        OutKind::Bye,
        OutKind::MessageEdited,
        OutKind::MessageDeleted,
        OutKind::Reaction,
        OutKind::Receipt,
        OutKind::Invite,
        OutKind::RoomCreated,
        OutKind::RoomUpdated,
        OutKind::Profile,
    ];

    fn name(self) -> &'static str {
        match self {
            OutKind::Welcome => "welcome",
            OutKind::Reply => "reply",
            OutKind::Error => "error",
            OutKind::Message => "message",
            OutKind::Dm => "dm",
            OutKind::Broadcast => "broadcast",
            OutKind::Presence => "presence",
            OutKind::Typing => "typing",
            OutKind::Member => "member",
            OutKind::RoomClosed => "room_closed",
            OutKind::Bye => "bye",
            OutKind::MessageEdited => "message_edited",
            OutKind::MessageDeleted => "message_deleted",
            OutKind::Reaction => "reaction",
            OutKind::Receipt => "receipt",
            OutKind::Invite => "invite",
            OutKind::RoomCreated => "room_created",
            OutKind::RoomUpdated => "room_updated",
            OutKind::Profile => "profile",
        }
    }

    /// The kind of a frame by its wire `type` (room channels carry several).
    pub(crate) fn of_type(kind: &str) -> OutKind {
        OutKind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .unwrap_or(OutKind::Message)
    }
}

/// The usual (close code, reason) pairs of `telepath_gateway_disconnects_total`.
const USUAL_DISCONNECTS: [(&str, &str); 9] = [
    ("1000", "client_closed"),
    ("1006", "client_gone"),
    ("1002", "protocol"),
    ("1011", "timeout"),
    ("1013", "slow_consumer"),
    ("1012", "restart"),
    ("4001", "token_expired"),
    ("4003", "admin"),
    ("4008", "rate_limit"),
];

/// Latency buckets, seconds: 100 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Counters, gauges and histograms of one gateway.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// Distinct users with at least one connection on this node.
    pub users: IntGauge,
    /// Connections accepted.
    pub connects: IntCounter,
    /// Connects whose offline read was skipped: Redis's connect mark said
    /// nothing waits.
    pub offline_reads_skipped: IntCounter,
    /// Connections ended, by close code and reason.
    pub disconnects: IntCounterVec,
    /// Upgrade attempts refused before the upgrade, by reason.
    pub refused: IntCounterVec,
    /// Client frames received, by type.
    pub frames_in: IntCounterVec,
    /// Frames queued to clients, one counter per [`OutKind`].
    frames_out: Vec<IntCounter>,
    /// Payload bytes of client data frames received.
    pub bytes_in: IntCounter,
    /// Payload bytes of frames written to clients.
    pub bytes_out: IntCounter,
    /// Frames waiting in a connection's outbound queue when its writer wakes.
    pub queue_depth: Histogram,
    /// Connections closed because their outbound queue was full.
    pub slow_consumers: IntCounter,
    /// Room messages per batch posted to the api.
    pub send_batch: Histogram,
    /// Seconds from a message's publish on the bus to its write to a socket.
    pub fanout_latency: Histogram,
    /// Seconds to handle one client request (reply queued), by type.
    pub request_duration: HistogramVec,
    /// Requests answered with an error, by error code.
    pub reply_errors: IntCounterVec,
    /// Bus messages received.
    pub bus_in: IntCounter,
    /// Bus messages this node published (probes, admin broadcasts).
    pub bus_out: IntCounter,
    /// Bus messages dropped because this node's inbound queue was full.
    pub bus_dropped: IntCounter,
    /// Channels read back from the api because the inbound queue dropped some of theirs.
    pub bus_resyncs: IntCounter,
    /// Times the bus subscription connection was lost (and re-established).
    pub bus_reconnects: IntCounter,
    /// Bus channels this node is subscribed to.
    pub subscriptions: IntGauge,
    /// Liveness probes that did not come back in time.
    pub probe_failures: IntCounter,
    /// Room messages sent from the api's history: `join` replays and gap repairs.
    pub replayed: IntCounterVec,
    /// Joins with a gap to replay, by whether it was replayed (`recovered`).
    pub recoveries: IntCounterVec,
}

impl GatewayMetrics {
    /// Registers the gateway's metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let counter =
            |name: &str, help: &str| register(registry, IntCounter::new(name, help).unwrap());
        let vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).unwrap(),
            )
        };
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help).unwrap());
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).unwrap(),
            )
        };
        let frames_out = vec(
            "telepath_gateway_frames_out_total",
            "Frames queued to clients, by type",
            &["type"],
        );
        let metrics = GatewayMetrics {
            connections: gauge(
                "telepath_gateway_connections_active",
                "Open WebSocket connections",
            ),
            users: gauge(
                "telepath_gateway_users_active",
                "Distinct users with a connection on this node",
            ),
            connects: counter(
                "telepath_gateway_connects_total",
                "WebSocket connections accepted",
            ),
            offline_reads_skipped: counter(
                "telepath_gateway_offline_reads_skipped_total",
                "Connects that skipped the api's offline read: their user's connect mark in Redis said nothing waits",
            ),
            disconnects: vec(
                "telepath_gateway_disconnects_total",
                "WebSocket connections ended, by close code and reason",
                &["code", "reason"],
            ),
            refused: vec(
                "telepath_gateway_handshakes_refused_total",
                "Upgrades refused before the upgrade, by reason",
                &["reason"],
            ),
            frames_in: vec(
                "telepath_gateway_frames_in_total",
                "Client frames received, by type",
                &["type"],
            ),
            frames_out: OutKind::ALL
                .iter()
                .map(|k| frames_out.with_label_values(&[k.name()]))
                .collect(),
            bytes_in: counter(
                "telepath_gateway_bytes_in_total",
                "Payload bytes of client data frames received",
            ),
            bytes_out: counter(
                "telepath_gateway_bytes_out_total",
                "Payload bytes of frames written to clients",
            ),
            queue_depth: histogram(
                "telepath_gateway_outbound_queue_depth_frames",
                "Frames waiting in a connection's outbound queue when its writer wakes",
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ],
            ),
            slow_consumers: counter(
                "telepath_gateway_slow_consumer_closes_total",
                "Connections closed as slow consumers",
            ),
            send_batch: histogram(
                "telepath_gateway_send_batch_messages",
                "Room messages per batch the gateway posts to the api",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            fanout_latency: histogram(
                "telepath_gateway_fanout_latency_seconds",
                "Seconds from a message's publish on the bus to its write to a client socket",
                LATENCY_BUCKETS.to_vec(),
            ),
            request_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "telepath_gateway_request_duration_seconds",
                        "Seconds to handle one client request, by type",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["type"],
                )
                .unwrap(),
            ),
            reply_errors: vec(
                "telepath_gateway_reply_errors_total",
                "Client requests answered with an error, by code",
                &["code"],
            ),
            bus_in: counter(
                "telepath_gateway_bus_messages_in_total",
                "Messages received from the bus",
            ),
            bus_out: counter(
                "telepath_gateway_bus_messages_out_total",
                "Messages this gateway published on the bus",
            ),
            bus_dropped: counter(
                "telepath_gateway_bus_dropped_messages_total",
                "Bus messages dropped on a full inbound queue (count or bytes)",
            ),
            bus_resyncs: counter(
                "telepath_gateway_bus_resyncs_total",
                "Channels read back from the api after the inbound queue dropped messages of theirs",
            ),
            bus_reconnects: counter(
                "telepath_gateway_bus_reconnects_total",
                "Times the bus subscription connection was lost and re-established",
            ),
            subscriptions: gauge(
                "telepath_gateway_subscriptions_active",
                "Bus channels this node subscribes to",
            ),
            probe_failures: counter(
                "telepath_gateway_bus_probe_failures_total",
                "Bus liveness probes that did not come back in time",
            ),
            replayed: vec(
                "telepath_gateway_replayed_messages_total",
                "Messages sent again from the api, by source (join replay, gap repair, DMs after an outage)",
                &["source"],
            ),
            recoveries: vec(
                "telepath_gateway_recoveries_total",
                "Joins with a gap to replay, by whether it was replayed",
                &["recovered"],
            ),
        };
        metrics.start_at_zero();
        metrics
    }

    /// Creates the known label sets so they are scraped as 0 before they happen.
    fn start_at_zero(&self) {
        for op in ClientOp::NAMES {
            self.frames_in.with_label_values(&[op]);
            self.request_duration.with_label_values(&[op]);
        }
        for code in ErrorCode::ALL {
            self.reply_errors.with_label_values(&[code.as_str()]);
        }
        for source in ["join", "repair", "dm"] {
            self.replayed.with_label_values(&[source]);
        }
        for recovered in ["true", "false"] {
            self.recoveries.with_label_values(&[recovered]);
        }
        for (code, reason) in USUAL_DISCONNECTS {
            self.disconnects.with_label_values(&[code, reason]);
        }
        for reason in ["unauthorized", "not_upgrade", "bad_handshake", "draining"] {
            self.refused.with_label_values(&[reason]);
        }
    }

    /// Counts `n` frames of `kind` queued to clients.
    pub(crate) fn frames_out(&self, kind: OutKind, n: usize) {
        self.frames_out[kind as usize].inc_by(n as u64);
    }

    /// Counts one ended connection (and a slow consumer, when that is why).
    /// Close codes outside the RFC's range and ours become `other`, so a
    /// client cannot grow the label set.
    pub(crate) fn disconnected(&self, code: u16, reason: &str) {
        if reason == "slow_consumer" {
            self.slow_consumers.inc();
        }
        let code = match code {
            1000..=1015 | 4001 | 4003 | 4008 | 4009 => code.to_string(),
            _ => "other".to_owned(),
        };
        self.disconnects.with_label_values(&[&code, reason]).inc();
        self.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_out_kind_has_its_own_counter() {
        let m = GatewayMetrics::new(&Registry::new());
        for (i, k) in OutKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i, "ALL is in declaration order");
            assert_eq!(OutKind::of_type(k.name()), k);
        }
        m.frames_out(OutKind::Typing, 3);
        assert_eq!(m.frames_out[OutKind::Typing as usize].get(), 3);
    }

    #[test]
    fn a_client_cannot_invent_close_code_labels() {
        let m = GatewayMetrics::new(&Registry::new());
        m.disconnected(4777, "client_closed");
        m.disconnected(1000, "client_closed");
        let other = m.disconnects.with_label_values(&["other", "client_closed"]);
        assert_eq!(other.get(), 1);
        assert_eq!(
            m.disconnects
                .with_label_values(&["1000", "client_closed"])
                .get(),
            1
        );
    }
}

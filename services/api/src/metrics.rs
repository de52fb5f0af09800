//! The api's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use telepath_shared::bus::outbox::OutboxMetricFamilies;
use telepath_shared::telemetry::register;

/// Counters and histograms of the api.
#[derive(Clone)]
pub struct ApiMetrics {
    /// Room messages committed.
    pub messages_persisted: IntCounter,
    /// Messages per group-commit transaction.
    pub batch_size: Histogram,
    /// Time from BEGIN to COMMIT of one group commit.
    pub commit_seconds: Histogram,
    /// The outboxes' depth, drops and failed publish attempts, one series
    /// per outbox (`rooms`, `dms`).
    pub outboxes: OutboxMetricFamilies,
    /// Room messages waiting for the writer, as of its last batch.
    pub writer_queue: IntGauge,
    /// Webhook delivery attempts, by `outcome` (`delivered`, `failed`).
    pub webhook_attempts: IntCounterVec,
    /// Webhook deliveries given up (`failed` after the retry window).
    pub webhook_gave_up: IntCounter,
    /// Webhook events not queued: the webhook's pending bound was reached,
    /// or the queue of joins and leaves to record was full.
    pub webhook_dropped: IntCounter,
    /// Webhook deliveries waiting, over every webhook.
    pub webhook_pending: IntGauge,
}

impl ApiMetrics {
    /// Registers the api's metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        ApiMetrics {
            messages_persisted: register(
                registry,
                IntCounter::new(
                    "telepath_api_messages_persisted_total",
                    "Room messages committed",
                )
                .unwrap(),
            ),
            batch_size: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "telepath_api_commit_batch_size",
                        "Messages per group-commit transaction",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                )
                .unwrap(),
            ),
            commit_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "telepath_api_commit_duration_seconds",
                        "Duration of one group commit",
                    )
                    .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap()),
                )
                .unwrap(),
            ),
            outboxes: OutboxMetricFamilies::register(registry, "telepath_api"),
            writer_queue: register(
                registry,
                IntGauge::new(
                    "telepath_api_writer_queue_messages",
                    "Room messages waiting for the writer, as of its last batch",
                )
                .unwrap(),
            ),
            webhook_attempts: {
                let attempts = register(
                    registry,
                    IntCounterVec::new(
                        Opts::new(
                            "telepath_api_webhook_attempts_total",
                            "Webhook delivery attempts, by outcome (delivered: a 2xx answer)",
                        ),
                        &["outcome"],
                    )
                    .unwrap(),
                );
                for outcome in ["delivered", "failed"] {
                    attempts.with_label_values(&[outcome]);
                }
                attempts
            },
            webhook_gave_up: register(
                registry,
                IntCounter::new(
                    "telepath_api_webhook_gave_up_total",
                    "Webhook deliveries given up after the retry window",
                )
                .unwrap(),
            ),
            webhook_dropped: register(
                registry,
                IntCounter::new(
                    "telepath_api_webhook_dropped_total",
                    "Webhook events not queued (a webhook at its pending bound)",
                )
                .unwrap(),
            ),
            webhook_pending: register(
                registry,
                IntGauge::new(
                    "telepath_api_webhook_pending",
                    "Webhook deliveries waiting, over every webhook",
                )
                .unwrap(),
            ),
        }
    }
}

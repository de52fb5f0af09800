//! Delivering: one worker task per endpoint takes its due deliveries (up
//! to [`IN_FLIGHT`] at once), POSTs each, and records the outcome.
//!
//! A delivery is `POST <url>` with the event as its JSON body
//! (`{"id","type","created_at","data"}`) and these headers:
//! `Telepath-Event` (the type), `Telepath-Event-Id` (the body's `id`: the
//! same on every attempt, for deduplication), `Telepath-Delivery` (the
//! delivery's id), `Telepath-Attempt` (1, 2, ...) and
//! `Telepath-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the HMAC
//! keyed with the webhook's secret over `<t>.<body>` (as Stripe signs).
//!
//! A 2xx answer delivers it. Anything else (another status, no connection,
//! no answer within `TELEPATH_WEBHOOK_TIMEOUT_MS`) is a failed attempt: the
//! delivery is due again after 1 s, 2 s, 4 s ... up to 1 h between
//! attempts, and is marked `failed` once its next attempt would fall past
//! `TELEPATH_WEBHOOK_RETRY_FOR` (24 h) after it was queued. When a whole
//! round fails, the worker itself pauses (1 s doubling to 60 s), so a dead
//! endpoint with a long queue is probed, not hammered. Redirects are not
//! followed. A delivery whose outcome was not recorded (the api stopped
//! meanwhile) stays pending and is sent again: at least once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::connect::HttpConnector;
use telepath_shared::http::client::{OutboundClientWith, outbound_client_with};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::address::{self, Resolver};
use super::{Endpoint, Webhooks};
use crate::store::now;

/// Most deliveries of one endpoint in flight at once.
const IN_FLIGHT: i64 = 8;
/// Longest a worker waits without looking at its queue.
const POLL: Duration = Duration::from_secs(5);
/// Longest a failing endpoint's worker pauses.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Longest time between two attempts of one delivery, seconds.
const MAX_BACKOFF_SECS: i64 = 3600;
/// Finished deliveries (delivered or failed) kept per endpoint.
const KEEP_FINISHED: i64 = 10_000;
/// How often a worker trims its finished deliveries and recounts its pending ones.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// Longest `last_error` kept.
const MAX_ERROR_CHARS: usize = 300;

/// Sends deliveries: the HTTP client and the settings of attempts.
pub(super) struct Sender {
    client: OutboundClientWith<Resolver, Full<Bytes>>,
    timeout: Duration,
    retry_for: chrono::Duration,
    allow_private: bool,
}

/// What one attempt got.
struct Outcome {
    status: Option<u16>,
    /// Why it failed; none when it was delivered.
    error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    event_id: String,
    event: String,
    payload: String,
    attempts: i64,
    created_at: DateTime<Utc>,
}

/// The `v1` signature of `body` sent at `t`: hex HMAC-SHA256 keyed with
/// `secret` over `<t>.<body>`.
pub(crate) fn sign(secret: &str, t: i64, body: &str) -> String {
    let t = t.to_string();
    telepath_shared::auth::hmac_sha256_hex(
        secret.as_bytes(),
        &[t.as_bytes(), b".", body.as_bytes()],
    )
}

/// An error and its causes, on one bounded line.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}

impl Sender {
    pub(super) fn new(config: &crate::ApiConfig) -> anyhow::Result<Sender> {
        let timeout = Duration::from_millis(config.webhook_timeout_ms);
        let mut http = HttpConnector::new_with_resolver(Resolver {
            allow_private: config.webhook_allow_private,
        });
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        Ok(Sender {
            client: outbound_client_with(http).map_err(anyhow::Error::msg)?,
            timeout,
            retry_for: chrono::Duration::from_std(config.webhook_retry_for)
                .unwrap_or(chrono::Duration::MAX),
            allow_private: config.webhook_allow_private,
        })
    }

    async fn attempt(&self, endpoint: &Endpoint, due: &Due) -> Outcome {
        let failed = |error: String| Outcome {
            status: None,
            error: Some(error),
        };
        let Ok(uri) = address::parse(&endpoint.url) else {
            return failed("the URL is not one a webhook may have".to_owned());
        };
        if !address::literal_allowed(&uri, self.allow_private) {
            return failed(
                "a non-public address (TELEPATH_WEBHOOK_ALLOW_PRIVATE is off)".to_owned(),
            );
        }
        let t = Utc::now().timestamp();
        let request = hyper::Request::post(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "Telepath-Webhooks/1")
            .header("telepath-event", &due.event)
            .header("telepath-event-id", &due.event_id)
            .header("telepath-delivery", due.id)
            .header("telepath-attempt", due.attempts + 1)
            .header(
                "telepath-signature",
                format!("t={t},v1={}", sign(&endpoint.secret, t, &due.payload)),
            )
            .body(Full::new(Bytes::from(due.payload.clone())));
        let request = match request {
            Ok(r) => r,
            Err(e) => return failed(describe(&e)),
        };
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => failed(format!("no answer within {} ms", self.timeout.as_millis())),
            Ok(Err(e)) => failed(describe(&e)),
            Ok(Ok(answer)) => {
                let status = answer.status();
                Outcome {
                    status: Some(status.as_u16()),
                    error: (!status.is_success()).then(|| format!("HTTP {status}")),
                }
            }
        }
    }
}

/// The worker of `endpoint`: delivers until `stop`.
pub(super) async fn run(
    hooks: Webhooks,
    endpoint: Endpoint,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let shared = &hooks.shared;
    let mut failing: u32 = 0;
    let mut housekept = Instant::now();
    loop {
        if housekept.elapsed() >= HOUSEKEEPING {
            housekeep(&hooks, &endpoint.id).await;
            housekept = Instant::now();
        }
        let now_ms = Utc::now().timestamp_millis();
        let due: Result<Vec<Due>, _> = sqlx::query_as(
            "SELECT id, event_id, event, payload, attempts, created_at FROM webhook_deliveries
             WHERE webhook_id = ? AND status = 'pending' AND next_attempt_at <= ?
             ORDER BY next_attempt_at, id LIMIT ?",
        )
        .bind(&endpoint.id)
        .bind(now_ms)
        .bind(IN_FLIGHT)
        .fetch_all(&shared.read)
        .await;
        let due = match due {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, webhook = %endpoint.id, "reading due webhook deliveries failed");
                if pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if due.is_empty() {
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM webhook_deliveries
                 WHERE webhook_id = ? AND status = 'pending'",
            )
            .bind(&endpoint.id)
            .fetch_one(&shared.read)
            .await
            .unwrap_or(None);
            let wait = next.map_or(POLL, |at| {
                Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0)).min(POLL)
            });
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
            continue;
        }
        let attempts =
            futures_util::future::join_all(due.iter().map(|d| shared.sender.attempt(&endpoint, d)));
        let outcomes = tokio::select! {
            outcomes = attempts => outcomes,
            () = stop.cancelled() => return,
        };
        let delivered_any = outcomes.iter().any(|o| o.error.is_none());
        if let Err(e) = record(&hooks, &endpoint.id, &due, &outcomes).await {
            tracing::warn!(error = %e, webhook = %endpoint.id, "recording webhook outcomes failed");
        }
        if delivered_any {
            failing = 0;
        } else {
            failing = failing.saturating_add(1);
            let wait = Duration::from_secs(1 << (failing - 1).min(6)).min(MAX_PAUSE);
            if pause(&stop, wait).await {
                return;
            }
        }
    }
}

/// Sleeps `wait`; true when `stop` came first.
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = stop.cancelled() => true,
    }
}

/// Records one round's outcomes in one transaction.
async fn record(
    hooks: &Webhooks,
    webhook: &str,
    due: &[Due],
    outcomes: &[Outcome],
) -> Result<(), sqlx::Error> {
    let shared = &hooks.shared;
    let at = now();
    let mut finished = 0;
    let mut tx = crate::db::begin_write(&shared.write).await?;
    for (d, o) in due.iter().zip(outcomes) {
        let attempts = d.attempts + 1;
        let status = o.status.map(i64::from);
        if o.error.is_none() {
            shared
                .metrics
                .webhook_attempts
                .with_label_values(&["delivered"])
                .inc();
            finished += 1;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, last_attempt_at = ?,
                        last_status = ?, last_error = NULL, delivered_at = ?
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(attempts)
            .bind(at)
            .bind(status)
            .bind(at)
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
            continue;
        }
        shared
            .metrics
            .webhook_attempts
            .with_label_values(&["failed"])
            .inc();
        let backoff =
            chrono::Duration::seconds((1_i64 << (attempts - 1).min(12)).min(MAX_BACKOFF_SECS));
        let next = at + backoff;
        let give_up = next > d.created_at + shared.sender.retry_for;
        if give_up {
            finished += 1;
            shared.metrics.webhook_gave_up.inc();
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,
                    last_attempt_at = ?, last_status = ?, last_error = ?
             WHERE id = ? AND status = 'pending'",
        )
        .bind(if give_up { "failed" } else { "pending" })
        .bind(attempts)
        .bind(next.timestamp_millis())
        .bind(at)
        .bind(status)
        .bind(&o.error)
        .bind(d.id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    hooks.finished(webhook, finished);
    Ok(())
}

/// Keeps the newest [`KEEP_FINISHED`] finished deliveries of `webhook`,
/// and recounts its pending ones.
async fn housekeep(hooks: &Webhooks, webhook: &str) {
    let shared = &hooks.shared;
    let trimmed = sqlx::query(
        "DELETE FROM webhook_deliveries
         WHERE webhook_id = ? AND status != 'pending' AND id <= (
             SELECT id FROM webhook_deliveries WHERE webhook_id = ? AND status != 'pending'
             ORDER BY id DESC LIMIT 1 OFFSET ?)",
    )
    .bind(webhook)
    .bind(webhook)
    .bind(KEEP_FINISHED)
    .execute(&shared.write)
    .await;
    if let Err(e) = trimmed {
        tracing::warn!(error = %e, webhook, "trimming webhook deliveries failed");
    }
    let pending: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending'",
    )
    .bind(webhook)
    .fetch_one(&shared.read)
    .await;
    if let Ok(n) = pending {
        hooks.recount(webhook, u64::try_from(n).unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_timestamp_and_body() {
        // What any HMAC library computes for key "s3cret" over
        // "1700000000.{\"a\":1}" (checked with Python's hmac module).
        assert_eq!(
            sign("s3cret", 1_700_000_000, "{\"a\":1}"),
            "1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }
}

//! Webhooks: the application's backend hears what happens without holding
//! a connection.
//!
//! Endpoints are registered with an API key holding the `webhooks` scope
//! (`POST /api/webhooks`). Each event an endpoint wants becomes one row of
//! `webhook_deliveries`, the durable queue, written in the transaction
//! that committed what it reports: a room message, edit or delete (the
//! writer's group commit), a connection-log report (`user.connected`,
//! `user.disconnected`), a persisted presence change (`presence.changed`).
//! Joins and leaves (`room.joined`, `room.left`) are committed by many
//! routes; they are queued right after their commit through one bounded
//! recorder that writes them in batches.
//!
//! When no endpoint wants an event, recording it costs one atomic load: the
//! message path does no work for webhooks nobody registered. When one does,
//! it costs one `INSERT ... SELECT FROM json_each(?)` in the batch's
//! transaction; delivering never runs on that path (see [`deliver`]: one
//! worker task per endpoint), so a slow or dead endpoint slows nothing but
//! its own deliveries. Each endpoint holds at most
//! `TELEPATH_WEBHOOK_MAX_PENDING` waiting deliveries; events past it are
//! counted in its `dropped`, not queued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use sqlx::{SqliteConnection, SqlitePool};
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    CreateWebhook, CreatedWebhook, DeliveryStatus, ErrorEnvelope, Scope, Webhook,
    WebhookDeliveries, WebhookDelivery, WebhookEvent, WebhookList, is_canonical_id,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::ApiMetrics;
use crate::server_api::ApiKey;
use crate::store::{db_err, now};
use crate::{ApiState, secret};

mod address;
mod deliver;

/// Most webhooks registered at once.
pub(crate) const MAX_WEBHOOKS: usize = 64;
/// Joins and leaves waiting for the recorder; more are dropped (counted).
const RECORDER_QUEUE: usize = 10_000;
/// Most events the recorder writes in one transaction.
const RECORDER_BATCH: usize = 512;

/// One event to queue: what it is and its `data`, as JSON.
pub(crate) struct Event {
    pub(crate) kind: WebhookEvent,
    pub(crate) data: String,
}

impl Event {
    /// The event `kind` with `data` serialised.
    pub(crate) fn new(kind: WebhookEvent, data: &impl serde::Serialize) -> Option<Event> {
        match serde_json::to_string(data) {
            Ok(data) => Some(Event { kind, data }),
            Err(e) => {
                tracing::warn!(error = %e, event = kind.as_str(), "a webhook event did not serialise");
                None
            }
        }
    }
}

/// A registered endpoint, as deliveries need it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) secret: String,
    /// The events it wants, one bit each ([`WebhookEvent::bit`]).
    pub(crate) events: u8,
}

/// The webhooks of this api: the registered endpoints, what they wait for,
/// their workers, and the recorder of joins and leaves. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Webhooks {
    shared: Arc<Shared>,
}

struct Shared {
    /// Replaced whole on a change, so a batch takes it without copying.
    endpoints: RwLock<Arc<Vec<Endpoint>>>,
    /// The union of every endpoint's events: the one check on hot paths.
    wanted: AtomicU8,
    /// Deliveries waiting per endpoint (recounted from the table every minute).
    pending: Mutex<HashMap<String, u64>>,
    max_pending: u64,
    /// Each endpoint's worker: how to wake it and stop it.
    workers: Mutex<HashMap<String, Worker>>,
    read: SqlitePool,
    write: SqlitePool,
    sender: deliver::Sender,
    metrics: ApiMetrics,
    /// The recorder's queue (taken by `close`).
    recorder: Mutex<Option<mpsc::Sender<Event>>>,
    recorder_task: Mutex<Option<JoinHandle<()>>>,
    /// Stops every worker.
    stop: CancellationToken,
}

struct Worker {
    wake: Arc<Notify>,
    stop: CancellationToken,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    url: String,
    events: String,
    secret: String,
    created_at: DateTime<Utc>,
    dropped: i64,
}

fn events_of(text: &str) -> Vec<WebhookEvent> {
    text.split(',').filter_map(WebhookEvent::parse).collect()
}

fn bits_of(events: &[WebhookEvent]) -> u8 {
    events.iter().fold(0, |bits, e| bits | e.bit())
}

impl Webhooks {
    /// Loads the endpoints and their pending counts, starts a worker for
    /// each and the recorder.
    pub(crate) async fn start(
        read: SqlitePool,
        write: SqlitePool,
        config: &crate::ApiConfig,
        metrics: ApiMetrics,
    ) -> anyhow::Result<Webhooks> {
        let rows: Vec<EndpointRow> = sqlx::query_as(
            "SELECT id, url, events, secret, created_at, dropped FROM webhooks ORDER BY created_at",
        )
        .fetch_all(&read)
        .await?;
        let pending: Vec<(String, i64)> = sqlx::query_as(
            "SELECT webhook_id, count(*) FROM webhook_deliveries WHERE status = 'pending' GROUP BY webhook_id",
        )
        .fetch_all(&read)
        .await?;
        let endpoints: Vec<Endpoint> = rows
            .into_iter()
            .map(|r| Endpoint {
                events: bits_of(&events_of(&r.events)),
                id: r.id,
                url: r.url,
                secret: r.secret,
            })
            .collect();
        let (tx, rx) = mpsc::channel(RECORDER_QUEUE);
        let hooks = Webhooks {
            shared: Arc::new(Shared {
                endpoints: RwLock::new(Arc::new(Vec::new())),
                wanted: AtomicU8::new(0),
                pending: Mutex::new(
                    pending
                        .into_iter()
                        .map(|(id, n)| (id, u64::try_from(n).unwrap_or(0)))
                        .collect(),
                ),
                max_pending: config.webhook_max_pending,
                workers: Mutex::new(HashMap::new()),
                read,
                write,
                sender: deliver::Sender::new(config)?,
                metrics,
                recorder: Mutex::new(Some(tx)),
                recorder_task: Mutex::new(None),
                stop: CancellationToken::new(),
            }),
        };
        for endpoint in endpoints {
            hooks.add(endpoint);
        }
        hooks.publish_pending();
        let task = tokio::spawn(record_loop(hooks.clone(), rx));
        *lock(&hooks.shared.recorder_task) = Some(task);
        Ok(hooks)
    }

    /// Whether some endpoint wants `kind`.
    pub(crate) fn wants(&self, kind: WebhookEvent) -> bool {
        self.shared.wanted.load(Ordering::Relaxed) & kind.bit() != 0
    }

    /// Queues `events` for the endpoints that want them, in the
    /// transaction `conn` is in. True when it queued a delivery: call
    /// [`wake`](Self::wake) after the commit.
    pub(crate) async fn record(
        &self,
        conn: &mut SqliteConnection,
        events: &[Event],
    ) -> Result<bool, sqlx::Error> {
        let wanted = self.shared.wanted.load(Ordering::Relaxed);
        if events.iter().all(|e| wanted & e.kind.bit() == 0) {
            return Ok(false);
        }
        let endpoints = Arc::clone(&read(&self.shared.endpoints));
        let at = now();
        let created = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut rows = Vec::new();
        let mut dropped: HashMap<&str, i64> = HashMap::new();
        {
            let mut pending = lock(&self.shared.pending);
            for event in events {
                let bit = event.kind.bit();
                if wanted & bit == 0 {
                    continue;
                }
                let event_id = uuid::Uuid::now_v7().hyphenated().to_string();
                let body = format!(
                    r#"{{"id":"{event_id}","type":"{}","created_at":"{created}","data":{}}}"#,
                    event.kind.as_str(),
                    event.data
                );
                for endpoint in endpoints.iter().filter(|e| e.events & bit != 0) {
                    let waiting = pending.entry(endpoint.id.clone()).or_default();
                    if *waiting >= self.shared.max_pending {
                        *dropped.entry(&endpoint.id).or_default() += 1;
                        continue;
                    }
                    *waiting += 1;
                    rows.push(serde_json::json!({
                        "w": endpoint.id,
                        "e": event_id,
                        "t": event.kind.as_str(),
                        "p": body,
                    }));
                }
            }
        }
        let queued = !rows.is_empty();
        if queued {
            // Joined to `webhooks`: an endpoint deleted meanwhile gets nothing.
            sqlx::query(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, event, payload, next_attempt_at, created_at)
                 SELECT w.id, j.value ->> 'e', j.value ->> 't', j.value ->> 'p', ?, ?
                 FROM json_each(?) AS j JOIN webhooks AS w ON w.id = j.value ->> 'w'",
            )
            .bind(at.timestamp_millis())
            .bind(at)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut *conn)
            .await?;
        }
        for (id, n) in dropped {
            self.shared.metrics.webhook_dropped.inc_by(n as u64);
            sqlx::query("UPDATE webhooks SET dropped = dropped + ? WHERE id = ?")
                .bind(n)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(queued)
    }

    /// Wakes every worker: deliveries were committed.
    pub(crate) fn wake(&self) {
        self.publish_pending();
        for worker in lock(&self.shared.workers).values() {
            worker.wake.notify_one();
        }
    }

    /// Queues an event already committed (a join or a leave) for the
    /// recorder, which writes it within milliseconds. Dropped (counted)
    /// when the recorder is that far behind, or closed.
    pub(crate) fn emit(&self, event: Event) {
        if !self.wants(event.kind) {
            return;
        }
        let sent = lock(&self.shared.recorder)
            .as_ref()
            .is_some_and(|tx| tx.try_send(event).is_ok());
        if !sent {
            self.shared.metrics.webhook_dropped.inc();
        }
    }

    /// Writes what the recorder holds, then stops the workers (a delivery
    /// in flight stays pending, and is sent again after a restart). Before
    /// the database closes.
    pub(crate) async fn close(&self) {
        lock(&self.shared.recorder).take();
        let task = lock(&self.shared.recorder_task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.shared.stop.cancel();
    }

    /// Adds `endpoint` to the registry and starts its worker.
    fn add(&self, endpoint: Endpoint) {
        let wake = Arc::new(Notify::new());
        let stop = self.shared.stop.child_token();
        lock(&self.shared.workers).insert(
            endpoint.id.clone(),
            Worker {
                wake: wake.clone(),
                stop: stop.clone(),
            },
        );
        {
            let mut endpoints = write(&self.shared.endpoints);
            let mut next = Vec::clone(&endpoints);
            next.push(endpoint.clone());
            *endpoints = Arc::new(next);
        }
        self.rewant();
        tokio::spawn(deliver::run(self.clone(), endpoint, wake, stop));
    }

    /// Removes endpoint `id` from the registry and stops its worker.
    fn remove(&self, id: &str) {
        {
            let mut endpoints = write(&self.shared.endpoints);
            let next = endpoints.iter().filter(|e| e.id != id).cloned().collect();
            *endpoints = Arc::new(next);
        }
        self.rewant();
        if let Some(worker) = lock(&self.shared.workers).remove(id) {
            worker.stop.cancel();
        }
        lock(&self.shared.pending).remove(id);
        self.publish_pending();
    }

    fn rewant(&self) {
        let bits = read(&self.shared.endpoints)
            .iter()
            .fold(0, |bits, e| bits | e.events);
        self.shared.wanted.store(bits, Ordering::Relaxed);
    }

    fn pending_of(&self, id: &str) -> i64 {
        lock(&self.shared.pending)
            .get(id)
            .map_or(0, |n| i64::try_from(*n).unwrap_or(i64::MAX))
    }

    /// `n` deliveries of endpoint `id` finished (delivered or given up).
    fn finished(&self, id: &str, n: u64) {
        if let Some(waiting) = lock(&self.shared.pending).get_mut(id) {
            *waiting = waiting.saturating_sub(n);
        }
        self.publish_pending();
    }

    /// The count of endpoint `id`'s waiting deliveries, as the table has it.
    fn recount(&self, id: &str, n: u64) {
        if let Some(waiting) = lock(&self.shared.pending).get_mut(id) {
            *waiting = n;
        }
        self.publish_pending();
    }

    fn publish_pending(&self) {
        let total: u64 = lock(&self.shared.pending).values().sum();
        self.shared
            .metrics
            .webhook_pending
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// The recorder: writes the emitted events in batches until `close`.
async fn record_loop(hooks: Webhooks, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(RECORDER_BATCH);
    while rx.recv_many(&mut batch, RECORDER_BATCH).await > 0 {
        let events = std::mem::take(&mut batch);
        // Retried while the database refuses (busy, full): these events are
        // committed facts, worth a few attempts.
        for attempt in 0..5 {
            match record_now(&hooks, &events).await {
                Ok(queued) => {
                    if queued {
                        hooks.wake();
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = events.len(), attempt, "recording webhook events failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }
}

async fn record_now(hooks: &Webhooks, events: &[Event]) -> Result<bool, sqlx::Error> {
    let mut tx = crate::db::begin_write(&hooks.shared.write).await?;
    let queued = hooks.record(&mut tx, events).await?;
    tx.commit().await?;
    Ok(queued)
}

/// 403 unless the key may manage webhooks: the `webhooks` scope, and no
/// room prefix (a webhook hears about every room).
fn may_manage(key: &ApiKey) -> Result<(), ApiError> {
    key.require(Scope::Webhooks)?;
    if key.room_prefix().is_some() {
        return Err(ApiError::forbidden(
            "a key limited to a room prefix cannot manage webhooks (they hear about every room)",
        ));
    }
    Ok(())
}

/// A webhook id from a path: 404 when it is not one.
fn webhook_id(id: &str) -> Result<&str, ApiError> {
    if is_canonical_id(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found("no such webhook"))
    }
}

/// A signing secret the caller chose: 16-128 printable ASCII, no spaces.
fn valid_secret(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

#[utoipa::path(post, path = "/api/webhooks", tag = "server", operation_id = "api_create_webhook",
    request_body = CreateWebhook,
    responses((status = 201, description = "Registered; its signing secret is in the answer this once", body = CreatedWebhook), (status = 400, description = "Invalid input: the URL (scheme, user info, a host that does not resolve or resolves to a non-public address), the events, the secret; or 64 webhooks exist", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the webhooks scope, or is limited to a room prefix", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    key: ApiKey,
    JsonBody(req): JsonBody<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    may_manage(&key)?;
    let hooks = state.webhooks();
    // The URL's form first, where it resolves last (it takes a DNS lookup).
    address::parse(&req.url).map_err(ApiError::bad_request)?;
    if req.events.is_empty() || req.events.len() > WebhookEvent::ALL.len() {
        return Err(ApiError::bad_request("events: 1-8 event names"));
    }
    let mut events: Vec<WebhookEvent> = Vec::with_capacity(req.events.len());
    for e in req.events {
        if events.contains(&e) {
            return Err(ApiError::bad_request(format!(
                "events: {} is named twice",
                e.as_str()
            )));
        }
        events.push(e);
    }
    let secret = match req.secret {
        Some(s) if valid_secret(&s) => s,
        Some(_) => {
            return Err(ApiError::bad_request(
                "secret: 16-128 printable ASCII characters without spaces",
            ));
        }
        None => format!("whsec_{}", secret::new_token()),
    };
    let full =
        || ApiError::bad_request(format!("at most {MAX_WEBHOOKS} webhooks: delete one first"));
    if read(&hooks.shared.endpoints).len() >= MAX_WEBHOOKS {
        return Err(full());
    }
    address::check_url(&req.url, state.config().webhook_allow_private).await?;
    let webhook = Webhook {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        url: req.url,
        events,
        created_at: now(),
        pending: 0,
        dropped: 0,
    };
    let names = webhook
        .events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",");
    // The bound holds in the statement: two creates at once cannot pass it.
    let inserted = sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret, created_at)
         SELECT ?, ?, ?, ?, ? WHERE (SELECT count(*) FROM webhooks) < ?",
    )
    .bind(&webhook.id)
    .bind(&webhook.url)
    .bind(names)
    .bind(&secret)
    .bind(webhook.created_at)
    .bind(MAX_WEBHOOKS as i64)
    .execute(&state.db().write)
    .await
    .map_err(db_err)?;
    if inserted.rows_affected() == 0 {
        return Err(full());
    }
    hooks.add(Endpoint {
        id: webhook.id.clone(),
        url: webhook.url.clone(),
        secret: secret.clone(),
        events: bits_of(&webhook.events),
    });
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook { secret, webhook }),
    ))
}

impl EndpointRow {
    fn webhook(self, hooks: &Webhooks) -> Webhook {
        Webhook {
            pending: hooks.pending_of(&self.id),
            events: events_of(&self.events),
            id: self.id,
            url: self.url,
            created_at: self.created_at,
            dropped: self.dropped,
        }
    }
}

#[utoipa::path(get, path = "/api/webhooks", tag = "server", operation_id = "api_list_webhooks",
    responses((status = 200, description = "Every webhook, oldest first (never a secret)", body = WebhookList), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the webhooks scope, or is limited to a room prefix", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    key: ApiKey,
) -> Result<Json<WebhookList>, ApiError> {
    may_manage(&key)?;
    let rows: Vec<EndpointRow> = sqlx::query_as(
        "SELECT id, url, events, secret, created_at, dropped FROM webhooks ORDER BY created_at, id",
    )
    .fetch_all(&state.db().read)
    .await
    .map_err(db_err)?;
    let hooks = state.webhooks();
    Ok(Json(WebhookList {
        webhooks: rows.into_iter().map(|r| r.webhook(hooks)).collect(),
    }))
}

async fn one(state: &ApiState, id: &str) -> Result<Webhook, ApiError> {
    let row: Option<EndpointRow> = sqlx::query_as(
        "SELECT id, url, events, secret, created_at, dropped FROM webhooks WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&state.db().read)
    .await
    .map_err(db_err)?;
    row.map(|r| r.webhook(state.webhooks()))
        .ok_or_else(|| ApiError::not_found("no such webhook"))
}

#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "server", operation_id = "api_get_webhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook (never its secret)", body = Webhook), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the webhooks scope, or is limited to a room prefix", body = ErrorEnvelope), (status = 404, description = "No such webhook", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    may_manage(&key)?;
    Ok(Json(one(&state, webhook_id(&id)?).await?))
}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "server", operation_id = "api_delete_webhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted, with its deliveries (pending ones are not sent)"), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the webhooks scope, or is limited to a room prefix", body = ErrorEnvelope), (status = 404, description = "No such webhook", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    may_manage(&key)?;
    let id = webhook_id(&id)?;
    let mut tx = state.db().begin_write().await?;
    let done = sqlx::query("DELETE FROM webhooks WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("no such webhook"));
    }
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    state.webhooks().remove(id);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/webhooks/{id}/deliveries` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only deliveries in this state.
    status: Option<DeliveryStatus>,
    /// Only deliveries with a smaller id (the next page).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Page size, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    event_id: String,
    event: String,
    status: String,
    attempts: i64,
    created_at: DateTime<Utc>,
    next_attempt_at: i64,
    last_attempt_at: Option<DateTime<Utc>>,
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
}

impl DeliveryRow {
    fn delivery(self) -> Option<WebhookDelivery> {
        let status = DeliveryStatus::parse(&self.status)?;
        Some(WebhookDelivery {
            id: self.id,
            event_id: self.event_id,
            event: WebhookEvent::parse(&self.event)?,
            status,
            attempts: self.attempts,
            created_at: self.created_at,
            next_attempt_at: (status == DeliveryStatus::Pending)
                .then(|| DateTime::from_timestamp_millis(self.next_attempt_at))
                .flatten(),
            last_attempt_at: self.last_attempt_at,
            last_status: self.last_status,
            last_error: self.last_error,
            delivered_at: self.delivered_at,
        })
    }
}

#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "server", operation_id = "api_webhook_deliveries",
    params(("id" = String, Path, description = "Webhook id"), DeliveryQuery),
    responses((status = 200, description = "Its deliveries, newest first: status, attempts, the last attempt's HTTP status and error (the newest 10,000 finished ones are kept, and every pending one)", body = WebhookDeliveries), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the webhooks scope, or is limited to a room prefix", body = ErrorEnvelope), (status = 404, description = "No such webhook", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn deliveries(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Json<WebhookDeliveries>, ApiError> {
    may_manage(&key)?;
    let id = webhook_id(&id)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit: 1-100"));
    }
    if query.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request("before: a delivery id (1 or more)"));
    }
    one(&state, id).await?;
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT id, event_id, event, status, attempts, created_at, next_attempt_at,
                last_attempt_at, last_status, last_error, delivered_at
         FROM webhook_deliveries
         WHERE webhook_id = ? AND id < ? AND (? IS NULL OR status = ?)
         ORDER BY id DESC LIMIT ?",
    )
    .bind(id)
    .bind(query.before.unwrap_or(i64::MAX))
    .bind(query.status.map(DeliveryStatus::as_str))
    .bind(query.status.map(DeliveryStatus::as_str))
    .bind(limit)
    .fetch_all(&state.db().read)
    .await
    .map_err(db_err)?;
    Ok(Json(WebhookDeliveries {
        deliveries: rows.into_iter().filter_map(DeliveryRow::delivery).collect(),
    }))
}

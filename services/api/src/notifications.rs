//! Personal notifications: a mention, a reply, reactions to one's message
//! (coalesced per message), an invitation, a DM received while offline.
//!
//! They are written in the transaction of what caused them (the writer's
//! group commit for mentions, replies and reactions; the invitation's; the
//! DM batch's check after its publish) and published after the commit on
//! the user's channel as `notification` events, so every live connection
//! of the user gets them; the rows wait for users who are offline
//! (`GET /notifications`, and the unread count in `welcome`). A user is
//! never notified of their own actions, and only about rooms they are a
//! participant of (checked when the notification is made, and again when
//! it is listed or counted: one about a room they left is no longer shown).
//! Each user keeps at most [`MAX_NOTIFICATIONS_PER_USER`]: past it the
//! oldest read ones go first, then the oldest unread.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::SqliteConnection;
use telepath_shared::bus::Outgoing;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    ErrorEnvelope, MAX_NOTIFICATIONS_PER_USER, MarkRead, Notification, NotificationKind,
    NotificationList, NotificationsRead, ServerFrame, UnreadCounts, UnreadRequest, UserRef,
    integer, user_channel,
};

use crate::ApiState;
use crate::auth::{AuthUser, Internal};
use crate::store::db_err;

/// Characters of a message a notification's text keeps.
const EXCERPT: usize = 200;

/// The condition on a notification `n` that its user may still see it: it
/// names no room, is an invitation, or names a room they are an active
/// participant of.
macro_rules! visible {
    () => {
        "(n.room_id IS NULL OR n.kind = 'invite' OR EXISTS (
            SELECT 1 FROM room_participants p
            WHERE p.room_id = n.room_id AND p.user_id = n.user_id AND p.is_active = 1))"
    };
}

/// A notification to write.
#[derive(Debug, Clone)]
pub(crate) struct NewNotification {
    pub(crate) user_id: String,
    pub(crate) kind: NotificationKind,
    pub(crate) room: Option<String>,
    pub(crate) message_id: Option<String>,
    pub(crate) from: Option<UserRef>,
    pub(crate) text: String,
    /// An application's notification: its sender's `client_id`, which
    /// makes a repeat return the first (see [`find_app`]).
    pub(crate) app_key: Option<String>,
}

/// At most [`EXCERPT`] characters of `text`, with an ellipsis when cut.
pub(crate) fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(EXCERPT).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// The user names `@name` in `body` names (each once, in order), as
/// usernames are spelled: 1–32 of `A-Z a-z 0-9 _ . -`, after the start or
/// a character that is none of those. A trailing `.` is punctuation.
pub(crate) fn mentions(body: &str) -> Vec<String> {
    if !body.contains('@') {
        return Vec::new();
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let mut found = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in body.char_indices() {
        if c == '@' && !prev.is_some_and(is_name) {
            let rest = &body[i + 1..];
            let len = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            let name = rest[..len].trim_end_matches('.');
            if (1..=32).contains(&name.len()) && !found.iter().any(|f| f == name) {
                found.push(name.to_owned());
            }
        }
        prev = Some(c);
    }
    found
}

/// Writes `new` (inside the caller's transaction) at `ts`, each not from
/// its own user; a reaction replaces the user's earlier reaction
/// notification about the same message. Then trims each user to the bound.
/// Returns each user and notification written, for [`publish`].
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    new: Vec<NewNotification>,
    ts: DateTime<Utc>,
) -> Result<Vec<(String, Notification)>, sqlx::Error> {
    let mut written = Vec::new();
    let mut users = BTreeSet::new();
    for n in new {
        if n.from.as_ref().is_some_and(|f| f.id == n.user_id) {
            continue;
        }
        let coalesce = match n.kind {
            NotificationKind::Reaction => n.message_id.as_ref().map(|m| format!("reaction:{m}")),
            NotificationKind::App => n.app_key.as_ref().map(|k| format!("app:{k}")),
            _ => None,
        };
        if let Some(key) = &coalesce {
            sqlx::query("DELETE FROM notifications WHERE user_id = ? AND coalesce_key = ?")
                .bind(&n.user_id)
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        sqlx::query(
            "INSERT INTO notifications
               (id, user_id, kind, room_id, message_id, from_id, from_name, text, ts, coalesce_key)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&n.user_id)
        .bind(n.kind.as_str())
        .bind(&n.room)
        .bind(&n.message_id)
        .bind(n.from.as_ref().map(|f| &f.id))
        .bind(n.from.as_ref().map(|f| &f.name))
        .bind(&n.text)
        .bind(ts)
        .bind(&coalesce)
        .execute(&mut *conn)
        .await?;
        users.insert(n.user_id.clone());
        written.push((
            n.user_id,
            Notification {
                id,
                kind: n.kind,
                room: n.room,
                message_id: n.message_id,
                from: n.from,
                text: n.text,
                ts,
                read: None,
            },
        ));
    }
    if !users.is_empty() {
        let users: Vec<&String> = users.iter().collect();
        sqlx::query(
            "DELETE FROM notifications WHERE id IN (
               SELECT id FROM (
                 SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY read, id DESC) AS kept
                 FROM notifications WHERE user_id IN (SELECT value FROM json_each(?)))
               WHERE kept > ?)",
        )
        .bind(serde_json::to_string(&users).expect("strings serialise"))
        .bind(MAX_NOTIFICATIONS_PER_USER)
        .execute(&mut *conn)
        .await?;
    }
    Ok(written)
}

/// A listed notification from its row.
fn notification_of(
    (id, kind, room, message_id, from_id, from_name, text, ts, read): Row,
) -> Notification {
    Notification {
        id,
        kind: NotificationKind::parse(&kind).unwrap_or(NotificationKind::Mention),
        room,
        message_id,
        from: from_id.map(|id| UserRef {
            id,
            name: from_name.unwrap_or_default(),
        }),
        text,
        ts,
        read: Some(read),
    }
}

/// The application notification of `user` stored with `app_key` (see
/// [`NewNotification::app_key`]), if there is one.
pub(crate) async fn find_app(
    conn: &mut SqliteConnection,
    user: &str,
    app_key: &str,
) -> Result<Option<Notification>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT n.id, n.kind, n.room_id, n.message_id, n.from_id, n.from_name, n.text, n.ts, n.read
         FROM notifications n WHERE n.user_id = ? AND n.coalesce_key = ?",
    )
    .bind(user)
    .bind(format!("app:{app_key}"))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(notification_of))
}

/// The `notification` events of `written`, for the users' channels.
pub(crate) fn outgoing(written: &[(String, Notification)]) -> Vec<Outgoing> {
    written
        .iter()
        .map(|(user, n)| {
            let frame = ServerFrame::Notification(n.clone()).to_json();
            Outgoing::new(user_channel(user), Bytes::from(frame))
        })
        .collect()
}

/// Publishes `written` after the commit (through the ordered outbox, which
/// retries while Redis is away), and updates the users' unread counts.
pub(crate) fn publish(state: &ApiState, written: &[(String, Notification)]) {
    if !written.is_empty() {
        state.outboxes().rooms.push(outgoing(written));
        state.unread().touch(written.iter().map(|(user, _)| user));
    }
}

/// Keeps of `candidates` those whose user is an active participant of the
/// notification's room (all of them for room-less ones).
pub(crate) async fn only_participants(
    conn: &mut SqliteConnection,
    candidates: Vec<NewNotification>,
) -> Result<Vec<NewNotification>, sqlx::Error> {
    let pairs: BTreeSet<(&str, &str)> = candidates
        .iter()
        .filter_map(|n| Some((n.room.as_deref()?, n.user_id.as_str())))
        .collect();
    if pairs.is_empty() {
        return Ok(candidates);
    }
    let asked = serde_json::to_string(&pairs.iter().collect::<Vec<_>>()).expect("serialises");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.room_id, p.user_id FROM json_each(?) j
         JOIN room_participants p
           ON p.room_id = json_extract(j.value, '$[0]') AND p.user_id = json_extract(j.value, '$[1]')
         WHERE p.is_active = 1",
    )
    .bind(asked)
    .fetch_all(&mut *conn)
    .await?;
    let members: BTreeSet<(String, String)> = rows.into_iter().collect();
    Ok(candidates
        .into_iter()
        .filter(|n| match &n.room {
            Some(room) => members.contains(&(room.clone(), n.user_id.clone())),
            None => true,
        })
        .collect())
}

/// `user`'s unread notifications (those they may still see).
async fn unread_of(conn: &mut SqliteConnection, user: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(concat!(
        "SELECT COUNT(*) FROM notifications n WHERE n.user_id = ? AND n.read = 0 AND ",
        visible!()
    ))
    .bind(user)
    .fetch_one(&mut *conn)
    .await
}

/// `?unread=&before=&limit=` of `GET /notifications`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `true`: unread ones only.
    #[serde(default)]
    unread: Option<bool>,
    /// Notifications older than this id (the next page).
    #[param(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    #[serde(default)]
    before: Option<String>,
    /// Page size: default 50, at most 100 (larger is clamped).
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "integer::option")]
    limit: Option<i64>,
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    DateTime<Utc>,
    bool,
);

#[utoipa::path(get, path = "/notifications", operation_id = "list_notifications", tag = "notifications", params(ListQuery),
    responses((status = 200, description = "The caller's notifications, newest first, and how many are unread", body = NotificationList), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<NotificationList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match q.limit {
        None => 50,
        Some(l) if l < 1 => return Err(ApiError::bad_request("limit must be at least 1")),
        Some(l) => l.min(100),
    };
    if q.before
        .as_deref()
        .is_some_and(|b| !telepath_shared::protocol::is_canonical_id(b))
    {
        return Err(ApiError::bad_request("before: a notification id"));
    }
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT n.id, n.kind, n.room_id, n.message_id, n.from_id, n.from_name, n.text, n.ts, n.read
         FROM notifications n
         WHERE n.user_id = ? AND n.id < ? AND (? = 0 OR n.read = 0) AND ",
        visible!(),
        " ORDER BY n.id DESC LIMIT ?"
    ))
    .bind(&claims.sub)
    .bind(q.before.as_deref().unwrap_or("g"))
    .bind(q.unread.unwrap_or(false))
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let has_more = rows.len() as i64 > limit;
    let notifications = rows
        .into_iter()
        .take(limit as usize)
        .map(notification_of)
        .collect();
    let unread = unread_of(&mut conn, &claims.sub).await.map_err(db_err)?;
    Ok(Json(NotificationList {
        notifications,
        unread,
        has_more,
    }))
}

#[utoipa::path(post, path = "/notifications/read", tag = "notifications", request_body = MarkRead,
    responses((status = 200, description = "Marked read (ids that are not the caller's are ignored); every connection of the caller gets `notifications_read`", body = NotificationsRead), (status = 400, description = "Invalid input: more than 500 ids, or an id that is not a lowercase UUID", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn mark_read(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    JsonBody(req): JsonBody<MarkRead>,
) -> Result<Json<NotificationsRead>, ApiError> {
    req.check().map_err(ApiError::from)?;
    let mut tx = state.db().begin_write().await?;
    if !req.ids.is_empty() {
        let ids = &req.ids;
        sqlx::query(
            "UPDATE notifications SET read = 1
             WHERE user_id = ? AND read = 0 AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(&claims.sub)
        .bind(serde_json::to_string(ids).expect("strings serialise"))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    if let Some(up_to) = &req.up_to {
        sqlx::query("UPDATE notifications SET read = 1 WHERE user_id = ? AND read = 0 AND id <= ?")
            .bind(&claims.sub)
            .bind(up_to)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    let unread = unread_of(&mut tx, &claims.sub).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let read = NotificationsRead {
        ids: (!req.ids.is_empty()).then_some(req.ids),
        up_to: req.up_to,
        unread,
    };
    state.unread().touch([&claims.sub]);
    let frame = ServerFrame::NotificationsRead(read.clone()).to_json();
    state
        .outboxes()
        .rooms
        .push([Outgoing::new(user_channel(&claims.sub), Bytes::from(frame))]);
    Ok(Json(read))
}

#[utoipa::path(post, path = "/internal/notifications/unread", tag = "internal", request_body = UnreadRequest,
    responses((status = 200, description = "One unread count per user id asked about, in order (what `welcome` carries)", body = UnreadCounts), (status = 400, description = "Invalid input: more than 1000 user ids, or one that is not a lowercase UUID", body = ErrorEnvelope), (status = 401, description = "Missing internal token", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn unread_internal(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(req): JsonBody<UnreadRequest>,
) -> Result<Json<UnreadCounts>, ApiError> {
    req.check().map_err(ApiError::from)?;
    if req.user_ids.is_empty() {
        return Ok(Json(UnreadCounts::default()));
    }
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let rows: Vec<(String, i64)> = sqlx::query_as(concat!(
        "SELECT n.user_id, COUNT(*) FROM notifications n
         WHERE n.user_id IN (SELECT value FROM json_each(?)) AND n.read = 0 AND ",
        visible!(),
        " GROUP BY n.user_id"
    ))
    .bind(serde_json::to_string(&req.user_ids).expect("strings serialise"))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let counts: std::collections::HashMap<String, i64> = rows.into_iter().collect();
    Ok(Json(UnreadCounts {
        unread: req
            .user_ids
            .iter()
            .map(|u| counts.get(u).copied().unwrap_or(0))
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_names_after_an_at_sign() {
        assert_eq!(mentions("hi @bob and @ada_2."), ["bob", "ada_2"]);
        assert_eq!(mentions("@bob @bob"), ["bob"]);
        assert!(mentions("mail me at bob@example.com").is_empty());
        assert!(mentions("no at sign").is_empty());
        assert!(mentions("@ alone").is_empty());
        assert_eq!(mentions("(@x.y-z)"), ["x.y-z"]);
        let long = format!("@{}", "a".repeat(40));
        assert!(mentions(&long).is_empty());
    }

    #[test]
    fn excerpts_keep_two_hundred_characters() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(300);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
    }
}

/// Keeps each user's unread count in Redis (`notif:unread:{id}`, absent:
/// none), where a gateway reads it with the connection's admission, so a
/// `welcome` costs no request to the api. Users whose notifications
/// changed are queued; a task counts them in SQLite (one query per batch)
/// and writes the counts (one pipeline). Without Redis (the all-in-one)
/// nothing is kept: gateways there ask `POST /internal/notifications/unread`.
/// At start every user with unread notifications is written (Redis may
/// have been emptied meanwhile).
#[derive(Clone)]
pub(crate) struct UnreadSync {
    tx: Option<tokio::sync::mpsc::Sender<String>>,
}

/// Users whose counts wait to be written; past it a change is not written
/// (that user's count is stale until their next change).
const UNREAD_QUEUE: usize = 65_536;

impl UnreadSync {
    /// The task on `read` (SQLite) and `redis`; none without Redis.
    pub(crate) fn spawn(read: sqlx::SqlitePool, redis: Option<deadpool_redis::Pool>) -> Self {
        let Some(redis) = redis else {
            return UnreadSync { tx: None };
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(UNREAD_QUEUE);
        tokio::spawn(async move {
            let everyone: Result<Vec<String>, _> =
                sqlx::query_scalar("SELECT DISTINCT user_id FROM notifications WHERE read = 0")
                    .fetch_all(&read)
                    .await;
            if let Ok(users) = everyone {
                for chunk in users.chunks(1000) {
                    write_counts(&read, &redis, chunk).await;
                }
            }
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 1000).await > 0 {
                let mut users: Vec<String> = std::mem::take(&mut batch);
                users.sort();
                users.dedup();
                write_counts(&read, &redis, &users).await;
            }
        });
        UnreadSync { tx: Some(tx) }
    }

    /// `users`' counts changed (or may have).
    pub(crate) fn touch<'a>(&self, users: impl IntoIterator<Item = &'a String>) {
        if let Some(tx) = &self.tx {
            for u in users {
                if tx.try_send(u.clone()).is_err() {
                    tracing::warn!(
                        "unread-count queue full; a count stays stale until the next change"
                    );
                    return;
                }
            }
        }
    }
}

/// Counts `users`' unread notifications and writes them to Redis.
async fn write_counts(read: &sqlx::SqlitePool, redis: &deadpool_redis::Pool, users: &[String]) {
    let counted = async {
        let rows: Vec<(String, i64)> = sqlx::query_as(concat!(
            "SELECT n.user_id, COUNT(*) FROM notifications n
             WHERE n.user_id IN (SELECT value FROM json_each(?)) AND n.read = 0 AND ",
            visible!(),
            " GROUP BY n.user_id"
        ))
        .bind(serde_json::to_string(users).expect("strings serialise"))
        .fetch_all(read)
        .await?;
        Ok::<_, sqlx::Error>(
            rows.into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
    };
    let counts = match counted.await {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "counting unread notifications failed"),
    };
    let mut pipe = deadpool_redis::redis::pipe();
    for user in users {
        let key = telepath_shared::bus::admit::unread_key(user);
        match counts.get(user) {
            Some(n) => pipe.cmd("SET").arg(key).arg(*n).ignore(),
            None => pipe.cmd("DEL").arg(key).ignore(),
        };
    }
    let written = async {
        let mut c = redis.get().await.map_err(|e| e.to_string())?;
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "writing unread counts to Redis failed");
    }
}

//! Announcements: an admin's message to everyone (`POST /announcements`),
//! stored, published to every connection at once (`announcement` on the
//! broadcast channel), and sent again after `welcome` on each connect to
//! users who have not dismissed it, until it expires. `broadcast` stays the
//! fire-and-forget form.
//!
//! The active announcements are few and read on every connect, so the api
//! keeps them in memory ([`Active`]), filled from SQLite at start and on
//! each create; a user's dismissals are read only while any is active.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use telepath_shared::bus::Outgoing;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    Announcement, AnnouncementDismissed, AnnouncementLevel, AnnouncementList, BROADCAST_CHANNEL,
    CreateAnnouncement, ErrorEnvelope, ServerFrame, UserRef, is_canonical_id, user_channel,
};

use crate::ApiState;
use crate::auth::{AdminUser, AuthUser};
use crate::store::{self, db_err, now};

/// Most active announcements kept and sent on connect (the newest).
const MAX_ACTIVE: i64 = 20;

/// The announcements that have not expired, newest first.
#[derive(Clone, Default)]
pub(crate) struct Active {
    list: Arc<RwLock<Vec<Announcement>>>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

impl Active {
    /// Reads the active ones from the database.
    pub(crate) async fn load(conn: &mut SqliteConnection) -> Result<Active, sqlx::Error> {
        let active = Active::default();
        active.reload(conn).await?;
        Ok(active)
    }

    async fn reload(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT a.id, a.title, a.body, a.level, a.created_by, u.username, a.created_at, a.expires_at
             FROM announcements a LEFT JOIN users u ON u.id = a.created_by
             WHERE a.expires_at IS NULL OR a.expires_at > ?
             ORDER BY a.id DESC LIMIT ?",
        )
        .bind(now())
        .bind(MAX_ACTIVE)
        .fetch_all(&mut *conn)
        .await?;
        let list = rows
            .into_iter()
            .map(
                |(id, title, body, level, by, by_name, created_at, expires_at)| Announcement {
                    id,
                    title,
                    body,
                    level: AnnouncementLevel::parse(&level).unwrap_or(AnnouncementLevel::Info),
                    created_by: UserRef {
                        id: by,
                        name: by_name.unwrap_or_default(),
                    },
                    created_at,
                    expires_at,
                    dismissed: None,
                },
            )
            .collect();
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = list;
        Ok(())
    }

    /// Those not expired at `at`.
    fn current(&self, at: DateTime<Utc>) -> Vec<Announcement> {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|a| a.expires_at.is_none_or(|e| e > at))
            .cloned()
            .collect()
    }
}

/// The ids of `ids` that `user` dismissed.
async fn dismissed_of(
    conn: &mut SqliteConnection,
    user: &str,
    ids: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT announcement_id FROM announcement_dismissals
         WHERE user_id = ? AND announcement_id IN (SELECT value FROM json_each(?))",
    )
    .bind(user)
    .bind(serde_json::to_string(ids).expect("strings serialise"))
    .fetch_all(&mut *conn)
    .await
}

/// The active announcements `user` has not dismissed (a connect's).
pub(crate) async fn pending(state: &ApiState, user: &str) -> Result<Vec<Announcement>, ApiError> {
    let current = state.announcements().current(now());
    // Most of the time none is active: a connect reads nothing.
    if current.is_empty() {
        return Ok(current);
    }
    let ids: Vec<&str> = current.iter().map(|a| a.id.as_str()).collect();
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let dismissed = dismissed_of(&mut conn, user, &ids).await.map_err(db_err)?;
    Ok(current
        .into_iter()
        .filter(|a| !dismissed.contains(&a.id))
        .collect())
}

#[utoipa::path(post, path = "/announcements", operation_id = "create_announcement", tag = "announcements", request_body = CreateAnnouncement,
    responses((status = 201, description = "Stored, and sent to everyone connected as an `announcement` event (and after `welcome` to those who connect later, until it expires or they dismiss it)", body = Announcement), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Admins only", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    AdminUser(claims): AdminUser,
    JsonBody(req): JsonBody<CreateAnnouncement>,
) -> Result<(StatusCode, Json<Announcement>), ApiError> {
    let created_at = now();
    req.check().map_err(ApiError::from)?;
    let announcement = Announcement {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        title: req.title,
        body: req.body,
        level: req.level,
        created_by: claims.user_ref(),
        created_at,
        expires_at: req.expires_at,
        dismissed: None,
    };
    let mut tx = state.db().begin_write().await?;
    store::ensure_user(&mut tx, &claims.user_ref(), claims.role).await?;
    sqlx::query(
        "INSERT INTO announcements (id, title, body, level, created_by, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&announcement.id)
    .bind(&announcement.title)
    .bind(&announcement.body)
    .bind(announcement.level.as_str())
    .bind(&claims.sub)
    .bind(announcement.created_at)
    .bind(announcement.expires_at)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    // Before the commit's end no connect reads it; after it, every one does.
    state
        .announcements()
        .reload(&mut tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    // One already expired is kept on record but shown to nobody.
    if announcement.expires_at.is_none_or(|e| e > created_at) {
        // Every connect reads the api until it finds nothing again.
        state.marks().bump().await;
        let frame = ServerFrame::Announcement(announcement.clone()).to_json();
        state.outboxes().rooms.push([Outgoing::new(
            BROADCAST_CHANNEL.to_owned(),
            Bytes::from(frame),
        )]);
    }
    Ok((StatusCode::CREATED, Json(announcement)))
}

#[utoipa::path(get, path = "/announcements", operation_id = "list_announcements", tag = "announcements",
    responses((status = 200, description = "The active announcements, newest first, each with whether the caller dismissed it", body = AnnouncementList), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<AnnouncementList>, ApiError> {
    let current = state.announcements().current(now());
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let ids: Vec<&str> = current.iter().map(|a| a.id.as_str()).collect();
    let dismissed = if ids.is_empty() {
        Vec::new()
    } else {
        dismissed_of(&mut conn, &claims.sub, &ids)
            .await
            .map_err(db_err)?
    };
    let announcements = current
        .into_iter()
        .map(|a| Announcement {
            dismissed: Some(dismissed.contains(&a.id)),
            ..a
        })
        .collect();
    Ok(Json(AnnouncementList { announcements }))
}

#[utoipa::path(post, path = "/announcements/{id}/dismiss", tag = "announcements",
    params(("id" = String, Path, description = "Announcement id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 204, description = "Dismissed (again: no change); the caller's connections get `announcement_dismissed` and later connects no longer receive it"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such announcement", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn dismiss(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !is_canonical_id(&id) {
        return Err(ApiError::bad_request("id: a lowercase UUID"));
    }
    let mut tx = state.db().begin_write().await?;
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM announcements WHERE id = ?")
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    if exists.is_none() {
        return Err(ApiError::not_found("no such announcement"));
    }
    sqlx::query(
        "INSERT INTO announcement_dismissals (announcement_id, user_id, dismissed_at)
         VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(&claims.sub)
    .bind(now())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let frame = ServerFrame::AnnouncementDismissed(AnnouncementDismissed { id }).to_json();
    state
        .outboxes()
        .rooms
        .push([Outgoing::new(user_channel(&claims.sub), Bytes::from(frame))]);
    Ok(StatusCode::NO_CONTENT)
}

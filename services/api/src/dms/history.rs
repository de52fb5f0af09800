//! A user's DM conversations over REST: one conversation paged
//! (`GET /dms?with=`), and the list of them (`GET /dms`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    DmConversation, DmConversations, DmPage, ErrorEnvelope, UserRef, is_canonical_id,
};

use super::{DM_COLUMNS, DmRow};
use crate::ApiState;
use crate::auth::AuthUser;
use crate::store::{db_err, json_array};

/// `GET /dms` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DmQuery {
    /// The other user (id or username): that conversation, paged. Without
    /// it, the list of conversations.
    #[param(min_length = 1, max_length = 64)]
    with: Option<String>,
    /// DMs older than this DM id (the newest `limit` of them).
    #[param(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    before: Option<String>,
    /// DMs newer than this DM id (the oldest `limit` of them).
    #[param(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    after: Option<String>,
    /// 1–500, default 50 (larger is clamped).
    #[param(minimum = 1)]
    #[serde(
        default,
        deserialize_with = "telepath_shared::protocol::integer::option"
    )]
    limit: Option<i64>,
}

/// Most conversations `GET /dms` lists.
const MAX_CONVERSATIONS: i64 = 200;

/// Either answer of `GET /dms`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum DmAnswer {
    Page(DmPage),
    Conversations(DmConversations),
}

#[utoipa::path(get, path = "/dms", operation_id = "list_conversations", tag = "dms", params(DmQuery),
    responses((status = 200, description = "With `with`: a page of the conversation with that user, in time order (`before`: the newest `limit` before that DM; `after`: the oldest `limit` after it; neither: the newest), each DM as it is now. Without: the caller's conversations, most recent first, with the last DM and the count of their DMs not acked yet", body = DmAnswer), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such user", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    query: Result<Query<DmQuery>, QueryRejection>,
) -> Result<Json<DmAnswer>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match q.limit {
        None => 50,
        Some(l) if l < 1 => return Err(ApiError::bad_request("limit must be at least 1")),
        Some(l) => l.min(500),
    };
    for id in [&q.before, &q.after].into_iter().flatten() {
        if !is_canonical_id(id) {
            return Err(ApiError::bad_request(
                "before and after are DM ids (lowercase UUIDs)",
            ));
        }
    }
    let me = claims.sub.as_str();
    match &q.with {
        Some(with) => {
            let other = user_id(&state, with).await?;
            Ok(Json(DmAnswer::Page(
                conversation(&state, me, &other, &q, limit).await?,
            )))
        }
        None => Ok(Json(DmAnswer::Conversations(
            conversations(&state, me).await?,
        ))),
    }
}

async fn user_id(state: &ApiState, with: &str) -> Result<String, ApiError> {
    if with.is_empty() || with.chars().count() > 64 {
        return Err(ApiError::bad_request("with: 1-64 characters"));
    }
    let found: Option<String> =
        sqlx::query_scalar("SELECT id FROM users WHERE id = ? OR username = ?")
            .bind(with)
            .bind(with)
            .fetch_optional(&state.db().read)
            .await
            .map_err(db_err)?;
    found.ok_or_else(|| ApiError::not_found("no such user"))
}

/// A page of the DMs between `me` and `other`, in time order (ids are
/// UUIDv7, so id order is time order).
async fn conversation(
    state: &ApiState,
    me: &str,
    other: &str,
    q: &DmQuery,
    limit: i64,
) -> Result<DmPage, ApiError> {
    let between = "((m.sender_id = ?1 AND m.recipient_id = ?2) OR (m.sender_id = ?2 AND m.recipient_id = ?1))";
    let (cond, order) = match (&q.before, &q.after) {
        (Some(_), Some(_)) => ("AND m.id < ?3 AND m.id > ?4", "ASC"),
        (Some(_), None) => ("AND m.id < ?3", "DESC"),
        (None, Some(_)) => ("AND m.id > ?4", "ASC"),
        (None, None) => ("", "DESC"),
    };
    let sql = sqlx::AssertSqlSafe(format!(
        "{DM_COLUMNS} WHERE {between} {cond} ORDER BY m.id {order} LIMIT CAST(?5 AS INTEGER)"
    ));
    let mut rows: Vec<DmRow> = sqlx::query_as(sql)
        .bind(me)
        .bind(other)
        .bind(&q.before)
        .bind(&q.after)
        .bind(limit + 1)
        .fetch_all(&state.db().read)
        .await
        .map_err(db_err)?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if order == "DESC" {
        rows.reverse();
    }
    Ok(DmPage {
        messages: rows.iter().map(DmRow::message).collect(),
        has_more,
    })
}

/// The caller's conversations, most recent first.
async fn conversations(state: &ApiState, me: &str) -> Result<DmConversations, ApiError> {
    let pool = &state.db().read;
    // Each other user and the newest DM id with them: the DMs received
    // (messages_by_recipient) and sent (messages_dm_by_sender).
    let latest: Vec<(String, String)> = sqlx::query_as(
        "SELECT other, MAX(id) AS last_id FROM (
            SELECT sender_id AS other, id FROM messages WHERE recipient_id = ?1
            UNION ALL
            SELECT recipient_id AS other, id FROM messages WHERE sender_id = ?1 AND recipient_id IS NOT NULL
         ) GROUP BY other ORDER BY last_id DESC LIMIT CAST(?2 AS INTEGER)",
    )
    .bind(me)
    .bind(MAX_CONVERSATIONS)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    if latest.is_empty() {
        return Ok(DmConversations {
            conversations: Vec::new(),
        });
    }
    let ids: Vec<&str> = latest.iter().map(|(_, id)| id.as_str()).collect();
    let sql = sqlx::AssertSqlSafe(format!(
        "{DM_COLUMNS} WHERE m.id IN (SELECT value FROM json_each(?))"
    ));
    let rows: Vec<DmRow> = sqlx::query_as(sql)
        .bind(json_array(&ids))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let by_id: HashMap<String, DmRow> = rows.into_iter().map(|r| (r.id.clone(), r)).collect();
    let unread: Vec<(String, i64)> = sqlx::query_as(
        "SELECT m.sender_id, COUNT(*) FROM dm_queue q JOIN messages m ON m.id = q.message_id
         WHERE q.recipient_id = ? GROUP BY m.sender_id",
    )
    .bind(me)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let unread: HashMap<String, i64> = unread.into_iter().collect();
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, username FROM users WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_array(
        &latest.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(),
    ))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let names: HashMap<String, String> = names.into_iter().collect();
    let conversations = latest
        .into_iter()
        .filter_map(|(other, last)| {
            let last = by_id.get(&last)?.message();
            Some(DmConversation {
                unread: unread.get(&other).copied().unwrap_or(0),
                user: UserRef {
                    name: names.get(&other).cloned().unwrap_or_default(),
                    id: other,
                },
                last,
            })
        })
        .collect();
    Ok(DmConversations { conversations })
}

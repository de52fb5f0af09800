//! Token revocation: `POST /admin/users/{id}/revoke` makes every token of
//! a user issued before now invalid, everywhere.
//!
//! The instant is the user's `tokens_valid_after` (the users table); the
//! api keeps every such instant in memory ([`RevocationList`], loaded at
//! start) and refuses covered tokens on every REST route (401). Gateways
//! learn of a revocation on the bus ([`NODES_CHANNEL`]): they refuse the
//! user's older tokens at the handshake (401) and close the user's live
//! connections with `bye` `token_revoked` and 4001. A gateway that starts,
//! or that lost the bus and might have missed a message, reads the whole
//! list again (`GET /internal/revocations`). A role change (dev login with
//! another role) revokes the same way, so a demoted admin's tokens stop
//! working at once.

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ErrorEnvelope, NODES_CHANNEL, NodeControl, Revocation, Revocations, is_canonical_id,
};

use crate::ApiState;
use crate::auth::{AdminUser, Internal};
use crate::store::db_err;

/// `POST /admin/users/{id}/revoke` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Revoked {
    pub(crate) user_id: String,
    /// Tokens issued before this (seconds since the epoch) are refused.
    pub(crate) valid_after: i64,
}

#[utoipa::path(post, path = "/admin/users/{id}/revoke", tag = "admin",
    params(("id" = String, Path, description = "User id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "Every token of the user issued before `valid_after` is refused from now on, and their live connections close with 4001", body = Revoked),
        (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed", body = ErrorEnvelope), (status = 404, description = "No such user", body = ErrorEnvelope),
        (status = 503, description = "A dependency is unavailable", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn revoke(
    State(state): State<ApiState>,
    AdminUser(_): AdminUser,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    if !is_canonical_id(&id) {
        return Err(ApiError::bad_request(
            "id must be a user id (lowercase UUID)",
        ));
    }
    let valid_after = revoke_user(&state, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(Revoked {
        user_id: id,
        valid_after,
    }))
}

/// Revokes `user_id`'s tokens issued before now: stored, known to this api
/// at once, and told to every gateway. `None` when there is no such user.
pub(crate) async fn revoke_user(state: &ApiState, user_id: &str) -> Result<Option<i64>, ApiError> {
    let now = chrono::Utc::now().timestamp();
    // Never earlier than a revocation already stored.
    let stored: Option<(i64,)> = sqlx::query_as(
        "UPDATE users SET tokens_valid_after = MAX(COALESCE(tokens_valid_after, 0), ?)
         WHERE id = ? RETURNING tokens_valid_after",
    )
    .bind(now)
    .bind(user_id)
    .fetch_optional(&state.db().write)
    .await
    .map_err(db_err)?;
    let Some((valid_after,)) = stored else {
        return Ok(None);
    };
    state.revocations().record(user_id, valid_after);
    let control = NodeControl::Revoke {
        user_id: user_id.to_owned(),
        valid_after,
    };
    let payload = Bytes::from(serde_json::to_string(&control).expect("serialises"));
    state
        .bus()
        .publish(NODES_CHANNEL, payload)
        .await
        .map_err(|e| {
            // Stored and refused by this api already; gateways that missed
            // it read the list again when their bus comes back.
            tracing::warn!(error = %e, "revocation publish failed");
            ApiError::unavailable("the bus is unavailable: the revocation is stored, live connections may stay open until the gateways resync")
        })?;
    tracing::info!(user_id, valid_after, "tokens revoked");
    Ok(Some(valid_after))
}

/// Every stored revocation (for the api's own list at start).
pub(crate) async fn load(db: &sqlx::SqlitePool) -> Result<Vec<Revocation>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, tokens_valid_after FROM users WHERE tokens_valid_after IS NOT NULL",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, valid_after)| Revocation {
            user_id,
            valid_after,
        })
        .collect())
}

#[utoipa::path(get, path = "/internal/revocations", tag = "internal",
    responses((status = 200, description = "Every user whose older tokens are revoked", body = Revocations),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    _: Internal,
) -> Result<Json<Revocations>, ApiError> {
    let revocations = load(&state.db().read).await.map_err(db_err)?;
    Ok(Json(Revocations { revocations }))
}

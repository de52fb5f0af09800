//! Dev login: `POST /auth/login` creates the user if new and returns a token.
//! Only mounted behaviour when `TELEPATH_DEV_LOGIN=1`; otherwise 404. It
//! grants the admin role only to the users `TELEPATH_DEV_ADMINS` names (403).

use axum::Json;
use axum::extract::State;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::ErrorEnvelope;
use telepath_shared::protocol::{
    LoginRequest, LoginResponse, Role, UserInfo, is_valid_username, user_id_for,
};

use crate::ApiState;
use crate::limits::ClientIp;
use crate::store::{db_err, now};

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "A token for the (possibly new) user", body = LoginResponse), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope), (status = 403, description = "Admin asked for a user TELEPATH_DEV_ADMINS does not name", body = ErrorEnvelope), (status = 404, description = "Dev login is off", body = ErrorEnvelope), (status = 429, description = "Too many logins from this address (TELEPATH_IP_LOGIN_RATE_PER_S); see Retry-After", body = ErrorEnvelope)))]
pub(crate) async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    if !state.config().dev_login {
        return Err(ApiError::not_found("dev login is off"));
    }
    state.limits().login(ip).await?;
    if !is_valid_username(&req.username) {
        return Err(ApiError::bad_request(
            "username: 1-32 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    let role = req.role.unwrap_or(Role::User);
    if role == Role::Admin && !state.config().may_be_dev_admin(&req.username) {
        return Err(ApiError::forbidden(
            "dev login makes admins only of the users TELEPATH_DEV_ADMINS names",
        ));
    }
    let role_name = if role == Role::Admin { "admin" } else { "user" };
    let fresh_id = user_id_for(&req.username);
    // A role change revokes the user's older tokens (a demoted admin's
    // tokens stop working), after the new role is stored.
    let before: Option<(String,)> = sqlx::query_as("SELECT role FROM users WHERE username = ?")
        .bind(&req.username)
        .fetch_optional(&state.db().read)
        .await
        .map_err(db_err)?;
    // One statement: create the user or update its role, and read its id.
    let (id,): (String,) = sqlx::query_as(
        "INSERT INTO users (id, username, role, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (username) DO UPDATE SET role = excluded.role
         RETURNING id",
    )
    .bind(&fresh_id)
    .bind(&req.username)
    .bind(role_name)
    .bind(now())
    .fetch_one(&state.db().write)
    .await
    .map_err(db_err)?;
    if before.is_some_and(|(was,)| was != role_name) {
        crate::revoke::revoke_user(&state, &id).await?;
    }
    let user = UserInfo {
        id,
        name: req.username,
        role,
    };
    let token = state.keys().mint(&user, state.config().token_ttl_secs);
    Ok(Json(LoginResponse { token, user }))
}

//! Request authentication for the api: user tokens on public routes, the
//! internal token on `/internal/` routes.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use telepath_shared::auth::{Claims, bearer};
use telepath_shared::http::{ApiError, check_internal};

use crate::ApiState;

/// The verified claims of the caller (`Authorization: Bearer <jwt>`).
pub(crate) struct AuthUser(pub(crate) Claims);

impl FromRequestParts<ApiState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = bearer(header).ok_or_else(ApiError::unauthorized)?;
        let claims = state
            .keys()
            .verify(token)
            .await
            .map_err(|e| ApiError::unauthorized_because(&e))?;
        if state.revocations().is_revoked(&claims) {
            return Err(ApiError::unauthorized());
        }
        Ok(AuthUser(claims))
    }
}

/// Proof that the caller is another Telepath service.
pub(crate) struct Internal;

impl FromRequestParts<ApiState> for Internal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        check_internal(&parts.headers, state.internal_token())?;
        Ok(Internal)
    }
}

/// The verified claims of an admin caller: 401 without a valid token, 403 for non-admins.
pub(crate) struct AdminUser(pub(crate) Claims);

impl FromRequestParts<ApiState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(claims) = AuthUser::from_request_parts(parts, state).await?;
        if !claims.is_admin() {
            return Err(ApiError::forbidden("admins only"));
        }
        Ok(AdminUser(claims))
    }
}

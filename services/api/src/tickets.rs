//! Connect tickets: tokens out of URLs. A browser cannot set headers on a
//! WebSocket, so it would put its token in `/connect?token=`, where proxies
//! and consoles may print it. Instead it trades the token for a ticket
//! (`POST /auth/ticket`, the token in the `Authorization` header): a
//! single-use secret valid [`TTL`], then connects with `?ticket=`. The
//! gateway redeems it (`POST /internal/tickets/redeem`) for the token and
//! checks that as if it had been sent, so an expired or revoked token gets
//! nothing more from a ticket.
//!
//! With Redis the tickets live there (`ticket:{sha256}`, expiring, taken
//! with GETDEL), so a ticket issued by one api replica is redeemed through
//! any; without Redis (the all-in-one) in this process's memory, at most
//! [`MAX_LOCAL`] at once. Only the ticket's hash is stored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use telepath_shared::auth::bearer;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{ConnectTicket, ErrorEnvelope, RedeemTicket, RedeemedTicket};

use crate::auth::{AuthUser, Internal};
use crate::{ApiState, secret};

/// How long a ticket may wait for its connect.
pub(crate) const TTL: Duration = Duration::from_secs(30);
/// Tickets waiting at once in a process without Redis.
const MAX_LOCAL: usize = 100_000;

/// Where tickets wait for their connect.
pub(crate) struct Tickets {
    redis: Option<deadpool_redis::Pool>,
    /// Hash -> (token, issued at), without Redis.
    local: Mutex<HashMap<String, (String, Instant)>>,
}

fn redis_key(hash: &str) -> String {
    format!("ticket:{hash}")
}

impl Tickets {
    pub(crate) fn new(redis: Option<deadpool_redis::Pool>) -> Self {
        Tickets {
            redis,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// A new ticket for `token`.
    async fn issue(&self, token: &str) -> Result<String, ApiError> {
        let ticket = secret::new_token();
        let hash = secret::hash(&ticket);
        if let Some(pool) = &self.redis {
            let mut conn = pool
                .get()
                .await
                .map_err(|_| ApiError::unavailable("tickets are unavailable; retry"))?;
            deadpool_redis::redis::cmd("SET")
                .arg(redis_key(&hash))
                .arg(token)
                .arg("PX")
                .arg(u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|_| ApiError::unavailable("tickets are unavailable; retry"))?;
            return Ok(ticket);
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.len() >= MAX_LOCAL {
            local.retain(|_, (_, at)| at.elapsed() < TTL);
            if local.len() >= MAX_LOCAL {
                return Err(ApiError::unavailable("too many tickets waiting; retry"));
            }
        }
        local.insert(hash, (token.to_owned(), Instant::now()));
        Ok(ticket)
    }

    /// The token `ticket` was issued for, once: `None` when it is unknown,
    /// used or expired (or Redis cannot say).
    async fn redeem(&self, ticket: &str) -> Option<String> {
        if !secret::has_shape(ticket) {
            return None;
        }
        let hash = secret::hash(ticket);
        if let Some(pool) = &self.redis {
            let mut conn = pool.get().await.ok()?;
            return deadpool_redis::redis::cmd("GETDEL")
                .arg(redis_key(&hash))
                .query_async::<Option<String>>(&mut conn)
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "redeeming a ticket failed"))
                .ok()
                .flatten();
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        local
            .remove(&hash)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(token, _)| token)
    }
}

#[utoipa::path(post, path = "/auth/ticket", tag = "auth",
    responses((status = 200, description = "A single-use ticket for `GET /connect?ticket=`, valid 30 s: the token stays out of the URL", body = ConnectTicket), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 503, description = "Tickets cannot be stored now (Redis unreachable); retry", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn issue(
    State(state): State<ApiState>,
    AuthUser(_): AuthUser,
    headers: HeaderMap,
) -> Result<Json<ConnectTicket>, ApiError> {
    // AuthUser has checked this header's token.
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(ApiError::unauthorized)?;
    let ticket = state.tickets().issue(token).await?;
    Ok(Json(ConnectTicket {
        ticket,
        expires_in: TTL.as_secs(),
    }))
}

#[utoipa::path(post, path = "/internal/tickets/redeem", tag = "internal", request_body = RedeemTicket,
    responses((status = 200, description = "The token the ticket was issued for; the ticket is used up", body = RedeemedTicket), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad internal token", body = ErrorEnvelope), (status = 404, description = "No such ticket: unknown, used or expired", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn redeem(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(req): JsonBody<RedeemTicket>,
) -> Result<Json<RedeemedTicket>, ApiError> {
    let token = state
        .tickets()
        .redeem(&req.ticket)
        .await
        .ok_or_else(|| ApiError::not_found("no such ticket"))?;
    Ok(Json(RedeemedTicket { token }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ticket_in_memory_is_redeemed_once_and_not_after_its_ttl() {
        let tickets = Tickets::new(None);
        let t = tickets.issue("the.token").await.unwrap();
        assert!(secret::has_shape(&t));
        assert_eq!(tickets.redeem(&t).await.as_deref(), Some("the.token"));
        assert_eq!(tickets.redeem(&t).await, None, "single use");

        let late = tickets.issue("other.token").await.unwrap();
        for (_, at) in tickets.local.lock().unwrap().values_mut() {
            *at -= TTL;
        }
        assert_eq!(tickets.redeem(&late).await, None, "expired");
        assert!(tickets.local.lock().unwrap().is_empty(), "nothing is kept");
        assert_eq!(tickets.redeem("x").await, None);
    }
}

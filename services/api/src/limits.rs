//! The api's per-address rate limits: `POST /auth/login`
//! (`TELEPATH_IP_LOGIN_RATE_PER_S`) and `POST /rooms`
//! (`TELEPATH_IP_ROOM_RATE_PER_S`), each a bucket per client address shared
//! by every api node through Redis (in the process without Redis). Over the
//! limit: 429 `rate_limited` with `Retry-After`. The client address is the
//! TCP peer, or the `X-Forwarded-For` client when the peer is a trusted
//! proxy (`TELEPATH_TRUSTED_PROXIES`).
//!
//! The REST send also draws on its user's budget
//! (`TELEPATH_USER_RATE_PER_S`): the bucket the gateways lease their sends
//! from (`rate:user:{id}` in Redis), so one budget covers a user's
//! connections and their REST calls.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use telepath_shared::http::ApiError;
use telepath_shared::rate::{Limiter, Rate};

use crate::ApiState;
use crate::config::ApiConfig;

/// The api's limiters.
pub(crate) struct Limits {
    login: Limiter,
    rooms: Limiter,
    /// Per user: the gateways' bucket.
    user: Limiter,
}

impl Limits {
    /// From the settings; shared through Redis when `redis` is given.
    pub(crate) fn new(
        config: &ApiConfig,
        user_rate_per_s: u32,
        redis: Option<deadpool_redis::Pool>,
    ) -> Self {
        Limits {
            login: Limiter::new(
                "ip_login",
                Rate::with_double_burst(config.ip_login_rate_per_s),
                redis.clone(),
            ),
            rooms: Limiter::new(
                "ip_rooms",
                Rate::with_double_burst(config.ip_room_rate_per_s),
                redis.clone(),
            ),
            user: Limiter::new("user", Rate::with_double_burst(user_rate_per_s), redis),
        }
    }

    /// One login from `ip`, or 429.
    pub(crate) async fn login(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(&self.login, &ip.to_string()).await
    }

    /// One room created from `ip`, or 429.
    pub(crate) async fn room(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(&self.rooms, &ip.to_string()).await
    }

    /// One send of `user_id`'s budget, or 429.
    pub(crate) async fn user(&self, user_id: &str) -> Result<(), ApiError> {
        check(&self.user, user_id).await
    }
}

async fn check(limiter: &Limiter, key: &str) -> Result<(), ApiError> {
    limiter
        .check(key)
        .await
        .map_err(|take| ApiError::rate_limited(take.retry_after_secs()))
}

/// The client's address: the TCP peer, or whom a trusted proxy forwarded
/// for. A request served without its peer (in-process calls) is from
/// 0.0.0.0.
pub(crate) struct ClientIp(pub IpAddr);

impl FromRequestParts<ApiState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let trusted = &state.common().trusted_proxies;
        Ok(ClientIp(trusted.client_ip(peer, &parts.headers)))
    }
}

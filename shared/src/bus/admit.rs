//! Admission under the per-user connection cap, run in Redis on presence's
//! keys (`admit.lua`): gateways of a split deployment call it directly (one
//! round trip per batch of connects), and presence's Redis store answers
//! `POST /internal/presence/admit` with it, so there is one definition of
//! the count.

use super::BusError;
use super::script::Script;
use crate::protocol::AdmitConn;

/// The pool the count runs on.
pub use deadpool_redis::Pool as RedisPool;

static SCRIPT: Script = Script::new(include_str!("admit.lua"));

/// How long presence counts a connection alive after its last heartbeat:
/// one and a half heartbeat intervals (an admission not registered within
/// it stops counting too).
pub fn presence_expiry_ms(heartbeat_ms: u64) -> i64 {
    i64::try_from(heartbeat_ms.saturating_mul(3) / 2).unwrap_or(i64::MAX)
}

/// The Redis key where the api keeps `user_id`'s unread notifications
/// (absent: none), for the `welcome`.
pub fn unread_key(user_id: &str) -> String {
    format!("notif:unread:{user_id}")
}

/// Admits each of `conns` in order while its user has fewer than `max`
/// connections (registered, plus admitted within `expiry_ms` of `now_ms`
/// and not registered yet); one answer each: whether it was admitted, and
/// its user's unread notifications ([`unread_key`]).
pub async fn admit(
    pool: &deadpool_redis::Pool,
    conns: &[AdmitConn],
    max: u32,
    now_ms: i64,
    expiry_ms: i64,
) -> Result<Vec<(bool, i64)>, BusError> {
    let answers: Vec<i64> = SCRIPT
        .run(pool, |command| {
            command
                .arg(now_ms)
                .arg(expiry_ms)
                .arg(expiry_ms.saturating_mul(2))
                .arg(max);
            for conn in conns {
                command.arg(&conn.conn_id).arg(&conn.user_id);
            }
        })
        .await?;
    Ok(answers
        .chunks_exact(2)
        .map(|pair| (pair[0] == 1, pair[1]))
        .collect())
}

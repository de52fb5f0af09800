//! Admission under the per-user connection cap, run in Redis on presence's
//! keys (`admit.lua`): gateways of a split deployment call it directly (one
//! round trip per batch of connects), and presence's Redis store answers
//! `POST /internal/presence/admit` with it, so there is one definition of
//! the count.

use std::sync::Mutex;

use deadpool_redis::redis::{Cmd, cmd};

use super::BusError;
use crate::protocol::AdmitConn;

/// The pool the count runs on.
pub use deadpool_redis::Pool as RedisPool;

const SCRIPT: &str = include_str!("admit.lua");

/// The script's SHA once Redis has loaded it (any Redis: a restarted one
/// answers NOSCRIPT and it is loaded again).
static SHA: Mutex<Option<String>> = Mutex::new(None);

/// How long presence counts a connection alive after its last heartbeat:
/// one and a half heartbeat intervals (an admission not registered within
/// it stops counting too).
pub fn presence_expiry_ms(heartbeat_ms: u64) -> i64 {
    i64::try_from(heartbeat_ms.saturating_mul(3) / 2).unwrap_or(i64::MAX)
}

/// Admits each of `conns` in order while its user has fewer than `max`
/// connections (registered, plus admitted within `expiry_ms` of `now_ms`
/// and not registered yet); one answer each.
pub async fn admit(
    pool: &deadpool_redis::Pool,
    conns: &[AdmitConn],
    max: u32,
    now_ms: i64,
    expiry_ms: i64,
) -> Result<Vec<bool>, BusError> {
    let mut c = pool.get().await?;
    let evalsha = |sha: &str| {
        let mut command: Cmd = cmd("EVALSHA");
        command
            .arg(sha)
            .arg(0)
            .arg(now_ms)
            .arg(expiry_ms)
            .arg(expiry_ms.saturating_mul(2))
            .arg(max);
        for conn in conns {
            command.arg(&conn.conn_id).arg(&conn.user_id);
        }
        command
    };
    let cached = SHA.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(sha) = cached {
        match evalsha(&sha).query_async::<Vec<i64>>(&mut c).await {
            Ok(answers) => return Ok(answers.into_iter().map(|a| a == 1).collect()),
            Err(e) if e.code() == Some("NOSCRIPT") => {}
            Err(e) => return Err(e.into()),
        }
    }
    let sha: String = cmd("SCRIPT")
        .arg("LOAD")
        .arg(SCRIPT)
        .query_async(&mut c)
        .await?;
    *SHA.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha.clone());
    let answers: Vec<i64> = evalsha(&sha).query_async(&mut c).await?;
    Ok(answers.into_iter().map(|a| a == 1).collect())
}

//! Shared token buckets in Redis (`rate.lua`): the buckets behind the rate
//! limits every gateway and api node applies together (see
//! [`crate::rate`]). One round trip answers a batch of takes.

use super::BusError;
use super::script::Script;

static SCRIPT: Script = Script::new(include_str!("rate.lua"));

/// One take from a bucket: up to `n` tokens from the bucket `key`, whose
/// interval between tokens is `interval_ms` and tolerance (burst times
/// interval) `tolerance_ms`.
#[derive(Debug, Clone)]
pub struct TakeFrom {
    pub key: String,
    pub interval_ms: f64,
    pub tolerance_ms: f64,
    pub n: u32,
}

/// Runs `takes` at `now_ms` atomically; per take, the tokens granted and,
/// when none was, the ms until the bucket's next token.
pub async fn take(
    pool: &deadpool_redis::Pool,
    takes: &[TakeFrom],
    now_ms: i64,
) -> Result<Vec<(u32, u64)>, BusError> {
    let flat: Vec<i64> = SCRIPT
        .run(pool, |command| {
            command.arg(now_ms);
            for t in takes {
                command
                    .arg(&t.key)
                    .arg(t.interval_ms)
                    .arg(t.tolerance_ms)
                    .arg(t.n);
            }
        })
        .await?;
    Ok(flat
        .chunks_exact(2)
        .map(|pair| {
            (
                u32::try_from(pair[0]).unwrap_or(0),
                u64::try_from(pair[1]).unwrap_or(0),
            )
        })
        .collect())
}

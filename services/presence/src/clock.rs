//! Where presence reads the time: the wall clock in production, tokio's
//! (pausable) clock in unit tests, so heartbeat, grace and typing timing can
//! be tested with `#[tokio::test(start_paused = true)]` without waiting.
//!
//! Times are milliseconds since the Unix epoch, the unit every store uses.
//! Replicas compare each other's timestamps in Redis, so production must use
//! the wall clock, not a per-process monotonic one.

use chrono::Utc;
use tokio::time::Instant;

/// A source of "now", in ms since the epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// `Utc::now()`.
    System,
    /// The wall clock at `start`, advanced by tokio's clock since then (which
    /// a paused test runtime advances by itself).
    #[cfg_attr(not(test), allow(dead_code))]
    Tokio { epoch_ms: i64, start: Instant },
}

impl Clock {
    /// A clock that follows tokio's time from now on.
    #[cfg(test)]
    pub(crate) fn tokio() -> Self {
        Clock::Tokio {
            epoch_ms: Utc::now().timestamp_millis(),
            start: Instant::now(),
        }
    }

    /// Now, in ms since the epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        match self {
            Clock::System => Utc::now().timestamp_millis(),
            Clock::Tokio { epoch_ms, start } => {
                let elapsed = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
                epoch_ms.saturating_add(elapsed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let clock = Clock::tokio();
        let before = clock.now_ms();
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms() - before, 90_000);
    }
}

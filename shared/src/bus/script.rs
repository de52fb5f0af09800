//! A Lua script run with `EVALSHA`: loaded once, and loaded again when a
//! Redis answers `NOSCRIPT` (a restarted or another server).

use std::sync::Mutex;

use deadpool_redis::redis::{Cmd, FromRedisValue, cmd};

use super::BusError;

/// One script and its SHA once a Redis has loaded it.
pub struct Script {
    source: &'static str,
    sha: Mutex<Option<String>>,
}

impl Script {
    /// The script `source` (not loaded until first run).
    pub const fn new(source: &'static str) -> Self {
        Script {
            source,
            sha: Mutex::new(None),
        }
    }

    /// Runs the script with no keys and the arguments `args` adds.
    pub async fn run<T: FromRedisValue>(
        &self,
        pool: &deadpool_redis::Pool,
        args: impl Fn(&mut Cmd),
    ) -> Result<T, BusError> {
        let mut c = pool.get().await?;
        let evalsha = |sha: &str| {
            let mut command: Cmd = cmd("EVALSHA");
            command.arg(sha).arg(0);
            args(&mut command);
            command
        };
        let cached = self.sha.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(sha) = cached {
            match evalsha(&sha).query_async::<T>(&mut c).await {
                Ok(answer) => return Ok(answer),
                Err(e) if e.code() == Some("NOSCRIPT") => {}
                Err(e) => return Err(e.into()),
            }
        }
        let sha: String = cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .query_async(&mut c)
            .await?;
        *self.sha.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha.clone());
        Ok(evalsha(&sha).query_async(&mut c).await?)
    }
}

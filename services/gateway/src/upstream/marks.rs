//! The connect marks (`telepath_shared::bus::pending`): whether a
//! connecting user certainly has nothing in the api's offline read (queued
//! DMs, invitations, announcements), asked of Redis once the connection's
//! user channel is subscribed. Connects arriving together share one script
//! run. Without Redis, or when Redis does not answer, the answer is "ask
//! the api", as before the marks.

use std::time::Duration;

use telepath_shared::batch::Batcher;

/// Users asked about in one run at most.
const BATCH: usize = 1000;
/// Connects that may wait for an answer.
const QUEUE: usize = 16_384;
/// Runs in flight at once.
const IN_FLIGHT: usize = 4;
/// How long a connect waits for Redis before it asks the api.
const WAIT: Duration = Duration::from_millis(500);

/// Asks Redis for connect marks; cheap to clone.
#[derive(Clone)]
pub(crate) struct Marks {
    batcher: Option<Batcher<String, bool>>,
}

impl Marks {
    /// Starts the task asking `redis` (none: every connect reads the api).
    pub(crate) fn spawn(redis: Option<telepath_shared::bus::admit::RedisPool>) -> Self {
        let batcher = redis.map(|pool| {
            Batcher::spawn(QUEUE, BATCH, IN_FLIGHT, move |users: Vec<String>| {
                let pool = pool.clone();
                async move {
                    match tokio::time::timeout(
                        WAIT,
                        telepath_shared::bus::pending::check(&pool, &users),
                    )
                    .await
                    {
                        Ok(Ok(clean)) if clean.len() == users.len() => Some(clean),
                        _ => None,
                    }
                }
            })
        });
        Marks { batcher }
    }

    /// Whether `user_id`'s connect may skip the api's offline read: true
    /// only when Redis answered that the user's mark is current. Call once
    /// the connection receives its user channel.
    pub(crate) async fn clean(&self, user_id: &str) -> bool {
        let Some(answer) = self
            .batcher
            .as_ref()
            .and_then(|b| b.ask(user_id.to_owned()))
        else {
            return false;
        };
        matches!(tokio::time::timeout(WAIT, answer).await, Ok(Ok(true)))
    }
}

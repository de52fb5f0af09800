//! Connect marks: what lets a gateway skip the api on the common connect.
//!
//! A connect reads the user's offline state from the api (queued DMs and DM
//! changes, pending invitations, active announcements not dismissed), and
//! almost always finds nothing. The api keeps three kinds of Redis keys
//! (`pending.lua`) so that a gateway can tell, in one batched script run,
//! which connecting users certainly have nothing waiting:
//!
//! - `pending:ver:{user}`: [`touch`]ed (incremented) by the api after it
//!   commits anything a connect of that user must read, and before it
//!   publishes it;
//! - `pending:gen`: [`bump`]ed for everyone: an announcement, the api's
//!   start (it may have died between a commit and its touch), a touch that
//!   failed;
//! - `pending:clean:{user}`: `"{ver}:{gen}"`, [`mark_clean`]ed by the api
//!   after an offline read that found nothing, with the ver and gen it read
//!   ([`snapshot`]) *before* that read, and only if they are unchanged.
//!
//! A gateway asks [`check`] once the connection's user channel is
//! subscribed: a mark matching the current ver and gen means nothing was
//! committed for the user since a read that found nothing, except what is
//! committed and not yet touched, and whatever that is, it is published
//! after its touch, so after the subscription: the connection gets it live.
//! No mark (Redis restarted, expired, never read) or a stale one: the
//! gateway asks the api as before.
//!
//! The keys expire ([`CLEAN_TTL_MS`]); a ver key is made to outlive every
//! mark that names it.

use deadpool_redis::redis::cmd;

use super::BusError;
use super::script::Script;

static SCRIPT: Script = Script::new(include_str!("pending.lua"));

/// How long a clean mark lasts: a user who has not connected for a day
/// asks the api on their next connect.
pub const CLEAN_TTL_MS: i64 = 24 * 3600 * 1000;

fn ver_key(user_id: &str) -> String {
    format!("pending:ver:{user_id}")
}

const GEN_KEY: &str = "pending:gen";

/// The ver and gen read before an offline read, for [`mark_clean`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    ver: String,
    generation: String,
}

/// Whether each of `user_ids` has a clean mark matching the current ver
/// and gen (in order).
pub async fn check(
    pool: &deadpool_redis::Pool,
    user_ids: &[String],
) -> Result<Vec<bool>, BusError> {
    let answers: Vec<i64> = SCRIPT
        .run(pool, |command| {
            command.arg("check");
            for u in user_ids {
                command.arg(u);
            }
        })
        .await?;
    Ok(answers.into_iter().map(|a| a == 1).collect())
}

/// Something a connect of each of `user_ids` must read was committed:
/// their marks stop matching. Call after the commit, before publishing it.
pub async fn touch(pool: &deadpool_redis::Pool, user_ids: &[&str]) -> Result<(), BusError> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let mut c = pool.get().await?;
    let mut pipe = deadpool_redis::redis::pipe();
    for u in user_ids {
        let key = ver_key(u);
        pipe.cmd("INCR").arg(&key).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(CLEAN_TTL_MS * 2).ignore();
    }
    pipe.query_async::<()>(&mut c).await?;
    Ok(())
}

/// Every mark stops matching.
pub async fn bump(pool: &deadpool_redis::Pool) -> Result<(), BusError> {
    let mut c = pool.get().await?;
    cmd("INCR").arg(GEN_KEY).query_async::<i64>(&mut c).await?;
    Ok(())
}

/// The current ver and gen of `user_id`, read before an offline read.
pub async fn snapshot(pool: &deadpool_redis::Pool, user_id: &str) -> Result<Snapshot, BusError> {
    let mut c = pool.get().await?;
    let (ver, generation): (Option<String>, Option<String>) = cmd("MGET")
        .arg(ver_key(user_id))
        .arg(GEN_KEY)
        .query_async(&mut c)
        .await?;
    Ok(Snapshot {
        ver: ver.unwrap_or_else(|| "0".to_owned()),
        generation: generation.unwrap_or_else(|| "0".to_owned()),
    })
}

/// Marks `user_id` clean as of `snapshot`, if nothing was touched or
/// bumped since; whether it did.
pub async fn mark_clean(
    pool: &deadpool_redis::Pool,
    user_id: &str,
    snapshot: &Snapshot,
) -> Result<bool, BusError> {
    let set: i64 = SCRIPT
        .run(pool, |command| {
            command
                .arg("clean")
                .arg(user_id)
                .arg(&snapshot.ver)
                .arg(&snapshot.generation)
                .arg(CLEAN_TTL_MS);
        })
        .await?;
    Ok(set == 1)
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    fn users(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_mark_holds_until_its_user_is_touched_or_everyone_bumped() {
        let redis = RedisServer::start();
        let pool = crate::bus::redis::pool(&redis.url()).unwrap();
        // Never read: no mark.
        assert_eq!(
            check(&pool, &users(&["a", "b"])).await.unwrap(),
            [false, false]
        );
        for u in ["a", "b"] {
            let snap = snapshot(&pool, u).await.unwrap();
            assert!(mark_clean(&pool, u, &snap).await.unwrap());
        }
        assert_eq!(
            check(&pool, &users(&["a", "b"])).await.unwrap(),
            [true, true]
        );
        // A touch is one user's; a bump everyone's.
        touch(&pool, &["a"]).await.unwrap();
        assert_eq!(
            check(&pool, &users(&["a", "b"])).await.unwrap(),
            [false, true]
        );
        bump(&pool).await.unwrap();
        assert_eq!(check(&pool, &users(&["b"])).await.unwrap(), [false]);
        // Marked again after a read that starts after them.
        let snap = snapshot(&pool, "a").await.unwrap();
        assert!(mark_clean(&pool, "a", &snap).await.unwrap());
        assert_eq!(
            check(&pool, &users(&["a", "b"])).await.unwrap(),
            [true, false]
        );
    }

    #[tokio::test]
    async fn a_read_overtaken_by_a_touch_or_a_bump_marks_nothing() {
        let redis = RedisServer::start();
        let pool = crate::bus::redis::pool(&redis.url()).unwrap();
        // The read began, then something was committed and touched: the
        // read may have missed it, so no mark.
        let snap = snapshot(&pool, "a").await.unwrap();
        touch(&pool, &["a"]).await.unwrap();
        assert!(!mark_clean(&pool, "a", &snap).await.unwrap());
        assert_eq!(check(&pool, &users(&["a"])).await.unwrap(), [false]);
        let snap = snapshot(&pool, "a").await.unwrap();
        bump(&pool).await.unwrap();
        assert!(!mark_clean(&pool, "a", &snap).await.unwrap());
        assert_eq!(check(&pool, &users(&["a"])).await.unwrap(), [false]);
    }

    #[tokio::test]
    async fn a_ver_key_outlives_every_mark_that_names_it() {
        let redis = RedisServer::start();
        let pool = crate::bus::redis::pool(&redis.url()).unwrap();
        touch(&pool, &["a"]).await.unwrap();
        let snap = snapshot(&pool, "a").await.unwrap();
        assert!(mark_clean(&pool, "a", &snap).await.unwrap());
        let mut c = pool.get().await.unwrap();
        let ttl = |key: &'static str| cmd("PTTL").arg(key).to_owned();
        let mark: i64 = ttl("pending:clean:a").query_async(&mut c).await.unwrap();
        let ver: i64 = ttl("pending:ver:a").query_async(&mut c).await.unwrap();
        assert!(mark > 0 && mark <= CLEAN_TTL_MS, "{mark}");
        assert!(ver > mark, "ver {ver} ms, mark {mark} ms");
        // A Redis that lost everything: no mark matches.
        let _: () = cmd("FLUSHALL").query_async(&mut c).await.unwrap();
        assert_eq!(check(&pool, &users(&["a"])).await.unwrap(), [false]);
    }
}

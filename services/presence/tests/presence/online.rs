//! Connect, a second device and disconnect, seen through `GET /presence/online`,
//! with both stores.

use telepath_shared::protocol::Status;
use telepath_shared::testing::RedisServer;

use crate::helpers::{TestPresence, config, conn, spawn_presence, user};

async fn devices_are_counted_per_user(presence: &TestPresence) {
    let (ada, bob) = (user("ada"), user("bob"));
    let (phone, laptop) = (conn("ada-phone", &ada), conn("ada-laptop", &ada));
    presence.connect(&conn("bob-1", &bob)).await;
    presence.connect(&phone).await;
    assert_eq!(
        presence.online(&bob).await,
        [("ada".into(), 1), ("bob".into(), 1)]
    );
    presence.connect(&laptop).await;
    assert_eq!(presence.online(&bob).await[0], ("ada".into(), 2));
    presence.disconnect(&phone).await;
    assert_eq!(presence.online(&bob).await[0], ("ada".into(), 1));
    presence.disconnect(&laptop).await;
    assert_eq!(presence.online(&bob).await, [("bob".into(), 1)]);
}

#[tokio::test]
async fn a_users_devices_are_counted_until_they_disconnect_in_memory() {
    let presence = spawn_presence(config(15_000, None)).await;
    devices_are_counted_per_user(&presence).await;
}

#[tokio::test]
async fn a_users_devices_are_counted_until_they_disconnect_with_redis() {
    let redis = RedisServer::start();
    let presence = spawn_presence(config(15_000, Some(redis.url()))).await;
    devices_are_counted_per_user(&presence).await;
}

#[tokio::test]
async fn an_online_user_shows_id_status_and_last_seen() {
    let presence = spawn_presence(config(15_000, None)).await;
    let ada = user("ada");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    presence.connect(&conn("c1", &ada)).await;
    let users = presence.try_online(&ada).await.unwrap().users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, ada.id);
    assert_eq!(users[0].status, Status::Online);
    assert_eq!(users[0].text, None);
    assert!(users[0].last_seen >= before);
}

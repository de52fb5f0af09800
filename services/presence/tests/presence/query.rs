//! The api's internal queries: one user's connections and the live summary,
//! with both stores.

use serde_json::{Value, json};
use telepath_shared::testing::RedisServer;

use crate::helpers::{TestPresence, config, conn, conn_on, spawn_presence, user};

async fn a_users_connections_name_their_nodes(presence: &TestPresence) {
    let (ada, bob) = (user("ada"), user("bob"));
    let phone = conn_on("ada-1", &ada, "n1");
    let laptop = conn_on("ada-2", &ada, "n2");
    presence.connect(&laptop).await;
    presence.connect(&phone).await;
    presence.connect(&conn("bob-1", &bob)).await;
    assert_eq!(
        presence.connections_of(&ada.id).await,
        [phone.clone(), laptop.clone()]
    );
    presence.disconnect(&phone).await;
    assert_eq!(presence.connections_of(&ada.id).await, [laptop]);
    assert!(presence.connections_of(&user("eve").id).await.is_empty());
}

async fn the_summary_counts_users_connections_and_nodes(presence: &TestPresence) {
    let (ada, bob, cy) = (user("ada"), user("bob"), user("cy"));
    presence.connect(&conn_on("ada-1", &ada, "n1")).await;
    presence.connect(&conn_on("ada-2", &ada, "n2")).await;
    presence.connect(&conn_on("bob-1", &bob, "n1")).await;
    presence.connect(&conn_on("cy-1", &cy, "n2")).await;
    presence.disconnect(&conn_on("cy-1", &cy, "n2")).await;
    let summary = presence.summary().await;
    assert_eq!((summary.online_users, summary.connections), (2, 3));
    let by_node: Vec<_> = summary.by_node.into_iter().collect();
    assert_eq!(by_node, [("n1".into(), 2), ("n2".into(), 1)]);
    let users: Vec<_> = summary
        .users
        .iter()
        .map(|u| (u.id.as_str(), u.connections))
        .collect();
    assert_eq!(users, [(ada.id.as_str(), 2), (bob.id.as_str(), 1)]);
}

#[tokio::test]
async fn a_users_connections_are_listed_with_their_nodes_in_memory() {
    let presence = spawn_presence(config(15_000, None)).await;
    a_users_connections_name_their_nodes(&presence).await;
}

#[tokio::test]
async fn a_users_connections_are_listed_with_their_nodes_with_redis() {
    let redis = RedisServer::start();
    let presence = spawn_presence(config(15_000, Some(redis.url()))).await;
    a_users_connections_name_their_nodes(&presence).await;
}

#[tokio::test]
async fn the_summary_counts_connections_on_each_node_in_memory() {
    let presence = spawn_presence(config(15_000, None)).await;
    the_summary_counts_users_connections_and_nodes(&presence).await;
}

#[tokio::test]
async fn the_summary_counts_connections_on_each_node_with_redis() {
    let redis = RedisServer::start();
    let presence = spawn_presence(config(15_000, Some(redis.url()))).await;
    the_summary_counts_users_connections_and_nodes(&presence).await;
}

#[tokio::test]
async fn the_query_bodies_keep_the_field_names_the_api_reads() {
    let presence = spawn_presence(config(15_000, None)).await;
    let ada = user("ada");
    presence.connect(&conn_on("ada-1", &ada, "n7")).await;
    let path = format!("/internal/presence/users/{}/connections", ada.id);
    let connections: Value = presence.get_internal(&path).await.json().await.unwrap();
    assert_eq!(
        connections,
        json!({"connections": [
            {"conn_id": "ada-1", "user": {"id": ada.id, "name": "ada"}, "node": "n7"}
        ]})
    );
    let summary: Value = presence
        .get_internal("/internal/presence/summary")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["online_users"], 1);
    assert_eq!(summary["connections"], 1);
    assert_eq!(summary["by_node"], json!({"n7": 1}));
    assert_eq!(summary["users"][0]["id"], ada.id.as_str());
    assert_eq!(summary["users"][0]["connections"], 1);
}

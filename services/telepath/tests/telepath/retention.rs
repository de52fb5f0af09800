//! Retention on the split deployment: a room's messages past its
//! `retention` are deleted by the api's cleanup (simulated time: their rows
//! moved back), and a client resuming from below what was kept is told
//! `recovered:false` while seqs go on unbroken.

use std::time::Duration;

use reqwest::Client;
use serde_json::json;
use telepath_shared::testing::WsClient;

use crate::cluster::start_cluster_with;
use crate::helpers::{create_room, eventually, get_json, login};

#[tokio::test]
async fn a_resume_from_below_what_retention_kept_is_not_recovered() {
    let cluster = start_cluster_with(
        1,
        1,
        &[
            ("TELEPATH_HEARTBEAT_MS", "5000".into()),
            ("TELEPATH_RETENTION_EVERY_MS", "200".into()),
        ],
    )
    .await;
    let http = Client::new();
    let api = &cluster.api.url;
    let gw = &cluster.gateways[0].url;
    let ada = login(&http, api, "ada").await;
    let room = create_room(&http, api, &ada, "short memory").await;
    let resp = http
        .patch(format!("{api}/rooms/{room}"))
        .bearer_auth(&ada.token)
        .json(&json!({"retention": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut a = WsClient::connect(gw, &ada.token).await.unwrap();
    a.join(&room).await;
    for i in 0..10 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    // Two days pass for those ten (simulated: their rows are moved back).
    {
        use sqlx::ConnectOptions;
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(cluster.db_path())
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        sqlx::query("UPDATE messages SET created_at = ? WHERE room_id = ?")
            .bind(chrono::Utc::now() - chrono::Duration::days(2))
            .bind(&room)
            .execute(&mut db)
            .await
            .unwrap();
    }
    let url = format!("{api}/rooms/{room}/messages");
    eventually(Duration::from_secs(10), "the old history deleted", || {
        let (http, url, token) = (http.clone(), url.clone(), ada.token.clone());
        async move {
            let page = get_json(&http, &url, |r| r.bearer_auth(&token)).await;
            page["messages"] == json!([])
        }
    })
    .await;
    // Resuming from seq 3: seqs 4-10 are gone, so not recovered.
    let mut b = WsClient::connect(gw, &ada.token).await.unwrap();
    let joined = b
        .ok(json!({"type": "join", "room": room, "since": 3}))
        .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["seq"], 10);
    // From the last seq there is nothing to replay: recovered.
    let mut c = WsClient::connect(gw, &ada.token).await.unwrap();
    let joined = c
        .ok(json!({"type": "join", "room": room, "since": 10}))
        .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    // Seqs go on where they were.
    let sent = a
        .ok(json!({"type": "send", "room": room, "body": "new"}))
        .await;
    assert_eq!(sent["seq"], 11);
}

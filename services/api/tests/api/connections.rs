//! Connection logs reported by gateways.

use serde_json::json;

use crate::helpers::spawn_api;

/// event, conn_id, node_id, ip, user_agent, reason
type LogRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[tokio::test]
async fn connects_and_disconnects_become_log_rows_and_move_last_online() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let events = json!({"events": [
        {"event": "connect", "conn_id": "c1", "user": {"id": ada.id, "name": "ada"}, "node": "gw1",
         "ip": "127.0.0.9", "user_agent": "k6/1.1", "at": "2026-11-23T10:00:00Z"},
        {"event": "disconnect", "conn_id": "c1", "user": {"id": ada.id, "name": "ada"}, "node": "gw1",
         "ip": "127.0.0.9", "user_agent": "k6/1.1", "reason": "1000", "at": "2026-11-23T10:05:00Z"},
    ]});
    let url = format!("{}/internal/connections", api.internal);
    let resp = api
        .http
        .post(&url)
        .header("x-telepath-internal", &api.internal_token)
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let db = api.db().await;
    let rows: Vec<LogRow> = sqlx::query_as(
        "SELECT event, conn_id, node_id, ip, user_agent, reason FROM connection_logs ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        (
            "connect".into(),
            "c1".into(),
            "gw1".into(),
            Some("127.0.0.9".into()),
            Some("k6/1.1".into()),
            None
        )
    );
    assert_eq!(rows[1].5.as_deref(), Some("1000"));
    let (last,): (Option<String>,) = sqlx::query_as("SELECT last_online FROM users WHERE id = ?")
        .bind(&ada.id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(last.unwrap().starts_with("2026-11-23T10:05:00"));

    // Without the internal token: 401, and nothing is written.
    let resp = api.http.post(&url).json(&events).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let too_long = json!({"events": [{"event": "connect", "conn_id": "c2", "user": {"id": ada.id, "name": "ada"}, "node": "gw1",
        "user_agent": "x".repeat(300), "at": "2026-11-23T10:00:00Z"}]});
    let resp = api
        .http
        .post(&url)
        .header("x-telepath-internal", &api.internal_token)
        .json(&too_long)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM connection_logs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn presence_changes_on_the_bus_are_persisted_to_the_user() {
    use telepath_shared::bus::Bus;
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let (publisher, _rx) = api.broker().connect(4);
    let change = json!({"rooms": [], "event": {"user": {"id": ada.id, "name": "ada"}, "status": "meditating",
        "text": "om", "last_seen": "2026-11-23T11:00:00Z"}});
    let db = api.db().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        // The api subscribes in the background; publish until it has heard.
        publisher
            .publish("presence", change.to_string().into())
            .await
            .unwrap();
        let row: (String, Option<String>, Option<String>) =
            sqlx::query_as("SELECT status, status_text, last_online FROM users WHERE id = ?")
                .bind(&ada.id)
                .fetch_one(&db)
                .await
                .unwrap();
        if row.0 == "meditating" {
            assert_eq!(row.1.as_deref(), Some("om"));
            assert!(row.2.unwrap().starts_with("2026-11-23T11:00:00"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "presence never persisted: {row:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

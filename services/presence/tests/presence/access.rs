//! Who may call what, input bounds, and the operational endpoints.

use reqwest::StatusCode;
use serde_json::Value;
use telepath_shared::auth::{INTERNAL_HEADER, JwtKeys};
use telepath_shared::protocol::{HeartbeatReport, PresenceReport, Role, Status, UserInfo, UserRef};

use crate::helpers::{config, conn, connect_report, live, now_ms, room, spawn_presence, user};

#[tokio::test]
async fn internal_routes_refuse_a_missing_or_wrong_internal_token() {
    let presence = spawn_presence(config(15_000, None)).await;
    let c = conn("c1", &user("ada"));
    for path in ["reports", "heartbeat"] {
        let url = presence.url(&format!("/internal/presence/{path}"));
        let missing = presence.client.post(&url).json(&c).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED, "{path}");
        let wrong = presence
            .client
            .post(&url)
            .header(INTERNAL_HEADER, "not-the-token")
            .json(&c)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test]
async fn the_internal_queries_refuse_a_missing_or_wrong_internal_token() {
    let presence = spawn_presence(config(15_000, None)).await;
    let ada = user("ada");
    let connections = format!("/internal/presence/users/{}/connections", ada.id);
    for path in [connections.as_str(), "/internal/presence/summary"] {
        let url = presence.url(path);
        let missing = presence.client.get(&url).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED, "{path}");
        let wrong = presence
            .client
            .get(&url)
            .header(INTERNAL_HEADER, "not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test]
async fn the_online_list_refuses_a_missing_or_bad_token_with_a_json_401() {
    let presence = spawn_presence(config(15_000, None)).await;
    let ada = UserInfo {
        id: user("ada").id,
        name: "ada".into(),
        role: Role::User,
    };
    let foreign = JwtKeys::new("another-secret").mint(&ada, 60);
    let expired = JwtKeys::new(crate::helpers::SECRET).mint(&ada, -60);
    let url = presence.url("/presence/online");
    let mut requests = vec![presence.client.get(&url)];
    for bad in ["garbage", foreign.as_str(), expired.as_str()] {
        requests.push(presence.client.get(&url).bearer_auth(bad));
    }
    for request in requests {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test]
async fn an_oversized_id_or_heartbeat_is_a_bad_request() {
    let presence = spawn_presence(config(15_000, None)).await;
    let long = conn(&"x".repeat(257), &user("ada"));
    let status = presence.try_reports(vec![connect_report(&long)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let too_many = HeartbeatReport {
        node: "n1".into(),
        conns: vec![live(&conn("c", &user("ada"))); telepath_presence::MAX_HEARTBEAT_CONNS + 1],
    };
    let status = presence
        .internal("/internal/presence/heartbeat", &too_many)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_user_id_path_that_is_empty_over_256_bytes_or_not_utf8_is_a_bad_request() {
    let presence = spawn_presence(config(15_000, None)).await;
    let path = |id: &str| format!("/internal/presence/users/{id}/connections");
    let longest = presence.get_internal(&path(&"x".repeat(256))).await;
    assert_eq!(longest.status(), StatusCode::OK);
    for id in [String::new(), "x".repeat(257), "%FF".into()] {
        let resp = presence.get_internal(&path(&id)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{id:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let presence = spawn_presence(config(15_000, None)).await;
    let get = |path: &str| presence.client.get(presence.url(path)).send();
    let health = get("/healthz").await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(presence.heartbeat(&[]).await, StatusCode::NO_CONTENT);
    let metrics = presence.metrics().await;
    assert!(
        metrics.contains("telepath_presence_heartbeats_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("telepath_presence_sweeps_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let presence = spawn_presence(config(15_000, None)).await;
    let resp = presence
        .client
        .get(presence.url("/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

fn status(user: &UserRef, text: &str) -> PresenceReport {
    PresenceReport::Status {
        user: user.clone(),
        status: Status::Busy,
        text: Some(text.into()),
        at_ms: now_ms(),
    }
}

#[tokio::test]
async fn reports_with_long_status_text_odd_rooms_or_too_many_entries_are_bad_requests() {
    let presence = spawn_presence(config(15_000, None)).await;
    let ada = user("ada");
    let join = |room: &str| PresenceReport::Join {
        conn_id: "c1".into(),
        user: ada.clone(),
        room: room.into(),
    };
    let chosen_offline = PresenceReport::Status {
        user: ada.clone(),
        status: Status::Offline,
        text: None,
        at_ms: now_ms(),
    };
    let bad = [
        vec![status(&ada, &"x".repeat(129))],
        vec![join("room:*")],
        vec![join(&room().to_uppercase())],
        vec![chosen_offline],
        vec![join(&room()); telepath_presence::MAX_REPORTS + 1],
    ];
    for reports in bad {
        assert_eq!(presence.try_reports(reports).await, StatusCode::BAD_REQUEST);
    }
    let fine = vec![status(&ada, &"x".repeat(128)), join(&room())];
    assert_eq!(presence.try_reports(fine).await, StatusCode::NO_CONTENT);
    // Nothing was connected, so nothing was announced.
    presence
        .assert_quiet(std::time::Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn a_report_that_is_not_json_or_of_an_unknown_kind_is_a_bad_request() {
    let presence = spawn_presence(config(15_000, None)).await;
    let unknown = serde_json::json!({"node": "n1", "reports": [{"kind": "dance", "conn_id": "c"}]});
    let status = presence
        .internal("/internal/presence/reports", &unknown)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

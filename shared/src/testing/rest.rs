//! REST helpers every crate's tests share: dev login, creating a room,
//! posting a room message the way gateways do (a batch on the api's
//! internal route), and waiting for a condition instead of sleeping.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::auth::INTERNAL_HEADER;

/// A user logged in through dev login.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub name: String,
    pub token: String,
}

/// Dev login at `base` as `name` with `role` (`user` or `admin`).
pub async fn login_as(http: &reqwest::Client, base: &str, name: &str, role: &str) -> TestUser {
    let resp = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": name, "role": role}))
        .send()
        .await
        .expect("the api answers");
    assert_eq!(resp.status(), 200, "dev login as {name}");
    let body: Value = resp.json().await.expect("a JSON login answer");
    TestUser {
        id: body["user"]["id"].as_str().expect("a user id").to_owned(),
        name: name.to_owned(),
        token: body["token"].as_str().expect("a token").to_owned(),
    }
}

/// Dev login at `base` as the user `name`.
pub async fn login(http: &reqwest::Client, base: &str, name: &str) -> TestUser {
    login_as(http, base, name, "user").await
}

/// Creates a public room named `name` as `user`; returns its id.
pub async fn create_room(
    http: &reqwest::Client,
    base: &str,
    user: &TestUser,
    name: &str,
) -> String {
    let resp = http
        .post(format!("{base}/rooms"))
        .bearer_auth(&user.token)
        .json(&json!({"name": name}))
        .send()
        .await
        .expect("the api answers");
    assert_eq!(resp.status(), 201, "creating room {name}");
    let room: Value = resp.json().await.expect("a JSON room");
    room["id"].as_str().expect("a room id").to_owned()
}

/// Posts one room message from `from` to the api at `api` the way a gateway
/// does (`POST /internal/messages`, a batch of one); returns its outcome:
/// `{"message": {...}}` or `{"error": {...}}`.
pub async fn internal_send(
    http: &reqwest::Client,
    api: &str,
    internal_token: &str,
    from: &TestUser,
    room: &str,
    send: Value,
) -> Value {
    let mut send = send;
    send["from"] = json!({"id": from.id, "name": from.name});
    let batch = json!({"sends": [{"room": room, "send": send}]});
    let resp = http
        .post(format!("{api}/internal/messages"))
        .header(INTERNAL_HEADER, internal_token)
        .json(&batch)
        .send()
        .await
        .expect("the api answers");
    assert_eq!(resp.status(), 200, "the batch was taken");
    let mut answer: Value = resp.json().await.expect("a JSON answer");
    answer["results"][0].take()
}

/// `GET url` with `req` adding what it needs (a token); the JSON answer,
/// whatever its status.
pub async fn get_json(
    http: &reqwest::Client,
    url: &str,
    req: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Value {
    let resp = req(http.get(url))
        .send()
        .await
        .expect("the service answers");
    resp.json().await.expect("a JSON answer")
}

/// `GET url` as text (a `/metrics` page).
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    let resp = http.get(url).send().await.expect("the service answers");
    resp.text().await.expect("a text answer")
}

/// The value of the sample `name` (with its labels, if any, as written)
/// in a Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter_map(|l| l.strip_prefix(name))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `cond` holds, checking every 20 ms, or panics after `within`
/// naming `what`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

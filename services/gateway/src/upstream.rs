//! Clients of the services behind a gateway: the api (durable operations,
//! awaited by the session that needs the answer; room messages through the
//! ordered, batching send pipe), and two fire-and-forget
//! reporters: presence (connections, rooms, typing, statuses) and the api's
//! connection log. Each reporter is one bounded queue drained by one task in
//! order, so reports keep their order and never slow a session down.

mod acks;
mod api;
mod logs;
mod presence;
mod sends;

use std::time::Duration;

use serde::Serialize;
use telepath_shared::auth::INTERNAL_HEADER;

pub(crate) use acks::{Ack, AckReporter};
pub(crate) use api::ApiClient;
pub(crate) use logs::LogReporter;
pub(crate) use presence::PresenceReporter;
pub(crate) use sends::{PendingSend, SendPipe};

/// Timeout of one call to the api or presence.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Reports waiting to be sent, per reporter.
const REPORT_QUEUE: usize = 16_384;

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        .build()
        .expect("a plain-HTTP client always builds")
}

/// Posts reports to one service's internal routes.
struct Sender {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Sender {
    fn new(base: &str, token: &str) -> Self {
        Sender {
            http: http_client(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Posts `body`; failures are logged (the next heartbeat repairs presence).
    async fn post<B: Serialize>(&self, path: &str, body: &B) {
        let url = format!("{}{path}", self.base);
        match self
            .http
            .post(url)
            .header(INTERNAL_HEADER, &self.token)
            .json(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), path, "presence refused a report"),
            Err(e) => tracing::warn!(error = %e, path, "presence unreachable"),
        }
    }
}

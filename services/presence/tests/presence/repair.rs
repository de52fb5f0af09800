//! Heartbeats repair what reports lost: a gateway that dropped reports from
//! its full queue, or a Redis that lost its data, is brought back to every
//! connection's full state (rooms, idle, the user's chosen status) by the
//! next heartbeat, and a changed status is announced once; with both stores.

use std::time::Duration;

use reqwest::StatusCode;
use telepath_shared::protocol::{
    ConnReport, LiveConn, PresenceReport, Status, StatusChoice, UserRef,
};
use telepath_shared::testing::RedisServer;

use crate::helpers::{
    TestPresence, config, conn, connect_report, live, now_ms, room, spawn_presence, user,
};

fn choose(user: &UserRef, status: Status, text: Option<&str>, at_ms: i64) -> PresenceReport {
    PresenceReport::Status {
        user: user.clone(),
        status,
        text: text.map(Into::into),
        at_ms,
    }
}

/// `conn` as its gateway lists it: in `rooms`, idle or not, with `choice`.
fn listed(conn: &ConnReport, rooms: &[&str], idle: bool, choice: StatusChoice) -> LiveConn {
    LiveConn {
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        idle,
        choice: Some(choice),
        ..live(conn)
    }
}

/// `(status, text)` of `user` in `GET /presence/online`.
async fn listed_status(presence: &TestPresence, user: &UserRef) -> (Status, Option<String>) {
    let users = presence.try_online(user).await.expect("the online list");
    let u = users
        .users
        .iter()
        .find(|u| u.id == user.id)
        .expect("listed");
    (u.status, u.text.clone())
}

async fn a_heartbeat_repairs_the_reports_a_gateway_dropped(presence: &TestPresence) {
    let (ada, lobby) = (user("ada"), room());
    let phone = conn("ada-phone", &ada);
    presence.connect(&phone).await;
    assert_eq!(presence.presence_event().await.event.status, Status::Online);
    // The join, idle and status reports were dropped from the gateway's full
    // queue; its next heartbeat lists the connection's whole state.
    let om = StatusChoice {
        status: Status::Meditating,
        text: Some("om".into()),
        at_ms: now_ms(),
    };
    let state = listed(&phone, &[&lobby], true, om.clone());
    let status = presence.heartbeat_live(vec![state.clone()]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let repaired = presence.presence_event().await;
    assert_eq!(repaired.event.user, ada);
    assert_eq!(
        (repaired.event.status, repaired.event.text.as_deref()),
        (Status::Meditating, Some("om"))
    );
    assert_eq!(repaired.rooms, [lobby]);
    assert_eq!(repaired.choice, Some(om.clone()));
    // A chosen status beats idle.
    assert_eq!(
        listed_status(presence, &ada).await,
        (Status::Meditating, Some("om".into()))
    );
    // The same state again changes nothing.
    let status = presence.heartbeat_live(vec![state]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The idle flag was repaired too: clearing the choice shows away.
    let cleared = choose(&ada, Status::Online, None, om.at_ms + 1);
    presence.reports(vec![cleared]).await;
    let away = presence.presence_event().await;
    assert_eq!((away.event.status, away.event.text), (Status::Away, None));
    presence.assert_quiet(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_heartbeat_repairs_the_reports_a_gateway_dropped_in_memory() {
    let presence = spawn_presence(config(15_000, None)).await;
    a_heartbeat_repairs_the_reports_a_gateway_dropped(&presence).await;
}

#[tokio::test]
async fn a_heartbeat_repairs_the_reports_a_gateway_dropped_with_redis() {
    let redis = RedisServer::start();
    let presence = spawn_presence(config(15_000, Some(redis.url()))).await;
    a_heartbeat_repairs_the_reports_a_gateway_dropped(&presence).await;
}

#[tokio::test]
async fn a_chosen_status_returns_with_the_next_heartbeat_after_redis_is_flushed() {
    let redis = RedisServer::start();
    let presence = spawn_presence(config(15_000, Some(redis.url()))).await;
    let (ada, lobby) = (user("ada"), room());
    let laptop = conn("ada-laptop", &ada);
    let join = PresenceReport::Join {
        conn_id: laptop.conn_id.clone(),
        user: ada.clone(),
        room: lobby.clone(),
    };
    let om = choose(&ada, Status::Meditating, Some("om"), now_ms());
    presence
        .reports(vec![connect_report(&laptop), join, om])
        .await;
    assert_eq!(presence.presence_event().await.event.status, Status::Online);
    // Gateways keep the choice record the broadcast carries.
    let kept = presence.presence_event().await.choice.expect("a choice");
    assert_eq!(kept.status, Status::Meditating);

    assert_eq!(redis.command(&["FLUSHALL"]).as_deref(), Some("+OK\r\n"));
    assert!(presence.try_online(&ada).await.unwrap().users.is_empty());
    let state = listed(&laptop, &[&lobby], false, kept.clone());
    let status = presence.heartbeat_live(vec![state]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        listed_status(&presence, &ada).await,
        (Status::Meditating, Some("om".into()))
    );
    let again = presence.presence_event().await;
    assert_eq!(again.event.user, ada);
    assert_eq!(
        (again.event.status, again.event.text.as_deref()),
        (Status::Meditating, Some("om"))
    );
    assert_eq!((again.rooms, again.choice), (vec![lobby], Some(kept)));
}

//! The conformance cases: one behaviour each, on any [`PresenceStore`],
//! with explicit times. `suite!` (in `conformance.rs`) runs every one.

use telepath_shared::protocol::Status;

use super::{
    GRACE, ROOM_A, ROOM_B, T, TYPING_TTL, apply, connect, disconnect, heartbeat, idle, join, leave,
    live, presences, status, statuses, typing, typings,
};
use crate::store::PresenceStore;

/// A presence change as `(name, status, text)`.
pub(super) fn s(
    name: &str,
    status: Status,
    text: Option<&str>,
) -> (String, Status, Option<String>) {
    (name.into(), status, text.map(Into::into))
}

pub(crate) async fn the_first_connection_announces_online_once(store: &dyn PresenceStore) {
    let first = apply(store, &[connect("c1", "ada")], T).await;
    assert_eq!(statuses(&first), [s("ada", Status::Online, None)]);
    assert_eq!(presences(&first)[0].last_seen_ms, T);
    assert_eq!(presences(&first)[0].cause_ms, T);
    assert!(
        apply(store, &[connect("c2", "ada"), connect("c1", "ada")], T + 1)
            .await
            .is_empty()
    );
}

pub(crate) async fn a_second_device_keeps_the_user_online_and_the_last_goes_offline_after_grace(
    store: &dyn PresenceStore,
) {
    let reports = [
        connect("c1", "ada"),
        connect("c2", "ada"),
        join("c1", "ada", ROOM_A),
        join("c2", "ada", ROOM_B),
    ];
    apply(store, &reports, T).await;
    assert!(
        apply(store, &[disconnect("c1", "ada")], T + 100)
            .await
            .is_empty()
    );
    // The phone keeps heartbeating past the laptop's grace: no offline.
    let phone = heartbeat(vec![live("c2", "ada", &[ROOM_B], false)]);
    store.heartbeat(&phone, T + 1_400).await.unwrap();
    store.heartbeat(&phone, T + 2_800).await.unwrap();
    assert!(
        store
            .sweep(T + 100 + GRACE + 1)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
    let now = T + 3_200;
    assert!(
        apply(store, &[disconnect("c2", "ada")], now)
            .await
            .is_empty()
    );
    assert!(
        store
            .sweep(now + GRACE - 1)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
    let swept = store.sweep(now + GRACE).await.unwrap();
    assert_eq!(statuses(&swept.changes), [s("ada", Status::Offline, None)]);
    let offline = presences(&swept.changes)[0];
    assert_eq!((offline.last_seen_ms, offline.cause_ms), (now, now + GRACE));
    // The laptop joined ROOM_A before closing: that room saw ada online too.
    assert_eq!(offline.rooms, [ROOM_A, ROOM_B]);
    assert!(
        store
            .sweep(now + GRACE + 10)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
}

pub(crate) async fn a_reconnect_within_the_grace_announces_nothing(store: &dyn PresenceStore) {
    apply(store, &[connect("c1", "ada")], T).await;
    assert!(
        apply(store, &[disconnect("c1", "ada")], T + 10)
            .await
            .is_empty()
    );
    assert!(
        apply(store, &[connect("c2", "ada")], T + GRACE)
            .await
            .is_empty()
    );
    assert!(
        store
            .sweep(T + GRACE + 20)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
    let users = store.online(T + GRACE + 20).await.unwrap();
    assert_eq!((users.len(), users[0].status), (1, Status::Online));
}

pub(crate) async fn an_expired_last_connection_goes_offline_at_once(store: &dyn PresenceStore) {
    apply(store, &[connect("c1", "ada"), join("c1", "ada", ROOM_A)], T).await;
    apply(store, &[connect("b1", "bob")], T + 1_000).await;
    // Not yet: 1,500 ms is the expiry.
    assert!(store.sweep(T + 1_500).await.unwrap().expired.is_empty());
    let swept = store.sweep(T + 1_501).await.unwrap();
    assert_eq!(swept.expired, ["c1"]);
    assert_eq!(statuses(&swept.changes), [s("ada", Status::Offline, None)]);
    let offline = presences(&swept.changes)[0];
    assert_eq!((offline.last_seen_ms, offline.cause_ms), (T, T + 1_500));
    assert_eq!(offline.rooms, [ROOM_A]);
    assert!(store.sweep(T + 1_502).await.unwrap().changes.is_empty());
}

pub(crate) async fn a_chosen_status_with_text_is_announced_and_online_clears_it(
    store: &dyn PresenceStore,
) {
    apply(store, &[connect("c1", "ada"), join("c1", "ada", ROOM_A)], T).await;
    let busy = apply(
        store,
        &[status("ada", Status::Busy, Some("in a meeting"), T + 1)],
        T + 1,
    )
    .await;
    assert_eq!(
        statuses(&busy),
        [s("ada", Status::Busy, Some("in a meeting"))]
    );
    assert_eq!(presences(&busy)[0].rooms, [ROOM_A]);
    let same = apply(
        store,
        &[status("ada", Status::Busy, Some("in a meeting"), T + 2)],
        T + 2,
    )
    .await;
    assert!(same.is_empty());
    let text = apply(
        store,
        &[status("ada", Status::Busy, Some("lunch"), T + 3)],
        T + 3,
    )
    .await;
    assert_eq!(statuses(&text), [s("ada", Status::Busy, Some("lunch"))]);
    let users = store.online(T + 3).await.unwrap();
    assert_eq!(
        (users[0].status, users[0].text.as_deref()),
        (Status::Busy, Some("lunch"))
    );
    let meditating = apply(
        store,
        &[status("ada", Status::Meditating, None, T + 4)],
        T + 4,
    )
    .await;
    assert_eq!(statuses(&meditating), [s("ada", Status::Meditating, None)]);
    let back = apply(
        store,
        &[status("ada", Status::Online, Some("ignored"), T + 5)],
        T + 5,
    )
    .await;
    assert_eq!(statuses(&back), [s("ada", Status::Online, None)]);
}

pub(crate) async fn away_when_every_connection_is_idle_unless_a_status_is_chosen(
    store: &dyn PresenceStore,
) {
    apply(store, &[connect("c1", "ada"), connect("c2", "ada")], T).await;
    assert!(
        apply(store, &[idle("c1", "ada", true)], T + 1)
            .await
            .is_empty()
    );
    let away = apply(store, &[idle("c2", "ada", true)], T + 2).await;
    assert_eq!(statuses(&away), [s("ada", Status::Away, None)]);
    let back = apply(store, &[idle("c1", "ada", false)], T + 3).await;
    assert_eq!(statuses(&back), [s("ada", Status::Online, None)]);
    let busy = apply(
        store,
        &[
            status("ada", Status::Busy, None, T + 4),
            idle("c1", "ada", true),
        ],
        T + 4,
    )
    .await;
    assert_eq!(statuses(&busy), [s("ada", Status::Busy, None)]);
    assert!(
        apply(store, &[idle("c1", "ada", false)], T + 5)
            .await
            .is_empty()
    );
    let auto = apply(
        store,
        &[
            idle("c1", "ada", true),
            status("ada", Status::Online, None, T + 6),
        ],
        T + 6,
    )
    .await;
    assert_eq!(statuses(&auto), [s("ada", Status::Away, None)]);
    // The one active connection closing leaves only idle ones: away.
    apply(store, &[idle("c1", "ada", false)], T + 7).await;
    let closed = apply(store, &[disconnect("c1", "ada")], T + 8).await;
    assert_eq!(statuses(&closed), [s("ada", Status::Away, None)]);
}

pub(crate) async fn typing_is_announced_once_refreshed_silently_and_expires_once(
    store: &dyn PresenceStore,
) {
    apply(store, &[connect("c1", "ada")], T).await;
    let started = apply(store, &[typing("c1", "ada", ROOM_A, true)], T).await;
    assert_eq!(typings(&started), [(ROOM_A.into(), "ada".into(), true)]);
    assert!(
        apply(store, &[typing("c1", "ada", ROOM_A, true)], T + 1_000)
            .await
            .is_empty()
    );
    // Keep the connection alive; the indicator lives until 1,000 + TTL.
    store
        .heartbeat(
            &heartbeat(vec![live("c1", "ada", &[], false)]),
            T + TYPING_TTL,
        )
        .await
        .unwrap();
    assert!(
        store
            .sweep(T + TYPING_TTL + 999)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
    let expired = store.sweep(T + TYPING_TTL + 1_000).await.unwrap();
    assert_eq!(
        typings(&expired.changes),
        [(ROOM_A.into(), "ada".into(), false)]
    );
    assert!(
        store
            .sweep(T + TYPING_TTL + 1_001)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
}

pub(crate) async fn typing_stops_once_on_false_leave_or_disconnect(store: &dyn PresenceStore) {
    let reports = [
        connect("c1", "ada"),
        join("c1", "ada", ROOM_A),
        join("c1", "ada", ROOM_B),
    ];
    apply(store, &reports, T).await;
    apply(
        store,
        &[
            typing("c1", "ada", ROOM_A, true),
            typing("c1", "ada", ROOM_B, true),
        ],
        T,
    )
    .await;
    let stopped = apply(
        store,
        &[
            typing("c1", "ada", ROOM_A, false),
            typing("c1", "ada", ROOM_A, false),
        ],
        T + 1,
    )
    .await;
    assert_eq!(typings(&stopped), [(ROOM_A.into(), "ada".into(), false)]);
    apply(store, &[typing("c1", "ada", ROOM_A, true)], T + 2).await;
    let left = apply(store, &[leave("c1", "ada", ROOM_A)], T + 3).await;
    assert_eq!(typings(&left), [(ROOM_A.into(), "ada".into(), false)]);
    let gone = apply(store, &[disconnect("c1", "ada")], T + 4).await;
    assert_eq!(typings(&gone), [(ROOM_B.into(), "ada".into(), false)]);
    // Typing on a connection the store does not know changes nothing.
    assert!(
        apply(store, &[typing("zz", "ada", ROOM_A, true)], T + 5)
            .await
            .is_empty()
    );
}

pub(crate) async fn a_heartbeat_re_registers_unknown_connections_with_rooms_and_idle(
    store: &dyn PresenceStore,
) {
    let conns = vec![
        live("c1", "ada", &[ROOM_B, ROOM_A], true),
        live("c2", "ada", &[ROOM_A], true),
    ];
    let changes = store.heartbeat(&heartbeat(conns.clone()), T).await.unwrap();
    assert_eq!(statuses(&changes), [s("ada", Status::Away, None)]);
    assert_eq!(presences(&changes)[0].rooms, [ROOM_A, ROOM_B]);
    assert!(
        store
            .heartbeat(&heartbeat(conns), T + 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.online(T + 1_000).await.unwrap()[0].connections, 2);
    let active = apply(store, &[idle("c2", "ada", false)], T + 1_001).await;
    assert_eq!(statuses(&active), [s("ada", Status::Online, None)]);
}

pub(crate) async fn reports_about_unknown_or_foreign_connections_change_nothing(
    store: &dyn PresenceStore,
) {
    apply(store, &[connect("c1", "ada")], T).await;
    let reports = [
        join("c1", "bob", ROOM_A),
        idle("c1", "bob", true),
        idle("nope", "ada", true),
        disconnect("nope", "ada"),
        status("eve", Status::Busy, None, T + 1),
    ];
    assert!(apply(store, &reports, T + 1).await.is_empty());
    assert!(
        store
            .online(T + 1)
            .await
            .unwrap()
            .iter()
            .all(|u| u.name == "ada")
    );
    // Eve's choice was not kept for later either.
    let eve = apply(store, &[connect("e1", "eve")], T + 2).await;
    assert_eq!(statuses(&eve), [s("eve", Status::Online, None)]);
}

pub(crate) async fn a_chosen_status_survives_a_reconnect_within_the_grace(
    store: &dyn PresenceStore,
) {
    apply(
        store,
        &[
            connect("c1", "ada"),
            status("ada", Status::Meditating, Some("om"), T),
        ],
        T,
    )
    .await;
    apply(store, &[disconnect("c1", "ada")], T + 1).await;
    assert!(
        apply(store, &[connect("c2", "ada")], T + 2)
            .await
            .is_empty()
    );
    let users = store.online(T + 2).await.unwrap();
    assert_eq!(
        (users[0].status, users[0].text.as_deref()),
        (Status::Meditating, Some("om"))
    );
}

pub(crate) async fn a_conn_id_reported_for_another_user_moves_to_that_user(
    store: &dyn PresenceStore,
) {
    apply(store, &[connect("c1", "ada")], T).await;
    let moved = apply(store, &[connect("c1", "bob")], T + 1).await;
    assert_eq!(statuses(&moved), [s("bob", Status::Online, None)]);
    let users = store.online(T + 1).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    let bob = heartbeat(vec![live("c1", "bob", &[], false)]);
    assert!(store.heartbeat(&bob, T + 2_500).await.unwrap().is_empty());
    let swept = store.sweep(T + 1 + GRACE).await.unwrap();
    assert_eq!(statuses(&swept.changes), [s("ada", Status::Offline, None)]);
}

pub(crate) async fn queries_list_live_connections_with_status_and_last_seen(
    store: &dyn PresenceStore,
) {
    apply(store, &[connect("c1", "ada"), connect("b1", "bob")], T).await;
    apply(
        store,
        &[
            connect("c2", "ada"),
            status("ada", Status::Busy, Some("x"), T + 1_000),
        ],
        T + 1_000,
    )
    .await;
    let mut users = store.online(T + 1_000).await.unwrap();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<_> = users
        .iter()
        .map(|u| {
            (
                u.name.as_str(),
                u.status,
                u.connections,
                u.last_seen.timestamp_millis(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("ada", Status::Busy, 2, T + 1_000),
            ("bob", Status::Online, 1, T)
        ]
    );
    // At T + 1,501 c1 and b1 are stale (not yet swept): not listed.
    let summary = store.summary(T + 1_501).await.unwrap();
    assert_eq!(summary.by_node.get("n1"), Some(&1));
    assert_eq!(summary.users.len(), 1);
    let conns = store.connections("id-ada", T + 1_501).await.unwrap();
    assert_eq!(
        conns.iter().map(|c| c.conn_id.as_str()).collect::<Vec<_>>(),
        ["c2"]
    );
}

/// The rooms of the one change a sweep at `swept_at` makes: ada's `offline`.
pub(super) async fn offline_rooms(store: &dyn PresenceStore, swept_at: i64) -> Vec<String> {
    let swept = store.sweep(swept_at).await.unwrap();
    assert_eq!(statuses(&swept.changes), [s("ada", Status::Offline, None)]);
    presences(&swept.changes)[0].rooms.clone()
}

pub(crate) async fn the_offline_reaches_rooms_joined_by_connections_that_closed_earlier(
    store: &dyn PresenceStore,
) {
    // Device A joined ROOM_A, device B joined nothing; A closes, then B.
    let reports = [
        connect("a", "ada"),
        connect("b", "ada"),
        join("a", "ada", ROOM_A),
    ];
    apply(store, &reports, T).await;
    assert!(
        apply(store, &[disconnect("a", "ada")], T + 10)
            .await
            .is_empty()
    );
    assert!(
        apply(store, &[disconnect("b", "ada")], T + 20)
            .await
            .is_empty()
    );
    assert_eq!(offline_rooms(store, T + 20 + GRACE).await, [ROOM_A]);

    // Going offline forgot those rooms: the next session starts afresh.
    apply(store, &[connect("c", "ada")], T + 10_000).await;
    apply(store, &[disconnect("c", "ada")], T + 10_001).await;
    assert!(offline_rooms(store, T + 10_001 + GRACE).await.is_empty());

    // A reconnect within the grace continues the session, rooms included.
    apply(
        store,
        &[connect("d", "ada"), join("d", "ada", ROOM_B)],
        T + 20_000,
    )
    .await;
    apply(store, &[disconnect("d", "ada")], T + 20_001).await;
    assert!(
        apply(store, &[connect("e", "ada")], T + 20_002)
            .await
            .is_empty()
    );
    apply(store, &[disconnect("e", "ada")], T + 20_003).await;
    assert_eq!(offline_rooms(store, T + 20_003 + GRACE).await, [ROOM_B]);

    // The expiry of the last connection, and rooms from a heartbeat rebuild.
    let rebuilt = heartbeat(vec![
        live("f", "ada", &[ROOM_A], false),
        live("g", "ada", &[], false),
    ]);
    store.heartbeat(&rebuilt, T + 30_000).await.unwrap();
    apply(store, &[disconnect("f", "ada")], T + 30_001).await;
    assert_eq!(offline_rooms(store, T + 31_501).await, [ROOM_A]);
}

pub(crate) async fn a_room_left_on_every_connection_is_dropped_from_the_offline(
    store: &dyn PresenceStore,
) {
    let reports = [
        connect("c1", "ada"),
        connect("c2", "ada"),
        join("c1", "ada", ROOM_A),
        join("c2", "ada", ROOM_A),
        join("c2", "ada", ROOM_B),
        // c2 is still in ROOM_A: ada is still a participant there.
        leave("c1", "ada", ROOM_A),
        // No other connection is in ROOM_B: ada left it.
        leave("c2", "ada", ROOM_B),
        // A foreign leave changes nothing.
        leave("c2", "bob", ROOM_A),
    ];
    apply(store, &reports, T).await;
    apply(
        store,
        &[disconnect("c2", "ada"), disconnect("c1", "ada")],
        T + 1,
    )
    .await;
    assert_eq!(offline_rooms(store, T + 1 + GRACE).await, [ROOM_A]);
}

/// Admission counts registered connections and admitted ones not yet
/// registered, once each; a disconnect frees a place; an admission that
/// never registers is forgotten after the expiry.
pub(crate) async fn admission_holds_the_per_user_cap(store: &dyn PresenceStore) {
    use telepath_shared::protocol::AdmitConn;
    let ask = |conn: &str, name: &str| AdmitConn {
        conn_id: conn.into(),
        user_id: super::user(name).id,
    };
    // Three asked at once for a cap of 2: the third is refused; another user is not counted.
    let answers = store
        .admit(
            &[
                ask("a1", "ada"),
                ask("a2", "ada"),
                ask("a3", "ada"),
                ask("b1", "bob"),
            ],
            2,
            T,
        )
        .await
        .unwrap();
    assert_eq!(answers, [true, true, false, true]);
    // Registering an admitted connection does not count it twice.
    apply(store, &[connect("a1", "ada"), connect("a2", "ada")], T + 10).await;
    assert_eq!(
        store.admit(&[ask("a4", "ada")], 2, T + 20).await.unwrap(),
        [false]
    );
    assert_eq!(
        store.admit(&[ask("a4", "ada")], 3, T + 20).await.unwrap(),
        [true]
    );
    // a4 never registers; a disconnect frees a place at once.
    apply(store, &[disconnect("a1", "ada")], T + 30).await;
    assert_eq!(
        store.admit(&[ask("a5", "ada")], 3, T + 40).await.unwrap(),
        [true]
    );
    assert_eq!(
        store.admit(&[ask("a6", "ada")], 3, T + 50).await.unwrap(),
        [false]
    );
    // After the expiry (1.5 heartbeats of the suite) unregistered admissions
    // no longer count: a2 is registered, so one place is taken.
    let later = T + 50 + 1_600;
    store
        .heartbeat(&heartbeat(vec![live("a2", "ada", &[], false)]), later)
        .await
        .unwrap();
    assert_eq!(
        store
            .admit(
                &[ask("a7", "ada"), ask("a8", "ada"), ask("a9", "ada")],
                3,
                later
            )
            .await
            .unwrap(),
        [true, true, false]
    );
}

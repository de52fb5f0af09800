//! The conformance cases of heartbeats converging: what lost reports missed
//! (joins, leaves, idle changes, a chosen status) is repaired by the next
//! heartbeat, an emptied store is rebuilt by one, choices are ordered by
//! their time, and every presence change carries the user's choice record.
//! `suite!` (in `conformance.rs`) runs every one.

use telepath_shared::protocol::Status;

use super::cases::{offline_rooms, s};
use super::{
    GRACE, ROOM_A, ROOM_B, T, apply, choice, choices, choosing, connect, disconnect, heartbeat,
    idle, join, live, presences, status, statuses, typing, typings,
};
use crate::store::PresenceStore;

pub(crate) async fn a_heartbeat_repairs_a_lost_join(store: &dyn PresenceStore) {
    apply(store, &[connect("c1", "ada"), join("c1", "ada", ROOM_A)], T).await;
    // The join of ROOM_B was lost; the gateway lists the room.
    let hb = heartbeat(vec![live("c1", "ada", &[ROOM_A, ROOM_B], false)]);
    assert!(store.heartbeat(&hb, T + 1_000).await.unwrap().is_empty());
    assert!(store.heartbeat(&hb, T + 2_000).await.unwrap().is_empty());
    let busy = apply(
        store,
        &[status("ada", Status::Busy, None, T + 2_001)],
        T + 2_001,
    )
    .await;
    assert_eq!(presences(&busy)[0].rooms, [ROOM_A, ROOM_B]);
    // ROOM_B saw ada online: it hears the offline too.
    apply(store, &[disconnect("c1", "ada")], T + 2_002).await;
    assert_eq!(
        offline_rooms(store, T + 2_002 + GRACE).await,
        [ROOM_A, ROOM_B]
    );
}

pub(crate) async fn a_heartbeat_repairs_a_lost_leave_and_stops_that_connections_typing(
    store: &dyn PresenceStore,
) {
    let reports = [
        connect("c1", "ada"),
        join("c1", "ada", ROOM_A),
        join("c1", "ada", ROOM_B),
        typing("c1", "ada", ROOM_A, true),
    ];
    apply(store, &reports, T).await;
    // The leave of ROOM_A was lost; the gateway lists ROOM_B only.
    let hb = heartbeat(vec![live("c1", "ada", &[ROOM_B], false)]);
    let left = store.heartbeat(&hb, T + 1_000).await.unwrap();
    assert_eq!(typings(&left), [(ROOM_A.into(), "ada".into(), false)]);
    assert!(presences(&left).is_empty());
    assert!(store.heartbeat(&hb, T + 2_000).await.unwrap().is_empty());
    let busy = apply(
        store,
        &[status("ada", Status::Busy, None, T + 2_001)],
        T + 2_001,
    )
    .await;
    assert_eq!(presences(&busy)[0].rooms, [ROOM_B]);
    // No connection of ada's is in ROOM_A any more: its offline skips it.
    apply(store, &[disconnect("c1", "ada")], T + 2_002).await;
    assert_eq!(offline_rooms(store, T + 2_002 + GRACE).await, [ROOM_B]);
}

pub(crate) async fn a_heartbeat_repairs_a_lost_idle_change_both_ways(store: &dyn PresenceStore) {
    apply(store, &[connect("c1", "ada"), connect("c2", "ada")], T).await;
    // Both idle reports were lost.
    let idle_both = heartbeat(vec![
        live("c1", "ada", &[], true),
        live("c2", "ada", &[], true),
    ]);
    let away = store.heartbeat(&idle_both, T + 1_000).await.unwrap();
    assert_eq!(statuses(&away), [s("ada", Status::Away, None)]);
    assert!(
        store
            .heartbeat(&idle_both, T + 2_000)
            .await
            .unwrap()
            .is_empty()
    );
    // So was the report of c2 becoming active again.
    let active = heartbeat(vec![
        live("c1", "ada", &[], true),
        live("c2", "ada", &[], false),
    ]);
    let back = store.heartbeat(&active, T + 3_000).await.unwrap();
    assert_eq!(statuses(&back), [s("ada", Status::Online, None)]);
    assert_eq!(
        store.online(T + 3_000).await.unwrap()[0].status,
        Status::Online
    );
}

pub(crate) async fn a_heartbeat_repairs_a_lost_status_with_its_text_announced_once(
    store: &dyn PresenceStore,
) {
    let reports = [
        connect("c1", "ada"),
        connect("c2", "ada"),
        join("c1", "ada", ROOM_A),
    ];
    apply(store, &reports, T).await;
    // The status report was lost; the gateway repeats the choice on each
    // of ada's connections.
    let om = choice(Status::Meditating, Some("om"), T + 500);
    let hb = heartbeat(vec![
        choosing(live("c1", "ada", &[ROOM_A], false), om.clone()),
        choosing(live("c2", "ada", &[], false), om.clone()),
    ]);
    let changes = store.heartbeat(&hb, T + 1_000).await.unwrap();
    assert_eq!(
        statuses(&changes),
        [s("ada", Status::Meditating, Some("om"))]
    );
    assert_eq!(presences(&changes)[0].rooms, [ROOM_A]);
    assert_eq!(choices(&changes), [Some(om)]);
    assert!(store.heartbeat(&hb, T + 2_000).await.unwrap().is_empty());
    // The report itself, arriving late, is no newer: nothing again.
    let late = [status("ada", Status::Meditating, Some("om"), T + 500)];
    assert!(apply(store, &late, T + 2_001).await.is_empty());
    let users = store.online(T + 2_001).await.unwrap();
    assert_eq!(
        (users[0].status, users[0].text.as_deref()),
        (Status::Meditating, Some("om"))
    );
}

pub(crate) async fn an_older_choice_is_ignored_and_a_newer_one_wins(store: &dyn PresenceStore) {
    apply(store, &[connect("c1", "ada")], T).await;
    let busy = apply(
        store,
        &[status("ada", Status::Busy, Some("x"), T + 10)],
        T + 10,
    )
    .await;
    assert_eq!(statuses(&busy), [s("ada", Status::Busy, Some("x"))]);
    // Older or as old, by report or by heartbeat: ignored.
    let stale = [
        status("ada", Status::Meditating, None, T + 5),
        status("ada", Status::Away, None, T + 10),
    ];
    assert!(apply(store, &stale, T + 20).await.is_empty());
    for at in [T + 5, T + 10] {
        let old = choice(Status::Meditating, None, at);
        let hb = heartbeat(vec![choosing(live("c1", "ada", &[], false), old)]);
        assert!(store.heartbeat(&hb, T + 30).await.unwrap().is_empty());
    }
    let users = store.online(T + 30).await.unwrap();
    assert_eq!(
        (users[0].status, users[0].text.as_deref()),
        (Status::Busy, Some("x"))
    );
    // Newer, by heartbeat, then by report: taken.
    let brb = choice(Status::Away, Some("brb"), T + 40);
    let hb = heartbeat(vec![choosing(live("c1", "ada", &[], false), brb)]);
    let away = store.heartbeat(&hb, T + 50).await.unwrap();
    assert_eq!(statuses(&away), [s("ada", Status::Away, Some("brb"))]);
    let report = apply(store, &[status("ada", Status::Busy, None, T + 60)], T + 60).await;
    assert_eq!(statuses(&report), [s("ada", Status::Busy, None)]);
}

pub(crate) async fn an_online_choice_clears_and_an_older_repeated_one_does_not_return(
    store: &dyn PresenceStore,
) {
    let reports = [
        connect("c1", "ada"),
        status("ada", Status::Meditating, Some("om"), T),
    ];
    apply(store, &reports, T).await;
    let cleared = apply(
        store,
        &[status("ada", Status::Online, None, T + 10)],
        T + 10,
    )
    .await;
    assert_eq!(statuses(&cleared), [s("ada", Status::Online, None)]);
    assert_eq!(
        choices(&cleared),
        [Some(choice(Status::Online, None, T + 10))]
    );
    // A gateway that missed the clearing still repeats the meditating.
    let om = choice(Status::Meditating, Some("om"), T);
    let stale = heartbeat(vec![choosing(live("c1", "ada", &[], false), om)]);
    assert!(store.heartbeat(&stale, T + 1_000).await.unwrap().is_empty());
    let users = store.online(T + 1_000).await.unwrap();
    assert_eq!(
        (users[0].status, users[0].text.as_deref()),
        (Status::Online, None)
    );
}

pub(crate) async fn an_emptied_store_is_rebuilt_from_one_heartbeat_with_the_chosen_status(
    store: &dyn PresenceStore,
) {
    // The store knows nothing (new, or its Redis was flushed); the gateway
    // lists ada's two idle connections with her choice of a minute ago.
    let om = choice(Status::Meditating, Some("om"), T - 60_000);
    let hb = heartbeat(vec![
        choosing(live("c1", "ada", &[ROOM_A], true), om.clone()),
        choosing(live("c2", "ada", &[ROOM_B], true), om.clone()),
    ]);
    let changes = store.heartbeat(&hb, T).await.unwrap();
    assert_eq!(
        statuses(&changes),
        [s("ada", Status::Meditating, Some("om"))]
    );
    assert_eq!(presences(&changes)[0].rooms, [ROOM_A, ROOM_B]);
    assert_eq!(choices(&changes), [Some(om)]);
    let users = store.online(T).await.unwrap();
    assert_eq!(
        (
            users[0].status,
            users[0].text.as_deref(),
            users[0].connections
        ),
        (Status::Meditating, Some("om"), 2)
    );
    // The idle flags came back too: clearing the choice shows away.
    let auto = apply(store, &[status("ada", Status::Online, None, T + 1)], T + 1).await;
    assert_eq!(statuses(&auto), [s("ada", Status::Away, None)]);
}

pub(crate) async fn unchanged_heartbeats_announce_nothing(store: &dyn PresenceStore) {
    let reports = [
        connect("c1", "ada"),
        connect("c2", "ada"),
        join("c1", "ada", ROOM_A),
        idle("c2", "ada", true),
        status("ada", Status::Busy, Some("x"), T),
        connect("b1", "bob"),
        join("b1", "bob", ROOM_B),
        typing("b1", "bob", ROOM_B, true),
    ];
    apply(store, &reports, T).await;
    let busy = choice(Status::Busy, Some("x"), T);
    let hb = heartbeat(vec![
        choosing(live("c1", "ada", &[ROOM_A], false), busy.clone()),
        choosing(live("c2", "ada", &[], true), busy),
        live("b1", "bob", &[ROOM_B], false),
    ]);
    for beat in 1..=3 {
        let changes = store.heartbeat(&hb, T + beat * 1_000).await.unwrap();
        assert!(changes.is_empty(), "{changes:?}");
    }
    // Every connection stays alive, bob still typing.
    assert!(store.sweep(T + 3_000).await.unwrap().changes.is_empty());
    assert_eq!(store.summary(T + 3_000).await.unwrap().by_node["n1"], 3);
}

pub(crate) async fn every_presence_change_carries_the_choice_record(store: &dyn PresenceStore) {
    let online = apply(store, &[connect("c1", "ada")], T).await;
    assert_eq!(choices(&online), [None]);
    let busy = apply(
        store,
        &[status("ada", Status::Busy, Some("x"), T + 1)],
        T + 1,
    )
    .await;
    assert_eq!(
        choices(&busy),
        [Some(choice(Status::Busy, Some("x"), T + 1))]
    );
    assert!(
        apply(store, &[idle("c1", "ada", true)], T + 2)
            .await
            .is_empty()
    );
    let cleared = [status("ada", Status::Online, Some("ignored"), T + 3)];
    let away = apply(store, &cleared, T + 3).await;
    assert_eq!(statuses(&away), [s("ada", Status::Away, None)]);
    let online_choice = choice(Status::Online, None, T + 3);
    assert_eq!(choices(&away), [Some(online_choice.clone())]);
    let active = apply(store, &[idle("c1", "ada", false)], T + 4).await;
    assert_eq!(statuses(&active), [s("ada", Status::Online, None)]);
    assert_eq!(choices(&active), [Some(online_choice)]);
    apply(store, &[disconnect("c1", "ada")], T + 5).await;
    let swept = store.sweep(T + 5 + GRACE).await.unwrap();
    assert_eq!(statuses(&swept.changes), [s("ada", Status::Offline, None)]);
    assert_eq!(choices(&swept.changes), [None]);
}

pub(crate) async fn going_offline_forgets_the_choice_and_its_time(store: &dyn PresenceStore) {
    apply(
        store,
        &[
            connect("c1", "ada"),
            status("ada", Status::Busy, Some("x"), T + 5),
        ],
        T + 5,
    )
    .await;
    apply(store, &[disconnect("c1", "ada")], T + 10).await;
    let swept = store.sweep(T + 10 + GRACE).await.unwrap();
    assert_eq!(statuses(&swept.changes), [s("ada", Status::Offline, None)]);
    assert_eq!(choices(&swept.changes), [None]);
    // A new session's first heartbeat, with no choice: plain online.
    let session = heartbeat(vec![live("c2", "ada", &[], false)]);
    let back = store.heartbeat(&session, T + 10_000).await.unwrap();
    assert_eq!(statuses(&back), [s("ada", Status::Online, None)]);
    assert_eq!(choices(&back), [None]);
    // The old choice's time went too: any choice of the new session counts.
    let chosen = apply(
        store,
        &[status("ada", Status::Meditating, None, T + 1)],
        T + 10_001,
    )
    .await;
    assert_eq!(statuses(&chosen), [s("ada", Status::Meditating, None)]);
}

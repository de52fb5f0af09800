//! The behaviour every [`PresenceStore`] must have, written once and run
//! against both stores: `suite!(fixture)` in a store's tests expands to one
//! `#[tokio::test]` per function below. `fixture` evaluates to
//! `(guard, store)`; the guard (say, a `redis-server`) lives for the test.
//!
//! Times are explicit milliseconds, so no test waits on a clock. This file
//! holds the builders and the macro; the cases are in `conformance/cases.rs`
//! and, for heartbeat repair and choice ordering, `conformance/repair.rs`.

use telepath_shared::protocol::{
    HeartbeatReport, LiveConn, PresenceReport, Status, StatusChoice, UserRef,
};

pub(crate) mod cases;
pub(crate) mod repair;

use super::{PresenceStore, Timing};
use crate::change::{Change, PresenceChange};

/// Heartbeat interval of the suite: expiry 1,500 ms.
pub(crate) const HB: u64 = 1_000;
/// Grace period of the suite.
pub(crate) const GRACE: i64 = 3_000;
/// Typing TTL of the suite.
pub(crate) const TYPING_TTL: i64 = 6_000;
/// A start time far from zero.
pub(crate) const T: i64 = 1_700_000_000_000;
pub(crate) const ROOM_A: &str = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";
pub(crate) const ROOM_B: &str = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e70";

/// The timing every store in the suite uses.
pub(crate) fn timing() -> Timing {
    Timing::new(HB, GRACE as u64, TYPING_TTL as u64)
}

pub(crate) fn user(name: &str) -> UserRef {
    UserRef {
        id: format!("id-{name}"),
        name: name.into(),
    }
}

pub(crate) fn connect(conn_id: &str, name: &str) -> PresenceReport {
    PresenceReport::Connect {
        conn_id: conn_id.into(),
        user: user(name),
        node: "n1".into(),
    }
}

pub(crate) fn disconnect(conn_id: &str, name: &str) -> PresenceReport {
    PresenceReport::Disconnect {
        conn_id: conn_id.into(),
        user_id: user(name).id,
    }
}

pub(crate) fn join(conn_id: &str, name: &str, room: &str) -> PresenceReport {
    PresenceReport::Join {
        conn_id: conn_id.into(),
        user: user(name),
        room: room.into(),
    }
}

pub(crate) fn leave(conn_id: &str, name: &str, room: &str) -> PresenceReport {
    PresenceReport::Leave {
        conn_id: conn_id.into(),
        user_id: user(name).id,
        room: room.into(),
    }
}

pub(crate) fn typing(conn_id: &str, name: &str, room: &str, active: bool) -> PresenceReport {
    PresenceReport::Typing {
        conn_id: conn_id.into(),
        user: user(name),
        room: room.into(),
        active,
    }
}

/// `name` chose `status` (with `text`) at `at_ms`.
pub(crate) fn status(name: &str, status: Status, text: Option<&str>, at_ms: i64) -> PresenceReport {
    PresenceReport::Status {
        user: user(name),
        status,
        text: text.map(Into::into),
        at_ms,
    }
}

/// A choice of `status` (with `text`) made at `at_ms`.
pub(crate) fn choice(status: Status, text: Option<&str>, at_ms: i64) -> StatusChoice {
    StatusChoice {
        status,
        text: text.map(Into::into),
        at_ms,
    }
}

pub(crate) fn idle(conn_id: &str, name: &str, idle: bool) -> PresenceReport {
    PresenceReport::Idle {
        conn_id: conn_id.into(),
        user_id: user(name).id,
        idle,
    }
}

/// A live connection of `name` on `n1`, as a heartbeat lists it, with no choice.
pub(crate) fn live(conn_id: &str, name: &str, rooms: &[&str], idle: bool) -> LiveConn {
    LiveConn {
        conn_id: conn_id.into(),
        user: user(name),
        node: "n1".into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        idle,
        choice: None,
    }
}

/// `conn` carrying its user's `choice`, as a gateway repeats it.
pub(crate) fn choosing(conn: LiveConn, choice: StatusChoice) -> LiveConn {
    LiveConn {
        choice: Some(choice),
        ..conn
    }
}

pub(crate) fn heartbeat(conns: Vec<LiveConn>) -> HeartbeatReport {
    HeartbeatReport {
        node: "n1".into(),
        conns,
    }
}

/// The presence changes as `(name, status, text)`.
pub(crate) fn statuses(changes: &[Change]) -> Vec<(String, Status, Option<String>)> {
    presences(changes)
        .into_iter()
        .map(|p| (p.user.name.clone(), p.status, p.text.clone()))
        .collect()
}

pub(crate) fn presences(changes: &[Change]) -> Vec<&PresenceChange> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Presence(p) => Some(p),
            Change::Typing(_) => None,
        })
        .collect()
}

/// The choice records the presence changes carry, in order.
pub(crate) fn choices(changes: &[Change]) -> Vec<Option<StatusChoice>> {
    presences(changes)
        .into_iter()
        .map(|p| p.choice.clone())
        .collect()
}

/// The typing changes as `(room, name, active)`.
pub(crate) fn typings(changes: &[Change]) -> Vec<(String, String, bool)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Typing(t) => Some((t.room.clone(), t.user.name.clone(), t.active)),
            Change::Presence(_) => None,
        })
        .collect()
}

pub(crate) async fn apply(
    store: &dyn PresenceStore,
    reports: &[PresenceReport],
    now: i64,
) -> Vec<Change> {
    store.apply(reports, now).await.expect("apply")
}

/// Expands to one `#[tokio::test]` per conformance function, each running on
/// a fresh `(guard, store)` from `$fixture`.
macro_rules! suite {
    ($fixture:expr) => {
        $crate::store::conformance::suite!(@each $fixture; cases:
            the_first_connection_announces_online_once,
            a_second_device_keeps_the_user_online_and_the_last_goes_offline_after_grace,
            a_reconnect_within_the_grace_announces_nothing,
            an_expired_last_connection_goes_offline_at_once,
            a_chosen_status_with_text_is_announced_and_online_clears_it,
            away_when_every_connection_is_idle_unless_a_status_is_chosen,
            typing_is_announced_once_refreshed_silently_and_expires_once,
            typing_stops_once_on_false_leave_or_disconnect,
            a_heartbeat_re_registers_unknown_connections_with_rooms_and_idle,
            reports_about_unknown_or_foreign_connections_change_nothing,
            a_chosen_status_survives_a_reconnect_within_the_grace,
            a_conn_id_reported_for_another_user_moves_to_that_user,
            queries_list_live_connections_with_status_and_last_seen,
            the_offline_reaches_rooms_joined_by_connections_that_closed_earlier,
            a_room_left_on_every_connection_is_dropped_from_the_offline,
            admission_holds_the_per_user_cap
        );
        $crate::store::conformance::suite!(@each $fixture; repair:
            a_heartbeat_repairs_a_lost_join,
            a_heartbeat_repairs_a_lost_leave_and_stops_that_connections_typing,
            a_heartbeat_repairs_a_lost_idle_change_both_ways,
            a_heartbeat_repairs_a_lost_status_with_its_text_announced_once,
            an_older_choice_is_ignored_and_a_newer_one_wins,
            an_online_choice_clears_and_an_older_repeated_one_does_not_return,
            an_emptied_store_is_rebuilt_from_one_heartbeat_with_the_chosen_status,
            unchanged_heartbeats_announce_nothing,
            every_presence_change_carries_the_choice_record,
            going_offline_forgets_the_choice_and_its_time
        );
    };
    (@each $fixture:expr; $module:ident: $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_guard, store) = $fixture;
                $crate::store::conformance::$module::$name(&store).await;
            }
        )*
    };
}
pub(crate) use suite;

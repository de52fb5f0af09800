//! Bounds on what gateways report, checked before anything reaches the
//! store: conn ids and nodes are 1..=[`MAX_FIELD_BYTES`] characters, user
//! ids and names 1..=64 (the schema's `UserRef`), rooms canonical ids, a
//! status choice (a report's or a heartbeat's) not `offline`, its text at
//! most [`MAX_STATUS_TEXT_CHARS`] characters and its time not before the
//! epoch; a batch holds at most [`MAX_REPORTS`] reports, a heartbeat
//! [`MAX_HEARTBEAT_CONNS`] connections of at most [`MAX_ROOMS_PER_CONN`]
//! rooms each. Anything else is a 400.
//!
//! The internal routes are only reachable with the internal token, but they
//! still never let one request grow the store without bound.

use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    HeartbeatReport, LiveConn, MAX_STATUS_TEXT_CHARS, PresenceReport, PresenceReports, Status,
    UserRef, is_canonical_id,
};

use crate::store::MAX_ROOMS_PER_CONN;

/// Longest accepted conn id or node, in characters.
pub const MAX_FIELD_BYTES: usize = 256;
/// Most connections one heartbeat may list.
pub const MAX_HEARTBEAT_CONNS: usize = 100_000;
/// Most reports in one `POST /internal/presence/reports`.
pub const MAX_REPORTS: usize = 10_000;
/// Largest heartbeat body, bytes: the connection cap times a generous entry size.
pub(crate) const MAX_HEARTBEAT_BYTES: usize = 64 * 1024 * 1024;
/// Largest report batch body, bytes: the report cap times a generous report size.
pub(crate) const MAX_REPORTS_BYTES: usize = 16 * 1024 * 1024;

/// Most characters in a user id or name (the schema's bound on `UserRef`).
pub(crate) const MAX_USER_FIELD_CHARS: usize = 64;

fn bounded(name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    // Characters, as JSON Schema's maxLength counts them; `max` characters
    // are at most 4 x `max` bytes.
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{name} must be 1..={max} characters"
        )));
    }
    Ok(())
}

fn field(name: &str, value: &str) -> Result<(), ApiError> {
    bounded(name, value, MAX_FIELD_BYTES)
}

fn user(user: &UserRef) -> Result<(), ApiError> {
    bounded("user.id", &user.id, MAX_USER_FIELD_CHARS)?;
    bounded("user.name", &user.name, MAX_USER_FIELD_CHARS)
}

fn user_id(id: &str) -> Result<(), ApiError> {
    bounded("user_id", id, MAX_USER_FIELD_CHARS)
}

fn room(room: &str) -> Result<(), ApiError> {
    if !is_canonical_id(room) {
        return Err(ApiError::bad_request(
            "room must be a canonical lowercase UUID",
        ));
    }
    Ok(())
}

/// Checks the user id of `GET /internal/presence/users/{user_id}/connections`.
pub(crate) fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    field("user_id", user_id)
}

pub(crate) fn check_conn_id(conn_id: &str) -> Result<(), ApiError> {
    field("conn_id", conn_id)
}

fn check_live(conn: &LiveConn) -> Result<(), ApiError> {
    field("conn_id", &conn.conn_id)?;
    user(&conn.user)?;
    field("node", &conn.node)?;
    if conn.rooms.len() > MAX_ROOMS_PER_CONN {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ROOMS_PER_CONN} rooms per connection"
        )));
    }
    conn.rooms.iter().try_for_each(|r| room(r))?;
    match &conn.choice {
        Some(c) => check_status(c.status, c.text.as_deref(), c.at_ms),
        None => Ok(()),
    }
}

/// Checks a heartbeat and each connection in it.
pub fn check_heartbeat(report: &HeartbeatReport) -> Result<(), ApiError> {
    field("node", &report.node)?;
    if report.conns.len() > MAX_HEARTBEAT_CONNS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_HEARTBEAT_CONNS} connections per heartbeat"
        )));
    }
    report.conns.iter().try_for_each(check_live)
}

fn check_status(status: Status, text: Option<&str>, at_ms: i64) -> Result<(), ApiError> {
    if at_ms < 0 {
        return Err(ApiError::bad_request("at_ms must be a time (Unix ms)"));
    }
    if status == Status::Offline {
        return Err(ApiError::bad_request(
            "status must be online, away, busy or meditating",
        ));
    }
    if text.is_some_and(|t| t.chars().count() > MAX_STATUS_TEXT_CHARS) {
        return Err(ApiError::bad_request(format!(
            "status text must be at most {MAX_STATUS_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks one report of a batch.
fn check_report(report: &PresenceReport) -> Result<(), ApiError> {
    match report {
        PresenceReport::Connect {
            conn_id,
            user: u,
            node,
        } => {
            field("conn_id", conn_id)?;
            user(u)?;
            field("node", node)
        }
        PresenceReport::Disconnect {
            conn_id,
            user_id: u,
        }
        | PresenceReport::Idle {
            conn_id,
            user_id: u,
            ..
        } => {
            field("conn_id", conn_id)?;
            user_id(u)
        }
        PresenceReport::Join {
            conn_id,
            user: u,
            room: r,
        }
        | PresenceReport::Typing {
            conn_id,
            user: u,
            room: r,
            ..
        } => {
            field("conn_id", conn_id)?;
            user(u)?;
            room(r)
        }
        PresenceReport::Leave {
            conn_id,
            user_id: u,
            room: r,
        } => {
            field("conn_id", conn_id)?;
            user_id(u)?;
            room(r)
        }
        PresenceReport::Status {
            user: u,
            status,
            text,
            at_ms,
        } => {
            user(u)?;
            check_status(*status, text.as_deref(), *at_ms)
        }
    }
}

/// Checks a batch of reports and each report in it.
pub fn check_reports(batch: &PresenceReports) -> Result<(), ApiError> {
    field("node", &batch.node)?;
    if batch.reports.len() > MAX_REPORTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_REPORTS} reports per batch"
        )));
    }
    batch.reports.iter().try_for_each(check_report)
}

#[cfg(test)]
mod tests {
    use telepath_shared::protocol::StatusChoice;

    use super::*;

    const ROOM: &str = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";

    fn ada() -> UserRef {
        UserRef {
            id: "u1".into(),
            name: "ada".into(),
        }
    }

    fn connect(conn_id: &str) -> PresenceReports {
        batch(vec![PresenceReport::Connect {
            conn_id: conn_id.into(),
            user: ada(),
            node: "n1".into(),
        }])
    }

    fn batch(reports: Vec<PresenceReport>) -> PresenceReports {
        PresenceReports {
            node: "n1".into(),
            reports,
        }
    }

    fn status(status: Status, text: &str) -> PresenceReport {
        PresenceReport::Status {
            user: ada(),
            status,
            text: Some(text.into()),
            at_ms: 1,
        }
    }

    #[test]
    fn fields_of_up_to_256_characters_are_accepted() {
        assert!(check_reports(&connect(&"x".repeat(MAX_FIELD_BYTES))).is_ok());
    }

    #[test]
    fn an_empty_or_oversized_field_is_a_bad_request() {
        for id in [String::new(), "x".repeat(MAX_FIELD_BYTES + 1)] {
            let err = check_reports(&connect(&id)).unwrap_err();
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn a_heartbeat_over_the_connection_or_room_cap_is_a_bad_request() {
        let live = LiveConn {
            conn_id: "c".into(),
            user: ada(),
            node: "n1".into(),
            rooms: vec![ROOM.into()],
            idle: false,
            choice: None,
        };
        let report = |conns| HeartbeatReport {
            node: "n1".into(),
            conns,
        };
        assert!(check_heartbeat(&report(vec![live.clone()])).is_ok());
        let too_many = report(vec![live.clone(); MAX_HEARTBEAT_CONNS + 1]);
        assert_eq!(check_heartbeat(&too_many).unwrap_err().status(), 400);
        let mut crowded = live.clone();
        crowded.rooms = vec![ROOM.into(); MAX_ROOMS_PER_CONN + 1];
        assert_eq!(
            check_heartbeat(&report(vec![crowded]))
                .unwrap_err()
                .status(),
            400
        );
        let mut odd = live;
        odd.rooms = vec!["room:*".into()];
        assert_eq!(
            check_heartbeat(&report(vec![odd])).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn status_text_of_128_characters_is_accepted_and_129_is_not() {
        let ok = batch(vec![status(
            Status::Busy,
            &"é".repeat(MAX_STATUS_TEXT_CHARS),
        )]);
        assert!(check_reports(&ok).is_ok());
        let long = batch(vec![status(
            Status::Busy,
            &"é".repeat(MAX_STATUS_TEXT_CHARS + 1),
        )]);
        assert_eq!(check_reports(&long).unwrap_err().status(), 400);
    }

    #[test]
    fn a_heartbeats_choice_is_checked_like_a_status_report() {
        let with = |status, text: &str, at_ms| HeartbeatReport {
            node: "n1".into(),
            conns: vec![LiveConn {
                conn_id: "c".into(),
                user: ada(),
                node: "n1".into(),
                rooms: Vec::new(),
                idle: false,
                choice: Some(StatusChoice {
                    status,
                    text: Some(text.into()),
                    at_ms,
                }),
            }],
        };
        let long = "x".repeat(MAX_STATUS_TEXT_CHARS + 1);
        assert!(check_heartbeat(&with(Status::Meditating, "om", 0)).is_ok());
        for bad in [
            with(Status::Offline, "bye", 1),
            with(Status::Busy, &long, 1),
            with(Status::Busy, "x", -1),
        ] {
            assert_eq!(check_heartbeat(&bad).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn a_status_chosen_before_the_epoch_is_a_bad_request() {
        let mut early = status(Status::Busy, "x");
        if let PresenceReport::Status { at_ms, .. } = &mut early {
            *at_ms = -1;
        }
        assert_eq!(
            check_reports(&batch(vec![early])).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn offline_cannot_be_chosen() {
        let chosen = batch(vec![status(Status::Offline, "bye")]);
        assert_eq!(check_reports(&chosen).unwrap_err().status(), 400);
    }

    #[test]
    fn rooms_must_be_canonical_ids_and_batches_are_capped() {
        let join = |room: &str| PresenceReport::Join {
            conn_id: "c".into(),
            user: ada(),
            room: room.into(),
        };
        assert!(check_reports(&batch(vec![join(ROOM)])).is_ok());
        let upper = ROOM.to_uppercase();
        assert_eq!(
            check_reports(&batch(vec![join(&upper)]))
                .unwrap_err()
                .status(),
            400
        );
        let over = batch(vec![join(ROOM); MAX_REPORTS + 1]);
        assert_eq!(check_reports(&over).unwrap_err().status(), 400);
    }
}

//! Bounds on what gateways report: every id and name is non-empty and at
//! most [`MAX_FIELD_BYTES`], and a heartbeat lists at most
//! [`MAX_HEARTBEAT_CONNS`] connections. A user id the api puts in a query
//! path has the same bound.
//!
//! The internal routes are only reachable with the internal token, but they
//! still never let one request grow the store without bound.

use telepath_shared::http::ApiError;
use telepath_shared::protocol::{ConnReport, DisconnectReport, HeartbeatReport};

/// Longest accepted id, name or node, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Most connections one heartbeat may list.
pub const MAX_HEARTBEAT_CONNS: usize = 100_000;
/// Largest heartbeat body, bytes: the connection cap times a generous entry size.
pub(crate) const MAX_HEARTBEAT_BYTES: usize = 64 * 1024 * 1024;

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

/// Checks one reported connection.
pub(crate) fn check_conn(conn: &ConnReport) -> Result<(), ApiError> {
    field("conn_id", &conn.conn_id)?;
    bounded("user.id", &conn.user.id, MAX_USER_FIELD_CHARS)?;
    bounded("user.name", &conn.user.name, MAX_USER_FIELD_CHARS)?;
    field("node", &conn.node)
}

/// Checks a disconnect.
pub(crate) fn check_disconnect(report: &DisconnectReport) -> Result<(), ApiError> {
    field("conn_id", &report.conn_id)?;
    field("user_id", &report.user_id)
}

/// Checks the user id of `GET /internal/presence/users/{user_id}/connections`.
pub(crate) fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    field("user_id", user_id)
}

/// Checks a heartbeat and each connection in it.
pub(crate) fn check_heartbeat(report: &HeartbeatReport) -> Result<(), ApiError> {
    field("node", &report.node)?;
    if report.conns.len() > MAX_HEARTBEAT_CONNS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_HEARTBEAT_CONNS} connections per heartbeat"
        )));
    }
    report.conns.iter().try_for_each(check_conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use telepath_shared::protocol::UserRef;

    fn conn(conn_id: &str) -> ConnReport {
        ConnReport {
            conn_id: conn_id.into(),
            user: UserRef {
                id: "u1".into(),
                name: "ada".into(),
            },
            node: "n1".into(),
        }
    }

    #[test]
    fn fields_of_up_to_256_bytes_are_accepted() {
        assert!(check_conn(&conn(&"x".repeat(MAX_FIELD_BYTES))).is_ok());
    }

    #[test]
    fn an_empty_or_oversized_field_is_a_bad_request() {
        for id in [String::new(), "x".repeat(MAX_FIELD_BYTES + 1)] {
            let err = check_conn(&conn(&id)).unwrap_err();
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn a_heartbeat_over_the_connection_cap_is_a_bad_request() {
        let report = HeartbeatReport {
            node: "n1".into(),
            conns: vec![conn("c"); MAX_HEARTBEAT_CONNS + 1],
        };
        assert_eq!(check_heartbeat(&report).unwrap_err().status(), 400);
    }
}

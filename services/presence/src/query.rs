//! The answers to the api's internal queries: one user's live connections
//! ([`UserConnections`]) and everything live at once ([`PresenceSummary`]).
//!
//! The shapes live in `telepath_shared::protocol` (the api reads them with
//! the same types). This file turns store answers into those shapes
//! (totals, order); it reads no store itself.

use telepath_shared::protocol::{ConnReport, OnlineUser, PresenceSummary, UserConnections};

use crate::store::Summary;

/// The answer for `connections`, in a stable order (by conn id).
pub(crate) fn sorted_connections(mut connections: Vec<ConnReport>) -> UserConnections {
    connections.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
    UserConnections { connections }
}

impl From<Summary> for PresenceSummary {
    fn from(summary: Summary) -> Self {
        let Summary { mut users, by_node } = summary;
        sort_users(&mut users);
        PresenceSummary {
            online_users: users.len() as u64,
            connections: by_node.values().sum(),
            by_node,
            users,
        }
    }
}

/// Sorts users by name, then id (names need not be unique).
pub(crate) fn sort_users(users: &mut [OnlineUser]) {
    users.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use telepath_shared::protocol::Status;

    use super::*;

    fn user(id: &str, name: &str, connections: u64) -> OnlineUser {
        OnlineUser {
            id: id.into(),
            name: name.into(),
            status: Status::Online,
            text: None,
            last_seen: chrono::DateTime::UNIX_EPOCH,
            connections,
        }
    }

    #[test]
    fn a_summary_totals_the_nodes_and_sorts_users_by_name_then_id() {
        let summary = Summary {
            users: vec![
                user("2", "bob", 1),
                user("9", "ada", 1),
                user("1", "ada", 1),
            ],
            by_node: BTreeMap::from([("n1".into(), 2), ("n2".into(), 1)]),
        };
        let summary = PresenceSummary::from(summary);
        assert_eq!((summary.online_users, summary.connections), (3, 3));
        let ids: Vec<_> = summary.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["1", "9", "2"]);
    }

    #[test]
    fn an_empty_summary_serializes_every_field() {
        let json = serde_json::to_value(PresenceSummary::from(Summary::default())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"online_users": 0, "connections": 0, "by_node": {}, "users": []})
        );
    }
}

//! What the relay asks the hub when it catches up after a bus outage: who
//! is here and in which rooms (to re-read their membership and offline
//! queues from the api), and taking everyone out of a room that closed.

use std::collections::{BTreeMap, HashMap};

use telepath_shared::protocol::{UserRef, room_channel};

use super::Hub;

impl Hub {
    /// Every room a local connection has joined (confirmed), with the
    /// distinct users of those connections.
    pub(crate) fn rooms_and_users(&self) -> Vec<(String, Vec<UserRef>)> {
        let registry = self.registry();
        let mut rooms: BTreeMap<&str, HashMap<&str, &UserRef>> = BTreeMap::new();
        for local in registry.conns.values() {
            let user = &local.handle.control().user;
            for joined in local.rooms.iter().filter(|j| j.confirmed) {
                rooms
                    .entry(joined.room.as_str())
                    .or_default()
                    .insert(user.id.as_str(), user);
            }
        }
        rooms
            .into_iter()
            .map(|(room, users)| (room.to_owned(), users.into_values().cloned().collect()))
            .collect()
    }

    /// Every user with a local connection, once each.
    pub(crate) fn users(&self) -> Vec<UserRef> {
        let registry = self.registry();
        let mut users: HashMap<&str, &UserRef> = HashMap::new();
        for local in registry.conns.values() {
            let user = &local.handle.control().user;
            users.insert(user.id.as_str(), user);
        }
        users.into_values().cloned().collect()
    }

    /// Takes every local connection out of `room` (it was closed). Returns
    /// the `(conn_id, user_id)` of each. A join still waiting for the api
    /// is left alone: the api refuses it.
    pub(crate) fn close_room(&self, room: &str) -> Vec<(String, String)> {
        let (left, emptied) = {
            let mut registry = self.registry();
            let inside: Vec<_> = registry
                .conns
                .iter()
                .filter(|(_, local)| local.in_room(room))
                .map(|(conn, local)| {
                    let control = local.handle.control();
                    (*conn, control.conn_id.clone(), control.user.id.clone())
                })
                .collect();
            let mut emptied = false;
            let mut left = Vec::new();
            for (conn, conn_id, user_id) in inside {
                emptied |= registry.leave_room(room, conn);
                left.push((conn_id, user_id));
            }
            (left, emptied)
        };
        if emptied {
            self.unsubscribe(room_channel(room));
        }
        left
    }
}

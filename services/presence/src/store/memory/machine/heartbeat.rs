//! Heartbeats on the in-memory store: a node lists every live connection
//! with its whole state (rooms, idle flag, the user's latest choice) and
//! [`Op::heartbeat`] converges the maps to it, as `heartbeat` and `converge`
//! in `redis/presence.lua` do. A lost report is repaired this way, and an
//! empty store rebuilt; connections the node does not list are left to the
//! sweep.

use std::collections::HashSet;

use telepath_shared::protocol::{HeartbeatReport, LiveConn};

use super::Op;

impl Op<'_> {
    /// Brings a known connection to the rooms and idle flag its gateway
    /// listed: a listed room it is not recorded in is joined and a recorded
    /// one not listed is left, exactly as Join and Leave reports would (seen
    /// rooms, typing); leaves go first so a full connection can swap rooms.
    /// Returns whether anything changed; the caller settles the user.
    fn converge(&mut self, live: &LiveConn) -> bool {
        let (conn_id, user_id) = (live.conn_id.as_str(), live.user.id.as_str());
        let Some(conn) = self.owned(conn_id, user_id) else {
            return false;
        };
        let idle_changed = conn.idle != live.idle;
        conn.idle = live.idle;
        let listed: HashSet<&str> = live.rooms.iter().map(String::as_str).collect();
        let left: Vec<String> = conn
            .rooms
            .iter()
            .filter(|r| !listed.contains(r.as_str()))
            .cloned()
            .collect();
        let mut changed = idle_changed || !left.is_empty();
        for room in &left {
            self.leave(conn_id, user_id, room);
        }
        for room in &live.rooms {
            let recorded = self
                .owned(conn_id, user_id)
                .is_some_and(|c| c.rooms.contains(room));
            if !recorded && self.join(conn_id, user_id, room) {
                changed = true;
            }
        }
        changed
    }

    /// Converges presence to a node's heartbeat: each listed connection's
    /// last heartbeat becomes now; a known one converges to its listed rooms
    /// and idle flag, an unknown one is registered with them; a listed
    /// choice newer than the user's recorded one is taken. Then every user
    /// whose state changed settles, once, in the order first changed.
    pub(in crate::store::memory) fn heartbeat(&mut self, report: &HeartbeatReport) {
        let now = self.now;
        let mut changed: HashSet<&str> = HashSet::new();
        let mut order: Vec<&str> = Vec::new();
        for live in &report.conns {
            let mut dirty = match self.owned(&live.conn_id, &live.user.id) {
                Some(conn) => {
                    conn.last_ms = now;
                    self.converge(live)
                }
                None => {
                    self.register(
                        &live.conn_id,
                        &live.user,
                        &live.node,
                        live.idle,
                        &live.rooms,
                    );
                    true
                }
            };
            if let Some(c) = &live.choice {
                dirty |= self.choose(&live.user, c.status, &c.text, c.at_ms);
            }
            if dirty && changed.insert(&live.user.id) {
                order.push(&live.user.id);
            }
        }
        for user_id in order {
            self.settle(user_id, now);
        }
    }
}

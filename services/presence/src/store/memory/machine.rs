//! The in-memory store's state machine: the maps (connections, users,
//! typing indicators) and [`Op`], one operation on them under the store's
//! lock. It mirrors `redis/presence.lua` function by function (register,
//! remove_conn, disconnect, join, leave, choose, converge, heartbeat,
//! settle, go_offline, sweep...), so both stores keep the same semantics;
//! `store/conformance.rs` checks that they do.
//!
//! Heartbeats, which converge these maps to a node's listed connections,
//! are in `machine/heartbeat.rs`. Nothing here locks or awaits: `memory.rs`
//! owns the mutex.

mod heartbeat;

use std::collections::{BTreeSet, HashMap, HashSet};

use telepath_shared::protocol::{ConnReport, PresenceReport, Status, StatusChoice, UserRef};

use crate::change::{Change, PresenceChange, TypingChange};
use crate::store::{MAX_ROOMS_PER_CONN, Summary, Tally, Timing};

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// conn id -> connection.
    conns: HashMap<String, Conn>,
    /// user id -> user; present while the user is announced or pending offline.
    users: HashMap<String, User>,
    /// (room, user id) -> typing indicator.
    typing: HashMap<(String, String), Typing>,
    /// user id -> conn id -> when it was admitted, until it is registered.
    admitted: HashMap<String, HashMap<String, i64>>,
}

#[derive(Debug)]
struct Conn {
    user_id: String,
    name: String,
    node: String,
    /// Last heartbeat (or connect), ms.
    last_ms: i64,
    idle: bool,
    rooms: BTreeSet<String>,
}

/// An effective status and its text, as announced.
type Shown = (Status, Option<String>);

#[derive(Debug, Default)]
struct User {
    name: String,
    conns: HashSet<String>,
    /// The user's latest status choice and its time; `None` before the
    /// first. An `online` choice (text `None`) is the choice to have none:
    /// automatic online/away, but its time still orders later choices.
    choice: Option<StatusChoice>,
    /// What was last announced; `None` before the first announcement.
    announced: Option<Shown>,
    /// Set between the last disconnect and the end of the grace period.
    pending: Option<Pending>,
    /// Every room any of the user's connections joined (by a join report or
    /// a heartbeat) since the user came online, less those the user left on
    /// every connection (by a leave report or a heartbeat): the user's
    /// `offline` goes to all of them, even when the connection that joined
    /// one closed before the last one.
    seen_rooms: BTreeSet<String>,
}

#[derive(Debug)]
struct Pending {
    due_ms: i64,
    ended_ms: i64,
    rooms: Vec<String>,
}

#[derive(Debug)]
struct Typing {
    expires_ms: i64,
    /// The connection that reported it; its leave or disconnect stops it.
    conn_id: String,
    name: String,
}

/// One operation on the locked state at time `now`, collecting its changes.
pub(super) struct Op<'a> {
    inner: &'a mut Inner,
    timing: Timing,
    now: i64,
    out: Vec<Change>,
}

impl Op<'_> {
    /// Runs `f` as one operation on `inner` at `now`; returns its changes in order.
    pub(super) fn run(
        inner: &mut Inner,
        timing: Timing,
        now: i64,
        f: impl FnOnce(&mut Op<'_>),
    ) -> Vec<Change> {
        let mut op = Op {
            inner,
            timing,
            now,
            out: Vec::new(),
        };
        f(&mut op);
        op.out
    }

    /// Applies one report.
    pub(super) fn report(&mut self, report: &PresenceReport) {
        match report {
            PresenceReport::Connect {
                conn_id,
                user,
                node,
            } => {
                self.register(conn_id, user, node, false, &[]);
                self.settle(&user.id, self.now);
            }
            PresenceReport::Disconnect { conn_id, .. } => self.disconnect(conn_id),
            PresenceReport::Join {
                conn_id,
                user,
                room,
            } => {
                self.join(conn_id, &user.id, room);
            }
            PresenceReport::Leave {
                conn_id,
                user_id,
                room,
            } => self.leave(conn_id, user_id, room),
            PresenceReport::Typing {
                conn_id,
                user,
                room,
                active,
            } => self.typing(conn_id, user, room, *active),
            PresenceReport::Status {
                user,
                status,
                text,
                at_ms,
            } => {
                if self.choose(user, *status, text, *at_ms) {
                    self.settle(&user.id, self.now);
                }
            }
            PresenceReport::Idle {
                conn_id,
                user_id,
                idle,
            } => self.set_idle(conn_id, user_id, *idle),
        }
    }

    /// The connection `conn_id` if `user_id` owns it.
    fn owned(&mut self, conn_id: &str, user_id: &str) -> Option<&mut Conn> {
        self.inner
            .conns
            .get_mut(conn_id)
            .filter(|c| c.user_id == user_id)
    }

    /// Adds or refreshes a connection; a conn id seen under another user is
    /// first disconnected from that user. The caller settles the user.
    fn register(
        &mut self,
        conn_id: &str,
        user: &UserRef,
        node: &str,
        idle: bool,
        rooms: &[String],
    ) {
        if self
            .inner
            .conns
            .get(conn_id)
            .is_some_and(|c| c.user_id != user.id)
        {
            self.disconnect(conn_id);
        }
        match self.inner.conns.get_mut(conn_id) {
            Some(conn) => {
                conn.name.clone_from(&user.name);
                conn.node = node.to_owned();
                conn.last_ms = self.now;
            }
            None => {
                let rooms: BTreeSet<String> =
                    rooms.iter().take(MAX_ROOMS_PER_CONN).cloned().collect();
                let entry = self.inner.users.entry(user.id.clone()).or_default();
                entry.seen_rooms.extend(rooms.iter().cloned());
                let conn = Conn {
                    user_id: user.id.clone(),
                    name: user.name.clone(),
                    node: node.to_owned(),
                    last_ms: self.now,
                    idle,
                    rooms,
                };
                self.inner.conns.insert(conn_id.to_owned(), conn);
            }
        }
        // Admitted and now registered: counted once, as a connection.
        if let Some(admitted) = self.inner.admitted.get_mut(&user.id) {
            admitted.remove(conn_id);
            if admitted.is_empty() {
                self.inner.admitted.remove(&user.id);
            }
        }
        let entry = self.inner.users.entry(user.id.clone()).or_default();
        entry.name.clone_from(&user.name);
        entry.conns.insert(conn_id.to_owned());
        // A connection within the grace period: the user never went offline.
        entry.pending = None;
    }

    /// Forgets a connection, its room memberships and its typing indicators.
    fn remove_conn(&mut self, conn_id: &str) -> Option<Conn> {
        let conn = self.inner.conns.remove(conn_id)?;
        if let Some(user) = self.inner.users.get_mut(&conn.user_id) {
            user.conns.remove(conn_id);
        }
        for room in &conn.rooms {
            self.stop_typing_of(conn_id, &conn.user_id, room);
        }
        Some(conn)
    }

    /// A connection ended: the user settles, or becomes pending offline.
    fn disconnect(&mut self, conn_id: &str) {
        let Some(conn) = self.remove_conn(conn_id) else {
            return;
        };
        let Some(user) = self.inner.users.get_mut(&conn.user_id) else {
            return;
        };
        if !user.conns.is_empty() {
            self.settle(&conn.user_id, self.now);
        } else if user.announced.is_none() {
            self.inner.users.remove(&conn.user_id);
        } else {
            // The seen rooms stay: a reconnect within the grace continues the session.
            let rooms = user.seen_rooms.iter().cloned().chain(conn.rooms);
            user.pending = Some(Pending {
                due_ms: self.now.saturating_add(self.timing.grace_ms),
                ended_ms: self.now,
                rooms: rooms.collect::<BTreeSet<_>>().into_iter().collect(),
            });
        }
    }

    /// `conn_id` joined `room` (unless it is in [`MAX_ROOMS_PER_CONN`]
    /// rooms already); returns whether it was recorded.
    fn join(&mut self, conn_id: &str, user_id: &str, room: &str) -> bool {
        let Some(conn) = self.owned(conn_id, user_id) else {
            return false;
        };
        if conn.rooms.len() >= MAX_ROOMS_PER_CONN {
            return false;
        }
        conn.rooms.insert(room.to_owned());
        if let Some(user) = self.inner.users.get_mut(user_id) {
            user.seen_rooms.insert(room.to_owned());
        }
        true
    }

    /// The user left `room` on `conn_id`: once none of their connections is
    /// in it, its members no longer need the user's `offline`.
    fn leave(&mut self, conn_id: &str, user_id: &str, room: &str) {
        if let Some(conn) = self.owned(conn_id, user_id) {
            conn.rooms.remove(room);
            let inner = &mut *self.inner;
            if let Some(user) = inner.users.get_mut(user_id) {
                let still = user
                    .conns
                    .iter()
                    .any(|id| inner.conns.get(id).is_some_and(|c| c.rooms.contains(room)));
                if !still {
                    user.seen_rooms.remove(room);
                }
            }
        }
        self.stop_typing_of(conn_id, user_id, room);
    }

    fn typing(&mut self, conn_id: &str, user: &UserRef, room: &str, active: bool) {
        let key = (room.to_owned(), user.id.clone());
        if !active {
            if self.inner.typing.remove(&key).is_some() {
                self.typed(room, user.clone(), false);
            }
            return;
        }
        if self.owned(conn_id, &user.id).is_none() {
            return;
        }
        let entry = Typing {
            expires_ms: self.now.saturating_add(self.timing.typing_ttl_ms),
            conn_id: conn_id.to_owned(),
            name: user.name.clone(),
        };
        // A refresh only moves the expiry: nothing to announce.
        if self.inner.typing.insert(key, entry).is_none() {
            self.typed(room, user.clone(), true);
        }
    }

    /// Stops `user_id`'s typing in `room` if `conn_id` reported it.
    fn stop_typing_of(&mut self, conn_id: &str, user_id: &str, room: &str) {
        let key = (room.to_owned(), user_id.to_owned());
        let reported = self.inner.typing.get(&key).map(|t| t.conn_id.as_str());
        if reported != Some(conn_id) {
            return;
        }
        if let Some(t) = self.inner.typing.remove(&key) {
            let user = UserRef {
                id: user_id.to_owned(),
                name: t.name,
            };
            self.typed(room, user, false);
        }
    }

    fn typed(&mut self, room: &str, user: UserRef, active: bool) {
        let room = room.to_owned();
        self.out
            .push(Change::Typing(TypingChange { room, user, active }));
    }

    /// Records the user's choice made at `at_ms` if it is newer than the
    /// recorded one (or none is); `online` clears the chosen status. Ignored
    /// for users who are offline (no connection and not pending). Returns
    /// whether it was recorded; the caller settles the user.
    fn choose(
        &mut self,
        user: &UserRef,
        status: Status,
        text: &Option<String>,
        at_ms: i64,
    ) -> bool {
        if status == Status::Offline {
            return false;
        }
        let Some(entry) = self.inner.users.get_mut(&user.id) else {
            return false;
        };
        if entry.choice.as_ref().is_some_and(|c| at_ms <= c.at_ms) {
            return false;
        }
        entry.name.clone_from(&user.name);
        let text = text.clone().filter(|t| !t.is_empty());
        entry.choice = Some(StatusChoice {
            status,
            text: text.filter(|_| status != Status::Online),
            at_ms,
        });
        true
    }

    fn set_idle(&mut self, conn_id: &str, user_id: &str, idle: bool) {
        if let Some(conn) = self.owned(conn_id, user_id) {
            conn.idle = idle;
            self.settle(user_id, self.now);
        }
    }

    /// Announces the user's effective status if it differs from the announced one.
    fn settle(&mut self, user_id: &str, cause_ms: i64) {
        let Some(user) = self.inner.users.get(user_id) else {
            return;
        };
        if user.conns.is_empty() {
            return;
        }
        let conns: Vec<&Conn> = user
            .conns
            .iter()
            .filter_map(|id| self.inner.conns.get(id))
            .collect();
        let chosen = user.choice.as_ref().filter(|c| c.status != Status::Online);
        let effective = chosen.map_or_else(
            || {
                let away = conns.iter().all(|c| c.idle);
                (if away { Status::Away } else { Status::Online }, None)
            },
            |c| (c.status, c.text.clone()),
        );
        if user.announced.as_ref() == Some(&effective) {
            return;
        }
        let rooms: BTreeSet<&String> = conns.iter().flat_map(|c| &c.rooms).collect();
        let rooms = rooms.into_iter().cloned().collect();
        let (name, choice) = (user.name.clone(), user.choice.clone());
        if let Some(user) = self.inner.users.get_mut(user_id) {
            user.announced = Some(effective.clone());
        }
        let (status, text) = effective;
        self.out.push(Change::Presence(PresenceChange {
            user: UserRef {
                id: user_id.to_owned(),
                name,
            },
            status,
            text,
            choice,
            last_seen_ms: self.now,
            rooms,
            cause_ms,
        }));
    }

    /// Forgets the user (their choice and its time, the rooms they were seen in);
    /// announces `offline` to `rooms` and every seen room if anything was
    /// announced.
    fn go_offline(
        &mut self,
        user_id: &str,
        last_seen_ms: i64,
        rooms: impl IntoIterator<Item = String>,
        cause_ms: i64,
    ) {
        let Some(user) = self.inner.users.remove(user_id) else {
            return;
        };
        if user.announced.is_some() {
            let rooms: BTreeSet<String> = rooms.into_iter().chain(user.seen_rooms).collect();
            let rooms = rooms.into_iter().collect();
            self.out.push(Change::Presence(PresenceChange {
                user: UserRef {
                    id: user_id.to_owned(),
                    name: user.name,
                },
                status: Status::Offline,
                text: None,
                choice: None,
                last_seen_ms,
                rooms,
                cause_ms,
            }));
        }
    }

    /// Expires stale connections, fires due pending users, expires typing;
    /// returns the expired conn ids.
    pub(super) fn sweep(&mut self) -> Vec<String> {
        let cutoff = self.now.saturating_sub(self.timing.expiry_ms);
        // Admissions never registered (their connection never came up) stop
        // counting after the expiry; forget them here too, so users who
        // never connect again leave nothing behind.
        self.inner.admitted.retain(|_, conns| {
            conns.retain(|_, at| *at >= cutoff);
            !conns.is_empty()
        });
        let mut stale: Vec<(i64, String)> = self
            .inner
            .conns
            .iter()
            .filter(|(_, c)| c.last_ms < cutoff)
            .map(|(id, c)| (c.last_ms, id.clone()))
            .collect();
        stale.sort();
        // user id -> (latest last heartbeat, rooms) of their expired connections.
        let mut gone: Vec<(String, i64, BTreeSet<String>)> = Vec::new();
        for (_, id) in &stale {
            let Some(conn) = self.remove_conn(id) else {
                continue;
            };
            match gone.iter_mut().find(|(u, _, _)| *u == conn.user_id) {
                Some((_, last, rooms)) => {
                    *last = (*last).max(conn.last_ms);
                    rooms.extend(conn.rooms);
                }
                None => gone.push((conn.user_id, conn.last_ms, conn.rooms)),
            }
        }
        for (user_id, last_ms, rooms) in gone {
            let cause = last_ms.saturating_add(self.timing.expiry_ms);
            match self.inner.users.get(&user_id) {
                Some(user) if !user.conns.is_empty() => self.settle(&user_id, cause),
                Some(_) => self.go_offline(&user_id, last_ms, rooms, cause),
                None => {}
            }
        }
        self.fire_pending();
        self.expire_typing();
        stale.into_iter().map(|(_, id)| id).collect()
    }

    fn fire_pending(&mut self) {
        let mut due: Vec<(i64, String)> = self
            .inner
            .users
            .iter()
            .filter_map(|(id, u)| Some((u.pending.as_ref()?.due_ms, id.clone())))
            .filter(|(due, _)| *due <= self.now)
            .collect();
        due.sort();
        for (due_ms, user_id) in due {
            let Some(user) = self.inner.users.get_mut(&user_id) else {
                continue;
            };
            let Some(pending) = user.pending.take() else {
                continue;
            };
            if user.conns.is_empty() {
                self.go_offline(&user_id, pending.ended_ms, pending.rooms, due_ms);
            }
        }
    }

    fn expire_typing(&mut self) {
        let mut due: Vec<(i64, (String, String))> = self
            .inner
            .typing
            .iter()
            .filter(|(_, t)| t.expires_ms <= self.now)
            .map(|(key, t)| (t.expires_ms, key.clone()))
            .collect();
        due.sort();
        for (_, key) in due {
            if let Some(t) = self.inner.typing.remove(&key) {
                let (room, id) = key;
                self.typed(&room, UserRef { id, name: t.name }, false);
            }
        }
    }
}

impl Inner {
    /// Admissions not registered yet, over every user.
    #[cfg(test)]
    pub(super) fn admissions(&self) -> usize {
        self.admitted.values().map(HashMap::len).sum()
    }

    /// Admits `conn_id` while `user_id` has fewer than `max` connections:
    /// registered ones plus those admitted at or after `since` and not
    /// registered yet (older admissions are forgotten).
    pub(super) fn admit(
        &mut self,
        conn_id: &str,
        user_id: &str,
        max: u32,
        since: i64,
        now: i64,
    ) -> bool {
        let registered = self.users.get(user_id).map_or(0, |u| u.conns.len());
        let admitted = self.admitted.entry(user_id.to_owned()).or_default();
        admitted.retain(|_, at| *at >= since);
        if registered + admitted.len() >= max as usize {
            if admitted.is_empty() {
                self.admitted.remove(user_id);
            }
            return false;
        }
        admitted.insert(conn_id.to_owned(), now);
        true
    }

    /// Every connection heard from at or after `live_from`.
    pub(super) fn live(&self, live_from: i64) -> Summary {
        let mut tally = Tally::default();
        for conn in self.conns.values().filter(|c| c.last_ms >= live_from) {
            tally.add(&conn.user_id, &conn.name, &conn.node, conn.last_ms);
        }
        tally.finish(|id| self.users.get(id)?.announced.clone())
    }

    /// The connections of `user_id` heard from at or after `live_from`.
    pub(super) fn connections(&self, user_id: &str, live_from: i64) -> Vec<ConnReport> {
        let Some(user) = self.users.get(user_id) else {
            return Vec::new();
        };
        user.conns
            .iter()
            .filter_map(|id| Some((id, self.conns.get(id)?)))
            .filter(|(_, c)| c.last_ms >= live_from)
            .map(|(id, conn)| ConnReport {
                conn_id: id.clone(),
                user: UserRef {
                    id: conn.user_id.clone(),
                    name: conn.name.clone(),
                },
                node: conn.node.clone(),
            })
            .collect()
    }
}

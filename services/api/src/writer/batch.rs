//! Persisting one group commit in a handful of statements, whatever its size.
//!
//! A batch holds room messages and changes (edits, deletes, reactions, read
//! cursors). Each is decided in order against the state the batch has built
//! so far, so a message and its edit, or two toggles of one reaction, in the
//! same batch come out as if committed one by one.
//!
//! sqlx runs each SQLite statement on the connection's own thread, so every
//! statement is a round trip between threads (two thread switches, far
//! slower than the statement itself when the machine is idle or busy):
//! per-message statements made that hand-over, not SQLite, the writer's
//! cost. A batch is instead read in one statement (the rooms' state and
//! seq, with the senders' memberships; a second one only when sends carry a
//! `client_id`: earlier messages with it), decided in Rust (which job is a
//! repeat, refused, or gets which seq), and written in one round trip: the
//! `UPDATE` of every room it moved, one multi-row `INSERT`, the full-text
//! entries and whatever changes the batch holds, as one multi-statement
//! query. Ids and seqs travel as JSON arrays (`json_each`); what users
//! wrote (bodies, client ids, kinds) is always bound as parameters of its
//! own. The caller wraps it in one
//! `BEGIN IMMEDIATE` transaction: a database error aborts the whole batch,
//! so no seq is ever taken without its message.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ChangeOp, ChangeResult, ErrorCode, InternalChange, LogEntry, MAX_EMOJI_PER_MESSAGE, Message,
    MessageDeleted, MessageEdited, ReactionEvent, Receipt, RoomRole, UserRef,
};

use super::{Done, Job, Persisted, Work};
use crate::store::{MessageRow, now};

/// Rows per `INSERT` statement (at most 10 parameters each, far below SQLite's limit).
const INSERT_ROWS: usize = 500;

/// A room as the batch sees it.
struct RoomState {
    active: bool,
    last_seq: i64,
    /// Whether this batch moved `last_seq` (the row needs its `UPDATE`).
    moved: bool,
}

impl RoomState {
    fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.moved = true;
        self.last_seq
    }
}

/// An active participant as the batch sees it.
struct Member {
    role: String,
    read_seq: i64,
    /// Until when the member may not send, edit or react.
    muted_until: Option<DateTime<Utc>>,
    /// Whether this batch moved `read_seq`.
    moved: bool,
}

/// A message a change or a reply names, as the batch sees it.
struct Target {
    room: Option<String>,
    sender: String,
    seq: i64,
    body: String,
    deleted: bool,
    edit_seq: Option<i64>,
    delete_seq: Option<i64>,
    /// The batch edited it (its body and edit_seq need writing).
    edited: bool,
    /// The batch deleted it.
    removed: bool,
}

/// The reactions of the messages the batch reacts to.
#[derive(Default)]
struct Reactions {
    /// (message, emoji) -> how many users have it.
    counts: HashMap<(String, String), i64>,
    /// message -> its distinct emoji.
    emoji: HashMap<String, HashSet<String>>,
    /// (message, emoji, user) -> the seq that put it on, for those the batch names.
    users: HashMap<(String, String, String), Option<i64>>,
    /// The (message, emoji, user) whose state this batch changed.
    changed: HashSet<(String, String, String)>,
}

/// Everything a batch reads before deciding, and what it decided.
struct State {
    rooms: HashMap<String, RoomState>,
    members: HashMap<String, Member>,
    targets: HashMap<String, Target>,
    reactions: Reactions,
    /// (sender, client_id) -> the message it names, earlier or in this batch.
    by_client_id: HashMap<(String, String), Earlier>,
    ts: DateTime<Utc>,
    /// New messages and their client ids, in order.
    fresh: Vec<(Message, Option<String>)>,
    /// New change entries of the log, in order.
    events: Vec<LogEntry>,
    /// parent id -> replies added by this batch.
    replies: HashMap<String, i64>,
}

/// Persists `batch` on `conn` (inside the caller's transaction); one
/// outcome per job, in order.
pub(super) async fn persist(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<(Vec<Result<Persisted, ApiError>>, Notified), sqlx::Error> {
    let by_client_id = earlier_messages(conn, batch).await?;
    let (rooms, members) = rooms_and_members(conn, batch).await?;
    let targets = targets(conn, batch).await?;
    let reactions = reactions(conn, batch).await?;
    let mut state = State {
        rooms,
        members,
        targets,
        reactions,
        by_client_id,
        ts: now(),
        fresh: Vec::new(),
        events: Vec::new(),
        replies: HashMap::new(),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = match &job.work {
            Work::Send { room, send, server } => decide_send(&mut state, room, send, *server),
            Work::Change(change) => decide_change(conn, &mut state, change).await?,
        };
        outcomes.push(outcome);
    }
    write(conn, &state).await?;
    let notified = notify(conn, &state).await?;
    // Each new message into its send's outcome (both in the batch's order).
    let mut fresh = state.fresh.into_iter().map(|(m, _)| m);
    for p in outcomes.iter_mut().flatten() {
        if p.done.is_none() {
            p.entry = fresh.next().map(LogEntry::Message);
        }
    }
    Ok((outcomes, notified))
}

/// The notifications a batch wrote: (user, notification), to publish.
pub(super) type Notified = Vec<(String, telepath_shared::protocol::Notification)>;

/// The notifications the batch's new messages and reactions make: a
/// mention of a participant, a reply to a message, a reaction put on a
/// message (its author's; never one's own). Nothing to read when the batch
/// has none: no `@`, no reply, no reaction.
async fn notify(conn: &mut SqliteConnection, state: &State) -> Result<Notified, sqlx::Error> {
    use crate::notifications::{NewNotification, excerpt, mentions};
    use telepath_shared::protocol::NotificationKind;
    let mut new = Vec::new();
    let mut named: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, (m, _)) in state.fresh.iter().enumerate() {
        let names = mentions(&m.body);
        if !names.is_empty() {
            named.push((i, names));
        }
        let Some(parent) = m.reply_to.as_deref() else {
            continue;
        };
        let author = state
            .targets
            .get(parent)
            .map(|t| t.sender.clone())
            .or_else(|| {
                state
                    .fresh
                    .iter()
                    .find(|(p, _)| p.id == parent)
                    .map(|(p, _)| p.from.id.clone())
            });
        if let Some(author) = author {
            new.push(NewNotification {
                user_id: author,
                kind: NotificationKind::Reply,
                app_key: None,
                room: Some(m.room.clone()),
                message_id: Some(m.id.clone()),
                from: Some(m.from.clone()),
                text: excerpt(&m.body),
            });
        }
    }
    if !named.is_empty() {
        let names: HashSet<&str> = named
            .iter()
            .flat_map(|(_, n)| n.iter().map(String::as_str))
            .collect();
        let users: Vec<(String, String)> = sqlx::query_as(
            "SELECT username, id FROM users WHERE username IN (SELECT value FROM json_each(?))",
        )
        .bind(json(&names))
        .fetch_all(&mut *conn)
        .await?;
        let ids: HashMap<String, String> = users.into_iter().collect();
        for (i, names) in named {
            let m = &state.fresh[i].0;
            for name in names {
                if let Some(id) = ids.get(&name) {
                    new.push(NewNotification {
                        user_id: id.clone(),
                        kind: NotificationKind::Mention,
                        app_key: None,
                        room: Some(m.room.clone()),
                        message_id: Some(m.id.clone()),
                        from: Some(m.from.clone()),
                        text: excerpt(&m.body),
                    });
                }
            }
        }
    }
    for e in &state.events {
        let LogEntry::Reaction(r) = e else { continue };
        if !r.on {
            continue;
        }
        if let Some(t) = state.targets.get(&r.id) {
            new.push(NewNotification {
                user_id: t.sender.clone(),
                kind: NotificationKind::Reaction,
                app_key: None,
                room: Some(r.room.clone()),
                message_id: Some(r.id.clone()),
                from: Some(r.user.clone()),
                text: format!("{} on: {}", r.emoji, excerpt(&t.body)),
            });
        }
    }
    // Never one's own; a reply that mentions its parent's author notifies once.
    new.retain(|n| n.from.as_ref().is_none_or(|f| f.id != n.user_id));
    let mut seen = HashSet::new();
    new.retain(|n| {
        seen.insert((
            n.user_id.clone(),
            n.message_id.clone(),
            n.kind == NotificationKind::Reaction,
        ))
    });
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let new = crate::notifications::only_participants(conn, new).await?;
    crate::notifications::insert(conn, new, state.ts).await
}

fn decide_send(
    state: &mut State,
    room_id: &str,
    send: &telepath_shared::protocol::InternalSend,
    server: bool,
) -> Result<Persisted, ApiError> {
    let from = &send.from;
    let key = send
        .client_id
        .as_ref()
        .map(|c| (from.id.clone(), c.clone()));
    match key.as_ref().and_then(|k| state.by_client_id.get(k)) {
        Some(Earlier::Room(message)) => {
            return Ok(Persisted {
                done: Some(Done::Message((**message).clone())),
                entry: None,
                receipt: None,
            });
        }
        // One key, one message: storing this one would break the unique
        // index and with it the whole batch.
        Some(Earlier::Direct) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "client_id already names a direct message of this sender",
            ));
        }
        None => {}
    }
    let Some(room) = state.rooms.get_mut(room_id) else {
        return Err(ApiError::not_found("no such room"));
    };
    let member = state.members.get(&member_key(room_id, &from.id));
    if member.is_none() && !server {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "join the room before sending to it",
        ));
    }
    // Checked after membership so non-members learn nothing about the room's state.
    if !room.active {
        return Err(ApiError::new(ErrorCode::Forbidden, "the room is closed"));
    }
    let muted = member.is_some_and(|m| m.muted_until.is_some_and(|until| until > state.ts));
    if muted && !server {
        return Err(muted_error());
    }
    if let Some(parent) = &send.reply_to {
        let same_room = state
            .targets
            .get(parent)
            .is_some_and(|t| t.room.as_deref() == Some(room_id));
        if !same_room {
            return Err(ApiError::not_found(
                "reply_to names no message of this room",
            ));
        }
    }
    let seq = room.next_seq();
    let message = Message::new(
        room_id.to_owned(),
        uuid::Uuid::now_v7().hyphenated().to_string(),
        seq,
        from.clone(),
        send.body.clone(),
        send.kind.clone().unwrap_or_else(|| "text".to_owned()),
        state.ts,
        send.reply_to.clone(),
    );
    if let Some(parent) = &send.reply_to {
        *state.replies.entry(parent.clone()).or_default() += 1;
    }
    state.targets.insert(
        message.id.clone(),
        Target {
            room: Some(room_id.to_owned()),
            sender: from.id.clone(),
            seq,
            body: message.body.clone(),
            deleted: false,
            edit_seq: None,
            delete_seq: None,
            edited: false,
            removed: false,
        },
    );
    if let Some(k) = key {
        state
            .by_client_id
            .insert(k, Earlier::Room(Box::new(message.clone())));
    }
    // The message itself moves into the outcome (its entry, then its
    // reply) once the batch is written: no copy of it is made.
    state.fresh.push((message, send.client_id.clone()));
    Ok(Persisted {
        done: None,
        entry: None,
        receipt: None,
    })
}

/// The refusal of a muted member's send, edit or reaction.
fn muted_error() -> ApiError {
    ApiError::new(ErrorCode::Forbidden, "you are muted in this room")
}

/// A change that changed nothing: its reply, no entry.
fn unchanged(result: ChangeResult) -> Result<Result<Persisted, ApiError>, sqlx::Error> {
    Ok(Ok(Persisted {
        done: Some(Done::Change(result)),
        entry: None,
        receipt: None,
    }))
}

async fn decide_change(
    conn: &mut SqliteConnection,
    state: &mut State,
    change: &InternalChange,
) -> Result<Result<Persisted, ApiError>, sqlx::Error> {
    let Some(room_id) = change.room.as_deref() else {
        // DM changes never reach the writer.
        return Ok(Err(ApiError::bad_request("room is required")));
    };
    let from = &change.from;
    let Some(room) = state.rooms.get_mut(room_id) else {
        return Ok(Err(ApiError::not_found("no such room")));
    };
    let member = state.members.get_mut(&member_key(room_id, &from.id));
    // Owners and moderators may delete anyone's message.
    let moderates = member
        .as_ref()
        .is_some_and(|m| RoomRole::parse(&m.role) >= RoomRole::Moderator);
    let muted = member
        .as_ref()
        .is_some_and(|m| m.muted_until.is_some_and(|until| until > state.ts));
    if member.is_none() && !(change.admin && change.op == ChangeOp::Delete) {
        return Ok(Err(ApiError::new(
            ErrorCode::Forbidden,
            "join the room first",
        )));
    }
    if !room.active {
        return Ok(Err(ApiError::new(
            ErrorCode::Forbidden,
            "the room is closed",
        )));
    }
    if change.op == ChangeOp::Read {
        let member = member.expect("checked above");
        let wanted = change.seq.unwrap_or(0).min(room.last_seq);
        if wanted <= member.read_seq {
            return unchanged(ChangeResult {
                room: Some(room_id.to_owned()),
                seq: Some(member.read_seq),
                ..ChangeResult::default()
            });
        }
        member.read_seq = wanted;
        member.moved = true;
        return Ok(Ok(Persisted {
            done: Some(Done::Change(ChangeResult {
                room: Some(room_id.to_owned()),
                seq: Some(wanted),
                ..ChangeResult::default()
            })),
            entry: None,
            receipt: Some(Receipt {
                room: room_id.to_owned(),
                user: from.clone(),
                seq: wanted,
            }),
        }));
    }
    let id = change.id.clone().unwrap_or_default();
    let Some(target) = state
        .targets
        .get_mut(&id)
        .filter(|t| t.room.as_deref() == Some(room_id))
    else {
        return Ok(Err(ApiError::not_found("no such message in this room")));
    };
    let ts = state.ts;
    if muted && matches!(change.op, ChangeOp::Edit | ChangeOp::React) {
        return Ok(Err(muted_error()));
    }
    match change.op {
        ChangeOp::Read => unreachable!("answered above"),
        ChangeOp::Edit => {
            if target.deleted {
                return Ok(Err(ApiError::not_found("the message was deleted")));
            }
            if target.sender != from.id {
                return Ok(Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "only its author may edit a message",
                )));
            }
            let body = change.body.clone().unwrap_or_default();
            if body == target.body {
                return unchanged(ChangeResult {
                    id: Some(id),
                    seq: Some(target.edit_seq.unwrap_or(target.seq)),
                    ..ChangeResult::default()
                });
            }
            let seq = room.next_seq();
            target.body = body.clone();
            target.edit_seq = Some(seq);
            target.edited = true;
            let event = MessageEdited {
                room: Some(room_id.to_owned()),
                id: id.clone(),
                seq: Some(seq),
                body,
                edited_at: ts,
                by: from.clone(),
                dm: None,
                to: None,
            };
            state.events.push(LogEntry::MessageEdited(event.clone()));
            Ok(Ok(Persisted {
                done: Some(Done::Change(ChangeResult {
                    id: Some(id),
                    seq: Some(seq),
                    edited_at: Some(ts),
                    ..ChangeResult::default()
                })),
                entry: Some(LogEntry::MessageEdited(event)),
                receipt: None,
            }))
        }
        ChangeOp::Delete => {
            if target.sender != from.id && !moderates && !change.admin {
                return Ok(Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "only its author, the room's owner and moderators or an admin may delete a message",
                )));
            }
            if target.deleted {
                return unchanged(ChangeResult {
                    id: Some(id),
                    seq: target.delete_seq,
                    ..ChangeResult::default()
                });
            }
            let seq = room.next_seq();
            target.body.clear();
            target.deleted = true;
            target.removed = true;
            target.delete_seq = Some(seq);
            let event = MessageDeleted {
                room: Some(room_id.to_owned()),
                id: id.clone(),
                seq: Some(seq),
                by: from.clone(),
                dm: None,
                to: None,
            };
            state.events.push(LogEntry::MessageDeleted(event.clone()));
            Ok(Ok(Persisted {
                done: Some(Done::Change(ChangeResult {
                    id: Some(id),
                    seq: Some(seq),
                    ..ChangeResult::default()
                })),
                entry: Some(LogEntry::MessageDeleted(event)),
                receipt: None,
            }))
        }
        ChangeOp::React => {
            if target.deleted {
                return Ok(Err(ApiError::not_found("the message was deleted")));
            }
            let emoji = change.emoji.clone().unwrap_or_default();
            let on = change.on.unwrap_or(true);
            let r = &mut state.reactions;
            let key = (id.clone(), emoji.clone(), from.id.clone());
            let has = r.users.get(&key).copied().flatten();
            let count_key = (id.clone(), emoji.clone());
            let count = r.counts.get(&count_key).copied().unwrap_or(0);
            if has.is_some() == on {
                // Already so: the seq of the change that made it so.
                let seq = match has {
                    Some(seq) => seq,
                    None => last_reaction_seq(conn, &key).await?,
                };
                return unchanged(ChangeResult {
                    id: Some(id),
                    seq: Some(seq),
                    count: Some(count),
                    ..ChangeResult::default()
                });
            }
            let distinct = r.emoji.entry(id.clone()).or_default();
            if on
                && count == 0
                && !distinct.contains(&emoji)
                && distinct.len() >= MAX_EMOJI_PER_MESSAGE
            {
                return Ok(Err(ApiError::bad_request(format!(
                    "a message carries at most {MAX_EMOJI_PER_MESSAGE} distinct emoji"
                ))));
            }
            let seq = room.next_seq();
            let count = if on { count + 1 } else { count - 1 };
            if count > 0 {
                distinct.insert(emoji.clone());
            } else {
                distinct.remove(&emoji);
            }
            r.counts.insert(count_key, count);
            r.users.insert(key.clone(), on.then_some(seq));
            r.changed.insert(key);
            let event = ReactionEvent {
                room: room_id.to_owned(),
                id: id.clone(),
                seq,
                emoji,
                user: from.clone(),
                on,
                count,
            };
            state.events.push(LogEntry::Reaction(event.clone()));
            Ok(Ok(Persisted {
                done: Some(Done::Change(ChangeResult {
                    id: Some(id),
                    seq: Some(seq),
                    count: Some(count),
                    ..ChangeResult::default()
                })),
                entry: Some(LogEntry::Reaction(event)),
                receipt: None,
            }))
        }
    }
}

/// The seq of the latest reaction change of (message, emoji, user), 0 if none.
async fn last_reaction_seq(
    conn: &mut SqliteConnection,
    (message, emoji, user): &(String, String, String),
) -> Result<i64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(seq) FROM room_events
         WHERE message_id = ? AND kind = 'reaction' AND emoji = ? AND user_id = ?",
    )
    .bind(message)
    .bind(emoji)
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    Ok(seq.unwrap_or(0))
}

/// Writes what the batch decided: the rooms' seqs, the new messages (and
/// their full-text entries), their parents' reply counts, edits and
/// deletes, the log's change entries, reactions and read cursors. The
/// statements that apply go to SQLite as one multi-statement query (sqlx
/// runs them in order, binding each its own parameters): one round trip to
/// the connection's thread for the whole write, whatever the batch holds.
async fn write(conn: &mut SqliteConnection, state: &State) -> Result<(), sqlx::Error> {
    let mut w = Statements::default();
    let moved: Vec<(&str, i64)> = state
        .rooms
        .iter()
        .filter(|(_, r)| r.moved)
        .map(|(id, r)| (id.as_str(), r.last_seq))
        .collect();
    if !moved.is_empty() {
        // [[room id, seq], ...]: room ids are canonical UUIDs, safe in JSON.
        w.next("UPDATE rooms SET last_seq = j.value ->> 1 FROM json_each(")
            .push_bind(json(&moved))
            .push(") AS j WHERE rooms.id = j.value ->> 0");
    }
    for chunk in state.fresh.chunks(INSERT_ROWS) {
        insert(&mut w, chunk);
    }
    if let Some((first, _)) = state.fresh.first() {
        // In the same transaction as the messages (edits and deletes keep
        // the index in step by triggers). The batch's messages are the rows
        // from its first one on: a new row's rowid is one above the
        // table's largest (SQLite's rule until a rowid reaches 2^63 - 1),
        // and nothing else inserts messages in this transaction. So one
        // lookup by id, then a walk in rowid order, rather than one lookup
        // by id per message.
        w.next(
            "INSERT INTO messages_fts (rowid, content)
             SELECT rowid, content FROM messages
             WHERE rowid >= (SELECT rowid FROM messages WHERE id = ",
        )
        .push_bind(&first.id)
        .push(")");
    }
    if !state.replies.is_empty() {
        let replies: Vec<(&str, i64)> = state
            .replies
            .iter()
            .map(|(id, n)| (id.as_str(), *n))
            .collect();
        w.next("UPDATE messages SET reply_count = reply_count + (j.value ->> 1), last_reply_at = ")
            .push_bind(state.ts)
            .push(" FROM json_each(")
            .push_bind(json(&replies))
            .push(") AS j WHERE messages.id = j.value ->> 0");
    }
    let edited: Vec<(&str, &str, i64)> = state
        .targets
        .iter()
        .filter(|(_, t)| t.edited && !t.removed)
        .map(|(id, t)| (id.as_str(), t.body.as_str(), t.edit_seq.unwrap_or(0)))
        .collect();
    if !edited.is_empty() {
        // Bodies travel in the JSON array, escaped by serde_json, in one bound parameter.
        w.next(
            "UPDATE messages SET content = j.value ->> 1, edit_seq = j.value ->> 2, edited_at = ",
        )
        .push_bind(state.ts)
        .push(" FROM json_each(")
        .push_bind(json(&edited))
        .push(") AS j WHERE messages.id = j.value ->> 0");
    }
    for chunk in state.events.chunks(INSERT_ROWS) {
        insert_events(&mut w, chunk, state.ts);
    }
    let removed: Vec<(&str, i64)> = state
        .targets
        .iter()
        .filter(|(_, t)| t.removed)
        .map(|(id, t)| (id.as_str(), t.delete_seq.unwrap_or(0)))
        .collect();
    if !removed.is_empty() {
        let ids = json(&removed);
        w.next("UPDATE messages SET content = '', delete_seq = j.value ->> 1, deleted_at = ")
            .push_bind(state.ts)
            .push(" FROM json_each(")
            .push_bind(ids.clone())
            .push(") AS j WHERE messages.id = j.value ->> 0");
        // No body survives a delete: its earlier edits become deletes too.
        w.next(
            "UPDATE room_events SET kind = 'message_deleted', body = NULL
             WHERE kind = 'message_edited'
               AND message_id IN (SELECT j.value ->> 0 FROM json_each(",
        )
        .push_bind(ids.clone())
        .push(") AS j)");
        w.next("DELETE FROM reactions WHERE message_id IN (SELECT j.value ->> 0 FROM json_each(")
            .push_bind(ids)
            .push(") AS j)");
    }
    write_reactions(&mut w, state);
    let reads: Vec<(&str, &str, i64)> = state
        .members
        .iter()
        .filter(|(_, m)| m.moved)
        .filter_map(|(k, m)| k.split_once(' ').map(|(r, u)| (r, u, m.read_seq)))
        .collect();
    if !reads.is_empty() {
        w.next(
            "UPDATE room_participants SET read_seq = j.value ->> 2
             FROM json_each(",
        )
        .push_bind(json(&reads))
        .push(
            ") AS j
             WHERE room_participants.room_id = j.value ->> 0
               AND room_participants.user_id = j.value ->> 1
               AND room_participants.read_seq < j.value ->> 2",
        );
    }
    w.execute(conn).await
}

/// Statements joined into one query, each binding its own parameters.
#[derive(Default)]
struct Statements {
    query: Option<QueryBuilder<Sqlite>>,
}

impl Statements {
    /// Starts the next statement with `sql`.
    fn next(&mut self, sql: &str) -> &mut QueryBuilder<Sqlite> {
        match &mut self.query {
            Some(q) => {
                q.push(";\n").push(sql);
            }
            None => self.query = Some(QueryBuilder::new(sql)),
        }
        self.query.as_mut().expect("just set")
    }

    /// Runs them all (nothing when there are none).
    async fn execute(self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        if let Some(mut q) = self.query {
            q.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// The reactions whose state the batch changed: those now on are written
/// (with the seq that put them on), those now off deleted.
fn write_reactions(w: &mut Statements, state: &State) {
    let r = &state.reactions;
    let removed_messages: HashSet<&str> = state
        .targets
        .iter()
        .filter(|(_, t)| t.removed)
        .map(|(id, _)| id.as_str())
        .collect();
    let mut on = Vec::new();
    let mut off = Vec::new();
    for key in &r.changed {
        if removed_messages.contains(key.0.as_str()) {
            continue;
        }
        match r.users.get(key).copied().flatten() {
            Some(seq) => on.push((key.0.as_str(), key.1.as_str(), key.2.as_str(), seq)),
            None => off.push((key.0.as_str(), key.1.as_str(), key.2.as_str())),
        }
    }
    if !off.is_empty() {
        w.next(
            "DELETE FROM reactions WHERE (message_id, emoji, user_id) IN
               (SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each(",
        )
        .push_bind(json(&off))
        .push(") AS j)");
    }
    if !on.is_empty() {
        w.next(
            "INSERT OR REPLACE INTO reactions (message_id, emoji, user_id, seq)
             SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3 FROM json_each(",
        )
        .push_bind(json(&on))
        .push(") AS j");
    }
}

/// A change entry as the columns of its `room_events` row.
struct EventFields<'a> {
    kind: &'static str,
    id: &'a str,
    user: &'a UserRef,
    body: Option<&'a str>,
    emoji: Option<&'a str>,
    active: Option<bool>,
    count: Option<i64>,
}

impl<'a> EventFields<'a> {
    fn of(e: &'a LogEntry) -> Self {
        let plain = |kind, id: &'a str, user: &'a UserRef| EventFields {
            kind,
            id,
            user,
            body: None,
            emoji: None,
            active: None,
            count: None,
        };
        match e {
            LogEntry::MessageEdited(e) => EventFields {
                body: Some(&e.body),
                ..plain("message_edited", &e.id, &e.by)
            },
            LogEntry::MessageDeleted(e) => plain("message_deleted", &e.id, &e.by),
            LogEntry::Reaction(e) => EventFields {
                emoji: Some(&e.emoji),
                active: Some(e.on),
                count: Some(e.count),
                ..plain("reaction", &e.id, &e.user)
            },
            LogEntry::Message(m) => plain("message", &m.id, &m.from),
        }
    }
}

/// Inserts change entries of the log in one statement.
fn insert_events(w: &mut Statements, events: &[LogEntry], ts: DateTime<Utc>) {
    let q = w.next(
        "INSERT INTO room_events (room_id, seq, kind, message_id, user_id, body, emoji, active, count, created_at) ",
    );
    q.push_values(events, |mut row, e| {
        let f = EventFields::of(e);
        row.push_bind(e.room())
            .push_bind(e.seq())
            .push_bind(f.kind)
            .push_bind(f.id)
            .push_bind(&f.user.id)
            .push_bind(f.body)
            .push_bind(f.emoji)
            .push_bind(f.active)
            .push_bind(f.count)
            .push_bind(ts);
    });
}

/// What a (sender, client_id) already names.
enum Earlier {
    /// A room message: a repeat of it returns it.
    Room(Box<Message>),
    /// A direct message: the key is taken.
    Direct,
}

fn sends(batch: &[Job]) -> impl Iterator<Item = (&str, &telepath_shared::protocol::InternalSend)> {
    batch.iter().filter_map(|j| match &j.work {
        Work::Send { room, send, .. } => Some((room.as_str(), send)),
        Work::Change(_) => None,
    })
}

fn changes(batch: &[Job]) -> impl Iterator<Item = &InternalChange> {
    batch.iter().filter_map(|j| match &j.work {
        Work::Change(c) => Some(c),
        Work::Send { .. } => None,
    })
}

/// The messages already stored under the batch's `client_id`s, by (sender,
/// client_id): room messages, and DMs (which share the idempotency index).
async fn earlier_messages(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<HashMap<(String, String), Earlier>, sqlx::Error> {
    let keys: Vec<(&str, &str)> = sends(batch)
        .filter_map(|(_, s)| Some((s.from.id.as_str(), s.client_id.as_deref()?)))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // The keys drive the join (CROSS JOIN fixes the order), so each is one
    // lookup in the idempotency index; `IN (VALUES ...)` made SQLite scan
    // every room message instead.
    let mut q = QueryBuilder::<Sqlite>::new(concat!(
        "SELECT ",
        crate::message_columns!(),
        ", m.client_id, m.room_id IS NULL AS direct
         FROM ("
    ));
    q.push_values(&keys, |mut row, (sender, client_id)| {
        row.push_bind(*sender).push_bind(*client_id);
    });
    q.push(
        ") AS k
         CROSS JOIN messages m ON m.sender_id = k.column1 AND m.client_id = k.column2
         JOIN users u ON u.id = m.sender_id",
    );
    let rows: Vec<ClientIdRow> = q.build_query_as().fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let message = r.message.into_message();
            let key = (message.from.id.clone(), r.client_id);
            if r.direct {
                (key, Earlier::Direct)
            } else {
                (key, Earlier::Room(Box::new(message)))
            }
        })
        .collect())
}

/// A stored message with its `client_id`; a DM has no room or seq (and
/// `direct` set).
#[derive(sqlx::FromRow)]
struct ClientIdRow {
    #[sqlx(flatten)]
    message: MessageRow,
    client_id: String,
    direct: bool,
}

/// Every room the batch writes to, by id (active or closed, and its latest
/// seq), and the batch's (room, user) pairs where the user is an active
/// participant (keys from [`member_key`]: role and read cursor), in one
/// statement.
async fn rooms_and_members(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<(HashMap<String, RoomState>, HashMap<String, Member>), sqlx::Error> {
    let mut rooms: HashSet<&str> = HashSet::new();
    let mut users: HashSet<&str> = HashSet::new();
    for (room, send) in sends(batch) {
        rooms.insert(room);
        users.insert(&send.from.id);
    }
    for c in changes(batch) {
        if let Some(room) = &c.room {
            rooms.insert(room);
            users.insert(&c.from.id);
        }
    }
    // One row per room and matching participant (user NULL when none
    // matches). A user who is a member of another room of the batch
    // matches too; only the pairs the jobs name are looked up.
    let rows: Vec<RoomMemberRow> = sqlx::query_as(
        "SELECT r.id, r.is_active, r.last_seq, p.user_id, p.role, p.read_seq, p.muted_until
             FROM rooms r
             LEFT JOIN room_participants p
               ON p.room_id = r.id AND p.is_active = 1
              AND p.user_id IN (SELECT value FROM json_each(?))
             WHERE r.id IN (SELECT value FROM json_each(?))",
    )
    .bind(json(&users))
    .bind(json(&rooms))
    .fetch_all(&mut *conn)
    .await?;
    let mut states = HashMap::new();
    let mut members = HashMap::new();
    for RoomMemberRow {
        id,
        is_active: active,
        last_seq,
        user_id: user,
        role,
        read_seq,
        muted_until,
    } in rows
    {
        if let Some(user) = user {
            members.insert(
                member_key(&id, &user),
                Member {
                    role: role.unwrap_or_default(),
                    read_seq: read_seq.unwrap_or(0),
                    muted_until,
                    moved: false,
                },
            );
        }
        states.entry(id).or_insert(RoomState {
            active,
            last_seq,
            moved: false,
        });
    }
    Ok((states, members))
}

/// A room of the batch, with one of its participants the batch names (if any).
#[derive(sqlx::FromRow)]
struct RoomMemberRow {
    id: String,
    is_active: bool,
    last_seq: i64,
    user_id: Option<String>,
    role: Option<String>,
    read_seq: Option<i64>,
    muted_until: Option<DateTime<Utc>>,
}

/// The stored messages the batch's changes and replies name, by id.
async fn targets(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<HashMap<String, Target>, sqlx::Error> {
    let mut ids: HashSet<&str> = changes(batch)
        .filter(|c| c.room.is_some())
        .filter_map(|c| c.id.as_deref())
        .collect();
    ids.extend(sends(batch).filter_map(|(_, s)| s.reply_to.as_deref()));
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<TargetRow> = sqlx::query_as(
        "SELECT m.id, m.room_id, m.sender_id, COALESCE(m.seq, 0) AS seq, m.content,
                m.deleted_at IS NOT NULL AS deleted, m.edit_seq, m.delete_seq
         FROM json_each(?) AS j CROSS JOIN messages m ON m.id = j.value",
    )
    .bind(json(&ids))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                Target {
                    room: r.room_id,
                    sender: r.sender_id,
                    seq: r.seq,
                    body: r.content,
                    deleted: r.deleted,
                    edit_seq: r.edit_seq,
                    delete_seq: r.delete_seq,
                    edited: false,
                    removed: false,
                },
            )
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    id: String,
    room_id: Option<String>,
    sender_id: String,
    seq: i64,
    content: String,
    deleted: bool,
    edit_seq: Option<i64>,
    delete_seq: Option<i64>,
}

/// The reactions of the messages the batch reacts to: counts per emoji,
/// and whether each (message, emoji, user) the batch names is on. Two
/// statements.
async fn reactions(conn: &mut SqliteConnection, batch: &[Job]) -> Result<Reactions, sqlx::Error> {
    let named: HashSet<(&str, &str, &str)> = changes(batch)
        .filter(|c| c.op == ChangeOp::React)
        .filter_map(|c| Some((c.id.as_deref()?, c.emoji.as_deref()?, c.from.id.as_str())))
        .collect();
    let mut out = Reactions::default();
    if named.is_empty() {
        return Ok(out);
    }
    let messages: HashSet<&str> = named.iter().map(|(m, _, _)| *m).collect();
    let counts: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT r.message_id, r.emoji, COUNT(*)
         FROM json_each(?) AS j CROSS JOIN reactions r ON r.message_id = j.value
         GROUP BY r.message_id, r.emoji",
    )
    .bind(json(&messages))
    .fetch_all(&mut *conn)
    .await?;
    for (message, emoji, count) in counts {
        out.emoji
            .entry(message.clone())
            .or_default()
            .insert(emoji.clone());
        out.counts.insert((message, emoji), count);
    }
    let found: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT r.message_id, r.emoji, r.user_id, r.seq
         FROM json_each(?) AS j CROSS JOIN reactions r
           ON r.message_id = j.value ->> 0 AND r.emoji = j.value ->> 1 AND r.user_id = j.value ->> 2",
    )
    .bind(json(&named))
    .fetch_all(&mut *conn)
    .await?;
    for (m, e, u) in &named {
        out.users
            .insert(((*m).to_owned(), (*e).to_owned(), (*u).to_owned()), None);
    }
    for (m, e, u, seq) in found {
        out.users.insert((m, e, u), Some(seq));
    }
    Ok(out)
}

/// A JSON array of ids (and seqs) for `json_each`.
fn json(values: &impl serde::Serialize) -> String {
    serde_json::to_string(values).expect("strings and integers serialise")
}

/// The key of a (room, user) membership in [`rooms_and_members`].
fn member_key(room: &str, user: &str) -> String {
    format!("{room} {user}")
}

/// Inserts new messages in one statement. `OR FAIL`, not the default
/// `ABORT`: any failure fails the whole batch anyway (its transaction is
/// rolled back), and with no constraint that could abort this statement
/// alone (the table's foreign keys are deferred to the commit) SQLite keeps
/// no statement journal, a copy of every page the statement touches.
fn insert(w: &mut Statements, rows: &[(Message, Option<String>)]) {
    let q = w.next(
        "INSERT OR FAIL INTO messages (id, room_id, sender_id, content, kind, seq, client_id, reply_to, created_at) ",
    );
    q.push_values(rows, |mut row, (m, client_id)| {
        row.push_bind(&m.id)
            .push_bind(&m.room)
            .push_bind(&m.from.id)
            .push_bind(&m.body)
            .push_bind(&m.kind)
            .push_bind(m.seq)
            .push_bind(client_id.as_deref())
            .push_bind(&m.reply_to)
            .push_bind(m.ts);
    });
}

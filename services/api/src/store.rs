//! SQL for rooms, participants and message history. Every function takes a
//! pool or connection; writes are called inside a write transaction by the
//! caller. Rows map to protocol types here and nowhere else.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::{FromRow, SqliteConnection, SqlitePool};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ErrorCode, InternalMemberships, LogEntry, Memberships, Message, MessageDeleted, MessageEdited,
    Participant, ReactionCount, ReactionEvent, Role, Room, RoomMembership, RoomRole, UserRef,
};

/// Now, truncated to milliseconds so stored and returned times agree.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Maps a database error to a logged internal error.
pub(crate) fn db_err(e: sqlx::Error) -> ApiError {
    if is_full(&e) {
        tracing::warn!(error = %e, "the database is full");
        return ApiError::storage_full();
    }
    ApiError::internal(e)
}

/// Whether `e` is SQLite's "database or disk is full" (`SQLITE_FULL`): the
/// disk, or `TELEPATH_DB_MAX_BYTES`.
pub(crate) fn is_full(e: &sqlx::Error) -> bool {
    const SQLITE_FULL: &str = "13";
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(SQLITE_FULL))
}

#[derive(FromRow)]
pub(crate) struct RoomRow {
    pub(crate) id: String,
    name: String,
    description: Option<String>,
    max_participants: i64,
    pub(crate) is_private: bool,
    pub(crate) is_active: bool,
    created_by: String,
    created_at: DateTime<Utc>,
    pub(crate) last_seq: i64,
    pub(crate) participant_count: i64,
    topic: Option<String>,
    retention_days: Option<i64>,
    /// History up to this seq was deleted by retention.
    pub(crate) pruned_seq: i64,
}

impl RoomRow {
    pub(crate) fn into_room(self) -> Room {
        Room {
            id: self.id,
            name: self.name,
            description: self.description,
            max_participants: self.max_participants,
            private: self.is_private,
            created_by: self.created_by,
            created_at: self.created_at,
            is_active: self.is_active,
            topic: self.topic,
            member_count: Some(self.participant_count),
            online_count: None,
            role: None,
            unread: None,
            read_seq: None,
            unread_capped: false,
            retention: self.retention_days,
        }
    }
}

/// The columns a [`MessageRow`] reads, from `messages m JOIN users u ON
/// u.id = m.sender_id` (a DM's room is '' and its seq 0).
#[macro_export]
macro_rules! message_columns {
    () => {
        "m.id, COALESCE(m.room_id, '') AS room_id, COALESCE(m.seq, 0) AS seq, m.sender_id,
         u.username AS sender_name, m.content, m.kind, m.created_at, m.reply_to, m.edited_at,
         m.deleted_at IS NOT NULL AS deleted, m.reply_count, m.last_reply_at"
    };
}

#[derive(FromRow)]
pub(crate) struct MessageRow {
    id: String,
    room_id: String,
    seq: i64,
    sender_id: String,
    sender_name: String,
    content: String,
    kind: String,
    created_at: DateTime<Utc>,
    reply_to: Option<String>,
    edited_at: Option<DateTime<Utc>>,
    deleted: bool,
    reply_count: i64,
    last_reply_at: Option<DateTime<Utc>>,
}

impl MessageRow {
    /// The message as it is now, without its reactions (see [`with_reactions`]).
    pub(crate) fn into_message(self) -> Message {
        Message {
            room: self.room_id,
            id: self.id,
            seq: self.seq,
            from: UserRef {
                id: self.sender_id,
                name: self.sender_name,
            },
            body: if self.deleted {
                String::new()
            } else {
                self.content
            },
            kind: self.kind,
            ts: self.created_at,
            reply_to: self.reply_to,
            edited_at: self.edited_at,
            deleted: self.deleted,
            reactions: Vec::new(),
            reply_count: self.reply_count,
            last_reply_at: self.last_reply_at,
        }
    }
}

/// Fills in each message's reactions (`[{emoji, count}]`, in the order the
/// emoji first came; with `me` when `viewer` is given), in one statement.
pub(crate) async fn with_reactions(
    pool: &SqlitePool,
    messages: &mut [Message],
    viewer: Option<&str>,
) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    let rows: Vec<(String, String, i64, bool)> = sqlx::query_as(
        "SELECT r.message_id, r.emoji, COUNT(*), COALESCE(MAX(r.user_id = ?), 0)
         FROM json_each(?) AS j CROSS JOIN reactions r ON r.message_id = j.value
         GROUP BY r.message_id, r.emoji
         ORDER BY r.message_id, MIN(r.seq)",
    )
    .bind(viewer.unwrap_or(""))
    .bind(json_array(&ids))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut by_message: HashMap<String, Vec<ReactionCount>> = HashMap::new();
    for (message, emoji, count, me) in rows {
        by_message.entry(message).or_default().push(ReactionCount {
            emoji,
            count,
            me: viewer.map(|_| me),
        });
    }
    for m in messages {
        if let Some(r) = by_message.remove(&m.id) {
            m.reactions = r;
        }
    }
    Ok(())
}

/// Makes sure `user` has a row (tokens minted outside dev login name users
/// the database has not seen yet). A username taken by another id is a conflict.
pub(crate) async fn ensure_user(
    conn: &mut SqliteConnection,
    user: &UserRef,
    role: Role,
) -> Result<(), ApiError> {
    let role = if role == Role::Admin { "admin" } else { "user" };
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, role, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&user.id)
    .bind(&user.name)
    .bind(role)
    .bind(now())
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ApiError::new(
            ErrorCode::Conflict,
            "username belongs to another user",
        )),
        Err(e) => Err(db_err(e)),
    }
}

/// The room with `id`, active or not.
pub(crate) async fn room(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<RoomRow>, ApiError> {
    sqlx::query_as::<_, RoomRow>(
        "SELECT id, name, description, max_participants, is_private, is_active, created_by, created_at, last_seq, participant_count, topic, retention_days, pruned_seq
         FROM rooms WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
}

/// Whether `user_id` is an active participant of `room_id`.
pub(crate) async fn is_member(
    conn: &mut SqliteConnection,
    room_id: &str,
    user_id: &str,
) -> Result<bool, ApiError> {
    let row: Option<(bool,)> =
        sqlx::query_as("SELECT is_active FROM room_participants WHERE room_id = ? AND user_id = ?")
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    Ok(row.is_some_and(|(active,)| active))
}

/// Where `GET /rooms` stops counting a room's unread messages.
const UNREAD_CAP: i64 = 10_000;

/// Rooms `user_id` may see: active public rooms and every active room they belong to.
pub(crate) async fn visible_rooms(pool: &SqlitePool, user_id: &str) -> Result<Vec<Room>, ApiError> {
    let rows = sqlx::query_as::<_, RoomRow>(
        "SELECT id, name, description, max_participants, is_private, is_active, created_by, created_at, last_seq, participant_count, topic, retention_days, pruned_seq
         FROM rooms r
         WHERE r.is_active = 1
           AND (r.is_private = 0 OR EXISTS (
                SELECT 1 FROM room_participants p
                WHERE p.room_id = r.id AND p.user_id = ? AND p.is_active = 1))
         ORDER BY r.created_at, r.id
         LIMIT 1000",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut rooms: Vec<Room> = rows.into_iter().map(RoomRow::into_room).collect();
    // The caller's cursor and unread count in each room they take part in:
    // one statement, each count bounded (an index walk of at most 10,000 rows).
    let unread: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT p.room_id, p.read_seq, p.role,
                (SELECT COUNT(*) FROM (SELECT 1 FROM messages m
                   WHERE m.room_id = p.room_id AND m.seq > p.read_seq
                     AND m.sender_id <> p.user_id AND m.deleted_at IS NULL
                   LIMIT CAST(?2 AS INTEGER)))
         FROM room_participants p
         WHERE p.user_id = ?1 AND p.is_active = 1",
    )
    .bind(user_id)
    .bind(UNREAD_CAP)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let unread: HashMap<String, (i64, String, i64)> = unread
        .into_iter()
        .map(|(room, read, role, n)| (room, (read, role, n)))
        .collect();
    for room in &mut rooms {
        if let Some((read, role, n)) = unread.get(&room.id) {
            room.role = Some(RoomRole::parse(role));
            room.read_seq = Some(*read);
            room.unread = Some(*n);
            room.unread_capped = *n >= UNREAD_CAP;
        }
    }
    Ok(rooms)
}

/// How a user comes into a room: private rooms admit their creator and
/// invited users only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A join of their own (public rooms only).
    Open,
    /// The room's creator, as its owner.
    Creator,
    /// With an invitation or an invite link.
    Invited,
}

/// Makes `user` an active participant of `room_id`, enforcing bans,
/// `max_participants` and private-room membership. Runs inside the caller's
/// write transaction, so the count check and the insert are atomic.
/// Returns the participant and the room's latest seq.
pub(crate) async fn join(
    conn: &mut SqliteConnection,
    room_id: &str,
    user: &UserRef,
    how: Admission,
) -> Result<Joined, ApiError> {
    let room = room(conn, room_id)
        .await?
        .filter(|r| r.is_active)
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    type Existing = (bool, DateTime<Utc>, String, i64, Option<DateTime<Utc>>);
    let existing: Option<Existing> = sqlx::query_as(
        "SELECT is_active, joined_at, role, delivered_seq, muted_until FROM room_participants WHERE room_id = ? AND user_id = ?",
    )
    .bind(room_id)
    .bind(&user.id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    if let Some((true, joined_at, role, cursor, muted_until)) = &existing {
        let participant = Participant {
            user: user.clone(),
            role: role.clone(),
            joined_at: *joined_at,
            online: false,
            read_seq: 0,
            last_seen: None,
            muted_until: *muted_until,
        };
        return Ok(Joined {
            participant,
            seq: room.last_seq,
            cursor: *cursor,
            new: false,
            pruned_seq: room.pruned_seq,
        });
    }
    // Private rooms do not admit anyone by themselves and do not reveal that they exist.
    if room.is_private && how == Admission::Open {
        return Err(ApiError::not_found("no such room"));
    }
    if banned(conn, room_id, &user.id).await? {
        if room.is_private && how == Admission::Open {
            return Err(ApiError::not_found("no such room"));
        }
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "you are banned from this room",
        ));
    }
    if room.participant_count >= room.max_participants {
        return Err(ApiError::new(ErrorCode::RoomFull, "the room is full"));
    }
    let role = if how == Admission::Creator {
        RoomRole::Owner
    } else {
        RoomRole::Member
    };
    let joined_at = now();
    // A new participant's delivery cursor starts at the room's latest seq:
    // history from before they joined is paged over REST, not replayed.
    // A returning one keeps the cursor they left with, and comes back as a
    // member (whatever role they had).
    sqlx::query(
        "INSERT INTO room_participants (room_id, user_id, role, joined_at, is_active, delivered_seq, read_seq)
         VALUES (?, ?, ?, ?, 1, ?5, ?5)
         ON CONFLICT (room_id, user_id) DO UPDATE SET is_active = 1, joined_at = excluded.joined_at,
             role = excluded.role, removed = NULL",
    )
    .bind(room_id)
    .bind(&user.id)
    .bind(role.as_str())
    .bind(joined_at)
    .bind(room.last_seq)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE rooms SET participant_count = participant_count + 1 WHERE id = ?")
        .bind(room_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let cursor = existing
        .as_ref()
        .map_or(room.last_seq, |(_, _, _, c, _)| *c);
    let muted_until = existing.and_then(|(_, _, _, _, m)| m);
    let participant = Participant {
        user: user.clone(),
        role: role.as_str().to_owned(),
        joined_at,
        online: false,
        read_seq: room.last_seq,
        last_seen: None,
        muted_until,
    };
    Ok(Joined {
        participant,
        seq: room.last_seq,
        cursor,
        new: true,
        pruned_seq: room.pruned_seq,
    })
}

/// Whether a ban keeps `user_id` out of `room_id` now.
pub(crate) async fn banned(
    conn: &mut SqliteConnection,
    room_id: &str,
    user_id: &str,
) -> Result<bool, ApiError> {
    let until: Option<(Option<DateTime<Utc>>,)> =
        sqlx::query_as("SELECT until FROM room_bans WHERE room_id = ? AND user_id = ?")
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    Ok(match until {
        None => false,
        Some((None,)) => true,
        Some((Some(until),)) => until > now(),
    })
}

/// A participant after a join, with the room's latest seq and their delivery cursor.
pub(crate) struct Joined {
    pub(crate) participant: Participant,
    pub(crate) seq: i64,
    pub(crate) cursor: i64,
    /// Whether this join made the user a participant (false: already one).
    pub(crate) new: bool,
    /// History up to this seq was deleted by retention.
    pub(crate) pruned_seq: i64,
}

/// Joins `user` to `room_id` as a member in its own write transaction,
/// creating the user's row first if needed.
pub(crate) async fn join_room(
    pool: &SqlitePool,
    room_id: &str,
    user: &UserRef,
    role: Role,
) -> Result<Joined, ApiError> {
    let mut tx = crate::db::begin_write(pool).await.map_err(db_err)?;
    ensure_user(&mut tx, user, role).await?;
    let joined = join(&mut tx, room_id, user, Admission::Open).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(joined)
}

/// [`leave`] in its own write transaction.
pub(crate) async fn leave_room(
    pool: &SqlitePool,
    room_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    let mut tx = crate::db::begin_write(pool).await.map_err(db_err)?;
    leave(&mut tx, room_id, user_id).await?;
    tx.commit().await.map_err(db_err)
}

/// Ends `user_id`'s participation in `room_id` by their own choice; not a
/// member is `not_found`. The owner of an open room hands it over first.
pub(crate) async fn leave(
    conn: &mut SqliteConnection,
    room_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    let role = role_of(conn, room_id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("not a member of this room"))?;
    let open = room(conn, room_id).await?.is_some_and(|r| r.is_active);
    if role == RoomRole::Owner && open {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the owner hands the room over first (PATCH /rooms/{id}/participants/{user_id} {\"role\":\"owner\"}) or closes it",
        ));
    }
    remove(conn, room_id, user_id, "left").await
}

/// Ends an active participation (`why`: `left`, `kicked`, `banned`); not a
/// member is `not_found`.
pub(crate) async fn remove(
    conn: &mut SqliteConnection,
    room_id: &str,
    user_id: &str,
    why: &str,
) -> Result<(), ApiError> {
    let done = sqlx::query(
        // A mute outlives the participation: leaving and coming back does not lift it.
        "UPDATE room_participants SET is_active = 0, removed = ?
         WHERE room_id = ? AND user_id = ? AND is_active = 1",
    )
    .bind(why)
    .bind(room_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("not a member of this room"));
    }
    sqlx::query("UPDATE rooms SET participant_count = participant_count - 1 WHERE id = ?")
        .bind(room_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// `user_id`'s role in `room_id`, if they are an active participant.
pub(crate) async fn role_of(
    conn: &mut SqliteConnection,
    room_id: &str,
    user_id: &str,
) -> Result<Option<RoomRole>, ApiError> {
    let role: Option<(String,)> = sqlx::query_as(
        "SELECT role FROM room_participants WHERE room_id = ? AND user_id = ? AND is_active = 1",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(role.map(|(r,)| RoomRole::parse(&r)))
}

/// Whether a moderator shut `user_id` out of `room_id`: banned now, or
/// kicked or banned and not back since. REST reads of the room answer 404
/// to them (as to a stranger to a private room).
pub(crate) async fn shut_out(
    conn: &mut SqliteConnection,
    room_id: &str,
    user_id: &str,
) -> Result<bool, ApiError> {
    let removed: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM room_participants
         WHERE room_id = ? AND user_id = ? AND is_active = 0 AND removed IN ('kicked', 'banned')",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(removed.is_some() || banned(conn, room_id, user_id).await?)
}

/// The user with id or username `who`.
pub(crate) async fn find_user(
    conn: &mut SqliteConnection,
    who: &str,
) -> Result<Option<UserRef>, ApiError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT id, username FROM users WHERE id = ?1 OR username = ?1 LIMIT 1")
            .bind(who)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    Ok(row.map(|(id, name)| UserRef { id, name }))
}

/// The ids of `room_id`'s active participants (at most 100,000, the
/// largest room).
pub(crate) async fn member_ids(
    conn: &mut SqliteConnection,
    room_id: &str,
) -> Result<Vec<String>, ApiError> {
    sqlx::query_scalar(
        "SELECT user_id FROM room_participants WHERE room_id = ? AND is_active = 1 LIMIT 100000",
    )
    .bind(room_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)
}

/// The active participants of `room_id`, oldest first (at most 10,000).
pub(crate) async fn participants(
    conn: &mut SqliteConnection,
    room_id: &str,
) -> Result<Vec<Participant>, ApiError> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        String,
        String,
        DateTime<Utc>,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    )> = sqlx::query_as(
        "SELECT u.id, u.username, p.role, p.joined_at, p.read_seq, u.last_online,
                CASE WHEN p.muted_until > ?2 THEN p.muted_until END
         FROM room_participants p JOIN users u ON u.id = p.user_id
         WHERE p.room_id = ?1 AND p.is_active = 1
         ORDER BY p.joined_at, p.rowid
         LIMIT 10000",
    )
    .bind(room_id)
    .bind(now())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, role, joined_at, read_seq, last_seen, muted_until)| Participant {
                user: UserRef { id, name },
                role,
                joined_at,
                online: false,
                read_seq,
                last_seen,
                muted_until,
            },
        )
        .collect())
}

/// For each room of `query`, in order: whether it is active, and which of
/// its listed users are active participants (none for an inactive room).
/// Two statements whatever the size: the active rooms among those listed,
/// then the listed (room, user) pairs that are memberships, each pair one
/// lookup in the participants' primary key (the JSON array drives the
/// join; ids are canonical UUIDs, checked by the caller, so safe in JSON).
pub(crate) async fn memberships(
    pool: &SqlitePool,
    query: &InternalMemberships,
) -> Result<Memberships, ApiError> {
    let rooms: Vec<&str> = query.rooms.iter().map(|r| r.room.as_str()).collect();
    // Every listed room that exists: whether it is open, and who closed it.
    let found: Vec<(String, bool, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT r.id, r.is_active, u.id, u.username
         FROM rooms r
         LEFT JOIN users u ON u.id = COALESCE(r.closed_by, r.created_by) AND r.is_active = 0
         WHERE r.id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_array(&rooms))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut active: HashSet<String> = HashSet::new();
    let mut closed_by: HashMap<String, UserRef> = HashMap::new();
    for (room, is_active, closer, name) in found {
        if is_active {
            active.insert(room);
        } else if let (Some(id), Some(name)) = (closer, name) {
            closed_by.insert(room, UserRef { id, name });
        }
    }
    let pairs: Vec<(&str, &str)> = query
        .rooms
        .iter()
        .filter(|r| active.contains(&r.room))
        .flat_map(|r| r.users.iter().map(|u| (r.room.as_str(), u.as_str())))
        .collect();
    let rows: Vec<(String, String)> = if pairs.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT p.room_id, p.user_id
             FROM json_each(?) AS j
             CROSS JOIN room_participants p
               ON p.room_id = j.value ->> 0 AND p.user_id = j.value ->> 1
             WHERE p.is_active = 1",
        )
        .bind(json_array(&pairs))
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    };
    // room -> its listed users who are members.
    let mut members: HashMap<String, HashSet<String>> = HashMap::new();
    for (room, user) in rows {
        members.entry(room).or_default().insert(user);
    }
    let rooms = query.rooms.iter().map(|r| {
        let of_room = members.get(&r.room);
        let mut listed = HashSet::new();
        let members = r
            .users
            .iter()
            .filter(|u| of_room.is_some_and(|m| m.contains(*u)) && listed.insert(u.as_str()))
            .cloned()
            .collect();
        RoomMembership {
            room: r.room.clone(),
            active: active.contains(&r.room),
            members,
            closed_by: closed_by.get(&r.room).cloned(),
        }
    });
    Ok(Memberships {
        rooms: rooms.collect(),
    })
}

/// A JSON array of ids (or of arrays of ids) for `json_each`.
pub(crate) fn json_array(values: &impl serde::Serialize) -> String {
    serde_json::to_string(values).expect("strings serialise")
}

/// Adds newly inserted DMs (by id) to the full-text index, in one
/// statement, in the transaction that inserts them. (The room writer adds
/// its batch's messages with its other statements; edits and deletes keep
/// the index in step by triggers.)
pub(crate) async fn index_new(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO messages_fts (rowid, content) SELECT m.rowid, m.content
         FROM json_each(?) AS j JOIN messages m ON m.id = j.value",
    )
    .bind(json_array(&ids))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which slice of history a page reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PageAnchor {
    /// The newest messages.
    Latest,
    /// Messages with seq < this.
    Before(i64),
    /// Messages with seq > this.
    After(i64),
    /// Messages with `after` < seq < `before`, oldest first.
    Between { after: i64, before: i64 },
}

/// One page of `room_id`'s messages, in seq order, and whether more exist in
/// the direction of paging. Reads `limit + 1` rows to know.
pub(crate) async fn page(
    pool: &SqlitePool,
    room_id: &str,
    anchor: PageAnchor,
    limit: i64,
) -> Result<(Vec<Message>, bool), ApiError> {
    // Four fixed statements: sqlx takes only static SQL, and each one walks
    // the (room_id, seq) index in the direction it needs. The limit is a
    // cast, not a bare `?`: SQLite plans with a bare `LIMIT ?`'s bound value,
    // so binding it again expires the cached statement and every page
    // would compile its SQL anew (17% of the api's CPU in a connect storm).
    let mut rows: Vec<MessageRow> = match anchor {
        PageAnchor::After(after) => sqlx::query_as(
            concat!("SELECT ", crate::message_columns!(), "
             FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.room_id = ? AND m.seq > ? ORDER BY m.seq ASC LIMIT CAST(? AS INTEGER)"),
        )
        .bind(room_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(pool)
        .await,
        PageAnchor::Between { after, before } => sqlx::query_as(
            concat!("SELECT ", crate::message_columns!(), "
             FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.room_id = ? AND m.seq > ? AND m.seq < ? ORDER BY m.seq ASC LIMIT CAST(? AS INTEGER)"),
        )
        .bind(room_id)
        .bind(after)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(pool)
        .await,
        PageAnchor::Before(before) => sqlx::query_as(
            concat!("SELECT ", crate::message_columns!(), "
             FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.room_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT CAST(? AS INTEGER)"),
        )
        .bind(room_id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(pool)
        .await,
        PageAnchor::Latest => sqlx::query_as(
            concat!("SELECT ", crate::message_columns!(), "
             FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.room_id = ? ORDER BY m.seq DESC LIMIT CAST(? AS INTEGER)"),
        )
        .bind(room_id)
        .bind(limit + 1)
        .fetch_all(pool)
        .await,
    }
    .map_err(db_err)?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if matches!(anchor, PageAnchor::Before(_) | PageAnchor::Latest) {
        rows.reverse();
    }
    Ok((
        rows.into_iter().map(MessageRow::into_message).collect(),
        has_more,
    ))
}

/// A change entry of a room's log as stored.
#[derive(FromRow)]
struct EventRow {
    room_id: String,
    seq: i64,
    kind: String,
    message_id: String,
    user_id: String,
    username: String,
    body: Option<String>,
    emoji: Option<String>,
    active: Option<bool>,
    count: Option<i64>,
    created_at: DateTime<Utc>,
}

impl EventRow {
    fn into_entry(self) -> LogEntry {
        let by = UserRef {
            id: self.user_id,
            name: self.username,
        };
        match self.kind.as_str() {
            "message_edited" => LogEntry::MessageEdited(MessageEdited {
                room: Some(self.room_id),
                id: self.message_id,
                seq: Some(self.seq),
                body: self.body.unwrap_or_default(),
                edited_at: self.created_at,
                by,
                dm: None,
                to: None,
            }),
            "reaction" => LogEntry::Reaction(ReactionEvent {
                room: self.room_id,
                id: self.message_id,
                seq: self.seq,
                emoji: self.emoji.unwrap_or_default(),
                user: by,
                on: self.active.unwrap_or(false),
                count: self.count.unwrap_or(0),
            }),
            // message_deleted, and the edits a delete turned into deletes.
            _ => LogEntry::MessageDeleted(MessageDeleted {
                room: Some(self.room_id),
                id: self.message_id,
                seq: Some(self.seq),
                by,
                dm: None,
                to: None,
            }),
        }
    }
}

/// The SQL of a page of `select` (ending in a `WHERE` whose parameters
/// come first) ordered by the column `seq`, for `anchor`, in the direction
/// it walks, reading `limit + 1` rows.
fn anchored(select: &str, seq: &str, anchor: PageAnchor) -> String {
    let (cond, order) = match anchor {
        PageAnchor::After(_) => (format!(" AND {seq} > ?"), "ASC"),
        PageAnchor::Between { .. } => (format!(" AND {seq} > ? AND {seq} < ?"), "ASC"),
        PageAnchor::Before(_) => (format!(" AND {seq} < ?"), "DESC"),
        PageAnchor::Latest => (String::new(), "DESC"),
    };
    format!("{select}{cond} ORDER BY {seq} {order} LIMIT CAST(? AS INTEGER)")
}

/// Binds an anchor's seqs and the limit to a query built by [`anchored`].
macro_rules! bind_anchor {
    ($q:expr, $anchor:expr, $limit:expr) => {{
        let q = match $anchor {
            PageAnchor::After(a) => $q.bind(a),
            PageAnchor::Between { after, before } => $q.bind(after).bind(before),
            PageAnchor::Before(b) => $q.bind(b),
            PageAnchor::Latest => $q,
        };
        q.bind($limit + 1)
    }};
}

/// One page of `room_id`'s log, messages (as they are now, with their
/// reactions' counts) and changes, in seq order, and whether more exist in
/// the direction of paging. What joins replay and gap repair read.
pub(crate) async fn log_page(
    pool: &SqlitePool,
    room_id: &str,
    anchor: PageAnchor,
    limit: i64,
) -> Result<(Vec<LogEntry>, bool), ApiError> {
    let (mut messages, more_messages) = page(pool, room_id, anchor, limit).await?;
    with_reactions(pool, &mut messages, None).await?;
    let sql = anchored(
        "SELECT x.room_id, x.seq, x.kind, x.message_id, x.user_id, u.username, x.body, x.emoji,
                x.active, x.count, x.created_at
         FROM room_events x JOIN users u ON u.id = x.user_id
         WHERE x.room_id = ?",
        "x.seq",
        anchor,
    );
    let q = sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql)).bind(room_id);
    let mut events: Vec<EventRow> = bind_anchor!(q, anchor, limit)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let more_events = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let mut entries: Vec<LogEntry> = messages
        .into_iter()
        .map(LogEntry::Message)
        .chain(events.into_iter().map(EventRow::into_entry))
        .collect();
    entries.sort_by_key(LogEntry::seq);
    let over = entries.len() as i64 > limit;
    if over {
        if matches!(anchor, PageAnchor::Before(_) | PageAnchor::Latest) {
            // The newest `limit` of both lists.
            entries.drain(..entries.len() - limit as usize);
        } else {
            entries.truncate(limit as usize);
        }
    }
    Ok((entries, more_messages || more_events || over))
}

/// The replies to `parent` in `room_id` (as they are now), in seq order.
pub(crate) async fn thread(
    pool: &SqlitePool,
    room_id: &str,
    parent: &str,
    anchor: PageAnchor,
    limit: i64,
) -> Result<(Vec<Message>, bool), ApiError> {
    let sql = anchored(
        concat!(
            "SELECT ",
            crate::message_columns!(),
            " FROM messages m JOIN users u ON u.id = m.sender_id
              WHERE m.reply_to = ? AND m.room_id = ?"
        ),
        "m.seq",
        anchor,
    );
    let q = sqlx::query_as::<_, MessageRow>(sqlx::AssertSqlSafe(sql))
        .bind(parent)
        .bind(room_id);
    let mut rows: Vec<MessageRow> = bind_anchor!(q, anchor, limit)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if matches!(anchor, PageAnchor::Before(_) | PageAnchor::Latest) {
        rows.reverse();
    }
    Ok((
        rows.into_iter().map(MessageRow::into_message).collect(),
        has_more,
    ))
}

/// One message of `room_id` as it is now, if it is there.
pub(crate) async fn message(
    pool: &SqlitePool,
    room_id: &str,
    id: &str,
) -> Result<Option<Message>, ApiError> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        crate::message_columns!(),
        " FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = ? AND m.room_id = ?"
    ))
    .bind(id)
    .bind(room_id)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    Ok(row.map(MessageRow::into_message))
}

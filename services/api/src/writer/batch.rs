//! Persisting one group commit in a handful of statements, whatever its size.
//!
//! sqlx runs each SQLite statement on the connection's own thread, so every
//! statement is a round trip between threads (two thread switches, far
//! slower than the statement itself when the machine is idle or busy):
//! per-message statements made that hand-over, not SQLite, the writer's
//! cost. A batch is instead read in one statement (the rooms' state and
//! seq, with the senders' memberships; a second one only when sends carry a
//! `client_id`: earlier messages with it), decided in Rust (which job is a
//! repeat, refused, or gets which seq), and written in one `UPDATE` for
//! every room it moved and one multi-row `INSERT`. Ids and seqs travel as
//! JSON arrays (`json_each`), so those statements' texts never change and
//! stay prepared; what users wrote (bodies, client ids, kinds) is always
//! bound as parameters of its own. The caller wraps it in one
//! `BEGIN IMMEDIATE` transaction: a database error aborts the whole batch,
//! so no seq is ever taken without its message.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{ErrorCode, Message};

use super::{Persisted, SendJob};
use crate::store::{MessageRow, now};

/// Rows per `INSERT` statement (9 parameters each, far below SQLite's limit).
const INSERT_ROWS: usize = 500;

/// A room as the batch sees it.
struct RoomState {
    active: bool,
    last_seq: i64,
    /// Whether this batch moved `last_seq` (the row needs its `UPDATE`).
    moved: bool,
}

/// Persists `batch` on `conn` (inside the caller's transaction); one
/// outcome per job, in order.
pub(super) async fn persist(
    conn: &mut SqliteConnection,
    batch: &[SendJob],
) -> Result<Vec<Result<Persisted, ApiError>>, sqlx::Error> {
    // (sender, client_id) -> the message it names, earlier or in this batch.
    let mut by_client_id = earlier_messages(conn, batch).await?;
    let (mut rooms, members) = rooms_and_members(conn, batch).await?;
    let ts = now();
    let mut fresh = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let from = &job.send.from;
        let key = job
            .send
            .client_id
            .as_ref()
            .map(|c| (from.id.clone(), c.clone()));
        match key.as_ref().and_then(|k| by_client_id.get(k)) {
            Some(Earlier::Room(message)) => {
                outcomes.push(Ok(Persisted {
                    message: message.clone(),
                    fresh: false,
                }));
                continue;
            }
            // One key, one message: storing this one would break the unique
            // index and with it the whole batch.
            Some(Earlier::Direct) => {
                outcomes.push(Err(ApiError::new(
                    ErrorCode::Conflict,
                    "client_id already names a direct message of this sender",
                )));
                continue;
            }
            None => {}
        }
        let Some(room) = rooms.get_mut(job.room.as_str()) else {
            outcomes.push(Err(ApiError::not_found("no such room")));
            continue;
        };
        if !members.contains(&member_key(&job.room, &from.id)) {
            outcomes.push(Err(ApiError::new(
                ErrorCode::Forbidden,
                "join the room before sending to it",
            )));
            continue;
        }
        // Checked after membership so non-members learn nothing about the room's state.
        if !room.active {
            outcomes.push(Err(ApiError::new(
                ErrorCode::Forbidden,
                "the room is closed",
            )));
            continue;
        }
        room.last_seq += 1;
        room.moved = true;
        let message = Message {
            room: job.room.clone(),
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            seq: room.last_seq,
            from: from.clone(),
            body: job.send.body.clone(),
            kind: job.send.kind.clone().unwrap_or_else(|| "text".to_owned()),
            ts,
            reply_to: job.send.reply_to.clone(),
        };
        if let Some(k) = key {
            by_client_id.insert(k, Earlier::Room(message.clone()));
        }
        fresh.push((message.clone(), job.send.client_id.as_deref()));
        outcomes.push(Ok(Persisted {
            message,
            fresh: true,
        }));
    }
    let moved: Vec<(&str, i64)> = rooms
        .iter()
        .filter(|(_, r)| r.moved)
        .map(|(id, r)| (id.as_str(), r.last_seq))
        .collect();
    if !moved.is_empty() {
        // [[room id, seq], ...]: room ids are canonical UUIDs, safe in JSON.
        sqlx::query(
            "UPDATE rooms SET last_seq = j.value ->> 1
             FROM json_each(?) AS j WHERE rooms.id = j.value ->> 0",
        )
        .bind(json(&moved))
        .execute(&mut *conn)
        .await?;
    }
    for chunk in fresh.chunks(INSERT_ROWS) {
        insert(conn, chunk).await?;
    }
    Ok(outcomes)
}

/// What a (sender, client_id) already names.
enum Earlier {
    /// A room message: a repeat of it returns it.
    Room(Message),
    /// A direct message: the key is taken.
    Direct,
}

/// The messages already stored under the batch's `client_id`s, by (sender,
/// client_id): room messages, and DMs (which share the idempotency index).
async fn earlier_messages(
    conn: &mut SqliteConnection,
    batch: &[SendJob],
) -> Result<HashMap<(String, String), Earlier>, sqlx::Error> {
    let keys: Vec<(&str, &str)> = batch
        .iter()
        .filter_map(|j| Some((j.send.from.id.as_str(), j.send.client_id.as_deref()?)))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // The keys drive the join (CROSS JOIN fixes the order), so each is one
    // lookup in the idempotency index; `IN (VALUES ...)` made SQLite scan
    // every room message instead.
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT m.id, COALESCE(m.room_id, '') AS room_id, COALESCE(m.seq, 0) AS seq, m.sender_id,
                u.username AS sender_name, m.content, m.kind, m.created_at, m.reply_to, m.client_id,
                m.room_id IS NULL AS direct
         FROM (",
    );
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
                (key, Earlier::Room(message))
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

/// Every room the batch sends to, by id (active or closed, and its latest
/// seq), and the batch's (room, sender) pairs where the sender is an active
/// participant (keys from [`member_key`]), in one statement.
async fn rooms_and_members(
    conn: &mut SqliteConnection,
    batch: &[SendJob],
) -> Result<(HashMap<String, RoomState>, HashSet<String>), sqlx::Error> {
    let rooms: HashSet<&str> = batch.iter().map(|j| j.room.as_str()).collect();
    let senders: HashSet<&str> = batch.iter().map(|j| j.send.from.id.as_str()).collect();
    // One row per room and matching participant (user NULL when none
    // matches). A sender who is a member of another room of the batch
    // matches too; only the pairs the jobs name are looked up.
    let rows: Vec<(String, bool, i64, Option<String>)> = sqlx::query_as(
        "SELECT r.id, r.is_active, r.last_seq, p.user_id
         FROM rooms r
         LEFT JOIN room_participants p
           ON p.room_id = r.id AND p.is_active = 1
          AND p.user_id IN (SELECT value FROM json_each(?))
         WHERE r.id IN (SELECT value FROM json_each(?))",
    )
    .bind(json(&senders))
    .bind(json(&rooms))
    .fetch_all(&mut *conn)
    .await?;
    let mut states = HashMap::new();
    let mut members = HashSet::new();
    for (id, active, last_seq, user) in rows {
        if let Some(user) = user {
            members.insert(member_key(&id, &user));
        }
        states.entry(id).or_insert(RoomState {
            active,
            last_seq,
            moved: false,
        });
    }
    Ok((states, members))
}

/// A JSON array of ids (and seqs) for `json_each`.
fn json(values: &impl serde::Serialize) -> String {
    serde_json::to_string(values).expect("strings and integers serialise")
}

/// The key of a (room, user) membership in [`rooms_and_members`].
fn member_key(room: &str, user: &str) -> String {
    format!("{room} {user}")
}

/// Inserts new messages in one statement.
async fn insert(
    conn: &mut SqliteConnection,
    rows: &[(Message, Option<&str>)],
) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO messages (id, room_id, sender_id, content, kind, seq, client_id, reply_to, created_at) ",
    );
    q.push_values(rows, |mut row, (m, client_id)| {
        row.push_bind(&m.id)
            .push_bind(&m.room)
            .push_bind(&m.from.id)
            .push_bind(&m.body)
            .push_bind(&m.kind)
            .push_bind(m.seq)
            .push_bind(*client_id)
            .push_bind(&m.reply_to)
            .push_bind(m.ts);
    });
    q.build().execute(&mut *conn).await?;
    Ok(())
}

//! Routes of messages that live: a message's thread and full-text search.
//! (Edits, deletes, reactions and read cursors arrive over WebSocket and
//! go through the writer, `writer/batch.rs`.)

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ErrorEnvelope, SearchHit, SearchResults, ThreadPage, UserRef, is_canonical_id,
};

use crate::ApiState;
use crate::auth::AuthUser;
use crate::rooms::{HistoryQuery, readable, room_id};
use crate::store::{self, db_err};

#[utoipa::path(get, path = "/rooms/{id}/messages/{message_id}/thread", tag = "rooms",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        ("message_id" = String, Path, description = "The thread's first message (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), HistoryQuery),
    responses((status = 200, description = "The message and a page of its replies in seq order (before/after/limit as for history)", body = ThreadPage), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller), or no such message in it", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn thread(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path((id, message_id)): Path<(String, String)>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<ThreadPage>, ApiError> {
    let id = room_id(&id)?;
    if !is_canonical_id(&message_id) {
        return Err(ApiError::bad_request("message ids are lowercase UUIDs"));
    }
    let (anchor, limit) = HistoryQuery::parse(query)?;
    readable(&state, id, &claims.sub).await?;
    let pool = &state.db().read;
    let mut parent = store::message(pool, id, &message_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such message in this room"))?;
    let (mut messages, has_more) = store::thread(pool, id, &message_id, anchor, limit).await?;
    store::with_reactions(pool, std::slice::from_mut(&mut parent), Some(&claims.sub)).await?;
    store::with_reactions(pool, &mut messages, Some(&claims.sub)).await?;
    Ok(Json(ThreadPage {
        parent,
        messages,
        has_more,
    }))
}

/// `GET /search` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// 1–256 characters; its words (runs of letters and digits; the first
    /// 8) must all occur, the last (of 2 characters or more) as a prefix.
    /// Anything else is a separator; no word, or one over 64 characters,
    /// finds nothing.
    #[param(min_length = 1, max_length = 256)]
    q: String,
    /// Only this room (one the caller takes part in).
    #[param(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    room: Option<String>,
    /// Only messages sent before this time (RFC 3339).
    before: Option<DateTime<Utc>>,
    /// 1–50, default 20.
    #[param(minimum = 1, maximum = 50)]
    #[serde(
        default,
        deserialize_with = "telepath_shared::protocol::integer::option"
    )]
    limit: Option<i64>,
    /// 0–1000: skip this many results (`next_offset` of the previous page).
    #[param(minimum = 0, maximum = 1000)]
    #[serde(
        default,
        deserialize_with = "telepath_shared::protocol::integer::option"
    )]
    offset: Option<i64>,
}

/// How many of the newest readable matches a query ranks.
pub(crate) const RANKED_MATCHES: i64 = 2000;

/// Most words of a query, and the longest word.
const MAX_WORDS: usize = 8;
const MAX_WORD_CHARS: usize = 64;

/// An FTS5 query that means "every word, the last as a prefix (of 2
/// characters or more)", whatever `q` holds: only runs of letters and
/// digits are kept (the first [`MAX_WORDS`]), each in double quotes (they
/// contain none), so no FTS5 operator, column filter or syntax error can
/// come from user input. `None` when nothing can match: no word, or a word
/// longer than [`MAX_WORD_CHARS`]. `q` must be 1–256 characters.
pub(crate) fn fts_query(q: &str) -> Result<Option<String>, ApiError> {
    let len = q.chars().count();
    if !(1..=256).contains(&len) {
        return Err(ApiError::bad_request("q: 1-256 characters"));
    }
    let words: Vec<&str> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .collect();
    if words.is_empty() || words.iter().any(|w| w.chars().count() > MAX_WORD_CHARS) {
        return Ok(None);
    }
    let last = words.len() - 1;
    Ok(Some(
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                // A one-letter prefix would match most of the index: only 2+.
                if i == last && w.chars().count() >= 2 {
                    format!("\"{w}\"*")
                } else {
                    format!("\"{w}\"")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    ))
}

#[derive(sqlx::FromRow)]
struct HitRow {
    id: String,
    room_id: Option<String>,
    seq: Option<i64>,
    recipient_id: Option<String>,
    sender_id: String,
    username: String,
    created_at: DateTime<Utc>,
    snippet: String,
}

#[utoipa::path(get, path = "/search", tag = "search", params(SearchQuery),
    responses((status = 200, description = "Matches among the room messages of the caller's rooms and the caller's DMs, most relevant first", body = SearchResults), (status = 400, description = "Invalid input (no word in q, too many words, bad limit or offset)", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "room is not a room the caller takes part in", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn search(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let fts = fts_query(&q.q)?;
    let limit = q.limit.unwrap_or(20);
    let offset = q.offset.unwrap_or(0);
    if !(1..=50).contains(&limit) || !(0..=1000).contains(&offset) {
        return Err(ApiError::bad_request("limit: 1-50, offset: 0-1000"));
    }
    let pool = &state.db().read;
    if let Some(room) = &q.room {
        let room = room_id(room)?;
        let mut conn = pool.acquire().await.map_err(db_err)?;
        if !store::is_member(&mut conn, room, &claims.sub).await? {
            return Err(ApiError::not_found("no such room"));
        }
    }
    // Every parameter is checked (the room too) before a query that can
    // match nothing answers.
    let Some(fts) = fts else {
        return Ok(Json(SearchResults {
            results: Vec::new(),
            next_offset: None,
        }));
    };
    // Bounded: the matches are walked newest first (the index's rowid order,
    // no ranking), each checked against what the caller may read, and the
    // walk stops at the newest RANKED_MATCHES readable ones; only those are
    // ranked (bm25), and only the page gets snippets. A common word over a
    // million messages costs that walk, not a ranking of every match.
    let rows: Vec<HitRow> = sqlx::query_as(
        "WITH recent AS (
            SELECT messages_fts.rowid AS rid, bm25(messages_fts) AS score
            FROM messages_fts
            JOIN messages m ON m.rowid = messages_fts.rowid
            WHERE messages_fts MATCH ?1
              AND m.deleted_at IS NULL
              AND (m.room_id IN (SELECT p.room_id FROM room_participants p JOIN rooms r ON r.id = p.room_id
                                 WHERE p.user_id = ?2 AND p.is_active = 1 AND r.is_active = 1)
                   OR (m.room_id IS NULL AND (m.recipient_id = ?2 OR m.sender_id = ?2)))
              AND (?3 IS NULL OR m.room_id = ?3)
              AND (?4 IS NULL OR m.created_at < ?4)
            ORDER BY messages_fts.rowid DESC
            LIMIT CAST(?7 AS INTEGER)
         ),
         page AS (
            SELECT rid, score FROM recent ORDER BY score, rid DESC
            LIMIT CAST(?5 AS INTEGER) OFFSET CAST(?6 AS INTEGER)
         )
         SELECT m.id, m.room_id, m.seq, m.recipient_id, m.sender_id, u.username, m.created_at,
                snippet(messages_fts, 0, '«', '»', '…', 16) AS snippet
         FROM page
         JOIN messages_fts ON messages_fts.rowid = page.rid AND messages_fts MATCH ?1
         JOIN messages m ON m.rowid = page.rid
         JOIN users u ON u.id = m.sender_id
         ORDER BY page.score, page.rid DESC",
    )
    .bind(&fts)
    .bind(&claims.sub)
    .bind(&q.room)
    .bind(q.before)
    .bind(limit + 1)
    .bind(offset)
    .bind(RANKED_MATCHES)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let more = rows.len() as i64 > limit;
    let results = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| {
            let with = r.recipient_id.as_ref().map(|to| {
                if *to == claims.sub {
                    r.sender_id.clone()
                } else {
                    to.clone()
                }
            });
            SearchHit {
                id: r.id,
                room: r.room_id,
                seq: r.seq,
                with,
                from: UserRef {
                    id: r.sender_id,
                    name: r.username,
                },
                ts: r.created_at,
                snippet: r.snippet,
            }
        })
        .collect();
    Ok(Json(SearchResults {
        results,
        next_offset: (more && offset + limit <= 1000).then_some(offset + limit),
    }))
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn fts5_syntax_in_a_query_is_only_text() {
        let q = |s: &str| fts_query(s).unwrap().unwrap();
        assert_eq!(q("hello"), "\"hello\"*");
        assert_eq!(q("a"), "\"a\"", "no one-letter prefix");
        assert_eq!(q("hello wor"), "\"hello\" \"wor\"*");
        for hostile in [
            "\"",
            "*",
            "NEAR(a b)",
            "content:x",
            "-x",
            "a OR b",
            "a\" OR \"b",
            "^x",
            "(x",
            "x)",
            "{content}: x",
            "x AND NOT y",
        ] {
            if let Ok(Some(q)) = fts_query(hostile) {
                // Only quoted words: every character outside quotes is a space or `*`.
                let outside: String = q.split('"').step_by(2).collect();
                assert!(
                    outside.chars().all(|c| c == ' ' || c == '*'),
                    "{hostile} -> {q}"
                );
            }
        }
        assert!(fts_query("").is_err());
        assert!(fts_query(&"a".repeat(257)).is_err());
        assert_eq!(fts_query("\"*()").unwrap(), None, "no word: nothing");
        assert_eq!(fts_query(&"a".repeat(65)).unwrap(), None, "too long a word");
        assert_eq!(
            q(&"ab ".repeat(9)).matches('"').count(),
            16,
            "the first 8 words"
        );
        assert_eq!(q("café naïve"), "\"café\" \"naïve\"*");
    }
}

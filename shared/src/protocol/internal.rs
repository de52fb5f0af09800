//! Service-to-service bodies: what gateways, the api and presence send each
//! other under `/internal/`, and the control and presence messages on the bus.
//! None of these reach clients.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    DirectMessage, ErrorBody, ErrorCode, LogEntry, Message, OnlineUser, PresenceEvent, Status,
    UserRef, check_body, check_emoji, check_user, integer, is_canonical_id,
};

/// Gateway -> api: join `room` on behalf of `user`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalJoin {
    pub user: UserRef,
}

/// Api -> gateway: the join succeeded; `seq` is the room's latest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResult {
    pub room: String,
    pub seq: i64,
    /// The participant's delivery cursor (advanced by acks); a join without
    /// `since` replays from it.
    #[serde(default)]
    pub cursor: i64,
    /// The participant is muted until then: `typing` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The room's history up to this seq was deleted by retention: a
    /// resume from below it cannot be replayed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pruned_seq: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Gateway -> api: `POST /internal/tickets/redeem`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RedeemTicket {
    #[schema(max_length = 64)]
    pub ticket: String,
}

/// The token a ticket was issued for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RedeemedTicket {
    pub token: String,
}

/// Gateway -> api: persist a room message from `from`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalSend {
    pub from: UserRef,
    /// At most `TELEPATH_MAX_BODY_BYTES` bytes (default 16384).
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 64)]
    pub reply_to: Option<String>,
}

impl InternalSend {
    /// The bounds its schema states (a sender of 1–64 characters each, a
    /// body of 1–[`MAX_BODY_CHARS`] characters, `kind` 1–32, `client_id`
    /// 1–128, `reply_to` ≤ 64), and a body of at most `max_body_bytes`
    /// bytes. What a gateway checks before it sends, and the api again.
    pub fn check(&self, max_body_bytes: usize) -> Result<(), ErrorBody> {
        check_user(&self.from)?;
        check_body(&self.body, max_body_bytes)?;
        let chars = |s: &String| s.chars().count();
        if self
            .kind
            .as_ref()
            .is_some_and(|k| k.is_empty() || chars(k) > 32)
            || self
                .client_id
                .as_ref()
                .is_some_and(|c| c.is_empty() || chars(c) > 128)
            || self.reply_to.as_ref().is_some_and(|r| chars(r) > 64)
        {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "kind (1-32), client_id (1-128) or reply_to (≤64) out of bounds",
            ));
        }
        Ok(())
    }
}

/// Most room messages, and most DMs, in one [`InternalSendBatch`].
pub const MAX_SEND_BATCH: usize = 1000;

/// Gateway -> api: room messages and DMs to persist, each list in the order
/// their senders sent them (`POST /internal/messages`). A gateway keeps one
/// batch in flight, so every connection's sends and DMs are committed in its
/// order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InternalSendBatch {
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub sends: Vec<InternalRoomSend>,
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub dms: Vec<InternalDm>,
    /// Edits, deletes, reactions and read cursors, in the order their
    /// senders sent them; committed after the batch's sends.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub changes: Vec<InternalChange>,
}

impl InternalSendBatch {
    /// The bounds its schema states, checked before anything of the batch
    /// is done: at most [`MAX_SEND_BATCH`] sends and DMs, each send's
    /// [`InternalSend::check`] (with no byte limit: that one is the api's
    /// own and refuses the send alone), its room 1–64 characters and
    /// traceparent ≤ 128 bytes, each DM's [`InternalDm::check`]. An error
    /// names the first bad item. What `POST /internal/messages` refuses the
    /// whole batch for.
    pub fn check(&self) -> Result<(), ErrorBody> {
        if self.sends.len() > MAX_SEND_BATCH
            || self.dms.len() > MAX_SEND_BATCH
            || self.changes.len() > MAX_SEND_BATCH
        {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("at most {MAX_SEND_BATCH} sends, DMs and changes per batch"),
            ));
        }
        for (i, c) in self.changes.iter().enumerate() {
            if let Err(e) = c.check_bounds() {
                return Err(ErrorBody::new(
                    e.code,
                    format!("changes[{i}]: {}", e.message),
                ));
            }
        }
        for (i, s) in self.sends.iter().enumerate() {
            let bounded = s.send.check(usize::MAX);
            let room = (1..=64).contains(&s.room.chars().count());
            let trace = s.traceparent.as_ref().is_none_or(|t| t.len() <= 128);
            if let Err(e) = bounded {
                return Err(ErrorBody::new(e.code, format!("sends[{i}]: {}", e.message)));
            }
            if !room || !trace {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("sends[{i}]: room (1-64) or traceparent (≤128) out of bounds"),
                ));
            }
        }
        for (i, dm) in self.dms.iter().enumerate() {
            if let Err(e) = dm.check(usize::MAX) {
                return Err(ErrorBody::new(e.code, format!("dms[{i}]: {}", e.message)));
            }
        }
        Ok(())
    }
}

/// One send of an [`InternalSendBatch`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalRoomSend {
    /// The room (a lowercase UUID).
    #[schema(min_length = 1, max_length = 64)]
    pub room: String,
    pub send: InternalSend,
    /// The W3C `traceparent` of the request that sent it, when traces are
    /// exported: the message's commit span continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub traceparent: Option<String>,
}

/// Api -> gateway: one outcome per send and per DM of an
/// [`InternalSendBatch`], in the batch's order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InternalSendResults {
    pub results: Vec<SendOutcome>,
    #[serde(default)]
    pub dms: Vec<DmOutcome>,
    #[serde(default)]
    pub changes: Vec<ChangeOutcome>,
}

/// What an [`InternalChange`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Edit,
    Delete,
    React,
    Read,
}

/// Gateway -> api: a change to a message (`edit`, `delete`, `react`) or a
/// read cursor (`read`), from `from`. A room's changes take its next seq
/// like messages; a DM's (`dm`) are edits and deletes by its sender.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalChange {
    pub op: ChangeOp,
    pub from: UserRef,
    /// The sender's token says admin (may delete any room message).
    #[serde(default)]
    pub admin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub room: Option<String>,
    /// The DM's id (equal to `id`), instead of `room`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub dm: Option<String>,
    /// The message (edit, delete, react).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub id: Option<String>,
    /// The new body (edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 4096)]
    pub body: Option<String>,
    /// One grapheme cluster of at most 32 bytes (react).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 32)]
    pub emoji: Option<String>,
    /// On or off (react).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
    /// The seq read up to (read).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integer::option"
    )]
    #[schema(minimum = 0)]
    pub seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub traceparent: Option<String>,
}

impl InternalChange {
    /// The bounds its schema states, each field alone: the sender, `room`,
    /// `dm` and `id` 1–64 characters, a body of 1–4096 characters, an
    /// emoji of 1–32, `seq` ≥ 0, `traceparent` ≤ 128 bytes. What
    /// `POST /internal/messages` refuses a whole batch for; which fields an
    /// op needs ([`InternalChange::check`]) refuses the change alone.
    pub fn check_bounds(&self) -> Result<(), ErrorBody> {
        let bad = |m: &str| Err(ErrorBody::new(ErrorCode::BadRequest, m.to_owned()));
        check_user(&self.from)?;
        let chars = |s: &Option<String>, max: usize| {
            s.as_ref()
                .is_none_or(|s| (1..=max).contains(&s.chars().count()))
        };
        if !chars(&self.room, 64) || !chars(&self.dm, 64) || !chars(&self.id, 64) {
            return bad("room, dm and id are 1-64 characters");
        }
        if !chars(&self.emoji, 32) {
            return bad("emoji is 1-32 characters");
        }
        if let Some(body) = &self.body {
            check_body(body, usize::MAX)?;
        }
        if self.seq.is_some_and(|s| s < 0) {
            return bad("seq must be >= 0");
        }
        if self.traceparent.as_ref().is_some_and(|t| t.len() > 128) {
            return bad("traceparent is at most 128 bytes");
        }
        Ok(())
    }

    /// The fields its op needs, and their bounds: `room` xor `dm` (1–64
    /// characters; `dm` only for edit and delete, and equal to `id`), `id`
    /// 1–64 for edit, delete and react, a body as [`check_body`] wants it
    /// for edit, an emoji as [`check_emoji`] wants it and `on` for react,
    /// `seq` ≥ 0 for read, `traceparent` ≤ 128. What a gateway checks
    /// before it sends, and the api again.
    pub fn check(&self, max_body_bytes: usize) -> Result<(), ErrorBody> {
        let bad = |m: &str| Err(ErrorBody::new(ErrorCode::BadRequest, m.to_owned()));
        check_user(&self.from)?;
        let bounded = |s: &Option<String>| {
            s.as_ref()
                .is_none_or(|s| (1..=64).contains(&s.chars().count()))
        };
        if !bounded(&self.room) || !bounded(&self.dm) || !bounded(&self.id) {
            return bad("room, dm and id are 1-64 characters");
        }
        if self.traceparent.as_ref().is_some_and(|t| t.len() > 128) {
            return bad("traceparent is at most 128 bytes");
        }
        let dm_allowed = matches!(self.op, ChangeOp::Edit | ChangeOp::Delete);
        match (&self.room, &self.dm) {
            (Some(_), None) => {}
            (None, Some(dm)) if dm_allowed => {
                if self.id.as_deref() != Some(dm.as_str()) {
                    return bad("dm and id name the same direct message");
                }
            }
            _ if dm_allowed => return bad("name exactly one of room and dm"),
            _ => return bad("room is required"),
        }
        if self.op != ChangeOp::Read && self.id.is_none() {
            return bad("id is required");
        }
        match self.op {
            ChangeOp::Edit => match &self.body {
                Some(body) => check_body(body, max_body_bytes)?,
                None => return bad("body is required"),
            },
            ChangeOp::Delete => {}
            ChangeOp::React => {
                match &self.emoji {
                    Some(e) => check_emoji(e)?,
                    None => return bad("emoji is required"),
                }
                if self.on.is_none() {
                    return bad("on is required");
                }
            }
            ChangeOp::Read => match self.seq {
                Some(seq) if seq >= 0 => {}
                _ => return bad("seq must be an integer >= 0"),
            },
        }
        Ok(())
    }
}

/// What an [`InternalChange`] did: the change's seq in the room's log (0
/// for a change that changed nothing and had no earlier one), and what its
/// reply tells; or why it was refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ChangeResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

/// The outcome of one change of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// A page of a room's log (messages and changes in seq order), for joins'
/// replays and gap repair.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    pub has_more: bool,
}

/// The committed message, or why the send was refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The stored DM, or why it was refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<DmResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Gateway -> api: a direct message from `from` to `to` (user id or username).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalDm {
    pub from: UserRef,
    #[schema(min_length = 1, max_length = 64)]
    pub to: String,
    /// At most `TELEPATH_MAX_BODY_BYTES` bytes (default 16384).
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    /// The W3C `traceparent` of the request that sent it, when traces are
    /// exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub traceparent: Option<String>,
}

impl InternalDm {
    /// The bounds its schema states (a sender of 1–64 characters each, `to`
    /// 1–64, a body as [`check_body`] wants it, `client_id` 1–128,
    /// `traceparent` ≤ 128). What a gateway checks before it sends, and the
    /// api again.
    pub fn check(&self, max_body_bytes: usize) -> Result<(), ErrorBody> {
        check_user(&self.from)?;
        check_body(&self.body, max_body_bytes)?;
        let chars = |s: &String| s.chars().count();
        if self.to.is_empty()
            || chars(&self.to) > 64
            || self
                .client_id
                .as_ref()
                .is_some_and(|c| c.is_empty() || chars(c) > 128)
            || self.traceparent.as_ref().is_some_and(|t| t.len() > 128)
        {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "to (1-64), client_id (1-128) or traceparent (≤128) out of bounds",
            ));
        }
        Ok(())
    }
}

/// Api -> gateway: a DM was stored (and published).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmResult {
    pub id: String,
    pub ts: DateTime<Utc>,
    /// Whether the recipient had a live connection when it was sent.
    pub delivered: bool,
}

/// A room's delivery cursor: everything up to `seq` reached the user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomCursor {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub room: String,
    #[serde(deserialize_with = "integer::required")]
    #[schema(minimum = 0)]
    pub seq: i64,
}

/// Gateway -> api: acks of one user, in a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalAcks {
    #[schema(min_length = 1, max_length = 64)]
    pub user_id: String,
    /// DMs the user received (their ids).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub dms: Vec<String>,
    /// DMs the user received as of a version they named: each leaves the
    /// queue only if the DM is still in that state (an edit or a delete
    /// made since stays queued).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 1000)]
    pub dm_versions: Vec<DmAckVersion>,
    /// Room delivery cursors.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub cursors: Vec<RoomCursor>,
}

/// One DM received, as of one version: the DM's `deleted` and `edited_at`
/// as the client got them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DmAckVersion {
    pub id: String,
    /// The version received was the deleted DM (its last state).
    #[serde(default)]
    pub deleted: bool,
    /// The `edited_at` of the version received; absent for a DM never edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
}

impl InternalAcks {
    /// A user id of 1–64 characters, at most 1000 DMs and 1000 cursors,
    /// each cursor's room canonical and its seq not negative.
    pub fn check(&self) -> Result<(), ErrorBody> {
        if self.user_id.is_empty()
            || self.user_id.chars().count() > 64
            || self.dms.len() > 1000
            || self.dm_versions.len() > 1000
            || self.cursors.len() > 1000
            || self
                .cursors
                .iter()
                .any(|c| !is_canonical_id(&c.room) || c.seq < 0)
        {
            return Err(ErrorBody::new(ErrorCode::BadRequest, "bad acks"));
        }
        Ok(())
    }
}

/// Most rooms in one [`InternalMemberships`].
pub const MAX_MEMBERSHIP_ROOMS: usize = 1000;
/// Most user ids in one [`InternalMemberships`], over all its rooms.
pub const MAX_MEMBERSHIP_USERS: usize = 10_000;

/// Gateway -> api (`POST /internal/memberships`): which of these rooms are
/// still active, and which of these users still take part in each. A
/// gateway asks after its bus subscription was lost and restored (the
/// `member` and `room_closed` events published meanwhile were missed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InternalMemberships {
    #[schema(max_items = 1000)]
    pub rooms: Vec<RoomUsers>,
}

/// One room of an [`InternalMemberships`] and the users to check in it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomUsers {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub room: String,
    /// User ids (lowercase UUIDs).
    #[serde(default)]
    #[schema(schema_with = membership_users)]
    pub users: Vec<String>,
}

fn membership_users() -> utoipa::openapi::schema::Array {
    super::ids::id_list_schema(MAX_MEMBERSHIP_USERS)
}

impl InternalMemberships {
    /// At most [`MAX_MEMBERSHIP_ROOMS`] rooms and [`MAX_MEMBERSHIP_USERS`]
    /// user ids in all, every id canonical; an error names the first bad item.
    pub fn check(&self) -> Result<(), ErrorBody> {
        let users: usize = self.rooms.iter().map(|r| r.users.len()).sum();
        if self.rooms.len() > MAX_MEMBERSHIP_ROOMS || users > MAX_MEMBERSHIP_USERS {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!(
                    "at most {MAX_MEMBERSHIP_ROOMS} rooms and {MAX_MEMBERSHIP_USERS} user ids in all"
                ),
            ));
        }
        for (i, r) in self.rooms.iter().enumerate() {
            if !is_canonical_id(&r.room) {
                return Err(not_an_id(format!("rooms[{i}].room")));
            }
            if let Some(j) = r.users.iter().position(|u| !is_canonical_id(u)) {
                return Err(not_an_id(format!("rooms[{i}].users[{j}]")));
            }
        }
        Ok(())
    }
}

/// Api -> gateway: one entry per room of the [`InternalMemberships`], in its order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Memberships {
    pub rooms: Vec<RoomMembership>,
}

/// Where one room stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RoomMembership {
    pub room: String,
    /// The room exists and is not closed.
    pub active: bool,
    /// The users asked about who are active participants, in the order
    /// asked, each once; none when the room is not active.
    pub members: Vec<String>,
    /// Who closed it, when it exists and is closed (its creator for a room
    /// closed before closers were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<UserRef>,
}

/// Most users in one [`InternalPendingDms`].
pub const MAX_PENDING_USERS: usize = 100;

/// Gateway -> api (`POST /internal/dms/pending`): the offline queues of
/// these users, for the connects that arrive together (`connect`), or after
/// a bus outage (the DMs published meanwhile were missed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InternalPendingDms {
    /// User ids (lowercase UUIDs); one may repeat.
    #[schema(schema_with = pending_users)]
    pub user_ids: Vec<String>,
    /// The reads of connects: each entry also carries the user's pending
    /// invitations and undismissed announcements, and a user found with
    /// nothing pending is marked so (the connect marks), as
    /// `GET /internal/dms/pending` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connect: bool,
}

fn pending_users() -> utoipa::openapi::schema::Array {
    super::ids::id_list_schema(MAX_PENDING_USERS)
}

impl InternalPendingDms {
    /// At most [`MAX_PENDING_USERS`] ids, each canonical.
    pub fn check(&self) -> Result<(), ErrorBody> {
        if self.user_ids.len() > MAX_PENDING_USERS {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("at most {MAX_PENDING_USERS} user ids"),
            ));
        }
        match self.user_ids.iter().position(|u| !is_canonical_id(u)) {
            Some(i) => Err(not_an_id(format!("user_ids[{i}]"))),
            None => Ok(()),
        }
    }
}

/// Api -> gateway: one entry per user id of the [`InternalPendingDms`], in its order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PendingDmsByUser {
    pub users: Vec<UserPendingDms>,
}

/// One user's queued DMs, oldest first: what `GET /internal/dms/pending`
/// returns for them (invitations and announcements only with `connect`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserPendingDms {
    pub user_id: String,
    pub messages: Vec<DirectMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invites: Vec<super::Invite>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announcements: Vec<super::Announcement>,
}

impl From<UserPendingDms> for super::PendingDms {
    fn from(u: UserPendingDms) -> Self {
        super::PendingDms {
            messages: u.messages,
            invites: u.invites,
            announcements: u.announcements,
        }
    }
}

/// The refusal of `what`, which is not a lowercase UUID.
fn not_an_id(what: String) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::BadRequest,
        format!("{what}: ids are lowercase UUIDs"),
    )
}

/// One live connection, as gateways report it to presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnReport {
    #[schema(min_length = 1, max_length = 256)]
    pub conn_id: String,
    pub user: UserRef,
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
}

/// One live connection in a heartbeat: enough for presence to rebuild
/// everything it knows about it after losing its store (Redis restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveConn {
    #[schema(min_length = 1, max_length = 256)]
    pub conn_id: String,
    pub user: UserRef,
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
    /// Rooms this connection has joined (room ids).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub rooms: Vec<String>,
    /// No client frames for `TELEPATH_AWAY_AFTER_MS`.
    #[serde(default)]
    pub idle: bool,
    /// The user's latest status choice this gateway knows of (made on any
    /// connection of theirs, on any gateway); presence takes it when it is
    /// newer than its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<StatusChoice>,
}

/// A user's status choice: the status they chose (`online` is the choice
/// to have none: automatic online/away), its text, and when a gateway
/// received it. Choices reported by different gateways, or repeated by
/// heartbeats, are ordered by that time: a later one wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusChoice {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub text: Option<String>,
    /// When the gateway received the `status` frame, Unix ms.
    #[schema(minimum = 0)]
    pub at_ms: i64,
}

/// Gateway -> presence: the connections of `node` that are still alive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatReport {
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
    #[schema(max_items = 100_000)]
    pub conns: Vec<LiveConn>,
}

/// Gateway -> presence: one thing that happened on a gateway, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresenceReport {
    /// A connection opened.
    Connect {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        user: UserRef,
        #[schema(min_length = 1, max_length = 256)]
        node: String,
    },
    /// A connection closed.
    Disconnect {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        #[schema(min_length = 1, max_length = 64)]
        user_id: String,
    },
    /// A connection joined a room.
    Join {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        user: UserRef,
        #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
        room: String,
    },
    /// A connection left a room.
    Leave {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        #[schema(min_length = 1, max_length = 64)]
        user_id: String,
        #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
        room: String,
    },
    /// A typing indicator started (refreshed) or stopped.
    Typing {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        user: UserRef,
        #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
        room: String,
        active: bool,
    },
    /// The user chose a status (`online` clears the choice: automatic online/away again).
    Status {
        user: UserRef,
        status: Status,
        #[schema(max_length = 128)]
        text: Option<String>,
        /// When the gateway received it, Unix ms (see [`StatusChoice`]).
        #[schema(minimum = 0)]
        at_ms: i64,
    },
    /// A connection went idle (no client frames for `TELEPATH_AWAY_AFTER_MS`) or active again.
    Idle {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        #[schema(min_length = 1, max_length = 64)]
        user_id: String,
        idle: bool,
    },
}

/// Gateway -> presence: a batch of reports, applied in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PresenceReports {
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
    #[schema(max_items = 10_000)]
    pub reports: Vec<PresenceReport>,
}

/// Gateway -> presence (`POST /internal/presence/admit`): connections just
/// upgraded, to admit while their user has fewer than `max` connections
/// (`TELEPATH_MAX_CONNS_PER_USER`) across every gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdmitRequest {
    #[schema(minimum = 1)]
    pub max: u32,
    #[schema(min_items = 1, max_items = 1000)]
    pub conns: Vec<AdmitConn>,
}

/// One connection to admit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdmitConn {
    #[schema(min_length = 1, max_length = 256)]
    pub conn_id: String,
    #[schema(min_length = 1, max_length = 256)]
    pub user_id: String,
}

/// Presence -> gateway: whether each connection asked for was admitted, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdmitResult {
    pub admitted: Vec<bool>,
}

/// Presence -> every gateway (bus channel [`PRESENCE_CHANNEL`]): a user's
/// presence changed; tell the connections in `rooms` and the user's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceBroadcast {
    /// Rooms the user's connections had joined.
    pub rooms: Vec<String>,
    pub event: PresenceEvent,
    /// The user's status choice behind the event, if they made one this
    /// session: gateways keep it for their heartbeats, so it outlives a
    /// presence store that loses its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<StatusChoice>,
}

/// Control messages on a node's bus channel (`node:{id}`), never relayed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeControl {
    /// Close every local connection of `user_id` with `bye` admin and 4003.
    DisconnectUser { user_id: String },
    /// The node's own liveness probe: it publishes these to itself and
    /// expects them back, which proves its subscription delivers.
    Probe { nonce: u64 },
    /// On [`NODES_CHANNEL`](crate::protocol::NODES_CHANNEL): tokens of
    /// `user_id` issued before `valid_after` (seconds since the epoch) are
    /// refused from now on, and the user's live connections close with
    /// `bye` `token_revoked` and 4001.
    Revoke { user_id: String, valid_after: i64 },
}

/// `GET /internal/revocations`: every user whose older tokens are revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revocations {
    pub revocations: Vec<Revocation>,
}

/// One user's revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    pub user_id: String,
    /// Tokens issued (`iat`) before this, seconds since the epoch, are refused.
    pub valid_after: i64,
}

/// What a connection log row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionEventKind {
    Connect,
    Disconnect,
}

/// Gateway -> api: one connect or disconnect, for `connection_logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionEvent {
    pub event: ConnectionEventKind,
    #[schema(max_length = 64)]
    pub conn_id: String,
    pub user: UserRef,
    #[schema(max_length = 64)]
    pub node: String,
    #[serde(default)]
    #[schema(max_length = 64)]
    pub ip: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub user_agent: Option<String>,
    /// For disconnects: the close code, e.g. `1000` or `4003`.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Gateway -> api: a batch of connection events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionEvents {
    #[schema(max_items = 1000)]
    pub events: Vec<ConnectionEvent>,
}

/// Presence -> api: everyone live right now (`GET /internal/presence/summary`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PresenceSummary {
    pub online_users: u64,
    pub connections: u64,
    pub by_node: std::collections::BTreeMap<String, u64>,
    pub users: Vec<OnlineUser>,
}

/// Presence -> api: one user's live connections
/// (`GET /internal/presence/users/{id}/connections`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserConnections {
    pub connections: Vec<ConnReport>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::protocol::*;

    #[test]
    fn membership_and_pending_queries_are_bounded_and_take_canonical_ids_only() {
        let id = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
        let rooms = |n: usize, users: usize| InternalMemberships {
            rooms: (0..n)
                .map(|i| RoomUsers {
                    room: id(i),
                    users: (0..users).map(id).collect(),
                })
                .collect(),
        };
        assert!(rooms(1000, 10).check().is_ok());
        assert!(rooms(1001, 0).check().is_err());
        assert!(rooms(100, 101).check().is_err(), "10,100 user ids");
        let refusal = |q: &InternalMemberships| q.check().unwrap_err().message;
        let mut bad = rooms(3, 2);
        bad.rooms[2].users[1] = "ADA".into();
        assert!(refusal(&bad).starts_with("rooms[2].users[1]:"));
        bad.rooms[1].room = "room:*".into();
        assert!(refusal(&bad).starts_with("rooms[1].room:"));

        let users = |n: usize| InternalPendingDms {
            user_ids: (0..n).map(id).collect(),
            connect: false,
        };
        assert!(users(100).check().is_ok());
        assert!(users(101).check().is_err());
        let mut bad = users(2);
        bad.user_ids[1] = String::new();
        assert!(bad.check().unwrap_err().message.starts_with("user_ids[1]:"));
    }

    #[test]
    fn send_batches_and_acks_are_bounded_and_name_the_first_bad_item() {
        let room = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";
        let batch: InternalSendBatch = serde_json::from_value(json!({
            "sends": [
                {"room": room, "send": {"from": {"id": "u1", "name": "ada"}, "body": "hi"}},
                {"room": room, "send": {"from": {"id": "u1", "name": "ada"}, "body": "yo", "kind": "text"}},
            ],
            "dms": [{"from": {"id": "u1", "name": "ada"}, "to": "bob", "body": "psst"}],
        }))
        .unwrap();
        assert!(batch.check().is_ok());
        let mut bad = batch.clone();
        bad.sends[1].send.kind = Some(String::new());
        assert!(
            bad.check()
                .unwrap_err()
                .message
                .starts_with("sends[1]: kind")
        );
        let mut bad = batch.clone();
        bad.sends[1].traceparent = Some("x".repeat(129));
        assert!(
            bad.check()
                .unwrap_err()
                .message
                .starts_with("sends[1]: room")
        );
        let mut bad = batch.clone();
        bad.dms[0].body = "x".repeat(MAX_BODY_CHARS + 1);
        let e = bad.check().unwrap_err();
        assert_eq!((e.code, &e.message[..7]), (ErrorCode::TooLarge, "dms[0]:"));
        let mut bad = batch;
        bad.dms = vec![bad.dms[0].clone(); MAX_SEND_BATCH + 1];
        assert!(bad.check().is_err());

        let acks = |user: &str, seq: i64| InternalAcks {
            user_id: user.into(),
            dms: vec!["m1".into()],
            dm_versions: Vec::new(),
            cursors: vec![RoomCursor {
                room: room.into(),
                seq,
            }],
        };
        assert!(acks("u1", 0).check().is_ok());
        assert!(acks("u1", -1).check().is_err());
        assert!(acks("", 3).check().is_err());
    }

    #[test]
    fn node_control_messages_use_op_tags() {
        let c = NodeControl::DisconnectUser {
            user_id: "u".into(),
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"op":"disconnect_user","user_id":"u"})
        );
        assert_eq!(
            serde_json::from_value::<NodeControl>(json!({"op":"disconnect_user","user_id":"u"}))
                .unwrap(),
            c
        );
    }
}

//! Server -> client: every frame the server sends, tagged by `type`.
//! Room messages double as the REST form of a message (without `type`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{ErrorBody, Invite, Profile, RoomEvent, RoomRole, Status, UserInfo, UserRef};

/// Every frame the server sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome(Welcome),
    Reply(Reply),
    Message(Message),
    Dm(DirectMessage),
    Broadcast(BroadcastEvent),
    Presence(PresenceEvent),
    Typing(TypingEvent),
    Member(MemberEvent),
    Error(ErrorBody),
    Bye(Bye),
    RoomClosed(RoomClosed),
    MessageEdited(MessageEdited),
    MessageDeleted(MessageDeleted),
    Reaction(ReactionEvent),
    Receipt(Receipt),
    Invite(Invite),
    RoomCreated(RoomEvent),
    RoomUpdated(RoomEvent),
    Profile(Profile),
    Notification(super::Notification),
    NotificationsRead(super::NotificationsRead),
    Announcement(super::Announcement),
    AnnouncementDismissed(super::AnnouncementDismissed),
}

impl ServerFrame {
    /// The frame's `type` on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome(_) => "welcome",
            ServerFrame::Reply(_) => "reply",
            ServerFrame::Message(_) => "message",
            ServerFrame::Dm(_) => "dm",
            ServerFrame::Broadcast(_) => "broadcast",
            ServerFrame::Presence(_) => "presence",
            ServerFrame::Typing(_) => "typing",
            ServerFrame::Member(_) => "member",
            ServerFrame::Error(_) => "error",
            ServerFrame::Bye(_) => "bye",
            ServerFrame::RoomClosed(_) => "room_closed",
            ServerFrame::MessageEdited(_) => "message_edited",
            ServerFrame::MessageDeleted(_) => "message_deleted",
            ServerFrame::Reaction(_) => "reaction",
            ServerFrame::Receipt(_) => "receipt",
            ServerFrame::Invite(_) => "invite",
            ServerFrame::RoomCreated(_) => "room_created",
            ServerFrame::RoomUpdated(_) => "room_updated",
            ServerFrame::Profile(_) => "profile",
            ServerFrame::Notification(_) => "notification",
            ServerFrame::NotificationsRead(_) => "notifications_read",
            ServerFrame::Announcement(_) => "announcement",
            ServerFrame::AnnouncementDismissed(_) => "announcement_dismissed",
        }
    }

    /// Serialises the frame; serialising these types cannot fail (no maps with
    /// non-string keys, no foreign `Serialize` impls).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialise")
    }
}

/// Always the first frame on a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub conn_id: String,
    pub user: UserInfo,
    pub node: String,
    pub heartbeat_ms: u64,
    pub limits: Limits,
    /// The user's unread notifications when they connected (absent when
    /// the api could not tell in time: read `GET /notifications`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications_unread: Option<i64>,
}

/// The bounds a client must respect, announced in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted frame (whole message), in bytes.
    pub max_frame_bytes: usize,
    /// Frames per second a connection may send before `rate_limited`.
    pub max_rate_per_s: u32,
    /// Sends, DMs, edits, deletes, reactions and typing per second the user
    /// may send over all their connections before `rate_limited` (burst
    /// twice that; 0: no per-user limit).
    #[serde(default)]
    pub max_user_rate_per_s: u32,
    /// Largest message body, in bytes.
    pub max_body_bytes: usize,
    /// Rooms one connection may be joined to at once.
    pub max_rooms_per_conn: usize,
}

/// The answer to a request that carried a `ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(rename = "ref")]
    pub reference: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    /// A successful reply carrying `data`.
    pub fn ok(reference: String, data: Value) -> Self {
        Reply {
            reference,
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    /// A failed reply.
    pub fn err(reference: String, error: ErrorBody) -> Self {
        Reply {
            reference,
            ok: false,
            data: None,
            error: Some(error),
        }
    }
}

/// A room message: the `message` event, and (without `type`) the REST form.
/// It is the message as it was when read: edited (`edited_at`), deleted (a
/// tombstone: `deleted`, no body), with its reactions and, for a thread's
/// parent, its replies' count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub room: String,
    pub id: String,
    /// Position in the room's log, assigned at commit. The log also holds
    /// edits, deletes and reaction changes, so a room's messages alone may
    /// skip seqs; the log has no holes.
    pub seq: i64,
    pub from: UserRef,
    /// Absent (empty) for a deleted message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    pub kind: String,
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// When the body last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    /// A tombstone: the body is gone.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// Replies that name this message in `reply_to`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reply_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply_at: Option<DateTime<Utc>>,
}

impl Message {
    /// A new message as the writer stores it (not edited, no reactions or replies).
    #[expect(
        clippy::too_many_arguments,
        reason = "a message's own fields, in wire order"
    )]
    pub fn new(
        room: String,
        id: String,
        seq: i64,
        from: UserRef,
        body: String,
        kind: String,
        ts: DateTime<Utc>,
        reply_to: Option<String>,
    ) -> Self {
        Message {
            room,
            id,
            seq,
            from,
            body,
            kind,
            ts,
            reply_to,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            reply_count: 0,
            last_reply_at: None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// How many users put one emoji on a message; `me` (REST only) whether the
/// caller is one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub me: Option<bool>,
}

/// A message's body changed. Room messages: `room` and `seq` (the change's
/// own place in the room's log). DMs: `dm` (the DM's id) and `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageEdited {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    pub body: String,
    pub edited_at: DateTime<Utc>,
    pub by: UserRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// A message was deleted (its body is gone; the id and seq stay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageDeleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    pub by: UserRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// A user put an emoji on a message (`on`) or took it off; `count` is how
/// many users have it on the message after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReactionEvent {
    pub room: String,
    pub id: String,
    pub seq: i64,
    pub emoji: String,
    pub user: UserRef,
    pub on: bool,
    pub count: i64,
}

/// A member's read cursor moved (coalesced; not in the room's log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub room: String,
    pub user: UserRef,
    pub seq: i64,
}

/// One entry of a room's ordered log: a message or a change to one. What
/// join replays and gap repair read back, in seq order; on the wire it is
/// the server frame of the same `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogEntry {
    Message(Message),
    MessageEdited(MessageEdited),
    MessageDeleted(MessageDeleted),
    Reaction(ReactionEvent),
}

impl LogEntry {
    /// Its place in the room's log.
    pub fn seq(&self) -> i64 {
        match self {
            LogEntry::Message(m) => m.seq,
            LogEntry::MessageEdited(e) => e.seq.unwrap_or(0),
            LogEntry::MessageDeleted(e) => e.seq.unwrap_or(0),
            LogEntry::Reaction(e) => e.seq,
        }
    }

    /// Its frame's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            LogEntry::Message(_) => "message",
            LogEntry::MessageEdited(_) => "message_edited",
            LogEntry::MessageDeleted(_) => "message_deleted",
            LogEntry::Reaction(_) => "reaction",
        }
    }

    /// The room it belongs to.
    pub fn room(&self) -> &str {
        match self {
            LogEntry::Message(m) => &m.room,
            LogEntry::MessageEdited(e) => e.room.as_deref().unwrap_or(""),
            LogEntry::MessageDeleted(e) => e.room.as_deref().unwrap_or(""),
            LogEntry::Reaction(e) => &e.room,
        }
    }

    /// The server frame that carries it.
    pub fn into_frame(self) -> ServerFrame {
        match self {
            LogEntry::Message(m) => ServerFrame::Message(m),
            LogEntry::MessageEdited(e) => ServerFrame::MessageEdited(e),
            LogEntry::MessageDeleted(e) => ServerFrame::MessageDeleted(e),
            LogEntry::Reaction(e) => ServerFrame::Reaction(e),
        }
    }

    /// Serialised as its server frame (the same JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("log entries always serialise")
    }
}

/// Whether a frame `type` is an entry of a room's log (carries its `seq`).
pub fn is_log_type(kind: &str) -> bool {
    matches!(
        kind,
        "message" | "message_edited" | "message_deleted" | "reaction"
    )
}

/// A direct message between two users, as it is now: edited
/// (`edited_at`), or deleted (`deleted`, no body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectMessage {
    pub id: String,
    pub from: UserRef,
    pub to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// An admin broadcast to everyone connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastEvent {
    pub id: String,
    pub from: UserRef,
    pub body: String,
    pub ts: DateTime<Utc>,
}

/// A user's presence changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceEvent {
    pub user: UserRef,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub last_seen: DateTime<Utc>,
}

/// Someone started or stopped typing in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypingEvent {
    pub room: String,
    pub user: UserRef,
    pub active: bool,
}

/// Someone joined or left a room, or a moderator changed their standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEvent {
    pub room: String,
    pub user: UserRef,
    pub action: MemberAction,
    /// `left`: why, when not by their own choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeftReason>,
    /// Who did it, when not the user themself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<UserRef>,
    /// `role`: the user's new role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoomRole>,
    /// `muted`: until when (absent: until lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl MemberEvent {
    /// A `member` event with only its three base fields.
    pub fn new(room: String, user: UserRef, action: MemberAction) -> Self {
        MemberEvent {
            room,
            user,
            action,
            reason: None,
            by: None,
            role: None,
            until: None,
        }
    }
}

/// What a `member` event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberAction {
    Joined,
    Left,
    /// The user's room role changed (`role`).
    Role,
    Muted,
    Unmuted,
}

/// Why a user left a room when it was not their own choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    Kicked,
    Banned,
}

/// A room was deactivated by its owner or an admin: no more sends or joins.
/// Telepath's own event (the contract leaves its shape to us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClosed {
    pub room: String,
    /// Who closed it.
    pub by: UserRef,
}

/// Sent just before the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bye {
    pub reason: ByeReason,
}

/// Why the server is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    Admin,
    Restart,
    TokenExpired,
    /// The user's tokens were revoked (close 4001: get a new token).
    TokenRevoked,
    SlowConsumer,
    Replaced,
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::{Value, json};

    use crate::protocol::*;

    #[test]
    fn every_server_frame_round_trips() {
        let ts: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let user = UserRef {
            id: "u1".into(),
            name: "ada".into(),
        };
        let frames = vec![
            ServerFrame::Welcome(Welcome {
                conn_id: "c".into(),
                user: UserInfo {
                    id: "u1".into(),
                    name: "ada".into(),
                    role: Role::Admin,
                },
                node: "n1".into(),
                heartbeat_ms: 15000,
                limits: Limits {
                    max_frame_bytes: 65536,
                    max_rate_per_s: 50,
                    max_user_rate_per_s: 50,
                    max_body_bytes: 4096,
                    max_rooms_per_conn: 100,
                },
                notifications_unread: Some(3),
            }),
            ServerFrame::Notification(crate::protocol::Notification {
                id: "n1".into(),
                kind: crate::protocol::NotificationKind::Mention,
                room: Some("r1".into()),
                message_id: Some("m1".into()),
                from: Some(UserRef {
                    id: "u2".into(),
                    name: "bob".into(),
                }),
                text: "hi @ada".into(),
                ts: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                read: None,
            }),
            ServerFrame::NotificationsRead(crate::protocol::NotificationsRead {
                ids: None,
                up_to: Some("n1".into()),
                unread: 0,
            }),
            ServerFrame::AnnouncementDismissed(crate::protocol::AnnouncementDismissed {
                id: "a1".into(),
            }),
            ServerFrame::Reply(Reply::ok("1".into(), json!({"pong": 5}))),
            ServerFrame::Reply(Reply::err(
                "2".into(),
                ErrorBody::new(ErrorCode::RoomFull, "full"),
            )),
            ServerFrame::Message(Message::new(
                "r".into(),
                "m".into(),
                3,
                user.clone(),
                "b".into(),
                "text".into(),
                ts,
                Some("m0".into()),
            )),
            ServerFrame::Message(Message {
                body: String::new(),
                deleted: true,
                edited_at: Some(ts),
                reactions: vec![ReactionCount {
                    emoji: "👍".into(),
                    count: 2,
                    me: None,
                }],
                reply_count: 3,
                last_reply_at: Some(ts),
                ..Message::new(
                    "r".into(),
                    "m".into(),
                    3,
                    user.clone(),
                    String::new(),
                    "text".into(),
                    ts,
                    None,
                )
            }),
            ServerFrame::Dm(DirectMessage {
                id: "d".into(),
                from: user.clone(),
                to: "u2".into(),
                body: "x".into(),
                ts,
                edited_at: None,
                deleted: false,
            }),
            ServerFrame::MessageEdited(MessageEdited {
                room: Some("r".into()),
                id: "m".into(),
                seq: Some(4),
                body: "c".into(),
                edited_at: ts,
                by: user.clone(),
                dm: None,
                to: None,
            }),
            ServerFrame::MessageDeleted(MessageDeleted {
                room: None,
                id: "d".into(),
                seq: None,
                by: user.clone(),
                dm: Some("d".into()),
                to: Some("u2".into()),
            }),
            ServerFrame::Reaction(ReactionEvent {
                room: "r".into(),
                id: "m".into(),
                seq: 5,
                emoji: "🎉".into(),
                user: user.clone(),
                on: true,
                count: 1,
            }),
            ServerFrame::Receipt(Receipt {
                room: "r".into(),
                user: user.clone(),
                seq: 5,
            }),
            ServerFrame::Broadcast(BroadcastEvent {
                id: "b".into(),
                from: user.clone(),
                body: "y".into(),
                ts,
            }),
            ServerFrame::Presence(PresenceEvent {
                user: user.clone(),
                status: Status::Meditating,
                text: Some("om".into()),
                last_seen: ts,
            }),
            ServerFrame::Typing(TypingEvent {
                room: "r".into(),
                user: user.clone(),
                active: false,
            }),
            ServerFrame::Member(MemberEvent::new("r".into(), user, MemberAction::Left)),
            ServerFrame::Error(ErrorBody::new(ErrorCode::BadRequest, "bad")),
            ServerFrame::Bye(Bye {
                reason: ByeReason::TokenExpired,
            }),
            ServerFrame::RoomClosed(RoomClosed {
                room: "r".into(),
                by: UserRef {
                    id: "u1".into(),
                    name: "ada".into(),
                },
            }),
        ];
        for frame in frames {
            let text = frame.to_json();
            let back: ServerFrame = serde_json::from_str(&text).unwrap();
            assert_eq!(back, frame, "{text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], frame.name(), "name() is the wire type");
        }
    }

    #[test]
    fn server_frames_use_the_wire_names() {
        let v: Value = serde_json::from_str(
            &ServerFrame::Bye(Bye {
                reason: ByeReason::SlowConsumer,
            })
            .to_json(),
        )
        .unwrap();
        assert_eq!(v, json!({"type":"bye","reason":"slow_consumer"}));
        let v: Value = serde_json::from_str(
            &ServerFrame::Reply(Reply::err(
                "7".into(),
                ErrorBody::new(ErrorCode::RoomFull, "m"),
            ))
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"reply","ref":"7","ok":false,"error":{"code":"room_full","message":"m"}})
        );
    }
}

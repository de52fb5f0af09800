//! Server -> client: every frame the server sends, tagged by `type`.
//! Room messages double as the REST form of a message (without `type`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{ErrorBody, Status, UserInfo, UserRef};

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
}

/// The bounds a client must respect, announced in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted frame (whole message), in bytes.
    pub max_frame_bytes: usize,
    /// Frames per second a connection may send before `rate_limited`.
    pub max_rate_per_s: u32,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub room: String,
    pub id: String,
    /// Position in the room, assigned at commit: 1, 2, 3... without holes.
    pub seq: i64,
    pub from: UserRef,
    pub body: String,
    pub kind: String,
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// A direct message between two users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectMessage {
    pub id: String,
    pub from: UserRef,
    pub to: String,
    pub body: String,
    pub ts: DateTime<Utc>,
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

/// Someone joined or left a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEvent {
    pub room: String,
    pub user: UserRef,
    pub action: MemberAction,
}

/// What a `member` event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberAction {
    Joined,
    Left,
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
                    max_body_bytes: 4096,
                    max_rooms_per_conn: 100,
                },
            }),
            ServerFrame::Reply(Reply::ok("1".into(), json!({"pong": 5}))),
            ServerFrame::Reply(Reply::err(
                "2".into(),
                ErrorBody::new(ErrorCode::RoomFull, "full"),
            )),
            ServerFrame::Message(Message {
                room: "r".into(),
                id: "m".into(),
                seq: 3,
                from: user.clone(),
                body: "b".into(),
                kind: "text".into(),
                ts,
                reply_to: Some("m0".into()),
            }),
            ServerFrame::Dm(DirectMessage {
                id: "d".into(),
                from: user.clone(),
                to: "u2".into(),
                body: "x".into(),
                ts,
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
            ServerFrame::Member(MemberEvent {
                room: "r".into(),
                user,
                action: MemberAction::Left,
            }),
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

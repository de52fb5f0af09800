//! Client -> server: every frame a client may send, tagged by `type`, with
//! its optional `ref`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Status;

/// One client frame: an optional `ref` plus the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Correlation id chosen by the client; a frame with one gets exactly one reply.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(flatten)]
    pub op: ClientOp,
}

/// The operations a client may request, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientOp {
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<i64>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    Dm {
        to: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Broadcast {
        body: String,
    },
    Typing {
        room: String,
        active: bool,
    },
    Status {
        status: Status,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dm: Option<String>,
        /// With `dm`: the `edited_at` of the version received (absent or
        /// null for a DM never edited). Naming the version (this or
        /// `deleted`) keeps an edit or delete made since in the queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edited_at: Option<DateTime<Utc>>,
        /// With `dm`: whether the version received was the deleted DM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deleted: Option<bool>,
    },
    Refresh {
        token: String,
    },
    Ping,
    /// Change a message's body: a room message (`room`) or a DM (`dm`, the
    /// DM's id, equal to `id`).
    Edit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dm: Option<String>,
        id: String,
        body: String,
    },
    /// Delete a message (a tombstone stays).
    Delete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dm: Option<String>,
        id: String,
    },
    /// Put an emoji on a room message (`on`) or take it off.
    React {
        room: String,
        id: String,
        emoji: String,
        on: bool,
    },
    /// Move the caller's read cursor in a room forward.
    Read {
        room: String,
        seq: i64,
    },
}

impl ClientOp {
    /// Every client frame type, as [`ClientOp::name`] returns them.
    pub const NAMES: [&'static str; 14] = [
        "join",
        "leave",
        "send",
        "dm",
        "broadcast",
        "typing",
        "status",
        "ack",
        "refresh",
        "ping",
        "edit",
        "delete",
        "react",
        "read",
    ];

    /// The frame's `type` name, for metrics labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Join { .. } => "join",
            ClientOp::Leave { .. } => "leave",
            ClientOp::Send { .. } => "send",
            ClientOp::Dm { .. } => "dm",
            ClientOp::Broadcast { .. } => "broadcast",
            ClientOp::Typing { .. } => "typing",
            ClientOp::Status { .. } => "status",
            ClientOp::Ack { .. } => "ack",
            ClientOp::Refresh { .. } => "refresh",
            ClientOp::Ping => "ping",
            ClientOp::Edit { .. } => "edit",
            ClientOp::Delete { .. } => "delete",
            ClientOp::React { .. } => "react",
            ClientOp::Read { .. } => "read",
        }
    }

    /// Whether the frame draws on its user's budget
    /// (`TELEPATH_USER_RATE_PER_S`): what writes or fans out to others
    /// (sends, DMs, edits, deletes, reactions, typing).
    pub fn spends_user_budget(&self) -> bool {
        matches!(
            self,
            ClientOp::Send { .. }
                | ClientOp::Dm { .. }
                | ClientOp::Edit { .. }
                | ClientOp::Delete { .. }
                | ClientOp::React { .. }
                | ClientOp::Typing { .. }
        )
    }
}

/// Just the `ref` of a frame, read when the frame as a whole does not decode,
/// so the error can still be delivered as a reply.
#[derive(Debug, Deserialize)]
pub struct RefOnly {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::protocol::*;

    fn round_trip_client(v: Value) {
        let frame: ClientFrame = serde_json::from_value(v.clone()).expect("decodes");
        let back = serde_json::to_value(&frame).unwrap();
        assert_eq!(back, v);
        assert_eq!(v["type"], frame.op.name());
        assert!(ClientOp::NAMES.contains(&frame.op.name()));
    }

    #[test]
    fn every_client_frame_round_trips() {
        let room = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";
        round_trip_client(json!({"type":"join","ref":"1","room":room,"since":41}));
        round_trip_client(json!({"type":"join","room":room}));
        round_trip_client(json!({"type":"leave","ref":"2","room":room}));
        round_trip_client(
            json!({"type":"send","ref":"3","room":room,"body":"hi","kind":"text","client_id":"c1","reply_to":"m1"}),
        );
        round_trip_client(json!({"type":"send","room":room,"body":"hi"}));
        round_trip_client(json!({"type":"dm","ref":"4","to":"ada","body":"psst","client_id":"c2"}));
        round_trip_client(json!({"type":"broadcast","body":"all hands"}));
        round_trip_client(json!({"type":"typing","room":room,"active":true}));
        round_trip_client(json!({"type":"status","status":"meditating","text":"om"}));
        round_trip_client(json!({"type":"ack","room":room,"seq":7}));
        round_trip_client(json!({"type":"edit","ref":"9","room":room,"id":"m1","body":"fixed"}));
        round_trip_client(json!({"type":"edit","dm":"d1","id":"d1","body":"fixed"}));
        round_trip_client(json!({"type":"delete","room":room,"id":"m1"}));
        round_trip_client(json!({"type":"react","room":room,"id":"m1","emoji":"👍","on":true}));
        round_trip_client(json!({"type":"read","room":room,"seq":12}));
        round_trip_client(json!({"type":"ack","dm":"m9"}));
        round_trip_client(json!({"type":"refresh","token":"t"}));
        round_trip_client(json!({"type":"ping","ref":"9"}));
    }

    #[test]
    fn unknown_types_and_missing_fields_are_rejected() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"join"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"[1,2]"#).is_err());
        assert!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"status","status":"asleep"}"#).is_err()
        );
        let r: RefOnly = serde_json::from_str(r#"{"type":"join","ref":"5"}"#).unwrap();
        assert_eq!(r.reference.as_deref(), Some("5"));
    }
}

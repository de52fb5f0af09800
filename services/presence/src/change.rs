//! What a store operation changed: a user's announced presence or a typing
//! indicator. Stores return these; `events.rs` turns them into bus messages.
//!
//! A store returns each change to exactly one caller, also when several
//! presence replicas work on one Redis, so publishing what a store returned
//! publishes every change once. This file holds data only; it publishes
//! nothing and decides nothing.

use telepath_shared::protocol::{Status, StatusChoice, UserRef};

/// One change, in the order the store made them.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A user's effective status (or its text) changed.
    Presence(PresenceChange),
    /// A typing indicator started or stopped.
    Typing(TypingChange),
}

/// A user's effective status or status text changed (`offline` included).
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceChange {
    /// Who changed.
    pub user: UserRef,
    /// The new effective status.
    pub status: Status,
    /// The chosen status text, if any.
    pub text: Option<String>,
    /// The user's latest status choice as the store records it (an `online`
    /// choice included: it cleared an earlier one), with its time; `None`
    /// when the user made none this session, and always for `offline`.
    /// Gateways keep it and repeat it in their heartbeats.
    pub choice: Option<StatusChoice>,
    /// For `offline`: when the last connection ended (its disconnect, or the
    /// last heartbeat of an expired one); otherwise the time of the change. Ms.
    pub last_seen_ms: i64,
    /// Rooms joined by any of the user's connections, sorted (for `offline`:
    /// the rooms the last connections had).
    pub rooms: Vec<String>,
    /// When the change became due, ms: the report's receipt, the moment an
    /// expired connection became expirable, or the end of the grace period.
    /// The event lag metric is measured from here.
    pub cause_ms: i64,
}

/// A typing indicator of `user` in `room` started or stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct TypingChange {
    /// The room (a canonical id).
    pub room: String,
    /// Who is typing.
    pub user: UserRef,
    /// `true` when it started, `false` when it stopped or expired.
    pub active: bool,
}

/// The status named `name`, if it is one.
pub(crate) fn parse_status(name: &str) -> Option<Status> {
    [
        Status::Online,
        Status::Away,
        Status::Busy,
        Status::Meditating,
        Status::Offline,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_wire_names_and_parse_back() {
        for status in [
            Status::Online,
            Status::Away,
            Status::Busy,
            Status::Meditating,
            Status::Offline,
        ] {
            let wire = serde_json::to_value(status).unwrap();
            assert_eq!(wire, status.as_str());
            assert_eq!(parse_status(status.as_str()), Some(status));
        }
        assert_eq!(parse_status("asleep"), None);
    }
}

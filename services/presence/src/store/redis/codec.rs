//! The Redis store's script boundary: reports and heartbeats encoded as the
//! JSON arrays of strings `presence.lua` reads, and its reply decoded into
//! [`Change`]s.
//!
//! Only strings cross the boundary (Lua's cjson turns JSON `null` into a
//! sentinel and empty arrays into objects, so neither is ever sent or
//! expected back): absent text is `""`, an absent choice is three `""`
//! (status, text, time), booleans are `"1"`/`"0"`, times are decimal ms,
//! room lists are comma-separated (room ids are canonical UUIDs, without
//! commas).

use telepath_shared::protocol::{LiveConn, PresenceReport, StatusChoice, UserRef};

use crate::change::{Change, PresenceChange, TypingChange, parse_status};
use crate::store::Error;

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// `reports` as the script's `reports` payload.
pub(super) fn encode_reports(reports: &[PresenceReport]) -> String {
    // The times of status reports, formatted once so rows can borrow them.
    let times: Vec<String> = reports
        .iter()
        .map(|r| match r {
            PresenceReport::Status { at_ms, .. } => at_ms.to_string(),
            _ => String::new(),
        })
        .collect();
    let rows: Vec<Vec<&str>> = reports
        .iter()
        .zip(&times)
        .map(|(r, at_ms)| match r {
            PresenceReport::Connect {
                conn_id,
                user,
                node,
            } => vec!["c", conn_id, &user.id, &user.name, node],
            PresenceReport::Disconnect { conn_id, user_id } => vec!["d", conn_id, user_id],
            PresenceReport::Join {
                conn_id,
                user,
                room,
            } => vec!["j", conn_id, &user.id, room],
            PresenceReport::Leave {
                conn_id,
                user_id,
                room,
            } => vec!["l", conn_id, user_id, room],
            PresenceReport::Typing {
                conn_id,
                user,
                room,
                active,
            } => vec!["t", conn_id, &user.id, &user.name, room, flag(*active)],
            PresenceReport::Status {
                user, status, text, ..
            } => vec![
                "s",
                &user.id,
                &user.name,
                status.as_str(),
                text.as_deref().unwrap_or(""),
                at_ms,
            ],
            PresenceReport::Idle {
                conn_id,
                user_id,
                idle,
            } => vec!["i", conn_id, user_id, flag(*idle)],
        })
        .collect();
    serde_json::to_string(&rows).expect("arrays of strings always serialise")
}

/// `conns` as the script's `heartbeat` payload.
pub(super) fn encode_heartbeat(conns: &[&LiveConn]) -> String {
    let rows: Vec<[String; 9]> = conns
        .iter()
        .map(|c| {
            let (status, text, at_ms) = match &c.choice {
                Some(choice) => (
                    choice.status.as_str().to_owned(),
                    choice.text.clone().unwrap_or_default(),
                    choice.at_ms.to_string(),
                ),
                None => Default::default(),
            };
            [
                c.conn_id.clone(),
                c.user.id.clone(),
                c.user.name.clone(),
                c.node.clone(),
                flag(c.idle).to_owned(),
                c.rooms.join(","),
                status,
                text,
                at_ms,
            ]
        })
        .collect();
    serde_json::to_string(&rows).expect("arrays of strings always serialise")
}

/// A decoded script reply.
#[derive(Debug, Default)]
pub(super) struct Reply {
    pub(super) changes: Vec<Change>,
    pub(super) expired: Vec<String>,
    /// A sweep batch was full: call again.
    pub(super) more: bool,
}

fn int(s: &str) -> Result<i64, Error> {
    s.parse()
        .map_err(|_| Error::Reply(format!("not a number: {s:?}")))
}

/// The choice record of a presence row: `None` when its status is `""`.
fn choice(status: &str, text: &str, at_ms: &str) -> Result<Option<StatusChoice>, Error> {
    if status.is_empty() {
        return Ok(None);
    }
    Ok(Some(StatusChoice {
        status: parse_status(status).ok_or_else(|| Error::Reply(format!("choice {status:?}")))?,
        text: (!text.is_empty()).then(|| text.to_owned()),
        at_ms: int(at_ms)?,
    }))
}

fn split_rooms(csv: &str) -> Vec<String> {
    csv.split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Decodes the script's rows (see the header of `presence.lua`).
pub(super) fn decode(rows: Vec<Vec<String>>) -> Result<Reply, Error> {
    let mut reply = Reply::default();
    for row in rows {
        let fields: Vec<&str> = row.iter().map(String::as_str).collect();
        match fields.as_slice() {
            [
                "p",
                id,
                name,
                status,
                text,
                last_seen,
                cause,
                rooms,
                c_status,
                c_text,
                c_at,
            ] => {
                let status = parse_status(status)
                    .ok_or_else(|| Error::Reply(format!("status {status:?}")))?;
                reply.changes.push(Change::Presence(PresenceChange {
                    user: UserRef {
                        id: (*id).to_owned(),
                        name: (*name).to_owned(),
                    },
                    status,
                    text: (!text.is_empty()).then(|| (*text).to_owned()),
                    choice: choice(c_status, c_text, c_at)?,
                    last_seen_ms: int(last_seen)?,
                    rooms: split_rooms(rooms),
                    cause_ms: int(cause)?,
                }));
            }
            ["t", room, id, name, active] => reply.changes.push(Change::Typing(TypingChange {
                room: (*room).to_owned(),
                user: UserRef {
                    id: (*id).to_owned(),
                    name: (*name).to_owned(),
                },
                active: *active == "1",
            })),
            ["x", conn_id] => reply.expired.push((*conn_id).to_owned()),
            ["more"] => reply.more = true,
            other => return Err(Error::Reply(format!("row {other:?}"))),
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use telepath_shared::protocol::Status;

    fn ada() -> UserRef {
        UserRef {
            id: "u".into(),
            name: "ada \"x\"".into(),
        }
    }

    fn rows(rows: Vec<Vec<&str>>) -> Vec<Vec<String>> {
        rows.into_iter()
            .map(|r| r.into_iter().map(String::from).collect())
            .collect()
    }

    #[test]
    fn reports_encode_as_arrays_of_strings_with_empty_text_for_none() {
        let reports = [
            PresenceReport::Status {
                user: ada(),
                status: Status::Busy,
                text: None,
                at_ms: 1_700_000_000_123,
            },
            PresenceReport::Idle {
                conn_id: "c".into(),
                user_id: "u".into(),
                idle: true,
            },
        ];
        let json: serde_json::Value = serde_json::from_str(&encode_reports(&reports)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                ["s", "u", "ada \"x\"", "busy", "", "1700000000123"],
                ["i", "c", "u", "1"]
            ])
        );
    }

    #[test]
    fn heartbeat_rows_carry_the_choice_or_three_empty_strings() {
        let live = |choice| LiveConn {
            conn_id: "c".into(),
            user: ada(),
            node: "n1".into(),
            rooms: vec!["r1".into(), "r2".into()],
            idle: true,
            choice,
        };
        let meditating = StatusChoice {
            status: Status::Meditating,
            text: Some("om".into()),
            at_ms: 42,
        };
        let conns = [live(Some(meditating)), live(None)];
        let json: serde_json::Value =
            serde_json::from_str(&encode_heartbeat(&[&conns[0], &conns[1]])).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                [
                    "c",
                    "u",
                    "ada \"x\"",
                    "n1",
                    "1",
                    "r1,r2",
                    "meditating",
                    "om",
                    "42"
                ],
                ["c", "u", "ada \"x\"", "n1", "1", "r1,r2", "", "", ""]
            ])
        );
    }

    #[test]
    fn rows_decode_into_changes_expired_ids_and_more() {
        let reply = decode(rows(vec![
            vec!["p", "u", "ada", "away", "", "5", "4", "r1,r2", "", "", ""],
            vec!["t", "r1", "u", "ada", "0"],
            vec!["x", "c1"],
            vec!["more"],
        ]))
        .unwrap();
        assert!(reply.more);
        assert_eq!(reply.expired, ["c1"]);
        let Change::Presence(p) = &reply.changes[0] else {
            panic!("presence first")
        };
        assert_eq!(
            (p.status, p.text.as_deref(), p.last_seen_ms, p.cause_ms),
            (Status::Away, None, 5, 4)
        );
        assert_eq!(p.rooms, ["r1", "r2"]);
        assert_eq!(p.choice, None);
        assert!(matches!(&reply.changes[1], Change::Typing(t) if !t.active && t.room == "r1"));
        assert!(decode(rows(vec![vec!["?"]])).is_err());
    }

    #[test]
    fn a_presence_row_decodes_its_choice_record() {
        let reply = decode(rows(vec![
            vec!["p", "u", "ada", "busy", "x", "5", "4", "", "busy", "x", "3"],
            vec!["p", "u", "ada", "away", "", "6", "6", "", "online", "", "5"],
        ]))
        .unwrap();
        let choices: Vec<_> = reply
            .changes
            .iter()
            .map(|c| match c {
                Change::Presence(p) => p.choice.clone(),
                Change::Typing(_) => panic!("presence only"),
            })
            .collect();
        let choice = |status, text: Option<&str>, at_ms| {
            Some(StatusChoice {
                status,
                text: text.map(Into::into),
                at_ms,
            })
        };
        assert_eq!(
            choices,
            [
                choice(Status::Busy, Some("x"), 3),
                choice(Status::Online, None, 5)
            ]
        );
        let bad = vec![
            "p", "u", "ada", "busy", "", "5", "4", "", "busy", "", "soon",
        ];
        assert!(decode(rows(vec![bad])).is_err());
    }
}

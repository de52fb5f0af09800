//! One message as Redis pub/sub delivers it: the envelope decoder
//! (shared/src/bus/envelope.rs, called by the Redis bus for every message
//! it receives), then what the gateway's relay (services/gateway/src/relay.rs)
//! and the api decode from the payload, whichever channel it came on.
//! Nothing may panic; the payload is the message's tail, unchanged; what
//! decodes encodes and decodes back to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use telepath_shared::bus::{Meta, envelope};
use telepath_shared::protocol::{
    MemberAction, NodeControl, PresenceBroadcast, ServerFrame, is_canonical_id, room_channel,
    user_channel,
};
use telepath_shared::telemetry;

/// The fields of a room frame the relay reads (`Head` in relay.rs).
#[derive(Deserialize)]
#[allow(dead_code)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<i64>,
}

fuzz_target!(|data: &[u8]| {
    let (meta, payload) = envelope::decode(Bytes::copy_from_slice(data));
    assert!(
        data.ends_with(&payload),
        "the payload is the message's tail"
    );
    let header = data.len() - payload.len();
    if header > 0 {
        assert!(data.starts_with(b"T1 ") && header <= 128 && data[header - 1] == b'\n');
    } else {
        assert_eq!(meta, Meta::default(), "a bare payload has no meta");
    }
    if let Some(tp) = &meta.traceparent {
        assert!(
            telemetry::is_valid_traceparent(tp),
            "only a valid trace is kept"
        );
    }
    // What a node publishes is read back as it was published.
    let again = envelope::decode(envelope::encode(&meta, &payload));
    assert_eq!(again, (meta, payload.clone()));

    relay(&payload);
});

/// What the relay (and the api's presence listener) decode from a payload.
fn relay(payload: &[u8]) {
    // node:{id}: probes and control messages.
    if let Ok(control) = serde_json::from_slice::<NodeControl>(payload) {
        round_trip(&control);
    }
    // room:{id}: the type and seq, for ordering and gap repair.
    let _ = serde_json::from_slice::<Head>(payload);
    // user:{id}: a member event makes the user leave the room.
    if let Ok(frame) = serde_json::from_slice::<ServerFrame>(payload) {
        round_trip(&frame);
        if let ServerFrame::Member(event) = &frame
            && event.action == MemberAction::Left
            && is_canonical_id(&event.room)
        {
            let _ = user_channel(&event.user.id);
        }
    }
    // presence: re-sent to the user's rooms and to the user as a frame.
    if let Ok(change) = serde_json::from_slice::<PresenceBroadcast>(payload) {
        round_trip(&change);
        let channels: Vec<String> = change
            .rooms
            .iter()
            .filter(|r| is_canonical_id(r))
            .map(|r| room_channel(r))
            .chain([user_channel(&change.event.user.id)])
            .collect();
        assert!(channels.len() <= change.rooms.len() + 1);
        let frame = ServerFrame::Presence(change.event);
        let back: ServerFrame = serde_json::from_str(&frame.to_json()).expect("reads back");
        assert_eq!(back, frame);
    }
}

/// Encodes `value` and decodes it back: it must be the same.
fn round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_vec(value).expect("serialises");
    let back: T = serde_json::from_slice(&json).expect("what was encoded decodes");
    assert_eq!(&back, value);
}

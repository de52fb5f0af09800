//! One text message from a client, decoded as the gateway decodes it
//! (`handle_text` in services/gateway/src/session/request.rs): a
//! `ClientFrame`, or when that fails its `ref` alone (`RefOnly`), then the
//! checks made before the operation runs and the reply frame the gateway
//! would queue. Nothing may panic, and what decodes must encode and decode
//! back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use telepath_shared::protocol::{
    ClientFrame, ClientOp, ErrorBody, ErrorCode, RefOnly, Reply, ServerFrame, is_canonical_id,
};

fuzz_target!(|data: &[u8]| {
    let (reference, answer) = match serde_json::from_slice::<ClientFrame>(data) {
        Ok(frame) => decoded(data, frame),
        Err(e) => {
            // Still answered by ref when the frame carried one.
            let reference = serde_json::from_slice::<RefOnly>(data)
                .ok()
                .and_then(|r| r.reference);
            let err = ErrorBody::new(ErrorCode::BadRequest, format!("malformed frame: {e}"));
            (reference, Err(err))
        }
    };
    // The reply, as `reply` in request.rs builds it: it must serialise and
    // read back as the same server frame (a client parses it).
    let frame = match (reference, answer) {
        (Some(r), Ok(())) => ServerFrame::Reply(Reply::ok(r, json!({}))),
        (Some(r), Err(e)) => ServerFrame::Reply(Reply::err(r, e)),
        (None, Err(e)) => ServerFrame::Error(e),
        (None, Ok(())) => return,
    };
    let text = frame.to_json();
    let back: ServerFrame = serde_json::from_str(&text).expect("a reply reads back");
    assert_eq!(back, frame);
});

/// What the gateway checks of a frame that decoded, before it runs it.
fn decoded(data: &[u8], frame: ClientFrame) -> (Option<String>, Result<(), ErrorBody>) {
    let name = frame.op.name();
    assert!(
        ClientOp::NAMES.contains(&name),
        "{name} is a known frame type"
    );
    // A frame encodes and decodes back to itself (the SDK and the tests
    // write frames with the same types).
    let json = serde_json::to_vec(&frame).expect("client frames serialise");
    let back: ClientFrame = serde_json::from_slice(&json).expect("an encoded frame decodes");
    assert_eq!(back, frame);
    // The ref read alone agrees with the ref of the whole frame.
    let alone: RefOnly = serde_json::from_slice(data).expect("a frame's ref reads alone");
    assert_eq!(alone.reference, frame.reference);

    let bad = |m: &str| Err(ErrorBody::new(ErrorCode::BadRequest, m));
    if frame.reference.as_ref().is_some_and(|r| r.len() > 64) {
        return (None, bad("ref is longer than 64 bytes"));
    }
    let room = match &frame.op {
        ClientOp::Join { room, .. }
        | ClientOp::Leave { room }
        | ClientOp::Send { room, .. }
        | ClientOp::Typing { room, .. } => Some(room),
        ClientOp::Ack { room, .. } => room.as_ref(),
        _ => None,
    };
    let answer = match room {
        Some(room) if !is_canonical_id(room) => bad("room ids are lowercase UUIDs"),
        _ => Ok(()),
    };
    (frame.reference, answer)
}

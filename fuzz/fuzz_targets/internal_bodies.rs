//! The request bodies of the api's internal routes (services/api/src/internal.rs
//! and the acks and pending-DM routes in dms.rs), decoded as axum's `Json`
//! decodes them and validated as the handlers validate them before they
//! touch the database: the send batch (`POST /internal/messages`), joins
//! and leaves, memberships, acks, pending DMs, connection events; and
//! presence's (services/presence/src/report.rs): the gateways' report
//! batches and heartbeats, checked before they touch the store. Each
//! input is tried as every body. Nothing may panic; a refusal names an
//! item that exists; a body encodes and decodes back to itself, with the
//! same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use telepath_shared::protocol::{
    ConnectionEvents, ErrorBody, HeartbeatReport, InternalAcks, InternalJoin, InternalMemberships,
    InternalPendingDms, InternalSendBatch, MAX_SEND_BATCH, PresenceReports, check_user,
    is_canonical_id,
};

/// `TELEPATH_MAX_BODY_BYTES`' default: the api's own bound on each item.
const MAX_BODY_BYTES: usize = 16_384;

fuzz_target!(|data: &[u8]| {
    // POST /internal/messages
    if let Some(Ok(())) = body(data, InternalSendBatch::check) {
        let batch: InternalSendBatch = serde_json::from_slice(data).expect("decoded once");
        assert!(
            batch.sends.len() <= MAX_SEND_BATCH
                && batch.dms.len() <= MAX_SEND_BATCH
                && batch.changes.len() <= MAX_SEND_BATCH
        );
        // What the api then refuses item by item (`send_batch`).
        for s in &batch.sends {
            let _ = is_canonical_id(&s.room) && s.send.check(MAX_BODY_BYTES).is_ok();
        }
        for dm in &batch.dms {
            let _ = dm.check(MAX_BODY_BYTES);
        }
        for c in &batch.changes {
            // What the api then refuses change by change: the fields its op needs.
            assert!(c.check_bounds().is_ok());
            let _ = c.check(MAX_BODY_BYTES);
        }
    } else if let Ok(batch) = serde_json::from_slice::<InternalSendBatch>(data) {
        let e = batch.check().expect_err("refused above");
        named_item_exists(&e, "sends[", batch.sends.len());
        named_item_exists(&e, "dms[", batch.dms.len());
        named_item_exists(&e, "changes[", batch.changes.len());
    }
    // POST /internal/rooms/{id}/join and /leave
    body(data, |j: &InternalJoin| check_user(&j.user));
    // POST /internal/memberships
    if let Some(Err(e)) = body(data, InternalMemberships::check) {
        let q: InternalMemberships = serde_json::from_slice(data).expect("decoded once");
        named_item_exists(&e, "rooms[", q.rooms.len());
    }
    // POST /internal/acks
    body(data, InternalAcks::check);
    // POST /internal/dms/pending
    if let Some(Err(e)) = body(data, InternalPendingDms::check) {
        let q: InternalPendingDms = serde_json::from_slice(data).expect("decoded once");
        named_item_exists(&e, "user_ids[", q.user_ids.len());
    }
    // POST /internal/connections (the api bounds the strings further)
    body(data, |c: &ConnectionEvents| {
        c.events.iter().try_for_each(|e| check_user(&e.user))
    });
    // Presence: POST /internal/presence/reports and /heartbeat
    body(data, |r: &PresenceReports| {
        telepath_presence::check_reports(r).map_err(|e| e.body())
    });
    body(data, |h: &HeartbeatReport| {
        telepath_presence::check_heartbeat(h).map_err(|e| e.body())
    });
});

/// Decodes `data` as a `T` and checks it; `None` when it does not decode.
/// What decodes is encoded and decoded again: the same body, the same verdict.
fn body<T>(
    data: &[u8],
    check: impl Fn(&T) -> Result<(), ErrorBody>,
) -> Option<Result<(), ErrorBody>>
where
    T: Serialize + DeserializeOwned,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let verdict = check(&value);
    let json = serde_json::to_vec(&value).expect("bodies serialise");
    let back: T = serde_json::from_slice(&json).expect("an encoded body decodes");
    assert_eq!(
        serde_json::to_value(&back).expect("serialises"),
        serde_json::to_value(&value).expect("serialises"),
    );
    assert_eq!(check(&back).is_ok(), verdict.is_ok(), "the same verdict");
    Some(verdict)
}

/// A refusal that names `prefix{i}]` names an item of a list of `len`.
fn named_item_exists(e: &ErrorBody, prefix: &str, len: usize) {
    let Some(rest) = e.message.strip_prefix(prefix) else {
        return;
    };
    let i: usize = rest
        .split(']')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("an index");
    assert!(i < len, "{} names item {i} of {len}", e.message);
}

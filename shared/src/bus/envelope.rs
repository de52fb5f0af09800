//! The envelope of a bus message on Redis: one header line before the payload.
//!
//! ```text
//! T1 <published_us> <traceparent or ->\n<payload>
//! ```
//!
//! Payloads are JSON objects (they start with `{`), so a payload without the
//! `T1 ` header (a publisher from before envelopes, or `redis-cli PUBLISH`)
//! is still read, with an empty [`Meta`]. Decoding slices the received
//! buffer: the payload is never copied. The in-memory bus passes [`Meta`]
//! alongside the payload and needs no encoding.

use bytes::{BufMut, Bytes, BytesMut};

use super::Meta;

/// The header's first bytes (format version 1).
const MAGIC: &[u8] = b"T1 ";
/// The longest header accepted: magic, 20 digits, a 55-byte traceparent, spaces.
const MAX_HEADER: usize = 128;

/// `payload` behind its header line.
pub fn encode(meta: &Meta, payload: &[u8]) -> Bytes {
    let trace = meta.traceparent.as_deref().unwrap_or("-");
    let mut buf = BytesMut::with_capacity(MAGIC.len() + 22 + trace.len() + 1 + payload.len());
    buf.put_slice(MAGIC);
    buf.put_slice(meta.published_us.to_string().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(trace.as_bytes());
    buf.put_u8(b'\n');
    buf.put_slice(payload);
    buf.freeze()
}

/// Splits a received message into its meta and payload. Anything that does
/// not carry a well-formed header is a bare payload.
pub fn decode(raw: Bytes) -> (Meta, Bytes) {
    if !raw.starts_with(MAGIC) {
        return (Meta::default(), raw);
    }
    let Some(nl) = raw.iter().take(MAX_HEADER).position(|&b| b == b'\n') else {
        return (Meta::default(), raw);
    };
    let header = std::str::from_utf8(&raw[MAGIC.len()..nl]).unwrap_or_default();
    let mut parts = header.split(' ');
    let (Some(Ok(published_us)), Some(trace), None) = (
        parts.next().map(str::parse::<u64>),
        parts.next(),
        parts.next(),
    ) else {
        return (Meta::default(), raw);
    };
    let traceparent =
        (trace != "-" && crate::telemetry::is_valid_traceparent(trace)).then(|| trace.to_owned());
    let payload = raw.slice(nl + 1..);
    (
        Meta {
            published_us,
            traceparent,
        },
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn an_envelope_round_trips_with_and_without_a_trace() {
        for traceparent in [None, Some(TP.to_owned())] {
            let meta = Meta {
                published_us: 1_700_000_000_123_456,
                traceparent,
            };
            let raw = encode(&meta, br#"{"type":"message"}"#);
            let (back, payload) = decode(raw);
            assert_eq!(back, meta);
            assert_eq!(&payload[..], br#"{"type":"message"}"#);
        }
    }

    #[test]
    fn a_bare_or_malformed_payload_passes_through_unchanged() {
        for raw in [
            &br#"{"type":"message"}"#[..],
            b"T1 12 - - x\n{}",
            b"T1 notanumber -\n{}",
            b"T1 12 -",
        ] {
            let (meta, payload) = decode(Bytes::copy_from_slice(raw));
            assert_eq!(meta, Meta::default());
            assert_eq!(&payload[..], raw);
        }
    }

    #[test]
    fn a_traceparent_that_is_not_one_is_dropped_not_trusted() {
        let (meta, payload) = decode(Bytes::from_static(b"T1 5 00-zz-yy-01\n{}"));
        assert_eq!(meta.published_us, 5);
        assert_eq!(meta.traceparent, None);
        assert_eq!(&payload[..], b"{}");
    }
}

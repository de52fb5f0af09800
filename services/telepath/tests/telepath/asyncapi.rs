//! The AsyncAPI document of the WebSocket protocol (`docs/asyncapi.json`,
//! served at `/asyncapi.json`) against the protocol's types: every example
//! payload is a frame the types read (and write back the same), every frame
//! type the types know has a message, and no message names a type they do
//! not know. (Its validity as AsyncAPI 3.0 is checked by
//! `services/web/scripts/asyncapi.mjs` in the test command.)

use std::collections::BTreeSet;

use serde_json::{Value, json};
use telepath_shared::protocol::{ClientFrame, ServerFrame};

use crate::helpers::spawn_node;

/// The `type` tags a frame type knows, read from serde's own refusal of an
/// unknown one ("unknown variant `x`, expected one of `a`, `b`").
fn known_types(read: fn(Value) -> Result<(), serde_json::Error>) -> BTreeSet<String> {
    let err = read(json!({"type": "no-such-type"}))
        .expect_err("an unknown type is refused")
        .to_string();
    let list = err
        .split_once("expected one of")
        .unwrap_or_else(|| panic!("serde names the variants: {err}"))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_asyncapi_document_matches_the_protocol_types() {
    let node = spawn_node(|_| {}).await;
    let resp = node
        .http
        .get(format!("{}/asyncapi.json", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served: Value = resp.json().await.unwrap();
    let file: Value = serde_json::from_str(include_str!("../../../../docs/asyncapi.json")).unwrap();
    assert_eq!(served, file, "the server serves docs/asyncapi.json");
    assert!(served["asyncapi"].as_str().unwrap().starts_with("3."));

    let mut documented = [BTreeSet::new(), BTreeSet::new()];
    let messages = served["components"]["messages"].as_object().unwrap();
    for (key, message) in messages {
        let name = message["name"].as_str().unwrap().to_owned();
        let examples = message["examples"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        assert!(!examples.is_empty(), "{key} has an example");
        let client = match message["x-telepath-direction"].as_str() {
            Some("client") => true,
            Some("server") => false,
            other => panic!("{key}: x-telepath-direction {other:?}"),
        };
        for example in examples {
            let payload = &example["payload"];
            assert_eq!(payload["type"], name.as_str(), "{key}: {payload}");
            // Read by the types, and written back with every field it had.
            let written = if client {
                let frame: ClientFrame = serde_json::from_value(payload.clone())
                    .unwrap_or_else(|e| panic!("{key}: {payload} is no client frame: {e}"));
                serde_json::to_value(&frame).unwrap()
            } else {
                let frame: ServerFrame = serde_json::from_value(payload.clone())
                    .unwrap_or_else(|e| panic!("{key}: {payload} is no server frame: {e}"));
                serde_json::to_value(&frame).unwrap()
            };
            for (field, value) in payload.as_object().unwrap() {
                assert_eq!(
                    written.get(field),
                    Some(value),
                    "{key}: field {field} of {payload} survives the types ({written})"
                );
            }
        }
        documented[usize::from(!client)].insert(name);
    }
    assert_eq!(
        documented[0],
        known_types(|v| serde_json::from_value::<ClientFrame>(v).map(drop)),
        "client frames: documented vs the types"
    );
    assert_eq!(
        documented[1],
        known_types(|v| serde_json::from_value::<ServerFrame>(v).map(drop)),
        "server frames: documented vs the types"
    );
}

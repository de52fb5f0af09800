//! Traces across processes: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a room
//! message is one trace from the sending gateway through the api (its
//! commit) and the bus (the envelope's `traceparent`) to the
//! gateway that relays it. The collector here is a real OTLP/HTTP endpoint
//! that decodes the exporters' protobuf.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message as _;
use serde_json::json;

use crate::cluster::{Pair, ada_and_bob, start_cluster_with};
use crate::helpers::eventually;

/// One exported span, as much of it as the test needs.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    instance: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
}

type Spans = Arc<Mutex<Vec<Seen>>>;

/// `POST /v1/traces`: decodes an OTLP export and records its spans.
async fn export(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    for rs in req.resource_spans {
        let attr = |key: &str| {
            rs.resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == key))
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
                .map(|v| match v {
                    Any::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default()
        };
        let (service, instance) = (attr("service.name"), attr("service.instance.id"));
        let mut spans = spans.lock().unwrap();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Seen {
                service: service.clone(),
                instance: instance.clone(),
                name: span.name,
                trace: span.trace_id,
                id: span.span_id,
                parent: span.parent_span_id,
            });
        }
    }
    ""
}

/// A collector on a free port: its base URL and what it received.
async fn collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// The first span that matches.
fn find(spans: &[Seen], pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
    spans.iter().find(|s| pred(s)).cloned()
}

/// The chain gateway `ws send` -> the api's `message.commit` -> `bus.relay`
/// on `relay_node`, each span the parent of the next, all in one trace.
/// (The gateway posts sends to the api in batches, so the commit continues
/// the trace its send carried in the batch, not the batch's HTTP span.)
fn chain(spans: &[Seen], relay_node: &str) -> Option<Vec<Seen>> {
    let send = find(spans, |s| {
        s.service == "telepath-gateway" && s.instance == "gw0" && s.name == "ws send"
    })?;
    let commit = find(spans, |s| {
        s.service == "telepath-api" && s.name == "message.commit" && s.parent == send.id
    })?;
    let relay = find(spans, |s| {
        s.service == "telepath-gateway"
            && s.instance == relay_node
            && s.name == "bus.relay"
            && s.parent == commit.id
    })?;
    let chain = vec![send, commit, relay];
    chain
        .iter()
        .all(|s| s.trace == chain[0].trace)
        .then_some(chain)
}

#[tokio::test]
async fn a_room_message_is_one_trace_from_the_sending_gateway_through_the_api_and_the_bus_to_the_receiving_gateway()
 {
    let (endpoint, spans) = collector().await;
    let cluster = start_cluster_with(
        2,
        1,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            // Quiet logs do not mean empty traces.
            ("RUST_LOG", "warn".into()),
        ],
    )
    .await;
    let Pair {
        mut a, mut b, room, ..
    } = ada_and_bob(&cluster).await;
    a.ok(json!({"type": "send", "room": room, "body": "traced"}))
        .await;
    b.next_of("message").await;
    eventually(Duration::from_secs(20), "the message's trace", || {
        let spans = spans.clone();
        async move { chain(&spans.lock().unwrap(), "gw1").is_some() }
    })
    .await;
    // And every HTTP call to the api continues the caller's trace: ada's join.
    eventually(Duration::from_secs(20), "the join's trace", || {
        let spans = spans.clone();
        async move {
            let spans = spans.lock().unwrap();
            find(&spans, |s| s.instance == "gw0" && s.name == "ws join").is_some_and(|join| {
                find(&spans, |s| {
                    s.service == "telepath-api"
                        && s.name == "POST /internal/rooms/{id}/join"
                        && s.parent == join.id
                        && s.trace == join.trace
                })
                .is_some()
            })
        }
    })
    .await;
}

//! Fan-out across gateway nodes and within one node.

use serde_json::json;
use telepath_shared::testing::WsClient;

use telepath_shared::testing::TestUser;

use crate::helpers::{Stack, spawn_stack};

#[tokio::test]
async fn a_message_sent_on_gateway_a_reaches_members_on_both_gateways_once_and_in_order() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut a = stack.connect(0, &ada).await;
    let mut b1 = stack.connect(1, &bob).await;
    let mut b2 = stack.connect(1, &bob).await;
    for c in [&mut a, &mut b1, &mut b2] {
        c.join(&room).await;
    }
    for i in 1..=20 {
        a.send(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    for c in [&mut a, &mut b1, &mut b2] {
        let mut seqs = Vec::new();
        for _ in 0..20 {
            seqs.push(c.next_of("message").await["seq"].as_i64().unwrap());
        }
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        assert!(
            !c.sees_within(std::time::Duration::from_millis(200), |f| f["type"]
                == "message")
                .await,
            "no duplicates"
        );
    }
}

#[tokio::test]
async fn typing_reaches_room_members_on_other_gateways_and_needs_membership() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut a = stack.connect(0, &ada).await;
    let mut b = stack.connect(1, &bob).await;
    let refused = a
        .request(json!({"type": "typing", "room": room, "active": true}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden");
    a.join(&room).await;
    b.join(&room).await;
    a.send(json!({"type": "typing", "room": room, "active": true}))
        .await;
    let t = b.next_of("typing").await;
    assert_eq!(
        (t["user"]["name"].as_str(), t["active"].as_bool()),
        (Some("ada"), Some(true))
    );
}

#[tokio::test]
async fn a_dm_crosses_gateways_to_every_device_of_the_recipient() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let mut a = stack.connect(0, &ada).await;
    let mut b0 = stack.connect(0, &bob).await;
    let mut b1 = stack.connect(1, &bob).await;
    let sent = a
        .ok(json!({"type": "dm", "to": "bob", "body": "across"}))
        .await;
    assert_eq!(sent["delivered"], true);
    for b in [&mut b0, &mut b1] {
        assert_eq!(b.next_of("dm").await["id"], sent["id"]);
    }
}

/// The seqs of the next `n` message events.
async fn seqs(c: &mut WsClient, n: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.next_of("message").await["seq"].as_i64().unwrap());
    }
    out
}

#[tokio::test]
async fn a_join_with_since_while_messages_flow_sees_every_seq_once_in_order() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut a = stack.connect(0, &ada).await;
    a.join(&room).await;
    for i in 1..=20 {
        a.ok(json!({"type": "send", "room": room, "body": format!("before {i}")}))
            .await;
    }
    // Publish continuously, as another gateway would, while bob joins with since.
    let (api, http, token) = (
        stack.api_internal.clone(),
        stack.http.clone(),
        stack.internal_token.clone(),
    );
    let (from, room2) = (ada.clone(), room.clone());
    let writer = tokio::spawn(async move {
        for i in 0..60 {
            let send = json!({"body": format!("during {i}")});
            telepath_shared::testing::internal_send(&http, &api, &token, &from, &room2, send).await;
        }
    });
    let mut b = stack.connect(1, &bob).await;
    let joined = b
        .ok(json!({"type": "join", "room": room, "since": 5}))
        .await;
    assert!(joined["seq"].as_i64().unwrap() >= 20);
    writer.await.unwrap();
    assert_eq!(
        seqs(&mut b, 75).await,
        (6..=80).collect::<Vec<_>>(),
        "no hole, no repeat, in order"
    );
    assert!(
        !b.sees_within(std::time::Duration::from_millis(200), |f| f["type"]
            == "message")
            .await
    );
}

/// One gateway, and bob joined to a new room of ada's on it.
async fn bob_in_a_room_of_adas() -> (Stack, TestUser, String, WsClient) {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut b = stack.connect(0, &bob).await;
    b.join(&room).await;
    (stack, ada, room, b)
}

#[tokio::test]
async fn a_gap_in_pub_sub_is_repaired_from_the_api_before_the_next_message() {
    let (stack, ada, room, mut b) = bob_in_a_room_of_adas().await;
    assert_eq!(
        stack.send_via(&stack.api_internal, &ada, &room, "m1").await,
        1
    );
    assert_eq!(seqs(&mut b, 1).await, vec![1]);
    // Two messages are committed but their publishes never reach the gateway.
    let lossy = stack.lossy_api().await;
    assert_eq!(stack.send_via(&lossy, &ada, &room, "m2").await, 2);
    assert_eq!(stack.send_via(&lossy, &ada, &room, "m3").await, 3);
    assert!(
        !b.sees_within(std::time::Duration::from_millis(200), |f| f["type"]
            == "message")
            .await
    );
    // The next one arrives with seq 4: the gateway fetches 2 and 3 first.
    assert_eq!(
        stack.send_via(&stack.api_internal, &ada, &room, "m4").await,
        4
    );
    assert_eq!(seqs(&mut b, 3).await, vec![2, 3, 4]);
}

#[tokio::test]
async fn the_first_message_in_a_quiet_room_is_checked_against_the_joins_position() {
    // Nothing was ever relayed in this room here: the join's seq (0) is
    // the gateway's position.
    let (stack, ada, room, mut b) = bob_in_a_room_of_adas().await;
    let lossy = stack.lossy_api().await;
    assert_eq!(stack.send_via(&lossy, &ada, &room, "lost").await, 1);
    // Seq 2 arrives first: a jump from the join's position, so 1 comes first.
    assert_eq!(
        stack.send_via(&stack.api_internal, &ada, &room, "m2").await,
        2
    );
    assert_eq!(seqs(&mut b, 2).await, vec![1, 2]);
}

#[tokio::test]
async fn a_seq_a_join_named_that_never_comes_is_fetched() {
    let (stack, ada, room, mut b) = bob_in_a_room_of_adas().await;
    // Lost on the bus, and nothing follows it in this quiet room.
    let lossy = stack.lossy_api().await;
    assert_eq!(stack.send_via(&lossy, &ada, &room, "lost").await, 1);
    // Ada joins on the same gateway: the api names seq 1, which bob's
    // gateway never relayed; it fetches it within a second or so.
    let mut a = stack.connect(0, &ada).await;
    assert_eq!(a.join(&room).await["seq"], 1);
    assert_eq!(seqs(&mut b, 1).await, vec![1]);
}

#[tokio::test]
async fn what_a_full_inbound_queue_drops_is_read_back_from_the_api() {
    let stack = crate::helpers::spawn_stack_with_inbound(8).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut b = stack.connect(0, &bob).await;
    b.join(&room).await;
    // Fifty messages published in one go: the queue takes eight, the rest
    // are dropped, and nothing follows them in this room.
    let sends: Vec<_> = (1..=50)
        .map(|i| {
            serde_json::json!({"room": room, "send": {
                "from": {"id": ada.id, "name": ada.name}, "body": format!("m{i}")}})
        })
        .collect();
    let resp = stack
        .http
        .post(format!("{}/internal/messages", stack.api_internal))
        .header("x-telepath-internal", &stack.internal_token)
        .json(&serde_json::json!({ "sends": sends }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(seqs(&mut b, 50).await, (1..=50).collect::<Vec<_>>());
    let page =
        telepath_shared::testing::get_text(&stack.http, &format!("{}/metrics", stack.gw(0))).await;
    let dropped =
        telepath_shared::testing::metric(&page, "telepath_gateway_bus_dropped_messages_total");
    assert!(dropped.is_some_and(|n| n > 0.0), "the queue did overflow");
    assert_eq!(
        telepath_shared::testing::metric(&page, "telepath_gateway_bus_resyncs_total"),
        Some(1.0)
    );
}

/// A bus whose subscriptions never deliver: open but silent.
struct SilentBus(telepath_shared::bus::memory::MemoryBus);

#[async_trait::async_trait]
impl telepath_shared::bus::Bus for SilentBus {
    async fn publish_many(
        &self,
        messages: &[telepath_shared::bus::Outgoing],
    ) -> Result<Vec<usize>, telepath_shared::bus::BusError> {
        self.0.publish_many(messages).await
    }
    async fn publish_counted(
        &self,
        channel: &str,
        payload: bytes::Bytes,
    ) -> Result<usize, telepath_shared::bus::BusError> {
        self.0.publish_counted(channel, payload).await
    }
    async fn subscribe(&self, _: &str) -> Result<(), telepath_shared::bus::BusError> {
        Ok(())
    }
    async fn unsubscribe(&self, _: &str) -> Result<(), telepath_shared::bus::BusError> {
        Ok(())
    }
    fn is_healthy(&self) -> bool {
        true
    }
    fn dropped(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn a_subscription_that_is_open_but_silent_fails_readiness() {
    use telepath_shared::bus::memory::MemoryBroker;
    let (bus, inbound) = MemoryBroker::new().connect(16);
    let common = telepath_shared::config::Common::for_tests("silent");
    let config = telepath_gateway::GatewayConfig::for_tests("http://127.0.0.1:9");
    let gw = telepath_gateway::GatewayState::build(
        common.clone(),
        config.clone(),
        std::sync::Arc::new(SilentBus(bus)),
        inbound,
        prometheus::Registry::new(),
    );
    // The same gateway on a bus that delivers stays ready throughout.
    let (bus, inbound) = MemoryBroker::new().connect(16);
    let healthy = telepath_gateway::GatewayState::build(
        common,
        config,
        std::sync::Arc::new(bus),
        inbound,
        prometheus::Registry::new(),
    );
    assert!(gw.ready().is_ok(), "ready until the first probes are due");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gw.ready().is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the silent subscription was never noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        healthy.ready().is_ok(),
        "a delivering subscription stays ready"
    );
}

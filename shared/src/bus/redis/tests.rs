use super::*;
use crate::testing::RedisServer;
use crate::testing::proxy::{Direction, Fault, Proxy};

async fn recv(rx: &mut Inbound) -> BusMessage {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message in time")
        .expect("open")
}

#[tokio::test]
async fn a_message_crosses_two_nodes_through_redis() {
    let redis = RedisServer::start();
    let (a, _a_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    b.subscribe("room:r1").await.unwrap();
    a.publish("room:r1", Bytes::from_static(b"{\"x\":1}"))
        .await
        .unwrap();
    let got = recv(&mut b_rx).await;
    assert_eq!(got.channel, "room:r1");
    assert_eq!(&got.payload[..], b"{\"x\":1}");
    // Stamped at publish, within the last minute.
    assert!(unix_micros() - got.meta.published_us < 60_000_000);
}

#[tokio::test]
async fn publish_many_delivers_every_message_in_order() {
    let redis = RedisServer::start();
    let (a, _a_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), 256).await.unwrap();
    b.subscribe("room:o").await.unwrap();
    let batch: Vec<Outgoing> = (0..100)
        .map(|i| Outgoing::new("room:o".to_owned(), Bytes::from(i.to_string())))
        .collect();
    a.publish_many(&batch).await.unwrap();
    for i in 0..100 {
        assert_eq!(recv(&mut b_rx).await.payload, Bytes::from(i.to_string()));
    }
}

#[tokio::test]
async fn subscriptions_come_back_after_redis_restarts() {
    let mut redis = RedisServer::start();
    let (a, _a_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    let (b, mut b_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    b.subscribe("room:r2").await.unwrap();
    redis.restart();
    // Wait until b is subscribed again, then a publish must arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never resubscribed");
        if b.is_healthy() && redis.numsub("room:r2") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!b_rx.is_closed());
    let mut sent = false;
    for _ in 0..50 {
        if a.publish("room:r2", Bytes::from_static(b"after"))
            .await
            .is_ok()
        {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent, "publish never succeeded after restart");
    assert_eq!(&recv(&mut b_rx).await.payload[..], b"after");
}

/// A bus connected to `redis` through `proxy`, subscribed to `channel`.
async fn behind(proxy: &Proxy, channel: &str) -> (RedisBus, Inbound) {
    let url = format!("redis://{}", proxy.addr());
    let (bus, rx) = RedisBus::connect(&url, 1024).await.unwrap();
    bus.subscribe(channel).await.unwrap();
    (bus, rx)
}

/// Waits until `cond` holds, for at most `secs` seconds.
async fn until(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `body` on `channel` through `publisher` until `rx` receives it
/// (earlier copies may have been lost on the way).
async fn gets_through(publisher: &RedisBus, channel: &str, rx: &mut Inbound, body: &'static str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{body} never arrived"
        );
        let _ = publisher
            .publish(channel, Bytes::from_static(body.as_bytes()))
            .await;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            && m.payload == body.as_bytes()
        {
            return;
        }
    }
}

/// A subscription connection that goes deaf (`fault`) is dropped and
/// replaced: the bus reports the loss (epoch, unhealthy), and once the
/// fault ends a new connection carries every channel again.
async fn heals_from(fault: Fault) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let (direct, _) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    let (bus, mut rx) = behind(&proxy, "room:deaf").await;
    gets_through(&direct, "room:deaf", &mut rx, "before").await;
    let epoch = bus.epoch();

    proxy.set(fault);
    direct
        .publish("room:deaf", Bytes::from_static(b"lost"))
        .await
        .unwrap();
    until(6, "the loss noticed", || {
        bus.epoch() > epoch && !bus.is_healthy()
    })
    .await;

    proxy.set(Fault::None);
    until(6, "healthy again", || bus.is_healthy()).await;
    // Subscribed again, once (the dropped connection's subscription goes
    // when Redis notices that connection closed).
    until(6, "one subscription", || redis.numsub("room:deaf") == 1).await;
    gets_through(&direct, "room:deaf", &mut rx, "after").await;
    // A new channel works on the new connection too.
    bus.subscribe("room:later").await.unwrap();
    gets_through(&direct, "room:later", &mut rx, "later").await;
}

#[tokio::test]
async fn a_subscriber_whose_replies_are_blackholed_reconnects() {
    heals_from(Fault::Drop(Direction::ToClient)).await;
}

#[tokio::test]
async fn a_subscriber_whose_requests_are_blackholed_reconnects() {
    heals_from(Fault::Drop(Direction::ToUpstream)).await;
}

#[tokio::test]
async fn a_subscriber_whose_replies_stall_reconnects() {
    heals_from(Fault::Stall(Direction::ToClient)).await;
}

#[tokio::test]
async fn a_subscriber_cut_mid_reply_reconnects() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let (direct, _) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    let (bus, mut rx) = behind(&proxy, "room:cut").await;
    gets_through(&direct, "room:cut", &mut rx, "before").await;
    let epoch = bus.epoch();
    proxy.cut_mid_reply();
    direct
        .publish("room:cut", Bytes::from_static(b"half of this"))
        .await
        .unwrap();
    until(6, "the loss noticed", || bus.epoch() > epoch).await;
    until(6, "healthy again", || bus.is_healthy()).await;
    gets_through(&direct, "room:cut", &mut rx, "after").await;
}

#[tokio::test]
async fn a_publisher_whose_replies_stall_fails_in_time_then_publishes_again() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let (listener, mut rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    listener.subscribe("room:pub").await.unwrap();
    let url = format!("redis://{}", proxy.addr());
    let (publisher, _) = RedisBus::connect(&url, 16).await.unwrap();
    publisher
        .publish("room:pub", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(&recv(&mut rx).await.payload[..], b"one");

    proxy.set(Fault::Stall(Direction::ToClient));
    let started = tokio::time::Instant::now();
    let stalled = publisher
        .publish("room:pub", Bytes::from_static(b"two"))
        .await;
    assert!(stalled.is_err(), "a publish whose reply never comes fails");
    assert!(started.elapsed() < RESPONSE_TIMEOUT + Duration::from_secs(1));
    // Redis got it even though its reply is stuck.
    assert_eq!(&recv(&mut rx).await.payload[..], b"two");

    proxy.set(Fault::None);
    // The stuck replies arrive on the dropped connection; a new one answers
    // each publish with its own reply (one receiver each).
    for body in ["three", "four"] {
        let reached = publisher
            .publish_counted("room:pub", Bytes::from_static(body.as_bytes()))
            .await
            .unwrap();
        assert_eq!(reached, 1);
        assert_eq!(&recv(&mut rx).await.payload[..], body.as_bytes());
    }
}

#[tokio::test]
async fn subscribing_while_redis_is_away_fails_and_works_once_it_is_back() {
    let mut redis = RedisServer::start();
    let (bus, mut rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    bus.subscribe("room:a").await.unwrap();
    redis.stop();
    until(6, "the loss noticed", || !bus.is_healthy()).await;
    assert!(bus.subscribe("room:b").await.is_err());
    redis.restart();
    until(10, "healthy again", || bus.is_healthy()).await;
    bus.subscribe("room:b").await.unwrap();
    let (direct, _) = RedisBus::connect(&redis.url(), 16).await.unwrap();
    gets_through(&direct, "room:a", &mut rx, "a").await;
    gets_through(&direct, "room:b", &mut rx, "b").await;
}

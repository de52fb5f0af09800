//! A chaos member: one room, one connection at a time, resumed with
//! `join` + `since` after every loss, as a careful SDK does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{Ctx, END, Rng, Route, now_ms, number};
use crate::client::{Frame, Ws, close, connect, now_us, sent_at};
use crate::room_fanout::histogram;

/// A connect (TCP, upgrade, `welcome`) that takes longer has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A join not answered within this is given up (and the connection with it).
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Who a member is.
pub(crate) struct Spec {
    pub(crate) room: usize,
    /// `r3/m7`.
    pub(crate) name: String,
    pub(crate) token: String,
    /// The gateway it connects to first, and goes back to (see [`Route`]).
    pub(crate) home: usize,
    pub(crate) sticky: bool,
    pub(crate) seed: u64,
}

/// What a member saw over the run.
pub(crate) struct Outcome {
    pub(crate) room: usize,
    pub(crate) name: String,
    /// The message number of every seq delivered, in order: `got[s - 1]` is
    /// seq `s`'s (so `got.len()` is the last contiguous seq).
    pub(crate) got: Vec<u32>,
    /// It read up to its room's end marker.
    pub(crate) finished: bool,
    /// When it last delivered a seq (Unix ms), and on which gateway it was then.
    pub(crate) last_delivery_ms: i64,
    pub(crate) gateway: Option<String>,
    pub(crate) joins: u64,
    pub(crate) unrecovered: u64,
    pub(crate) join_failures: BTreeMap<String, u64>,
    pub(crate) reconnects: BTreeMap<&'static str, u64>,
    pub(crate) connect_failures: u64,
    pub(crate) latency: Histogram<u64>,
}

/// How a connection ended.
enum End {
    /// The end marker was delivered.
    Finished,
    /// The run's settle time is over.
    GaveUp,
    /// Lost for this reason; `joined` when its join had been answered.
    Lost { cause: &'static str, joined: bool },
}

pub(crate) async fn run(
    spec: Spec,
    ctx: Arc<Ctx>,
    first_connects: Arc<Semaphore>,
    joined_once: mpsc::UnboundedSender<()>,
    mut give_up: watch::Receiver<bool>,
) -> Outcome {
    let mut out = Outcome {
        room: spec.room,
        name: spec.name.clone(),
        got: Vec::new(),
        finished: false,
        last_delivery_ms: 0,
        gateway: None,
        joins: 0,
        unrecovered: 0,
        join_failures: BTreeMap::new(),
        reconnects: BTreeMap::new(),
        connect_failures: 0,
        latency: histogram(),
    };
    let mut rng = Rng::new(spec.seed);
    let mut route = Route::new(spec.home, ctx.gateways.len(), spec.sticky);
    let mut announced = false;
    loop {
        if *give_up.borrow() {
            break;
        }
        let url = ctx.gateways[route.gateway()].clone();
        // The setup's first connects and joins, a few at a time.
        let permit = if announced {
            None
        } else {
            first_connects.clone().acquire_owned().await.ok()
        };
        let connected = tokio::select! {
            c = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url, &spec.token)) => c,
            _ = give_up.wait_for(|g| *g) => break,
        };
        let end = match connected {
            Ok(Ok(ws)) => {
                session(
                    &mut out,
                    ws,
                    &spec,
                    &ctx,
                    &url,
                    &mut give_up,
                    Joining {
                        announced: &mut announced,
                        joined_once: &joined_once,
                        permit,
                    },
                )
                .await
            }
            _ => {
                out.connect_failures += 1;
                End::Lost {
                    cause: "connect_failed",
                    joined: false,
                }
            }
        };
        match end {
            End::Finished | End::GaveUp => break,
            End::Lost { cause, joined } => {
                if cause != "connect_failed" {
                    *out.reconnects.entry(cause).or_default() += 1;
                }
                if joined {
                    route.lost();
                } else {
                    route.failed();
                }
                let wait = rng.backoff(route.failures);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = give_up.wait_for(|g| *g) => break,
                }
            }
        }
    }
    out
}

/// The setup's bookkeeping of a member's first join.
struct Joining<'a> {
    /// Its first join was answered (and told to `joined_once`).
    announced: &'a mut bool,
    joined_once: &'a mpsc::UnboundedSender<()>,
    /// Held until the join is answered, if this is a first connect.
    permit: Option<OwnedSemaphorePermit>,
}

/// One connection: join with `since`, then deliver its room's messages in
/// seq order until the end marker, a loss, or the end of the settle time.
async fn session(
    out: &mut Outcome,
    mut ws: Ws,
    spec: &Spec,
    ctx: &Ctx,
    url: &str,
    give_up: &mut watch::Receiver<bool>,
    mut joining: Joining<'_>,
) -> End {
    let room = &ctx.rooms[spec.room];
    let reference = format!("j{}", out.joins + out.join_failures.values().sum::<u64>());
    let contiguous = out.got.len() as i64;
    let join = json!({"type": "join", "ref": reference, "room": room, "since": contiguous});
    if ws.send(WsMessage::text(join.to_string())).await.is_err() {
        return End::Lost {
            cause: "closed",
            joined: false,
        };
    }
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut joined = false;
    loop {
        let next = tokio::select! {
            m = ws.next() => m,
            _ = give_up.wait_for(|g| *g) => return End::GaveUp,
            () = tokio::time::sleep_until(deadline), if !joined => {
                *out.join_failures.entry("timeout".to_owned()).or_default() += 1;
                return End::Lost { cause: "join_timeout", joined: false };
            }
        };
        let text = match next {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(_)) | Err(_)) | None => {
                return End::Lost {
                    cause: "closed",
                    joined,
                };
            }
            Some(Ok(_)) => continue,
        };
        let Ok(f) = serde_json::from_str::<Frame>(&text) else {
            continue;
        };
        match f.kind {
            "reply" if f.reference == Some(reference.as_str()) => {
                joining.permit = None;
                let reply: Value = serde_json::from_str(&text).unwrap_or_default();
                if f.ok != Some(true) {
                    let code = reply["error"]["code"].as_str().unwrap_or("?").to_owned();
                    *out.join_failures.entry(code).or_default() += 1;
                    return End::Lost {
                        cause: "join_refused",
                        joined: false,
                    };
                }
                out.joins += 1;
                if !*joining.announced {
                    *joining.announced = true;
                    let _ = joining.joined_once.send(());
                }
                if reply["data"]["recovered"] == false {
                    // Nothing replayed: hold nothing from this connection,
                    // and join again with the same `since` on a new one.
                    out.unrecovered += 1;
                    return End::Lost {
                        cause: "recovered_false",
                        joined: true,
                    };
                }
                joined = true;
            }
            "message" if f.room == Some(room.as_str()) => {
                let (Some(seq), Some(body)) = (f.seq, f.body) else {
                    continue;
                };
                let contiguous = out.got.len() as i64;
                if seq <= contiguous {
                    ctx.violation(
                        "duplicate",
                        spec.room,
                        &spec.name,
                        Some(url),
                        format!(
                            "seq {seq} again (holds 1..={contiguous}); joined on this connection: {joined}"
                        ),
                    );
                    continue;
                }
                if seq > contiguous + 1 {
                    ctx.violation(
                        "gap",
                        spec.room,
                        &spec.name,
                        Some(url),
                        format!(
                            "got seq {seq}, expected {}: seqs {}..={} skipped; joined on this connection: {joined}",
                            contiguous + 1,
                            contiguous + 1,
                            seq - 1
                        ),
                    );
                    return End::Lost {
                        cause: "gap",
                        joined: true,
                    };
                }
                out.got.push(number(body));
                out.last_delivery_ms = now_ms();
                out.gateway = Some(url.to_owned());
                if let Some(sent) = sent_at(body) {
                    out.latency
                        .saturating_record((now_us() - sent).max(1) as u64);
                }
                if body == END {
                    out.finished = true;
                    tokio::spawn(close(ws));
                    return End::Finished;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicI64;

    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;

    /// A gateway that serves one connection per script: `welcome`, the join's
    /// reply, then a `message` per seq of the script (the last one is the
    /// end marker when `end` is that seq). Returns the joins it was sent.
    async fn fake_gateway(
        scripts: Vec<Vec<i64>>,
        end: i64,
    ) -> (SocketAddr, JoinHandle<Vec<Value>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            let mut joins = Vec::new();
            for script in scripts {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let send = |v: Value| WsMessage::text(v.to_string());
                ws.send(send(json!({"type": "welcome"}))).await.unwrap();
                let join: Value = loop {
                    if let Some(Ok(WsMessage::Text(t))) = ws.next().await {
                        break serde_json::from_str(&t).unwrap();
                    }
                };
                let reply = json!({"type": "reply", "ref": join["ref"], "ok": true,
                    "data": {"room": "room-1", "seq": 0, "recovered": true}});
                ws.send(send(reply)).await.unwrap();
                for seq in script {
                    let body = if seq == end {
                        END.to_owned()
                    } else {
                        format!("1|{seq}|x")
                    };
                    let message = json!({"type": "message", "room": "room-1", "id": "m",
                        "seq": seq, "body": body});
                    ws.send(send(message)).await.unwrap();
                }
                joins.push(join);
                while let Some(Ok(_)) = ws.next().await {}
            }
            joins
        });
        (addr, serve)
    }

    async fn member_against(scripts: Vec<Vec<i64>>, end: i64) -> (Outcome, Vec<Value>, Arc<Ctx>) {
        let (addr, serve) = fake_gateway(scripts, end).await;
        let ctx = Arc::new(Ctx {
            gateways: vec![format!("http://{addr}")],
            rooms: vec!["room-1".into()],
            run: "t".into(),
            body_bytes: 10,
            t0_ms: AtomicI64::new(0),
            violations: Mutex::new(Vec::new()),
        });
        let (joined_tx, _joined) = mpsc::unbounded_channel();
        let (_give_up_tx, give_up) = watch::channel(false);
        let spec = Spec {
            room: 0,
            name: "r0/m0".into(),
            token: "token".into(),
            home: 0,
            sticky: true,
            seed: 1,
        };
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            run(
                spec,
                ctx.clone(),
                Arc::new(Semaphore::new(1)),
                joined_tx,
                give_up,
            ),
        )
        .await
        .expect("the member finished");
        let joins = serve.await.unwrap();
        (out, joins, ctx)
    }

    fn kinds(ctx: &Ctx) -> Vec<(&'static str, String)> {
        let v = ctx.violations.lock().unwrap();
        v.iter().map(|v| (v.kind, v.detail.clone())).collect()
    }

    #[tokio::test]
    async fn a_hole_is_recorded_and_the_member_resumes_from_the_last_contiguous_seq() {
        let (out, joins, ctx) = member_against(vec![vec![1, 2, 4], vec![3, 4, 5]], 5).await;
        assert_eq!(joins[0]["since"], 0);
        assert_eq!(
            joins[1]["since"], 2,
            "resumed after the last contiguous seq"
        );
        assert_eq!(out.got, vec![1, 2, 3, 4, 0]);
        assert!(out.finished);
        assert_eq!(out.reconnects.get("gap"), Some(&1));
        let seen = kinds(&ctx);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "gap");
        assert!(
            seen[0].1.starts_with("got seq 4, expected 3"),
            "{}",
            seen[0].1
        );
    }

    #[tokio::test]
    async fn a_repeat_is_recorded_and_dropped() {
        let (out, _, ctx) = member_against(vec![vec![1, 2, 2, 3, 4]], 4).await;
        assert_eq!(out.got, vec![1, 2, 3, 0]);
        assert!(out.finished);
        let seen = kinds(&ctx);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "duplicate");
    }
}

//! `telepath backup --to FILE`: taken from a running all-in-one while
//! messages keep coming, the copy is a consistent database whose every
//! room's history is a prefix without holes, holding at least every
//! message acknowledged before the backup started.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use telepath_shared::testing::WsClient;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Service, bin_dir, create_room, eventually, get_json, login};

const ROOMS: usize = 3;

/// Sends to `room` on `ws` until `stop`, storing each acknowledged seq in
/// `acked`; returns the last one.
async fn keep_sending(
    mut ws: WsClient,
    room: String,
    acked: Arc<AtomicI64>,
    stop: CancellationToken,
) -> i64 {
    let mut i = 0;
    while !stop.is_cancelled() {
        let body = format!("message {i}");
        let seq = ws
            .ok(json!({"type": "send", "room": room, "body": body}))
            .await["seq"]
            .as_i64()
            .unwrap();
        // The sender is a member too: take its copy so nothing piles up.
        ws.next_of("message").await;
        acked.store(seq, Ordering::SeqCst);
        i += 1;
    }
    acked.load(Ordering::SeqCst)
}

/// The last acknowledged seq of every room.
fn now(acked: &[Arc<AtomicI64>]) -> Vec<i64> {
    acked.iter().map(|a| a.load(Ordering::SeqCst)).collect()
}

/// Waits until every room's acknowledged seq reaches its entry in `seqs`.
async fn past(acked: &[Arc<AtomicI64>], seqs: Vec<i64>) {
    let what = format!("every room past {seqs:?}");
    eventually(Duration::from_secs(30), &what, || {
        let ok = now(acked).iter().zip(&seqs).all(|(a, s)| a >= s);
        async move { ok }
    })
    .await;
}

/// Runs `telepath backup` on the database at `db` with `args`: (success, stdout + stderr).
async fn backup(db: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(bin_dir().join("telepath"))
        .env_clear()
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .arg("backup")
        .args(args)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every seq of `room`'s history at `base`, page by page from the oldest.
async fn history(http: &Client, base: &str, token: &str, room: &str) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let after = seqs.last().copied().unwrap_or(0);
        let url = format!("{base}/rooms/{room}/messages?after={after}&limit=500");
        let page: Value = get_json(http, &url, |r| r.bearer_auth(token)).await;
        let messages = page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"));
        seqs.extend(messages.iter().map(|m| m["seq"].as_i64().unwrap()));
        if page["has_more"] != true {
            return seqs;
        }
    }
}

/// SQLite's own verdict on the database file at `path`.
async fn integrity(path: &Path) -> String {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_messages_flow_restores_to_a_consistent_prefix_of_every_room() {
    let live = tempfile::tempdir().unwrap();
    let db = live.path().join("telepath.db");
    let mut node = Service::start(
        "telepath",
        &[
            ("DATABASE_URL", format!("sqlite://{}", db.display())),
            ("TELEPATH_MAX_RATE_PER_S", "100000".to_owned()),
            ("TELEPATH_USER_RATE_PER_S", "0".to_owned()),
            ("TELEPATH_DRAIN_SECS", "2".to_owned()),
        ],
    )
    .await;
    let http = Client::new();
    let ada = login(&http, &node.url, "ada").await;
    let stop = CancellationToken::new();
    let (mut rooms, mut acked, mut senders) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..ROOMS {
        let room = create_room(&http, &node.url, &ada, &format!("busy{r}")).await;
        let mut ws = WsClient::connect(&node.url, &ada.token).await.unwrap();
        ws.join(&room).await;
        let seq = Arc::new(AtomicI64::new(0));
        senders.push(tokio::spawn(keep_sending(
            ws,
            room.clone(),
            seq.clone(),
            stop.clone(),
        )));
        rooms.push(room);
        acked.push(seq);
    }
    past(&acked, vec![30; ROOMS]).await;

    // The backup, mid-flow.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let before = now(&acked);
    let (ok, said) = backup(&db, &["--to", copy.to_str().unwrap()]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains(copy.to_str().unwrap()) && said.contains("integrity_check: ok"),
        "{said}"
    );
    let after = now(&acked);
    past(&acked, after.iter().map(|a| a + 30).collect()).await;
    stop.cancel();
    let mut last = Vec::new();
    for sending in senders {
        last.push(sending.await.unwrap());
    }
    node.terminate();

    // An existing file is kept unless --force.
    let taken = std::fs::read(&copy).unwrap();
    let (ok, said) = backup(&db, &["--to", copy.to_str().unwrap()]).await;
    assert!(!ok && said.contains("--force"), "{said}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        taken,
        "the first copy is untouched"
    );
    let newer = dir.path().join("newer.db");
    std::fs::write(&newer, b"an older backup").unwrap();
    let (ok, said) = backup(&db, &["--to", newer.to_str().unwrap(), "--force"]).await;
    assert!(ok, "{said}");
    assert_eq!(integrity(&newer).await, "ok");
    let (ok, said) = backup(&live.path().join("nothing.db"), &["--to", "x.db"]).await;
    assert!(!ok && said.contains("no database file"), "{said}");

    // The copy is a sound database...
    assert_eq!(integrity(&copy).await, "ok");
    // ...and a fresh node on it has, in every room, seqs 1..=n with no
    // hole: every message acknowledged before the backup began, and none
    // sent after it ended (each room has one send in flight at a time, so
    // one more than was acknowledged by then may be in).
    let restored = tempfile::tempdir().unwrap();
    let restored_db = restored.path().join("telepath.db");
    std::fs::copy(&copy, &restored_db).unwrap();
    let node = Service::start(
        "telepath",
        &[(
            "DATABASE_URL",
            format!("sqlite://{}", restored_db.display()),
        )],
    )
    .await;
    let mut counts = BTreeMap::new();
    for (i, room) in rooms.iter().enumerate() {
        let seqs = history(&http, &node.url, &ada.token, room).await;
        let n = seqs.len() as i64;
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "room {i}: a prefix");
        assert!(
            before[i] <= n && n <= after[i] + 1 && n < last[i],
            "room {i}: {} acknowledged before, {n} in the copy, {} after, {} in the end",
            before[i],
            after[i],
            last[i]
        );
        counts.insert(i, (before[i], n, after[i], last[i]));
    }
    eprintln!(
        "per room (acknowledged before the backup, in the copy, after it, in all): {counts:?}"
    );

    // The copy's search index points at the copy's own rows: a hit for a
    // word is a message that has it.
    let found: serde_json::Value = http
        .get(format!("{}/search?q=7&limit=50", node.url))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hits = found["results"].as_array().unwrap();
    assert!(!hits.is_empty(), "{found}");
    for hit in hits {
        let room = hit["room"].as_str().unwrap();
        let seq = hit["seq"].as_i64().unwrap();
        let page: serde_json::Value = http
            .get(format!(
                "{}/rooms/{room}/messages?after={}&limit=1",
                node.url,
                seq - 1
            ))
            .bearer_auth(&ada.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let message = &page["messages"][0];
        assert_eq!(message["id"], hit["id"], "{hit}");
        let body = message["body"].as_str().unwrap();
        assert!(body.split(' ').any(|w| w == "7"), "{body} for {hit}");
    }
}

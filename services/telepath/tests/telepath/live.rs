//! Messages that live (issue 20), on the all-in-one and on the split
//! deployment (two gateways, Redis, real processes): edits, deletes and
//! reactions take the room's seqs, are replayed to whoever was away, and
//! every client converges to what history shows; refusals change nothing;
//! read cursors, receipts and unread counts; threads; search; DM history
//! and DM edits.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::{TestUser, WsClient};

use crate::cluster::start_cluster;
use crate::helpers::{create_room, get_json, login, spawn_node};

/// A client's picture of a room, built from the frames it got.
#[derive(Default, Debug)]
struct Mirror {
    /// The last seq of the room's log seen.
    seq: i64,
    /// id -> (body, deleted, emoji -> count)
    messages: BTreeMap<String, (String, bool, BTreeMap<String, i64>)>,
}

impl Mirror {
    /// Applies a frame of the room's log; checks it is the next seq.
    fn apply(&mut self, f: &Value) {
        let Some(seq) = f["seq"].as_i64() else { return };
        if !matches!(
            f["type"].as_str(),
            Some("message" | "message_edited" | "message_deleted" | "reaction")
        ) {
            return;
        }
        if seq <= self.seq {
            return; // a repeat (deduped by seq, as clients do)
        }
        assert_eq!(seq, self.seq + 1, "no hole in the log: {f}");
        self.seq = seq;
        let id = f["id"].as_str().unwrap().to_owned();
        match f["type"].as_str().unwrap() {
            "message" => {
                let reactions = reactions_of(f);
                let body = f["body"].as_str().unwrap_or("").to_owned();
                self.messages
                    .insert(id, (body, f["deleted"] == true, reactions));
            }
            "message_edited" => {
                let m = self
                    .messages
                    .get_mut(&id)
                    .expect("an edit of a known message");
                m.0 = f["body"].as_str().unwrap().to_owned();
            }
            "message_deleted" => {
                let m = self
                    .messages
                    .get_mut(&id)
                    .expect("a delete of a known message");
                *m = (String::new(), true, BTreeMap::new());
            }
            "reaction" => {
                let m = self
                    .messages
                    .get_mut(&id)
                    .expect("a reaction to a known message");
                let count = f["count"].as_i64().unwrap();
                let emoji = f["emoji"].as_str().unwrap().to_owned();
                if count == 0 {
                    m.2.remove(&emoji);
                } else {
                    m.2.insert(emoji, count);
                }
            }
            _ => unreachable!(),
        }
    }

    /// Reads frames until the log reaches `seq`.
    async fn follow(&mut self, ws: &mut WsClient, seq: i64) {
        while self.seq < seq {
            let f = ws
                .wait_for(|f| f["seq"].is_i64() && f["type"] != "reply" && f["type"] != "receipt")
                .await;
            self.apply(&f);
        }
    }
}

/// The room as history shows it: id -> (body, deleted, emoji -> count).
async fn history(
    http: &Client,
    api: &str,
    user: &TestUser,
    room: &str,
) -> BTreeMap<String, (String, bool, BTreeMap<String, i64>)> {
    let url = format!("{api}/rooms/{room}/messages?limit=500");
    let page = get_json(http, &url, |r| r.bearer_auth(&user.token)).await;
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                (
                    m["body"].as_str().unwrap_or("").to_owned(),
                    m["deleted"] == true,
                    reactions_of(m),
                ),
            )
        })
        .collect()
}

/// A message's `reactions` as emoji -> count (none when absent).
fn reactions_of(m: &Value) -> BTreeMap<String, i64> {
    m["reactions"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| {
                    (
                        r["emoji"].as_str().unwrap().to_owned(),
                        r["count"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The whole story on one deployment: `gw_a` and `gw_b` are the gateways
/// ada and bob use, `api` the REST origin.
async fn a_client_that_was_away_converges(gw_a: &str, gw_b: &str, api: &str) {
    let http = Client::new();
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let carol = login(&http, api, "carol").await;
    let room = create_room(&http, api, &ada, "living").await;
    let mut a = WsClient::connect(gw_a, &ada.token).await.unwrap();
    let mut b = WsClient::connect(gw_b, &bob.token).await.unwrap();
    let mut c = WsClient::connect(gw_b, &carol.token).await.unwrap();
    a.join(&room).await;
    b.join(&room).await;
    c.join(&room).await;
    let (mut mb, mut mc) = (Mirror::default(), Mirror::default());

    let m1 = a
        .ok(json!({"type":"send","room":room,"body":"first draft"}))
        .await;
    let m1_id = m1["id"].as_str().unwrap().to_owned();
    let m2 = a
        .ok(json!({"type":"send","room":room,"body":"a reply","reply_to":m1_id}))
        .await;
    let m2_id = m2["id"].as_str().unwrap().to_owned();
    let m3 = b
        .ok(json!({"type":"send","room":room,"body":"bob's"}))
        .await;
    let m3_id = m3["id"].as_str().unwrap().to_owned();
    assert_eq!(m3["seq"], 3);
    mb.follow(&mut b, 3).await;

    // An edit takes the next seq and reaches members as message_edited.
    let edit = a
        .ok(json!({"type":"edit","room":room,"id":m1_id,"body":"final text"}))
        .await;
    assert_eq!(edit["seq"], 4);
    assert_eq!(edit["id"], m1_id.as_str());
    assert!(edit["edited_at"].is_string());
    let seen = b.next_of("message_edited").await;
    assert_eq!(seen["body"], "final text");
    assert_eq!(seen["by"]["name"], "ada");
    mb.apply(&seen);
    // The same edit again changes nothing and names the same seq.
    let again = a
        .ok(json!({"type":"edit","room":room,"id":m1_id,"body":"final text"}))
        .await;
    assert_eq!(again["seq"], 4);

    // Bob goes away; meanwhile his message is reacted to, ada's reply deleted, m1 edited again.
    drop(b);
    let r = c
        .ok(json!({"type":"react","room":room,"id":m3_id,"emoji":"👍","on":true}))
        .await;
    assert_eq!((r["seq"].as_i64(), r["count"].as_i64()), (Some(5), Some(1)));
    let r = a
        .ok(json!({"type":"react","room":room,"id":m3_id,"emoji":"👍","on":true}))
        .await;
    assert_eq!(r["count"], 2);
    let r = a
        .ok(json!({"type":"react","room":room,"id":m1_id,"emoji":"🎉","on":true}))
        .await;
    assert_eq!(r["seq"], 7);
    // On twice is one reaction: no new seq.
    let same = a
        .ok(json!({"type":"react","room":room,"id":m1_id,"emoji":"🎉","on":true}))
        .await;
    assert_eq!(
        (same["seq"].as_i64(), same["count"].as_i64()),
        (Some(7), Some(1))
    );
    let off = c
        .ok(json!({"type":"react","room":room,"id":m3_id,"emoji":"👍","on":false}))
        .await;
    assert_eq!(
        (off["seq"].as_i64(), off["count"].as_i64()),
        (Some(8), Some(1))
    );
    let del = a.ok(json!({"type":"delete","room":room,"id":m2_id})).await;
    assert_eq!(del["seq"], 9);
    let del_again = a.ok(json!({"type":"delete","room":room,"id":m2_id})).await;
    assert_eq!(del_again["seq"], 9, "deleting twice is one delete");
    let edit2 = a
        .ok(json!({"type":"edit","room":room,"id":m1_id,"body":"final final"}))
        .await;
    assert_eq!(edit2["seq"], 10);

    // Carol stayed: she saw everything live, in order.
    mc.follow(&mut c, 10).await;

    // Bob comes back and resumes from what he saw.
    let mut b = WsClient::connect(gw_b, &bob.token).await.unwrap();
    let joined = b
        .ok(json!({"type":"join","room":room,"since":mb.seq}))
        .await;
    assert_eq!(joined["seq"], 10);
    assert_eq!(joined["recovered"], true);
    mb.follow(&mut b, 10).await;

    let truth = history(&http, api, &bob, &room).await;
    assert_eq!(
        mb.messages, truth,
        "bob, who was away, converges to history"
    );
    assert_eq!(
        mc.messages, truth,
        "carol, who stayed, converges to history"
    );
    assert_eq!(truth[&m1_id].0, "final final");
    assert!(truth[&m2_id].1, "m2 is a tombstone");
    assert_eq!(truth[&m2_id].0, "", "without a body");
    assert_eq!(truth[&m3_id].2, BTreeMap::from([("👍".to_owned(), 1)]));

    // History: the thread parent counts its reply; `me` says whose reaction.
    let page = get_json(&http, &format!("{api}/rooms/{room}/messages"), |r| {
        r.bearer_auth(&ada.token)
    })
    .await;
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "changes are not history items");
    assert_eq!(msgs[0]["reply_count"], 1);
    assert!(msgs[0]["last_reply_at"].is_string());
    assert!(msgs[0]["edited_at"].is_string());
    assert_eq!(
        msgs[0]["reactions"],
        json!([{"emoji":"🎉","count":1,"me":true}])
    );
    assert_eq!(
        msgs[2]["reactions"],
        json!([{"emoji":"👍","count":1,"me":true}])
    );
    assert!(msgs[1].get("body").is_none() && msgs[1]["deleted"] == true);

    // The thread route pages the replies (the deleted reply stays as a tombstone).
    let thread = get_json(
        &http,
        &format!("{api}/rooms/{room}/messages/{m1_id}/thread"),
        |r| r.bearer_auth(&bob.token),
    )
    .await;
    assert_eq!(thread["parent"]["id"], m1_id.as_str());
    assert_eq!(thread["messages"].as_array().unwrap().len(), 1);
    assert_eq!(thread["messages"][0]["deleted"], true);
}

#[tokio::test]
async fn on_the_all_in_one_a_client_that_was_away_converges_to_history() {
    let node = spawn_node(|_| {}).await;
    a_client_that_was_away_converges(&node.url, &node.url, &node.url).await;
}

#[tokio::test]
async fn on_two_gateways_a_client_that_was_away_converges_to_history() {
    let cluster = start_cluster(2, 1).await;
    a_client_that_was_away_converges(
        &cluster.gateways[0].url,
        &cluster.gateways[1].url,
        &cluster.api.url,
    )
    .await;
}

/// The room's latest seq, as a join tells it.
async fn latest(ws: &mut WsClient, room: &str) -> i64 {
    ws.join(room).await["seq"].as_i64().unwrap()
}

#[tokio::test]
async fn bad_changes_are_refused_and_change_nothing() {
    let node = spawn_node(|_| {}).await;
    let http = Client::new();
    let ada = login(&http, &node.url, "ada").await;
    let bob = login(&http, &node.url, "bob").await;
    let room = create_room(&http, &node.url, &ada, "strict").await;
    let other = create_room(&http, &node.url, &ada, "elsewhere").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    a.join(&room).await;
    a.join(&other).await;
    b.join(&room).await;
    let m = a.ok(json!({"type":"send","room":room,"body":"mine"})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let elsewhere = a
        .ok(json!({"type":"send","room":other,"body":"there"}))
        .await;
    let before = history(&http, &node.url, &ada, &room).await;
    let seq = latest(&mut a, &room).await;

    let code = |reply: Value| reply["error"]["code"].as_str().unwrap_or("").to_owned();
    let unknown = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type":"edit","room":room,"id":id,"body":"not yours"}),
            "forbidden",
        ),
        (json!({"type":"delete","room":room,"id":id}), "forbidden"),
        (
            json!({"type":"edit","room":room,"id":unknown,"body":"x"}),
            "not_found",
        ),
        (
            json!({"type":"react","room":room,"id":unknown,"emoji":"👍","on":true}),
            "not_found",
        ),
        (
            json!({"type":"react","room":room,"id":elsewhere["id"],"emoji":"👍","on":true}),
            "not_found",
        ),
        (
            json!({"type":"react","room":room,"id":id,"emoji":"👍👍","on":true}),
            "bad_request",
        ),
        (
            json!({"type":"react","room":room,"id":id,"emoji":"","on":true}),
            "bad_request",
        ),
        (
            json!({"type":"react","room":room,"id":id,"emoji":"a very long emoji","on":true}),
            "bad_request",
        ),
        (
            json!({"type":"react","room":room,"id":id,"emoji":"\n","on":true}),
            "bad_request",
        ),
        (
            json!({"type":"edit","room":room,"id":id,"body":""}),
            "bad_request",
        ),
        (
            json!({"type":"edit","room":room,"dm":id,"id":id,"body":"both"}),
            "bad_request",
        ),
        (
            json!({"type":"edit","id":id,"body":"neither"}),
            "bad_request",
        ),
        (json!({"type":"read","room":room,"seq":-1}), "bad_request"),
        (
            json!({"type":"send","room":room,"body":"r","reply_to":elsewhere["id"]}),
            "not_found",
        ),
        (
            json!({"type":"send","room":room,"body":"r","reply_to":unknown}),
            "not_found",
        ),
        (
            json!({"type":"react","room":other,"id":elsewhere["id"],"emoji":"👍","on":true}),
            "forbidden",
        ),
    ];
    for (frame, want) in cases {
        let reply = b.request(frame.clone()).await;
        assert_eq!(reply["ok"], false, "{frame}");
        assert_eq!(code(reply.clone()), want, "{frame}: {reply}");
    }
    // 20 distinct emoji fit on a message; the 21st does not.
    let emoji: Vec<String> = (0..21)
        .map(|i| char::from_u32(0x1F600 + i).unwrap().to_string())
        .collect();
    for e in &emoji[..20] {
        a.ok(json!({"type":"react","room":room,"id":id,"emoji":e,"on":true}))
            .await;
    }
    let over = a
        .request(json!({"type":"react","room":room,"id":id,"emoji":emoji[20],"on":true}))
        .await;
    assert_eq!(code(over), "bad_request");
    // ... but one already there takes more users.
    b.ok(json!({"type":"react","room":room,"id":id,"emoji":emoji[0],"on":true}))
        .await;
    let now = latest(&mut a, &room).await;
    assert_eq!(now, seq + 21, "only the 21 accepted reactions took seqs");
    let after = history(&http, &node.url, &ada, &room).await;
    assert_eq!(after[&id].0, before[&id].0, "the body is unchanged");
    assert_eq!(after.len(), before.len(), "no message was added");

    // A read beyond the latest seq is clamped, and cursors only move forward.
    let read = b
        .ok(json!({"type":"read","room":room,"seq":1_000_000}))
        .await;
    assert_eq!(read, json!({"room": room, "seq": now}));
    let back = b.ok(json!({"type":"read","room":room,"seq":1})).await;
    assert_eq!(back["seq"], now);
}

#[tokio::test]
async fn reads_move_cursors_send_coalesced_receipts_and_count_unread() {
    let cluster = start_cluster(2, 1).await;
    let api = &cluster.api.url;
    let http = Client::new();
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let room = create_room(&http, api, &ada, "reading").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    a.join(&room).await;
    b.join(&room).await;
    for i in 0..30 {
        a.ok(json!({"type":"send","room":room,"body":format!("m{i}")}))
            .await;
    }
    b.ok(json!({"type":"send","room":room,"body":"bob's own"}))
        .await;
    let rooms = |user: TestUser| {
        let (http, url) = (http.clone(), format!("{api}/rooms"));
        async move { get_json(&http, &url, |r| r.bearer_auth(&user.token)).await }
    };
    let listed = rooms(bob.clone()).await;
    let mine = listed["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["unread"], 30, "ada's 30, not bob's own: {mine}");
    assert_eq!(mine["read_seq"], 0);

    // A fast reader: 30 reads in a row cost the room a few receipts, the last with the final seq.
    for seq in 1..=30 {
        b.ok(json!({"type":"read","room":room,"seq":seq})).await;
    }
    let mut receipts = Vec::new();
    loop {
        let r = a.next_of("receipt").await;
        assert_eq!(r["user"]["name"], "bob");
        receipts.push(r["seq"].as_i64().unwrap());
        if *receipts.last().unwrap() == 30 {
            break;
        }
    }
    assert!(receipts.len() <= 6, "coalesced: {receipts:?}");
    assert!(receipts.windows(2).all(|w| w[0] < w[1]), "{receipts:?}");

    let listed = rooms(bob.clone()).await;
    let mine = listed["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (mine["unread"].as_i64(), mine["read_seq"].as_i64()),
        (Some(0), Some(30))
    );
    let parts = get_json(&http, &format!("{api}/rooms/{room}/participants"), |r| {
        r.bearer_auth(&ada.token)
    })
    .await;
    let bob_part = parts["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user"]["name"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(bob_part["read_seq"], 30);
}

#[tokio::test]
async fn search_finds_what_the_caller_may_read_and_nothing_deleted() {
    let node = spawn_node(|_| {}).await;
    let http = Client::new();
    let url = &node.url;
    let ada = login(&http, url, "ada").await;
    let bob = login(&http, url, "bob").await;
    let eve = login(&http, url, "eve").await;
    let room = create_room(&http, url, &ada, "found").await;
    let secret = create_room(&http, url, &eve, "eve's").await;
    let mut a = WsClient::connect(url, &ada.token).await.unwrap();
    let mut e = WsClient::connect(url, &eve.token).await.unwrap();
    a.join(&room).await;
    e.join(&secret).await;
    a.ok(json!({"type":"send","room":room,"body":"the quick brown fox jumps"}))
        .await;
    let gone = a
        .ok(json!({"type":"send","room":room,"body":"a quick ghost"}))
        .await;
    a.ok(json!({"type":"delete","room":room,"id":gone["id"]}))
        .await;
    let edited = a
        .ok(json!({"type":"send","room":room,"body":"old words"}))
        .await;
    a.ok(json!({"type":"edit","room":room,"id":edited["id"],"body":"quick new words"}))
        .await;
    e.ok(json!({"type":"send","room":secret,"body":"quick secret plans"}))
        .await;
    a.ok(json!({"type":"dm","to":"bob","body":"a quick note for bob"}))
        .await;

    let search = |user: TestUser, q: String| {
        let http = http.clone();
        let url = format!("{url}/search");
        async move {
            let resp = http
                .get(url)
                .query(&[("q", q)])
                .bearer_auth(&user.token)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, found) = search(ada.clone(), "quick".into()).await;
    assert_eq!(status, 200);
    let snippets: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["snippet"].as_str().unwrap())
        .collect();
    assert_eq!(
        snippets.len(),
        3,
        "the fox, the edited one and the DM, not the deleted or eve's: {found}"
    );
    assert!(
        snippets.iter().all(|s| s.contains("«quick»")),
        "{snippets:?}"
    );
    let (_, none) = search(ada.clone(), "old".into()).await;
    assert_eq!(
        none["results"],
        json!([]),
        "an edit replaces the indexed text"
    );
    let (_, ghost) = search(ada.clone(), "ghost".into()).await;
    assert_eq!(
        ghost["results"],
        json!([]),
        "a deleted body is gone from search"
    );
    // Prefix on the last word; DMs are the recipient's too.
    let (_, fox) = search(ada.clone(), "brown fo".into()).await;
    assert_eq!(fox["results"].as_array().unwrap().len(), 1);
    let (_, dm) = search(bob.clone(), "note".into()).await;
    assert_eq!(dm["results"][0]["with"], ada.id.as_str());
    // FTS5 syntax is only text: no error, no escape from the caller's rooms.
    for q in [
        "\"quick",
        "quick*",
        "NEAR(quick secret)",
        "content:secret",
        "secret OR quick",
        "-quick",
        "{content}:secret",
        "quick) OR (secret",
    ] {
        let (status, body) = search(ada.clone(), q.into()).await;
        assert_eq!(status, 200, "{q}: {body}");
        let leaked = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["room"] == secret.as_str());
        assert!(!leaked, "{q} reached eve's room: {body}");
    }
    for q in ["", &"x".repeat(300)] {
        let (status, _) = search(ada.clone(), q.to_owned()).await;
        assert_eq!(status, 400, "{q:?}");
    }
    // No word, or one too long to be a word, finds nothing; words past the 8th are ignored.
    for q in ["\"*()", &"x".repeat(65)] {
        let (status, body) = search(ada.clone(), q.to_owned()).await;
        assert_eq!((status, body["results"].clone()), (200, json!([])), "{q:?}");
    }
    let (status, body) = search(
        ada.clone(),
        "the quick brown fox jumps the quick brown zzz".into(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["results"].as_array().unwrap().len(),
        1,
        "the first 8 words: {body}"
    );
    // `room` limits to one room the caller is in; another's is 404.
    let resp = http
        .get(format!("{url}/search"))
        .query(&[("q", "quick"), ("room", secret.as_str())])
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn dm_conversations_page_and_dm_edits_reach_both_sides_and_the_offline_queue() {
    let cluster = start_cluster(2, 1).await;
    let api = &cluster.api.url;
    let http = Client::new();
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = a
            .ok(json!({"type":"dm","to":"bob","body":format!("dm {i}")}))
            .await;
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    // Bob is offline: the edit and the delete wait for him in the queue.
    let e = a
        .ok(json!({"type":"edit","dm":ids[0],"id":ids[0],"body":"dm 0, fixed"}))
        .await;
    assert!(e["edited_at"].is_string() && e.get("seq").is_none(), "{e}");
    a.ok(json!({"type":"delete","dm":ids[1],"id":ids[1]})).await;
    let not_his = a.request(json!({"type":"edit","dm":"0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f","id":"0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f","body":"x"})).await;
    assert_eq!(not_his["error"]["code"], "not_found");

    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    while got.len() < 5 {
        let dm = b.next_of("dm").await;
        got.insert(dm["id"].as_str().unwrap().to_owned(), dm);
    }
    assert_eq!(got[&ids[0]]["body"], "dm 0, fixed");
    assert!(got[&ids[0]]["edited_at"].is_string());
    assert_eq!(got[&ids[1]]["deleted"], true);
    assert!(got[&ids[1]].get("body").is_none());

    // Live: an edit reaches bob (and ada's own connection) as message_edited.
    let forbidden = b
        .request(json!({"type":"edit","dm":ids[2],"id":ids[2],"body":"mine now"}))
        .await;
    assert_eq!(forbidden["error"]["code"], "forbidden");
    a.ok(json!({"type":"edit","dm":ids[2],"id":ids[2],"body":"dm 2, fixed"}))
        .await;
    let live = b.next_of("message_edited").await;
    assert_eq!(
        (live["dm"].as_str(), live["body"].as_str()),
        (Some(ids[2].as_str()), Some("dm 2, fixed"))
    );
    // Ada's own devices hear of her edits too (this one and the earlier ones).
    let own = a
        .wait_for(|f| f["type"] == "message_edited" && f["dm"] == ids[2].as_str())
        .await;
    assert_eq!(own["to"], bob.id.as_str());

    // History of the conversation, in time order, pages by DM id.
    let page = get_json(&http, &format!("{api}/dms"), |r| {
        r.query(&[("with", "ada"), ("limit", "3")])
            .bearer_auth(&bob.token)
    })
    .await;
    let got_ids: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got_ids,
        ids[2..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(page["has_more"], true);
    let older = get_json(&http, &format!("{api}/dms"), |r| {
        r.query(&[("with", ada.id.as_str()), ("before", ids[2].as_str())])
            .bearer_auth(&bob.token)
    })
    .await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 2);
    assert_eq!(older["messages"][1]["deleted"], true);
    let list = get_json(&http, &format!("{api}/dms"), |r| r.bearer_auth(&bob.token)).await;
    let conv = &list["conversations"][0];
    assert_eq!(conv["user"]["name"], "ada");
    assert_eq!(conv["last"]["id"], ids[4].as_str());
    assert_eq!(conv["unread"], 5, "nothing acked yet");
    let unknown = http
        .get(format!("{api}/dms"))
        .query(&[("with", "nobody")])
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

/// The ids of bob's DMs still queued, each with its state as queued.
async fn queued(http: &Client, api: &str, who: &TestUser) -> Vec<Value> {
    get_json(http, &format!("{api}/dms/pending"), |r| {
        r.bearer_auth(&who.token)
    })
    .await["messages"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_dm_ack_naming_an_older_version_leaves_a_later_edit_or_delete_queued() {
    let cluster = start_cluster(2, 1).await;
    let api = &cluster.api.url;
    let http = Client::new();
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    let id = a.ok(json!({"type":"dm","to":"bob","body":"v1"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = b.next_of("dm").await;
    assert!(first.get("edited_at").is_none_or(Value::is_null), "{first}");
    // Ada edits before bob's ack of the first version is written: the edit
    // goes back into his queue, and that ack, arriving after, leaves it there.
    let e2 = a
        .ok(json!({"type":"edit","dm":id,"id":id,"body":"v2"}))
        .await["edited_at"]
        .as_str()
        .unwrap()
        .to_owned();
    b.ok(json!({"type":"ack","dm":id,"deleted":false})).await;
    let left = queued(&http, api, &bob).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0]["body"].as_str(), left[0]["edited_at"].as_str()),
        (Some("v2"), Some(e2.as_str()))
    );
    let live = b.next_of("message_edited").await;
    assert_eq!(live["edited_at"], e2.as_str());

    // Two edits at once still name two versions: each edited_at is later.
    let e3 = a
        .ok(json!({"type":"edit","dm":id,"id":id,"body":"v3"}))
        .await["edited_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let e4 = a
        .ok(json!({"type":"edit","dm":id,"id":id,"body":"v4"}))
        .await["edited_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    assert!(at(&e2) < at(&e3) && at(&e3) < at(&e4), "{e2} {e3} {e4}");
    // An ack of v2 or v3 leaves v4 queued; the ack of v4 (in another
    // spelling of the same instant) takes it out.
    b.ok(json!({"type":"ack","dm":id,"deleted":false,"edited_at":e2}))
        .await;
    b.ok(json!({"type":"ack","dm":id,"edited_at":e3})).await;
    assert_eq!(queued(&http, api, &bob).await[0]["body"], "v4");
    let e4_offset = at(&e4)
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    b.ok(json!({"type":"ack","dm":id,"edited_at":e4_offset}))
        .await;
    assert_eq!(queued(&http, api, &bob).await, Vec::<Value>::new());

    // A delete: an ack of the last edit leaves it queued; one naming the
    // deleted DM takes it out.
    a.ok(json!({"type":"delete","dm":id,"id":id})).await;
    b.ok(json!({"type":"ack","dm":id,"edited_at":e4})).await;
    let left = queued(&http, api, &bob).await;
    assert_eq!(
        (left.len(), &left[0]["deleted"]),
        (1, &json!(true)),
        "{left:?}"
    );
    b.ok(json!({"type":"ack","dm":id,"deleted":true})).await;
    assert_eq!(queued(&http, api, &bob).await, Vec::<Value>::new());

    // Bob away, the edit waits for him; his next connect gets it.
    let other = a.ok(json!({"type":"dm","to":"bob","body":"w1"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.next_of("dm").await;
    a.ok(json!({"type":"edit","dm":other,"id":other,"body":"w2"}))
        .await;
    b.ok(json!({"type":"ack","dm":other,"deleted":false})).await;
    drop(b);
    let mut b = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    let again = b
        .wait_for(|f| f["type"] == "dm" && f["id"] == other.as_str())
        .await;
    assert_eq!(again["body"], "w2");
    // An ack naming no version takes the DM out whatever its state.
    b.ok(json!({"type":"ack","dm":other})).await;
    assert_eq!(queued(&http, api, &bob).await, Vec::<Value>::new());

    // Bad input: a version that is not a time, or on a room ack.
    for bad in [
        json!({"type":"ack","dm":other,"edited_at":"yesterday"}),
        json!({"type":"ack","dm":other,"deleted":"yes"}),
        json!({"type":"ack","room":other,"seq":1,"deleted":true}),
    ] {
        let reply = b.request(bad.clone()).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{bad} -> {reply}");
    }
}

#[tokio::test]
async fn a_redis_restart_while_edits_and_reactions_flow_leaves_every_client_converged() {
    let mut cluster = start_cluster(2, 1).await;
    let api = cluster.api.url.clone();
    let http = Client::new();
    let ada = login(&http, &api, "ada").await;
    let bob = login(&http, &api, "bob").await;
    let room = create_room(&http, &api, &ada, "stormy").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    a.join(&room).await;
    b.join(&room).await;
    // Bob keeps reading as a client does (the cluster's heartbeat is short),
    // until the log reaches the seq the test names at the end.
    let (target, mut until) = tokio::sync::watch::channel(i64::MAX);
    let reader = tokio::spawn(async move {
        let mut mb = Mirror::default();
        loop {
            if mb.seq >= *until.borrow() {
                return mb;
            }
            tokio::select! {
                f = b.wait_for(|f| f["seq"].is_i64() && f["type"] != "reply" && f["type"] != "receipt") => mb.apply(&f),
                _ = until.changed() => {}
            }
        }
    });
    let mut ids = Vec::new();
    let mut last = 0;
    for i in 0..60 {
        if i == 20 {
            cluster.redis.restart();
        }
        let r = match i % 4 {
            0 | 1 => a.ok(json!({"type":"send","room":room,"body":format!("m{i}")})).await,
            2 => a.ok(json!({"type":"edit","room":room,"id":ids.last().unwrap(),"body":format!("e{i}")})).await,
            _ => a.ok(json!({"type":"react","room":room,"id":ids[ids.len() / 2],"emoji":"👍","on":i % 8 == 3})).await,
        };
        if let Some(id) = r["id"].as_str().filter(|_| i % 4 < 2) {
            ids.push(id.to_owned());
        }
        last = last.max(r["seq"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    target.send(last).unwrap();
    let mb = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("bob caught up")
        .unwrap();
    let truth = history(&http, &api, &bob, &room).await;
    assert_eq!(mb.messages, truth, "bob converged through the restart");
}

#[tokio::test]
async fn the_new_routes_refuse_hostile_queries_and_reveal_nothing_of_other_rooms() {
    let node = spawn_node(|_| {}).await;
    let http = Client::new();
    let url = &node.url;
    let ada = login(&http, url, "ada").await;
    let eve = login(&http, url, "eve").await;
    let room = create_room(&http, url, &ada, "open").await;
    let private: Value = http
        .post(format!("{url}/rooms"))
        .bearer_auth(&eve.token)
        .json(&json!({"name": "eve only", "private": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let private = private["id"].as_str().unwrap().to_owned();
    let mut a = WsClient::connect(url, &ada.token).await.unwrap();
    let mut e = WsClient::connect(url, &eve.token).await.unwrap();
    a.join(&room).await;
    e.join(&private).await;
    let m = a
        .ok(json!({"type":"send","room":room,"body":"hello"}))
        .await;
    let secret = e
        .ok(json!({"type":"send","room":private,"body":"hidden"}))
        .await;
    let status = |path: String, user: TestUser| {
        let http = http.clone();
        let url = format!("{url}{path}");
        async move {
            let resp = http.get(url).bearer_auth(&user.token).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let id = m["id"].as_str().unwrap();
    let long = "%".repeat(10_000);
    let bad: Vec<String> = vec![
        "/search?q=%25%27%20OR%201%3D1--&limit=0".into(),
        "/search?q=hello&limit=-1".into(),
        "/search?q=hello&limit=10000000".into(),
        "/search?q=hello&offset=1e18".into(),
        "/search?q=hello&offset=-1".into(),
        "/search?q=hello&before=abc".into(),
        "/search?q=hello&room=abc".into(),
        "/search?q=%22&room=abc".into(),
        format!("/search?q={long}"),
        format!("/rooms/{room}/messages/{id}/thread?before=abc"),
        format!("/rooms/{room}/messages/{id}/thread?limit=0"),
        format!("/rooms/{room}/messages/not-an-id/thread"),
        "/dms?with=eve&before=abc".into(),
        "/dms?with=eve&limit=-1".into(),
    ];
    for path in bad {
        let (code, body) = status(path.clone(), ada.clone()).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
    }
    // SQL and FTS5 probes are text: 200 with what the caller may read.
    for q in [
        "%' OR 1=1--",
        "\"unterminated",
        "NEAR(a b",
        "a OR",
        "author:x",
        "hidden OR hello",
    ] {
        let (code, body) = status(format!("/search?q={}", urlencode(q)), ada.clone()).await;
        assert_eq!(code, 200, "{q}: {body}");
        assert!(
            !body.contains("hidden"),
            "{q} found eve's private message: {body}"
        );
    }
    // Another room's thread and messages are 404, as if they did not exist.
    let secret_id = secret["id"].as_str().unwrap();
    for path in [
        format!("/rooms/{private}/messages/{secret_id}/thread"),
        format!("/rooms/{room}/messages/{secret_id}/thread"),
        format!("/search?q=hidden&room={private}"),
    ] {
        let (code, body) = status(path.clone(), ada.clone()).await;
        assert_eq!(code, 404, "{path}: {body}");
        assert!(!body.contains("hidden"), "{path}: {body}");
    }
    // Over WebSocket: nothing of eve's room can be changed by ada, and nothing is written.
    for frame in [
        json!({"type":"react","room":private,"id":secret_id,"emoji":"👍","on":true}),
        json!({"type":"edit","room":private,"id":secret_id,"body":"mine"}),
        json!({"type":"delete","room":private,"id":secret_id}),
        json!({"type":"read","room":private,"seq":1}),
        json!({"type":"edit","dm":secret_id,"id":secret_id,"body":"mine"}),
    ] {
        let reply = a.request(frame.clone()).await;
        assert_eq!(reply["ok"], false, "{frame}");
    }
    assert!(
        !e.sees_within(Duration::from_millis(300), |f| f["type"] == "reaction"
            || f["type"] == "message_edited"
            || f["type"] == "message_deleted"
            || f["type"] == "receipt")
            .await,
        "eve's room heard nothing"
    );
    assert_eq!(latest(&mut e, &private).await, 1, "no seq was taken");
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

//! Room membership as the gateways keep it: a leave on one device takes the
//! user out of the room on every device, for every purpose.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TwoDevices, spawn_stack, two_devices_and_a_peer};

#[tokio::test]
async fn after_a_leave_on_another_device_every_room_request_of_that_user_is_refused() {
    let stack = spawn_stack(2).await;
    let TwoDevices {
        room,
        mut phone,
        mut laptop,
        bob: mut b,
        ..
    } = two_devices_and_a_peer(&stack).await;
    laptop
        .ok(json!({"type": "typing", "room": room, "active": true}))
        .await;
    phone.ok(json!({"type": "leave", "room": room})).await;
    // The laptop hears of it on the user's channel...
    let left = laptop
        .wait_for(|f| f["type"] == "member" && f["action"] == "left")
        .await;
    assert_eq!(left["room"], room.as_str());
    // ...and from then on the room is closed to it.
    for request in [
        json!({"type": "typing", "room": room, "active": true}),
        json!({"type": "ack", "room": room, "seq": 1}),
        json!({"type": "send", "room": room, "body": "still here?"}),
    ] {
        let reply = laptop.request(request.clone()).await;
        assert_eq!(reply["error"]["code"], "forbidden", "{request}: {reply}");
    }
    b.ok(json!({"type": "send", "room": room, "body": "bye ada"}))
        .await;
    let leaked = laptop
        .sees_within(Duration::from_millis(300), |f| f["type"] == "message")
        .await;
    assert!(!leaked, "the room still reaches the laptop");
    // Joining again on the laptop brings it back.
    laptop.join(&room).await;
    laptop
        .ok(json!({"type": "typing", "room": room, "active": true}))
        .await;
}

#[tokio::test]
async fn a_connection_may_join_at_most_its_share_of_rooms() {
    let stack = crate::helpers::spawn_stack_with(1, |_, gw| gw.max_rooms_per_conn = 2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let mut a = stack.connect(0, &ada).await;
    // Bob's rooms: ada, a member, may leave them (an owner hands over first).
    let rooms = [
        stack.room(&bob).await,
        stack.room(&bob).await,
        stack.room(&bob).await,
    ];
    a.join(&rooms[0]).await;
    a.join(&rooms[1]).await;
    let refused = a.request(json!({"type": "join", "room": rooms[2]})).await;
    assert_eq!(refused["error"]["code"], "bad_request");
    // Joining one of its rooms again is no new room.
    a.join(&rooms[1]).await;
    a.ok(json!({"type": "leave", "room": rooms[0]})).await;
    a.join(&rooms[2]).await;
}

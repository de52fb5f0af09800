//! Identifiers and bus channel names. Room and user ids are canonical
//! lowercase UUIDs because they become channel names: nothing a client
//! types is ever used as a channel name or pattern unchecked.

/// Whether `id` is a canonical lowercase hyphenated UUID. Room and user ids
/// must be, because they become bus channel names (`room:{id}`): nothing a
/// client types is ever used as a channel name or pattern unchecked.
pub fn is_canonical_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

/// Usernames: 1-32 of `[A-Za-z0-9_.-]`.
pub fn is_valid_username(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Namespace of user ids derived from usernames (UUID v5).
const USER_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c1f_5d1e_8b0a_4b7e_9f3c_2a4d_5e6f_7081);

/// The user id of `username`: the same on every node and in every token
/// minted for that name, so dev login and `telepath token` agree.
pub fn user_id_for(username: &str) -> String {
    uuid::Uuid::new_v5(&USER_NAMESPACE, username.as_bytes())
        .hyphenated()
        .to_string()
}

/// Bus channel carrying a room's events.
pub fn room_channel(room_id: &str) -> String {
    format!("room:{room_id}")
}

/// Bus channel carrying one user's events on every node.
pub fn user_channel(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Bus channel of one node, for control messages.
pub fn node_channel(node_id: &str) -> String {
    format!("node:{node_id}")
}

/// Bus channel every node subscribes to for admin broadcasts.
pub const BROADCAST_CHANNEL: &str = "broadcast";

/// Bus channel of control messages for every gateway (token revocations).
pub const NODES_CHANNEL: &str = "nodes";

/// Bus channel of presence changes; every gateway and the api subscribe to it.
pub const PRESENCE_CHANNEL: &str = "presence";

/// The pattern of a canonical id ([`is_canonical_id`]) in the OpenAPI document.
pub const ID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// The OpenAPI schema of a list of at most `max` canonical ids, so that a
/// client generated from the document (or a fuzzer) sends only ids the
/// route accepts.
pub fn id_list_schema(max: usize) -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(ID_PATTERN)),
        )
        .max_items(Some(max))
        .build()
}

#[cfg(test)]
mod tests {
    use crate::protocol::*;

    #[test]
    fn user_ids_derive_from_usernames_stably() {
        assert_eq!(user_id_for("ada"), user_id_for("ada"));
        assert_ne!(user_id_for("ada"), user_id_for("Ada"));
        assert!(is_canonical_id(&user_id_for("ada")));
        assert!(
            is_valid_username("ada_1.x-y") && !is_valid_username("a b") && !is_valid_username("")
        );
    }

    #[test]
    fn only_canonical_uuids_are_ids() {
        assert!(is_canonical_id("0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f"));
        for bad in [
            "room:*",
            "0190F5A4-7C1E-7C3A-9D2E-1A2B3C4D5E6F",
            "user:42",
            "",
            "0190f5a47c1e7c3a9d2e1a2b3c4d5e6f",
            "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6*",
        ] {
            assert!(!is_canonical_id(bad), "{bad}");
        }
    }
}

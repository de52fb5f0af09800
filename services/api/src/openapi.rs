//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the protocol types' schemas, served at `/openapi.json`.
//!
//! The api's routes are registered through `utoipa_axum::routes!` only, so
//! every api route has a path in the document, with the method and path it
//! is served on. Routes served by the gateway (`/connect`) and presence
//! (`/presence/online`, presence's internal routes) behind the same origin
//! are documented here by attribute-only functions, which nothing checks
//! against presence's router: `telepath/tests/telepath/openapi.rs` compares
//! the document with what the all-in-one serves.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use telepath_shared::protocol::{
    AdmitRequest, AdmitResult, ErrorEnvelope, HeartbeatReport, LogEntry, MessageDeleted,
    MessageEdited, OnlineUsers, PresenceReports, PresenceSummary, ReactionEvent, Receipt,
    UserConnections,
};

/// The document's fixed parts; paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(title = "Telepath", description = "Telepath's REST API: rooms, history, presence, admin. The WebSocket protocol is in docs/PROTOCOL.md."),
    paths(
        presence_online,
        connect,
        presence_heartbeat,
        presence_reports,
        presence_admit,
        presence_summary,
        presence_user_connections
    ),
    // The WebSocket events of messages that live (docs/PROTOCOL.md), so
    // clients generated from this document have their types.
    components(schemas(ErrorEnvelope, LogEntry, MessageEdited, MessageDeleted, ReactionEvent, Receipt)),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Dev login"),
        (name = "rooms", description = "Rooms, membership and history"),
        (name = "admin", description = "Admin only"),
        (name = "server", description = "The server API: an application backend with an API key (Authorization: Bearer tpk_...)"),
        (name = "dms", description = "Direct messages, conversations and the offline queue"),
        (name = "search", description = "Full-text search over the caller's rooms and DMs"),
        (name = "moderation", description = "Kick, ban, mute and the audit log (room owners and moderators)"),
        (name = "invites", description = "Invitations and invite links: the ways into a private room"),
        (name = "users", description = "Profiles, last seen, finding users by name"),
        (name = "presence", description = "Who is online (served by presence)"),
        (name = "websocket", description = "The WebSocket upgrade (served by gateways)"),
        (name = "internal", description = "Service to service; never routed by the load balancer"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub(crate) struct ApiDoc;

/// Adds the two security schemes: user JWTs and the internal token.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tpk_ API key")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "internal",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Telepath-Internal"))),
        );
    }
}

/// Users with at least one live connection (served by presence).
#[utoipa::path(
    get, path = "/presence/online", tag = "presence",
    responses(
        (status = 200, description = "Online users", body = OnlineUsers),
        (status = 401, description = "Missing or bad token", body = ErrorEnvelope),
        (status = 503, description = "Presence store unavailable", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
fn presence_online() {}

/// Upgrades to the WebSocket protocol (served by gateways; `?token=` works too).
#[utoipa::path(
    get, path = "/connect", tag = "websocket",
    description = "Upgrades to the WebSocket protocol of docs/PROTOCOL.md. Client frames: join, leave, send (reply_to), dm, typing, status, ack, broadcast, refresh, ping, edit (room|dm, id, body), delete (room|dm, id), react (room, id, emoji, on), read (room, seq). Server events: welcome, reply, error, message, dm, typing, presence, broadcast, member, room_closed, bye, message_edited, message_deleted, reaction, receipt (schemas LogEntry, MessageEdited, MessageDeleted, ReactionEvent, Receipt), invite (schema Invite), room_created and room_updated ({room: Room, by}), profile (schema Profile). member events carry action joined, left (reason kicked or banned, by), role (role, by), muted (until?, by) or unmuted (by).",
    params(("token" = Option<String>, Query, description = "JWT, for clients that cannot set headers")),
    responses(
        (status = 101, description = "Switching protocols"),
        (status = 401, description = "Missing or bad token", body = ErrorEnvelope),
        (status = 403, description = "A browser Origin that may not connect (TELEPATH_ALLOWED_ORIGINS)", body = ErrorEnvelope),
        (status = 426, description = "Not a WebSocket upgrade", body = ErrorEnvelope),
        (status = 503, description = "The gateway is draining, or holds TELEPATH_MAX_CONNS connections (Retry-After)", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
fn connect() {}

/// Every live connection of one gateway node (served by presence).
#[utoipa::path(post, path = "/internal/presence/heartbeat", tag = "internal", request_body = HeartbeatReport,
    responses((status = 204, description = "Presence converged to the listed connections (rooms, idle flags, newer status choices)"),
        (status = 400, description = "Invalid input", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope),
        (status = 413, description = "Body too large (64 MiB)", body = ErrorEnvelope),
        (status = 503, description = "Store unavailable", body = ErrorEnvelope)),
    security(("internal" = [])))]
#[allow(dead_code)]
fn presence_heartbeat() {}

/// Admits new connections under the per-user cap (served by presence).
#[utoipa::path(post, path = "/internal/presence/admit", tag = "internal", request_body = AdmitRequest,
    responses((status = 200, description = "One answer per connection, in order", body = AdmitResult),
        (status = 400, description = "Invalid input", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope),
        (status = 413, description = "Body too large (1 MiB)", body = ErrorEnvelope),
        (status = 503, description = "Store unavailable", body = ErrorEnvelope)),
    security(("internal" = [])))]
#[allow(dead_code)]
fn presence_admit() {}

/// Everyone live, with per-node counts (served by presence).
#[utoipa::path(get, path = "/internal/presence/summary", tag = "internal",
    responses((status = 200, description = "Summary", body = PresenceSummary),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope), (status = 503, description = "Store unavailable", body = ErrorEnvelope)),
    security(("internal" = [])))]
#[allow(dead_code)]
fn presence_summary() {}

/// One user's live connections (served by presence).
#[utoipa::path(get, path = "/internal/presence/users/{user_id}/connections", tag = "internal",
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, description = "Connections", body = UserConnections), (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope), (status = 503, description = "Store unavailable", body = ErrorEnvelope)),
    security(("internal" = [])))]
#[allow(dead_code)]
fn presence_user_connections() {}

/// A batch of a gateway's connection, room, typing, status and idle reports, applied in order (served by presence).
#[utoipa::path(post, path = "/internal/presence/reports", tag = "internal", request_body = PresenceReports,
    responses((status = 204, description = "Applied"), (status = 400, description = "Invalid input", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 503, description = "Store unavailable", body = ErrorEnvelope)),
    security(("internal" = [])))]
#[allow(dead_code)]
fn presence_reports() {}

/// Adds the answers every route may give beyond its own: 415 to every
/// operation that takes a JSON body, 507 to every operation that writes
/// (the database is full).
pub(crate) fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let writes = [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in writes.into_iter().flatten() {
            let responses = &mut op.responses.responses;
            if op.request_body.is_some() {
                responses
                    .entry("415".into())
                    .or_insert_with(|| error("Content-Type is not application/json").into());
            }
            responses
                .entry("507".into())
                .or_insert_with(|| error("The database is full").into());
        }
    }
}

/// Gives every operation of an `/internal/` path an operationId of its own
/// (`internal_` and the handler's name): the internal handlers share their
/// names with the public ones they serve gateways for (`join`, `leave`,
/// `messages`), and a document with one operationId twice is invalid.
pub(crate) fn unique_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !crate::is_internal(path) {
            continue;
        }
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            if let Some(id) = op
                .operation_id
                .as_mut()
                .filter(|id| !id.starts_with("internal_"))
            {
                *id = format!("internal_{id}");
            }
        }
    }
}

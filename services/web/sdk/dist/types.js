// Wire types of the Telepath protocol v1 (docs/PROTOCOL.md; the serde types in
// shared/src/protocol.rs are the source of truth for every field name).
export {};

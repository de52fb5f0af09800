//! The Telepath wire contract, v1: every WebSocket frame, REST body, error
//! code and close code named in PROTOCOL.md, as serde types, and the bodies
//! services send each other.
//!
//! This module is the one source of truth for wire-visible names. It does no
//! I/O and holds no policy beyond the bounds every service checks alike
//! ([`limits`]) and the identifiers that end up in bus channel names
//! ([`ids`]). Everything is re-exported here, so users write
//! `protocol::ClientFrame`, whichever file a type lives in.

mod client;
mod error;
mod ids;
pub mod integer;
mod internal;
mod limits;
mod manage;
mod notify;
mod rest;
mod server;
mod server_api;
mod user;

pub use client::*;
pub use error::*;
pub use ids::*;
pub use internal::*;
pub use limits::*;
pub use manage::*;
pub use notify::*;
pub use rest::*;
pub use server::*;
pub use server_api::*;
pub use user::*;

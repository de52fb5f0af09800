//! telepath-shared: what every Telepath service agrees on.
//!
//! - [`protocol`]: the wire contract (frames, REST bodies, error and close codes).
//! - [`bus`]: the pub/sub bus between nodes, with Redis and in-memory implementations.
//! - [`auth`]: JWT (HS256) verification and minting, roles, the internal token.
//! - [`config`]: one typed configuration struct per service, read from the environment.
//! - [`rate`]: rate limits shared by every node through Redis.
//! - [`telemetry`]: tracing initialisation and the Prometheus `/metrics` endpoint.
//!
//! It deliberately holds no service logic: gateways, the api and presence live
//! in their own crates under `services/`.

pub mod auth;
pub mod batch;
pub mod bus;
pub mod config;
pub mod http;
pub mod protocol;
pub mod rate;
pub mod telemetry;

#[cfg(feature = "testing")]
pub mod testing;

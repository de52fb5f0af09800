//! `telepath-load`: Telepath's own load generator, for rates k6 cannot drive
//! from two cores. Each scenario prints one JSON summary on stdout.
//!
//! Scenarios so far:
//! - `api-send`: room messages persisted through the api's internal send
//!   route (what a gateway does for every `send`), measuring acknowledged
//!   messages per second and ack latency.
//! - `connections`: idle authenticated connections to one gateway;
//!   handshakes per second and the gateway's memory per connection.
//! - `reconnect`: a reconnect storm; every client resumes with `since`.
//! - `room-fanout`: rooms with members spread over gateways and one
//!   publisher each; time from send to delivery, lost and repeated seqs.

mod api_send;
mod client;
mod connections;
mod proto;
mod reconnect;
mod report;
mod room_fanout;

use clap::{Parser, Subcommand};

/// Telepath load generator.
#[derive(Debug, Parser)]
#[command(name = "telepath-load", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Persist room messages through the api alone (commit, then ack).
    ApiSend(api_send::Args),
    /// Many idle authenticated connections to one gateway: handshakes/s, memory per connection.
    Connections(connections::Args),
    /// Everybody drops at once and resumes with `since`: time to be back, gaps, repeats.
    Reconnect(reconnect::Args),
    /// Rooms with members over several gateways, one publisher each: send-to-delivery latency, loss, repeats.
    RoomFanout(room_fanout::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let summary = match cli.scenario {
        Scenario::ApiSend(args) => serde_json::to_value(api_send::run(args).await?)?,
        Scenario::Reconnect(args) => serde_json::to_value(reconnect::run(args).await?)?,
        Scenario::Connections(args) => serde_json::to_value(connections::run(args).await?)?,
        Scenario::RoomFanout(args) => serde_json::to_value(room_fanout::run(args).await?)?,
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

//! The gateway's own settings, and its command line (`telepath-gateway
//! --help` lists every variable). What the gateway shares with other
//! services (listen address, secrets, heartbeat, body limit, presence's
//! URL) is in [`Common`].

use std::time::Duration;

use clap::Parser;
use telepath_shared::config::{ADVANCED, Common, MORE_VARIABLES};

/// Settings only gateways read.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Gateway")]
pub struct GatewayConfig {
    /// Base URL of the api.
    #[arg(
        long,
        env = "TELEPATH_API_URL",
        default_value = "http://127.0.0.1:9081"
    )]
    pub api_url: String,
    /// Largest client message, whole (across fragments), bytes; one more closes with 1009.
    #[arg(long, env = "TELEPATH_MAX_FRAME_BYTES", default_value_t = 65_536)]
    pub max_frame_bytes: usize,
    /// Frames queued to one connection before it is closed as a slow consumer (1013).
    #[arg(long, env = "TELEPATH_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,
    /// Rooms one connection may be joined to at once.
    /// WebSocket connections this node holds at most; a handshake over it
    /// gets 503 before the upgrade (0: no cap).
    #[arg(long, env = "TELEPATH_MAX_CONNS", default_value_t = 100_000)]
    pub max_conns: usize,
    /// WebSocket connections one user may hold across every gateway (counted
    /// by presence); the one over is closed with 4009 before its welcome
    /// (0: no cap).
    #[arg(long, env = "TELEPATH_MAX_CONNS_PER_USER", default_value_t = 16)]
    pub max_conns_per_user: u32,
    #[arg(long, env = "TELEPATH_MAX_ROOMS_PER_CONN", default_value_t = 100)]
    pub max_rooms_per_conn: usize,
    /// Frames per second one connection may send before `rate_limited`.
    #[arg(long, env = "TELEPATH_MAX_RATE_PER_S", default_value_t = 50)]
    pub max_rate_per_s: u32,
    /// WebSocket handshakes per second from one client address (across
    /// gateways, through Redis), burst twice that; more get 429 (0: no limit).
    #[arg(long, env = "TELEPATH_IP_CONNECT_RATE_PER_S", default_value_t = 0)]
    pub ip_connect_rate_per_s: u32,
    /// A connection that sent no data frame for this long is idle, ms; a
    /// user whose connections are all idle is `away` unless they chose a status.
    #[arg(long, env = "TELEPATH_AWAY_AFTER_MS", default_value_t = 300_000)]
    pub away_after_ms: u64,
    /// Most messages a `join` with `since` replays; a larger gap is not replayed.
    #[arg(long, env = "TELEPATH_REPLAY_CAP", default_value_t = 1000)]
    pub replay_cap: i64,
    /// The shortest gap between two writes to one connection, ms (at most
    /// 1000). A text frame that comes sooner after the last write waits for
    /// the rest of the gap, and frames arriving meanwhile share its write:
    /// fewer writes for a busy connection, up to this much latency.
    #[arg(long, env = "TELEPATH_WRITE_DELAY_MS", default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(0..=1000), help_heading = ADVANCED)]
    pub write_delay_ms: u64,
    /// Bus messages that may wait for this node's relay; one more (or one
    /// past TELEPATH_INBOUND_BYTES) is dropped, and its channel read back
    /// from the api.
    #[arg(long, env = "TELEPATH_INBOUND_QUEUE",
        default_value_t = telepath_shared::bus::DEFAULT_INBOUND_CAPACITY,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
        help_heading = ADVANCED)]
    pub inbound_queue: usize,
    /// Bytes of bus messages that may wait for this node's relay.
    #[arg(long, env = "TELEPATH_INBOUND_BYTES",
        default_value_t = telepath_shared::bus::DEFAULT_INBOUND_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
        help_heading = ADVANCED)]
    pub inbound_bytes: usize,
}

impl GatewayConfig {
    /// The shortest gap between two writes to one connection.
    pub fn write_delay(&self) -> Duration {
        Duration::from_millis(self.write_delay_ms)
    }

    /// How long a connection may send no data frame before it is idle.
    pub fn away_after(&self) -> Duration {
        Duration::from_millis(self.away_after_ms)
    }

    /// Every setting at its default, calling the api at `api_url`, without
    /// the per-user budget (tests send fast as one user; the budget's own
    /// tests set it).
    pub fn for_tests(api_url: &str) -> Self {
        GatewayConfig {
            api_url: api_url.to_owned(),
            ..telepath_shared::config::defaults()
        }
    }
}

/// `telepath-gateway`: one gateway node as its own process.
#[derive(Debug, Parser)]
#[command(name = "telepath-gateway", version, after_long_help = MORE_VARIABLES,
    about = "Telepath gateway: terminates WebSockets and fans events out through Redis")]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub gateway: GatewayConfig,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use telepath_shared::config::parse_ignoring_env;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec!["telepath-gateway", "--jwt-secret", "x"];
        argv.extend_from_slice(args);
        parse_ignoring_env(&argv)
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.gateway.api_url, "http://127.0.0.1:9081");
        assert_eq!(
            cli.gateway.write_delay_ms, 0,
            "writes are not delayed unless asked"
        );
        assert_eq!(cli.gateway.max_frame_bytes, 65_536);
        assert_eq!(cli.common.heartbeat_ms, 15_000);
    }

    #[test]
    fn the_write_delay_is_bounded() {
        let cli = parse(&["--write-delay-ms", "1000"]).unwrap();
        assert_eq!(cli.gateway.write_delay(), Duration::from_secs(1));
        for bad in ["1001", "-1", "soon"] {
            let err = parse(&[&format!("--write-delay-ms={bad}")])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--write-delay-ms"), "{bad}: {err}");
        }
    }

    #[test]
    fn help_lists_every_variable_with_its_default() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "TELEPATH_LISTEN",
            "TELEPATH_HEARTBEAT_MS",
            "TELEPATH_API_URL",
            "TELEPATH_PRESENCE_URL",
            "TELEPATH_MAX_FRAME_BYTES",
            "TELEPATH_OUTBOUND_QUEUE",
            "TELEPATH_MAX_ROOMS_PER_CONN",
            "TELEPATH_MAX_RATE_PER_S",
            "TELEPATH_AWAY_AFTER_MS",
            "TELEPATH_REPLAY_CAP",
            "TELEPATH_WRITE_DELAY_MS",
            "TELEPATH_INBOUND_QUEUE",
            "TELEPATH_INBOUND_BYTES",
            "RUST_LOG",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
        assert!(help.contains("[default: 65536]"));
        assert!(help.contains(ADVANCED));
    }
}

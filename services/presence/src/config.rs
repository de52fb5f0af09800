//! Presence's own settings, and its command line (`telepath-presence
//! --help` lists every variable). The heartbeat interval presence expires
//! connections by is the one gateways heartbeat at, so it is in [`Common`]
//! with the other shared settings.

use clap::Parser;
use telepath_shared::config::{Common, MORE_VARIABLES};

/// Settings only presence reads.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Presence")]
pub struct PresenceConfig {
    /// How long after a user's last connection closes they are announced
    /// offline, ms; a reconnect within it announces nothing.
    #[arg(long, env = "TELEPATH_PRESENCE_GRACE_MS", default_value_t = 3_000)]
    pub grace_ms: u64,
    /// A typing indicator not refreshed for this long is announced `active:false`, ms.
    #[arg(long, env = "TELEPATH_TYPING_TTL_MS", default_value_t = 6_000)]
    pub typing_ttl_ms: u64,
    /// The api's internal listener, to read the token revocations from
    /// (then `GET /presence/online` refuses revoked tokens) [default: none;
    /// the all-in-one shares the api's list].
    #[arg(
        id = "presence_api_url",
        long = "presence-api-url",
        env = "TELEPATH_API_URL"
    )]
    pub api_url: Option<String>,
}

impl PresenceConfig {
    /// Every setting at its default (tests).
    pub fn for_tests() -> Self {
        telepath_shared::config::defaults()
    }
}

/// `telepath-presence`: the presence service as its own process.
#[derive(Debug, Parser)]
#[command(name = "telepath-presence", version, after_long_help = MORE_VARIABLES,
    about = "Telepath presence: who is online, away, busy or typing, kept in Redis")]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub presence: PresenceConfig,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_lists_every_variable_with_its_default() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "TELEPATH_PRESENCE_GRACE_MS",
            "TELEPATH_TYPING_TTL_MS",
            "TELEPATH_HEARTBEAT_MS",
            "REDIS_URL",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
        assert!(help.contains("[default: 3000]"));
        let config = PresenceConfig::for_tests();
        assert_eq!((config.grace_ms, config.typing_ttl_ms), (3_000, 6_000));
    }
}

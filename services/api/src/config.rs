//! The api's own settings, and its command line (`telepath-api --help`
//! lists every variable). What the api shares with other services (listen
//! address, secrets, the body limit, presence's URL) is in [`Common`].

use std::time::Duration;

use clap::Parser;
use telepath_shared::config::{ADVANCED, Common, MORE_VARIABLES, SET, boolish};

/// Settings only the api reads.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Api")]
pub struct ApiConfig {
    /// The SQLite database (created if missing).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://telepath.db")]
    pub database_url: String,
    /// Serve `POST /auth/login` (dev login: anyone gets a token for any name).
    #[arg(long, env = "TELEPATH_DEV_LOGIN", default_value = "0", value_parser = boolish(), action = SET)]
    pub dev_login: bool,
    /// Usernames dev login may make admins (comma-separated; `*` is anyone,
    /// for tests and demos only). Anyone else asking for `"role":"admin"`
    /// gets 403.
    #[arg(
        long,
        env = "TELEPATH_DEV_ADMINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub dev_admins: Vec<String>,
    /// Largest REST request body, bytes (larger: 413).
    #[arg(long, env = "TELEPATH_MAX_REQUEST_BYTES", default_value_t = 65_536)]
    pub max_request_bytes: usize,
    /// Lifetime of dev-login tokens, seconds.
    #[arg(long, env = "TELEPATH_TOKEN_TTL_SECS", default_value_t = 86_400)]
    pub token_ttl_secs: i64,
    /// DMs that may wait for one recipient's ack; one more is refused
    /// (`rate_limited`), never dropped after it was accepted.
    #[arg(long, env = "TELEPATH_OFFLINE_QUEUE_MAX", default_value_t = 1000)]
    pub offline_queue_max: i64,
    /// How long a DM waits in the offline queue, e.g. `7d`, `12h`.
    #[arg(long, env = "TELEPATH_OFFLINE_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub offline_ttl: Duration,
    /// Days connection-log rows are kept; older ones are deleted every
    /// minute in small batches (0: kept forever).
    #[arg(long, env = "TELEPATH_CONNECTION_LOG_DAYS", default_value_t = 30)]
    pub connection_log_days: u32,
    /// Days room messages and DMs are kept when their room sets no
    /// `retention` [default: forever]; older ones are deleted every minute in
    /// small batches (DMs still in an offline queue stay).
    #[arg(long, env = "TELEPATH_RETENTION_DAYS",
        value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_days: Option<u32>,
    /// How often the cleanup of old messages and connection-log rows runs, ms.
    #[arg(long, env = "TELEPATH_RETENTION_EVERY_MS", default_value_t = 60_000,
        value_parser = clap::value_parser!(u64).range(100..), help_heading = ADVANCED)]
    pub retention_every_ms: u64,
    /// `POST /auth/login` calls per second from one client address (across
    /// api nodes, through Redis), burst twice that; more get 429 (0: no limit).
    #[arg(long, env = "TELEPATH_IP_LOGIN_RATE_PER_S", default_value_t = 5)]
    pub ip_login_rate_per_s: u32,
    /// Rooms created per second from one client address (across api nodes),
    /// burst twice that; more get 429 (0: no limit).
    #[arg(long, env = "TELEPATH_IP_ROOM_RATE_PER_S", default_value_t = 10)]
    pub ip_room_rate_per_s: u32,
    /// Largest the database may grow, bytes [default: as large as the disk
    /// allows]. Past it writes get 507 (`unavailable`) until space is freed.
    #[arg(long, env = "TELEPATH_DB_MAX_BYTES", help_heading = ADVANCED,
        value_parser = clap::value_parser!(u64).range(65_536..))]
    pub db_max_bytes: Option<u64>,
    /// Most room messages per group-commit transaction (1 turns group commit off).
    #[arg(long, env = "TELEPATH_COMMIT_BATCH", default_value_t = 256,
        value_parser = clap::value_parser!(u16).range(1..), help_heading = ADVANCED)]
    pub commit_batch: u16,
    /// Let webhooks deliver to loopback, private, link-local and other
    /// non-public addresses (refused by default: a webhook URL must not
    /// reach into the network the server runs in).
    #[arg(long, env = "TELEPATH_WEBHOOK_ALLOW_PRIVATE", default_value = "0", value_parser = boolish(), action = SET)]
    pub webhook_allow_private: bool,
    /// How long one webhook delivery attempt may take (connect, send, the
    /// answer's status line), ms; longer is a failed attempt.
    #[arg(long, env = "TELEPATH_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub webhook_timeout_ms: u64,
    /// How long a webhook delivery is retried (with exponential backoff,
    /// 1 s doubling to 1 h) before it is marked `failed`, e.g. `24h`.
    #[arg(long, env = "TELEPATH_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = humantime::parse_duration)]
    pub webhook_retry_for: Duration,
    /// Deliveries one webhook may have waiting; events past it are not
    /// queued for that webhook (counted in its `dropped`).
    #[arg(long, env = "TELEPATH_WEBHOOK_MAX_PENDING", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub webhook_max_pending: u64,
}

impl ApiConfig {
    /// Whether dev login may make `username` an admin (`TELEPATH_DEV_ADMINS`).
    pub fn may_be_dev_admin(&self, username: &str) -> bool {
        self.dev_admins
            .iter()
            .map(|name| name.trim())
            .any(|name| name == "*" || name == username)
    }

    /// Every setting at its default, with SQLite at `database_url`, dev
    /// login on and no per-address limits (tests log in and create rooms
    /// fast from one address; the limits' own tests set them).
    pub fn for_tests(database_url: &str) -> Self {
        ApiConfig {
            database_url: database_url.to_owned(),
            ip_login_rate_per_s: 0,
            ip_room_rate_per_s: 0,
            dev_login: true,
            dev_admins: vec!["*".to_owned()],
            ..telepath_shared::config::defaults()
        }
    }
}

/// `telepath-api`: the api service as its own process.
#[derive(Debug, Parser)]
#[command(name = "telepath-api", version, after_long_help = MORE_VARIABLES,
    about = "Telepath api: REST, and the owner of the SQLite database")]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub api: ApiConfig,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use telepath_shared::config::parse_ignoring_env;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec!["telepath-api", "--jwt-secret", "x"];
        argv.extend_from_slice(args);
        parse_ignoring_env(&argv)
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.api.database_url, "sqlite://telepath.db");
        assert!(
            !cli.api.dev_login,
            "dev login is off outside the all-in-one"
        );
        assert_eq!(cli.api.offline_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(cli.api.commit_batch, 256);
    }

    #[test]
    fn booleans_and_durations_parse_and_bad_ones_name_the_setting() {
        for on in ["1", "true", "yes", "on"] {
            assert!(parse(&["--dev-login", on]).unwrap().api.dev_login, "{on}");
        }
        assert!(!parse(&["--dev-login", "off"]).unwrap().api.dev_login);
        let ttl = parse(&["--offline-ttl", "12h"]).unwrap().api.offline_ttl;
        assert_eq!(ttl, Duration::from_secs(12 * 3600));
        for (args, name) in [
            (&["--dev-login", "maybe"][..], "--dev-login"),
            (&["--offline-ttl", "soon"], "--offline-ttl"),
            (&["--commit-batch", "0"], "--commit-batch"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(name), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_lists_every_variable_with_its_default() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "DATABASE_URL",
            "TELEPATH_DEV_LOGIN",
            "TELEPATH_MAX_REQUEST_BYTES",
            "TELEPATH_TOKEN_TTL_SECS",
            "TELEPATH_OFFLINE_QUEUE_MAX",
            "TELEPATH_OFFLINE_TTL",
            "TELEPATH_COMMIT_BATCH",
            "TELEPATH_MAX_BODY_BYTES",
            "TELEPATH_PRESENCE_URL",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
        assert!(help.contains("[default: sqlite://telepath.db]"));
    }
}

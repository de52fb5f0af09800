//! Configuration: every setting is a clap argument with an environment
//! variable (the names of PROTOCOL.md) and its default, so `--help` on every
//! binary lists them all. [`Common`] holds what every service reads, or what
//! two services must agree on (the heartbeat, the body limit); each service
//! crate has its own struct for the rest, and each binary flattens the ones
//! it needs. A bad value fails start-up with one line naming the setting.
//!
//! Tests build the structs directly ([`Common::for_tests`], [`defaults`]) and
//! never read or change the process environment.

use std::net::SocketAddr;
use std::time::Duration;

use std::ffi::{OsStr, OsString};

use clap::builder::{BoolishValueParser, NonEmptyStringValueParser};
use clap::{ArgAction, Args, FromArgMatches};

use crate::auth::derive_internal_token;

/// The secret the all-in-one binary uses when `TELEPATH_JWT_SECRET` is unset.
/// Fine on a laptop; every real deployment sets its own.
pub const DEV_JWT_SECRET: &str = "telepath-dev-secret-change-me";

/// The help heading of settings only benchmarks and unusual deployments touch.
pub const ADVANCED: &str = "Advanced (tuning)";

/// Variables outside the settings, read by the logging and tracing libraries;
/// every binary's `--help` ends with this.
pub const MORE_VARIABLES: &str = "\
Also read from the environment:
  RUST_LOG                     log filter [default: info]
  OTEL_EXPORTER_OTLP_ENDPOINT  OTLP/HTTP collector for traces, e.g. http://otel-collector:4318 [default: unset, nothing exported]
  OTEL_EXPORTER_OTLP_*, OTEL_BSP_*  the exporter's own settings";

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings every service reads, or that several services must agree on.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Address to listen on (host:port).
    #[arg(long, env = "TELEPATH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// This process's name in metrics, logs and `welcome`: up to 64 of
    /// A-Z a-z 0-9 - _ . [default: node-<8 random hex digits>]
    #[arg(long, env = "TELEPATH_NODE_ID", value_parser = node_id,
        default_value_t = random_node_id(), hide_default_value = true)]
    pub node_id: String,
    /// Redis for the bus and presence; unset: in memory (the all-in-one only).
    #[arg(long, env = "REDIS_URL", value_parser = NonEmptyStringValueParser::new())]
    pub redis_url: Option<String>,
    /// HS256 secret of user tokens (the all-in-one falls back to a development secret).
    #[arg(long, env = "TELEPATH_JWT_SECRET", hide_env_values = true,
        value_parser = NonEmptyStringValueParser::new())]
    pub jwt_secret: String,
    /// An identity provider's public key (RSA or EC, PEM file): RS256-512,
    /// PS256-512, ES256 and ES384 tokens signed with it are accepted
    /// besides HS256 ones.
    #[arg(long, env = "TELEPATH_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    /// An identity provider's JWKS (http(s) URL): tokens signed with its
    /// keys are accepted besides HS256 ones; fetched when first needed,
    /// again on an unknown key id (at most every 2 s) and when 10 minutes
    /// old, each fetch bounded to 2 s and 256 KiB.
    #[arg(long, env = "TELEPATH_JWT_JWKS_URL", value_parser = NonEmptyStringValueParser::new())]
    pub jwt_jwks_url: Option<String>,
    /// Required `aud` of identity-provider tokens [default: not checked].
    #[arg(long, env = "TELEPATH_JWT_AUDIENCE", value_parser = NonEmptyStringValueParser::new())]
    pub jwt_audience: Option<String>,
    /// Required `iss` of identity-provider tokens [default: not checked].
    #[arg(long, env = "TELEPATH_JWT_ISSUER", value_parser = NonEmptyStringValueParser::new())]
    pub jwt_issuer: Option<String>,
    /// The claim of identity-provider tokens holding the user's name
    /// (unique per user, like a username; e.g. preferred_username or email).
    #[arg(long, env = "TELEPATH_JWT_NAME_CLAIM", default_value = "name")]
    pub jwt_name_claim: String,
    /// The claim of identity-provider tokens holding the role: `admin`, or a
    /// list holding `admin`, makes an admin; anything else a user.
    #[arg(long, env = "TELEPATH_JWT_ROLE_CLAIM", default_value = "role")]
    pub jwt_role_claim: String,
    /// Service-to-service secret [default: derived from the JWT secret, so
    /// every service of one deployment agrees].
    #[arg(long, env = "TELEPATH_INTERNAL_TOKEN", hide_env_values = true,
        value_parser = NonEmptyStringValueParser::new())]
    pub internal_token: Option<String>,
    /// After SIGTERM the process exits within this many seconds: gateways
    /// close every connection with `bye` restart and 1012, the api commits
    /// what its writer holds.
    #[arg(long, env = "TELEPATH_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,
    /// Presence heartbeat and WebSocket ping interval, ms (gateways and
    /// presence): a connection whose heartbeats stopped expires within two.
    #[arg(long, env = "TELEPATH_HEARTBEAT_MS", default_value_t = 15_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub heartbeat_ms: u64,
    /// Largest message, DM or broadcast body, bytes (gateways and the api).
    #[arg(long, env = "TELEPATH_MAX_BODY_BYTES", default_value_t = 16_384)]
    pub max_body_bytes: usize,
    /// Base URL of presence (gateways and the api call it).
    #[arg(
        long,
        env = "TELEPATH_PRESENCE_URL",
        default_value = "http://127.0.0.1:9082"
    )]
    pub presence_url: String,
    /// HTTP connections one process serves at once (a WebSocket no longer
    /// counts once upgraded): past it the process stops accepting until one
    /// ends. Every request head must arrive within 10 s, which also closes
    /// a keep-alive connection idle for 10 s.
    #[arg(long, env = "TELEPATH_MAX_HTTP_CONNS", default_value_t = crate::http::serve::MAX_CONNECTIONS,
        help_heading = ADVANCED, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_http_conns: u64,
    /// Where this process serves its `/internal/` routes (never on
    /// TELEPATH_LISTEN) [default: 127.0.0.1:9081 for the api, 127.0.0.1:9082
    /// for presence; the gateway and the all-in-one have none unless set].
    #[arg(long, env = "TELEPATH_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    /// Serve `/metrics` on the internal listener only, not on TELEPATH_LISTEN.
    #[arg(long, env = "TELEPATH_METRICS_INTERNAL", default_value = "0",
        value_parser = boolish(), action = SET)]
    pub metrics_internal: bool,
    /// Browser origins allowed to connect and to call the REST API
    /// cross-origin: a comma list (https://app.example.com), or * for any.
    /// Unset: the page's own origin only. Clients that send no Origin
    /// (servers, apps) are never refused for it.
    #[arg(long, env = "TELEPATH_ALLOWED_ORIGINS", default_value = "", hide_default_value = true,
        value_parser = crate::http::origins::AllowedOrigins::parse)]
    pub allowed_origins: crate::http::origins::AllowedOrigins,
    /// Load balancers and proxies (comma list of addresses and CIDR blocks)
    /// whose X-Forwarded-For names the client: its address for the per-IP
    /// rate limits and the connection log. Unset: the TCP peer is the client.
    #[arg(long, env = "TELEPATH_TRUSTED_PROXIES", default_value = "", hide_default_value = true,
        value_parser = crate::http::client_ip::TrustedProxies::parse)]
    pub trusted_proxies: crate::http::client_ip::TrustedProxies,
    /// Sends, DMs, edits, deletes, reactions and typing one user may make
    /// per second over all their connections on every gateway and the REST
    /// send (shared through Redis), with a burst of twice that; more are
    /// answered `rate_limited` (0: no per-user limit).
    #[arg(long, env = "TELEPATH_USER_RATE_PER_S", default_value_t = 50)]
    pub user_rate_per_s: u32,
    /// Log format.
    #[arg(long, env = "TELEPATH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Tokio worker threads [default: one per CPU]. Fewer threads than cores
    /// suit a machine several processes share.
    #[arg(long, env = "TELEPATH_WORKER_THREADS", help_heading = ADVANCED,
        value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
}

/// `TELEPATH_NODE_ID`: up to 64 of `[A-Za-z0-9-_.]`.
fn node_id(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| v.to_owned())
        .ok_or_else(|| "use 1 to 64 of A-Z a-z 0-9 - _ .".to_owned())
}

fn random_node_id() -> String {
    format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

impl Common {
    /// The service-to-service token: `TELEPATH_INTERNAL_TOKEN`, or derived
    /// from the JWT secret.
    pub fn internal_token(&self) -> String {
        self.internal_token
            .clone()
            .unwrap_or_else(|| derive_internal_token(&self.jwt_secret))
    }

    /// The keys user tokens are checked with: `TELEPATH_JWT_SECRET`, and an
    /// identity provider's key or JWKS when configured. `Err` names a
    /// setting that cannot be used.
    pub fn jwt_keys(&self) -> Result<crate::auth::JwtKeys, String> {
        let public_key_pem = match &self.jwt_public_key_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("TELEPATH_JWT_PUBLIC_KEY_FILE {}: {e}", path.display()))?,
            ),
            None => None,
        };
        crate::auth::JwtKeys::with_external(
            &self.jwt_secret,
            crate::auth::external::ExternalSettings {
                public_key_pem,
                jwks_url: self.jwt_jwks_url.clone(),
                audience: self.jwt_audience.clone(),
                issuer: self.jwt_issuer.clone(),
                name_claim: self.jwt_name_claim.clone(),
                role_claim: self.jwt_role_claim.clone(),
            },
        )
    }

    /// How long a graceful shutdown may take.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    /// `Err` naming the problem when a split service would run with the
    /// development secret: anyone could mint tokens for it and derive its
    /// internal token. Only the all-in-one may (and it warns).
    pub fn check_secret(&self, service: &str) -> Result<(), String> {
        if self.jwt_secret == DEV_JWT_SECRET {
            return Err(format!(
                "{service} refuses the development secret: set TELEPATH_JWT_SECRET to a secret of your own \
                 (e.g. openssl rand -hex 32), the same for every service of the deployment"
            ));
        }
        Ok(())
    }

    /// The accept loop's limits (`telepath_shared::http::serve`).
    pub fn http_policy(&self) -> crate::http::serve::Policy {
        crate::http::serve::Policy {
            max_connections: usize::try_from(self.max_http_conns).unwrap_or(usize::MAX),
            ..Default::default()
        }
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Settings for tests: loopback port 0, the given secret, no Redis, a
    /// random node id, every other setting at its default.
    pub fn for_tests(secret: &str) -> Self {
        let mut common: Common = parse_defaults(&[("jwt_secret", secret)]);
        common.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        common.node_id = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        common.drain_secs = 5;
        common.user_rate_per_s = 0;
        common
    }
}

/// `T` with every setting at its default, whatever the process environment
/// holds (tests build configuration this way). `T` must have no required
/// setting.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    parse_defaults(&[])
}

/// `T` from no flags and no environment, with `values` (argument id, value)
/// standing in for required settings.
fn parse_defaults<T: Args + FromArgMatches>(values: &[(&str, &str)]) -> T {
    let mut cmd = T::augment_args(clap::Command::new("defaults")).mut_args(|a| a.env(None));
    let mut argv = vec!["defaults".to_owned()];
    for (id, value) in values {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == id)
            .expect("a known argument");
        argv.push(format!(
            "--{}={value}",
            arg.get_long().expect("a long flag")
        ));
    }
    cmd.build();
    let matches = cmd
        .try_get_matches_from(argv)
        .expect("the defaults are valid");
    T::from_arg_matches(&matches).expect("the defaults are valid")
}

/// Parses the process's arguments and environment with `cmd` (a binary's
/// command, with its own defaults) into `C`, exiting with a usage message
/// on a bad value. A variable that is set but empty counts as unset, as a
/// deployment that writes `VAR=` means.
pub fn parse_process<C: FromArgMatches>(cmd: clap::Command) -> C {
    let matches = without_empty_env(cmd, |name| std::env::var_os(name)).get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `cmd` with the variables that `lookup` finds set but empty taken off
/// their settings, so they fall back to their defaults.
fn without_empty_env(
    cmd: clap::Command,
    lookup: impl Fn(&OsStr) -> Option<OsString>,
) -> clap::Command {
    cmd.mut_args(|arg| match arg.get_env() {
        Some(name) if lookup(name).is_some_and(|v| v.is_empty()) => arg.env(None),
        _ => arg,
    })
}

/// Parses `args` (the program name first) as `C`'s command line with the
/// process environment ignored, as tests check a binary's settings.
pub fn parse_ignoring_env<C: clap::Parser>(args: &[&str]) -> Result<C, clap::Error> {
    C::command()
        .mut_args(|a| a.env(None))
        .try_get_matches_from(args)
        .and_then(|m| C::from_arg_matches(&m))
}

/// A boolean setting written `1`/`0`, `true`/`false`, `yes`/`no` or `on`/`off`.
pub fn boolish() -> BoolishValueParser {
    BoolishValueParser::new()
}

/// The `action` of a boolean setting that takes a value (`--dev-login 0`).
pub const SET: ArgAction = ArgAction::Set;

/// The tokio runtime of a service binary, with `worker_threads` workers
/// (default: one per CPU).
pub fn runtime(worker_threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(usize::from(n));
    }
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: Common,
    }

    fn parse(args: &[&str]) -> Result<Common, clap::Error> {
        let mut argv = vec!["t", "--jwt-secret", "x"];
        argv.extend_from_slice(args);
        parse_ignoring_env::<Cli>(&argv).map(|cli| cli.common)
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let common = parse(&[]).unwrap();
        assert_eq!(common.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(common.internal_token(), derive_internal_token("x"));
        assert_eq!(common.heartbeat_ms, 15_000);
        assert_eq!(common.max_body_bytes, 16_384);
        assert_eq!(common.drain(), Duration::from_secs(10));
        assert!(common.node_id.starts_with("node-"));
        assert_eq!(common.redis_url, None);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, name) in [
            (&["--listen", "nope"][..], "--listen"),
            (&["--node-id", "bad id*"], "--node-id"),
            (&["--heartbeat-ms", "99"], "--heartbeat-ms"),
            (&["--worker-threads", "0"], "--worker-threads"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(name), "{args:?}: {err}");
        }
    }

    #[test]
    fn an_explicit_internal_token_wins() {
        let common = parse(&["--internal-token", "tok"]).unwrap();
        assert_eq!(common.internal_token(), "tok");
    }

    #[test]
    fn a_missing_secret_is_refused() {
        let err = parse_ignoring_env::<Cli>(&["t"]).unwrap_err().to_string();
        assert!(err.contains("--jwt-secret"), "{err}");
    }

    #[test]
    fn an_empty_variable_counts_as_unset_and_an_empty_secret_is_refused() {
        let env = |name: &OsStr| match name.to_str() {
            Some("TELEPATH_INTERNAL_TOKEN" | "REDIS_URL" | "TELEPATH_DRAIN_SECS") => {
                Some(OsString::new())
            }
            _ => None,
        };
        let cmd = without_empty_env(Cli::command(), env);
        let cleared: Vec<&str> = cmd
            .get_arguments()
            .filter(|a| a.get_env().is_none())
            .map(|a| a.get_id().as_str())
            .collect();
        for id in ["internal_token", "redis_url", "drain_secs"] {
            assert!(cleared.contains(&id), "{id} still reads its empty variable");
        }
        let err = parse(&["--internal-token", ""]).unwrap_err().to_string();
        assert!(err.contains("--internal-token"), "{err}");
        let err = parse_ignoring_env::<Cli>(&["t", "--jwt-secret", ""]).unwrap_err();
        assert!(err.to_string().contains("--jwt-secret"), "{err}");
    }

    #[test]
    fn help_lists_every_variable() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "TELEPATH_LISTEN",
            "TELEPATH_NODE_ID",
            "REDIS_URL",
            "TELEPATH_JWT_SECRET",
            "TELEPATH_INTERNAL_TOKEN",
            "TELEPATH_DRAIN_SECS",
            "TELEPATH_HEARTBEAT_MS",
            "TELEPATH_MAX_BODY_BYTES",
            "TELEPATH_PRESENCE_URL",
            "TELEPATH_LOG_FORMAT",
            "TELEPATH_WORKER_THREADS",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }

    #[test]
    fn test_settings_ignore_the_environment() {
        let common = Common::for_tests("s");
        assert_eq!(common.jwt_secret, "s");
        assert_eq!(common.listen.port(), 0);
        assert_eq!(common.heartbeat_ms, 15_000);
    }
}

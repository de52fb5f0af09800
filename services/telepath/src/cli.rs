//! The `telepath` command line: serve (the default), mint a token, or back
//! up the database.
//! `telepath --help` lists every setting of the three services with its
//! environment variable and default; the all-in-one's own defaults (dev
//! login on, a development JWT secret) are set here.

use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use telepath_shared::auth::JwtKeys;
use telepath_shared::config::{DEV_JWT_SECRET, MORE_VARIABLES};
use telepath_shared::protocol::{Role, UserInfo, user_id_for};

use crate::Config;
use crate::backup::BackupArgs;

/// Telepath all-in-one: gateway, api and presence in one process.
#[derive(Debug, Parser)]
#[command(name = "telepath", version, about, after_long_help = MORE_VARIABLES)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command with the all-in-one's defaults: dev login on, and the
    /// development secret when `TELEPATH_JWT_SECRET` is unset.
    pub fn command_with_defaults() -> clap::Command {
        Cli::command()
            .mut_arg("dev_login", |a| a.default_value("1"))
            .mut_arg("jwt_secret", |a| {
                a.required(false)
                    .default_value(DEV_JWT_SECRET)
                    .hide_default_value(true)
            })
    }

    /// Parses the process's arguments and environment (exits with a usage
    /// message on a bad value; an empty variable counts as unset).
    pub fn parse_args() -> Cli {
        telepath_shared::config::parse_process(Self::command_with_defaults())
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve everything on TELEPATH_LISTEN (the default).
    Serve,
    /// Print a token signed with TELEPATH_JWT_SECRET, for deployments without dev login.
    Token(TokenArgs),
    /// Copy the SQLite database DATABASE_URL names to FILE while it is in use
    /// (a consistent snapshot; restore by copying FILE back while the api is stopped).
    Backup(BackupArgs),
    /// Manage the server API's keys in the database DATABASE_URL names.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
}

/// `telepath apikey create|list|revoke`.
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key and print it (once: only its hash is stored).
    Create {
        /// What the key is for (1-64 characters).
        #[arg(long)]
        name: String,
        /// Comma list of publish, presence, rooms, users.
        #[arg(long, value_parser = parse_scopes)]
        scope: ScopeList,
        /// Limit the key to rooms whose name starts with this.
        #[arg(long)]
        rooms: Option<String>,
    },
    /// List every key (never their secrets).
    List,
    /// Revoke a key by id: it is refused from then on.
    Revoke {
        /// The key's id (as `list` shows it).
        id: String,
    },
}

/// The scopes of `--scope`.
#[derive(Debug, Clone)]
pub struct ScopeList(pub Vec<telepath_shared::protocol::Scope>);

fn parse_scopes(list: &str) -> Result<ScopeList, String> {
    telepath_shared::protocol::Scope::parse_list(list).map(ScopeList)
}

impl ApikeyCommand {
    /// Runs the command against the database at `url`; what to print.
    pub async fn run(&self, url: &str) -> anyhow::Result<String> {
        use telepath_api::server_api;
        let pool = server_api::open_keys(url).await?;
        let mut conn = pool.acquire().await?;
        let out = match self {
            ApikeyCommand::Create { name, scope, rooms } => {
                let created = server_api::create_key(&mut conn, name, &scope.0, rooms.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                format!(
                    "{}\n(id {}; shown once: only its hash is stored)",
                    created.key, created.info.id
                )
            }
            ApikeyCommand::List => {
                let keys = server_api::list_keys(&mut conn)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                serde_json::to_string_pretty(&keys)?
            }
            ApikeyCommand::Revoke { id } => {
                if !server_api::revoke_key(&mut conn, id)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?
                {
                    anyhow::bail!("no key {id}");
                }
                format!("revoked {id}")
            }
        };
        drop(conn);
        pool.close().await;
        Ok(out)
    }
}

/// `telepath token --user NAME [--role admin] [--ttl 1h]`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Username; the user id is derived from it, the same way dev login derives it.
    #[arg(long)]
    pub user: String,
    /// Role of the token.
    #[arg(long, value_enum, default_value_t = RoleArg::User)]
    pub role: RoleArg,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The signing secret (required here: a token signed with the
    /// development secret would only work on a laptop).
    #[arg(long, env = "TELEPATH_JWT_SECRET", hide_env_values = true)]
    pub secret: String,
}

/// `--role` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    User,
    Admin,
}

impl TokenArgs {
    /// The signed token.
    pub fn mint(&self) -> anyhow::Result<String> {
        if !telepath_shared::protocol::is_valid_username(&self.user) {
            anyhow::bail!("--user: 1-32 characters of A-Z a-z 0-9 _ . -");
        }
        let ttl = i64::try_from(self.ttl.as_secs())
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| anyhow::anyhow!("--ttl must be at least one second"))?;
        let role = match self.role {
            RoleArg::User => Role::User,
            RoleArg::Admin => Role::Admin,
        };
        let user = UserInfo {
            id: user_id_for(&self.user),
            name: self.user.clone(),
            role,
        };
        Ok(JwtKeys::new(&self.secret).mint(&user, ttl))
    }
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    /// Parses `args` as the binary would, ignoring the process environment.
    fn try_parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::command_with_defaults()
            .mut_args(|a| a.env(None))
            .try_get_matches_from(args)
            .and_then(|m| Cli::from_arg_matches(&m))
    }

    fn parse_token(args: &[&str]) -> TokenArgs {
        match try_parse(args).unwrap().command {
            Some(Command::Token(t)) => t,
            other => panic!("expected token, got {other:?}"),
        }
    }

    #[test]
    fn token_mints_a_verifiable_admin_token_for_the_derived_user_id() {
        let t = parse_token(&[
            "telepath", "token", "--user", "ada", "--role", "admin", "--ttl", "2h", "--secret", "s",
        ]);
        let claims = JwtKeys::new("s").verify_own(&t.mint().unwrap()).unwrap();
        assert_eq!((claims.name.as_str(), claims.role), ("ada", Role::Admin));
        assert_eq!(claims.sub, user_id_for("ada"));
        let left = claims.exp - chrono::Utc::now().timestamp();
        assert!((7190..=7200).contains(&left), "{left}");
    }

    #[test]
    fn token_refuses_bad_names_and_ttls() {
        let bad_name = parse_token(&["telepath", "token", "--user", "a b", "--secret", "s"]);
        assert!(bad_name.mint().is_err());
        let args = [
            "telepath", "token", "--user", "ada", "--ttl", "soon", "--secret", "s",
        ];
        assert!(try_parse(&args).is_err());
        let args = [
            "telepath", "token", "--user", "ada", "--role", "root", "--secret", "s",
        ];
        assert!(try_parse(&args).is_err());
    }

    #[test]
    fn backup_takes_a_file_and_replaces_one_only_with_force() {
        let parse = |args: &[&str]| match try_parse(args).unwrap().command {
            Some(Command::Backup(b)) => (b.to, b.force),
            other => panic!("expected backup, got {other:?}"),
        };
        assert_eq!(
            parse(&["telepath", "backup", "--to", "b.db"]),
            ("b.db".into(), false)
        );
        assert_eq!(
            parse(&["telepath", "backup", "--to", "b.db", "--force"]),
            ("b.db".into(), true)
        );
        assert!(
            try_parse(&["telepath", "backup"]).is_err(),
            "--to is required"
        );
    }

    #[test]
    fn the_all_in_one_defaults_to_dev_login_and_the_development_secret() {
        let cli = try_parse(&["telepath"]).unwrap();
        assert!(cli.config.api.dev_login);
        assert_eq!(cli.config.common.jwt_secret, DEV_JWT_SECRET);
        assert_eq!(cli.config.common.listen.to_string(), "127.0.0.1:8080");
        let cli = try_parse(&["telepath", "--dev-login", "0", "--jwt-secret", "s"]).unwrap();
        assert!(!cli.config.api.dev_login);
        assert_eq!(cli.config.common.jwt_secret, "s");
    }

    #[test]
    fn the_operations_guide_lists_exactly_the_settings_of_the_command_line() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/OPERATIONS.md");
        let guide = std::fs::read_to_string(path).unwrap();
        let documented: std::collections::BTreeSet<String> = guide
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|v| v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .map(str::to_owned)
            .collect();
        let mut settings: std::collections::BTreeSet<String> = Cli::command_with_defaults()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        // Read by the logging and tracing libraries, not by clap.
        settings.extend([
            "RUST_LOG".to_owned(),
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
        ]);
        assert_eq!(
            documented, settings,
            "docs/OPERATIONS.md's table against --help"
        );
    }

    #[test]
    fn help_lists_every_setting_of_every_service() {
        let help = Cli::command_with_defaults().render_long_help().to_string();
        for var in [
            "TELEPATH_LISTEN",
            "TELEPATH_NODE_ID",
            "REDIS_URL",
            "DATABASE_URL",
            "TELEPATH_JWT_SECRET",
            "TELEPATH_INTERNAL_TOKEN",
            "TELEPATH_DEV_LOGIN",
            "TELEPATH_API_URL",
            "TELEPATH_PRESENCE_URL",
            "TELEPATH_TOKEN_TTL_SECS",
            "TELEPATH_MAX_REQUEST_BYTES",
            "TELEPATH_COMMIT_BATCH",
            "TELEPATH_OFFLINE_QUEUE_MAX",
            "TELEPATH_OFFLINE_TTL",
            "TELEPATH_HEARTBEAT_MS",
            "TELEPATH_AWAY_AFTER_MS",
            "TELEPATH_WRITE_DELAY_MS",
            "TELEPATH_PRESENCE_GRACE_MS",
            "TELEPATH_TYPING_TTL_MS",
            "TELEPATH_WORKER_THREADS",
            "TELEPATH_DRAIN_SECS",
            "TELEPATH_LOG_FORMAT",
            "TELEPATH_MAX_FRAME_BYTES",
            "TELEPATH_MAX_BODY_BYTES",
            "TELEPATH_OUTBOUND_QUEUE",
            "TELEPATH_MAX_ROOMS_PER_CONN",
            "TELEPATH_MAX_RATE_PER_S",
            "TELEPATH_REPLAY_CAP",
            "RUST_LOG",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            assert!(help.contains(var), "{var} missing from telepath --help");
        }
        assert!(help.contains("[default: 1]"), "dev login is on by default");
        assert!(!help.contains(DEV_JWT_SECRET), "the secret is not printed");
    }
}

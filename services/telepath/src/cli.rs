//! The `telepath` command line: serve (the default) or mint a token.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use telepath_shared::auth::JwtKeys;
use telepath_shared::protocol::{Role, UserInfo, user_id_for};

/// Telepath all-in-one: gateway, api and presence in one process.
#[derive(Debug, Parser)]
#[command(name = "telepath", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve everything on TELEPATH_LISTEN (the default).
    Serve,
    /// Print a token signed with TELEPATH_JWT_SECRET, for deployments without dev login.
    Token(TokenArgs),
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
    /// The signing secret.
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
    use super::*;

    fn parse(args: &[&str]) -> TokenArgs {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Some(Command::Token(t)) => t,
            other => panic!("expected token, got {other:?}"),
        }
    }

    #[test]
    fn token_mints_a_verifiable_admin_token_for_the_derived_user_id() {
        let t = parse(&[
            "telepath", "token", "--user", "ada", "--role", "admin", "--ttl", "2h", "--secret", "s",
        ]);
        let claims = JwtKeys::new("s").verify(&t.mint().unwrap()).unwrap();
        assert_eq!((claims.name.as_str(), claims.role), ("ada", Role::Admin));
        assert_eq!(claims.sub, user_id_for("ada"));
        let left = claims.exp - chrono::Utc::now().timestamp();
        assert!((7190..=7200).contains(&left), "{left}");
    }

    #[test]
    fn token_refuses_bad_names_and_ttls() {
        assert!(
            parse(&["telepath", "token", "--user", "a b", "--secret", "s"])
                .mint()
                .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "telepath", "token", "--user", "ada", "--ttl", "soon", "--secret", "s"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "telepath", "token", "--user", "ada", "--role", "root", "--secret", "s"
            ])
            .is_err()
        );
    }
}

//! `telepath`: the all-in-one binary (`cargo run --release` at the
//! repository root; `--help` lists every setting).

use anyhow::Context;
use telepath::cli::{Cli, Command};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_args();
    match &cli.command {
        Some(Command::Token(args)) => println!("{}", args.mint()?),
        Some(Command::Backup(args)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            println!(
                "{}",
                rt.block_on(telepath::backup::run(&cli.config.api.database_url, args))?
            );
        }
        Some(Command::Apikey(command)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            println!(
                "{}",
                rt.block_on(command.run(&cli.config.api.database_url))?
            );
        }
        Some(Command::Serve) | None => {
            telepath_shared::config::runtime(cli.config.common.worker_threads)?
                .block_on(serve(cli.config))?;
        }
    }
    Ok(())
}

async fn serve(config: telepath::Config) -> anyhow::Result<()> {
    let common = &config.common;
    let telemetry =
        telepath_shared::telemetry::init("telepath", common.log_format, &common.node_id);
    if common.jwt_secret == telepath_shared::config::DEV_JWT_SECRET {
        tracing::warn!(
            "TELEPATH_JWT_SECRET is unset: using the development secret (fine on a laptop only)"
        );
    }
    if config.api.dev_login {
        check_dev_login(common.listen)?;
    }
    let listener =
        telepath_shared::http::serve::bind(common.listen).context("binding TELEPATH_LISTEN")?;
    let addr = listener.local_addr()?;
    let internal = match common.internal_listen {
        Some(addr) => Some(telepath_shared::http::serve::bind_internal(addr)?),
        None if common.metrics_internal => {
            anyhow::bail!("TELEPATH_METRICS_INTERNAL needs TELEPATH_INTERNAL_LISTEN")
        }
        None => None,
    };
    let node = telepath::build(config).await?;
    tracing::info!(%addr, "telepath all-in-one listening (try POST /auth/login, then GET /connect)");
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_shared::telemetry::shutdown_on_signal(
        shutdown.clone(),
    ));
    telepath::run(listener, internal, node, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}

/// Dev login hands a token for any name to whoever asks. It is on by
/// default here, so by default it listens on loopback only: another
/// address needs `TELEPATH_DEV_LOGIN` set explicitly (to 0 to turn it off,
/// or to 1 to keep it on there on purpose). Either way it says so, loudly.
fn check_dev_login(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let explicit = std::env::var_os("TELEPATH_DEV_LOGIN").is_some_and(|v| !v.is_empty())
        || std::env::args().any(|a| a.starts_with("--dev-login"));
    if !listen.ip().is_loopback() && !explicit {
        anyhow::bail!(
            "dev login (on by default here) hands a token for any user name to whoever asks, \
             so it listens on loopback only: TELEPATH_LISTEN={listen} needs TELEPATH_DEV_LOGIN=0 \
             (tokens from `telepath token`), or TELEPATH_DEV_LOGIN=1 to keep dev login on there"
        );
    }
    tracing::warn!(
        %listen,
        "DEV LOGIN IS ON: anyone who reaches this port gets a token for any user name \
         (admins only if TELEPATH_DEV_ADMINS names them); set TELEPATH_DEV_LOGIN=0 outside development"
    );
    Ok(())
}

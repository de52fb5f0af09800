//! `telepath`: the all-in-one binary (`cargo run --release` at the repository root).

use anyhow::Context;
use telepath_shared::config::Env;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    telepath_shared::config::runtime()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    use clap::Parser;
    let cli = telepath::cli::Cli::parse();
    if let Some(telepath::cli::Command::Token(args)) = cli.command {
        println!("{}", args.mint()?);
        return Ok(());
    }
    let telemetry = telepath_shared::telemetry::init("telepath");
    let config = telepath::Config::from_source(&Env)?;
    if config.common().jwt_secret == telepath_shared::config::DEV_JWT_SECRET {
        tracing::warn!(
            "TELEPATH_JWT_SECRET is unset: using the development secret (fine on a laptop only)"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.common().listen)
        .await
        .context("binding TELEPATH_LISTEN")?;
    let addr = listener.local_addr()?;
    let node = telepath::build(config, addr).await?;
    tracing::info!(%addr, "telepath all-in-one listening (try POST /auth/login, then GET /connect)");
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_shared::telemetry::shutdown_on_signal(
        shutdown.clone(),
    ));
    telepath::run(listener, node, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}

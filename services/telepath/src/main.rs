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
    let listener = tokio::net::TcpListener::bind(common.listen)
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

//! `proxy`: the fault-injecting TCP proxy of the services' tests
//! (`telepath_shared::testing::proxy::Proxy`) as a process a script can put
//! between a service and what it talks to (in `chaos.sh`, between a gateway
//! and Redis), with a tiny HTTP control endpoint that sets the fault:
//!
//! - `POST /none`: pipe bytes both ways again;
//! - `POST /drop/to-client`, `/drop/to-upstream`: read the bytes going that
//!   way and throw them away (a blackhole);
//! - `POST /stall/to-client`, `/stall/to-upstream`: stop reading them;
//! - `POST /cut`: close every open connection;
//! - `POST /cut-mid-reply`: forward half of the next chunk from upstream, then close;
//! - `GET /`: how many connections are piped now.
//!
//! The proxy listens on a free loopback port, written to `--addr-file` (and
//! to stdout) once it accepts, and stops by itself after `--for`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use telepath_shared::testing::proxy::{Direction, Fault, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `telepath-load proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where every connection made to the proxy is piped.
    #[arg(long)]
    upstream: SocketAddr,
    /// The control endpoint's address (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Written with the proxy's `host:port` once it listens.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// The proxy stops by itself after this long.
    #[arg(long = "for", default_value = "1h", value_parser = humantime::parse_duration)]
    lifetime: Duration,
}

/// Runs the proxy until `--for` has passed. Prints nothing at the end: the
/// control endpoint is where its state is read.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let proxy = Proxy::start(args.upstream).await;
    let control = TcpListener::bind(args.control)
        .await
        .with_context(|| format!("bind the control endpoint {}", args.control))?;
    let control_addr = control.local_addr()?;
    if let Some(path) = &args.addr_file {
        // Written whole then renamed, so a reader never sees half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, proxy.addr().to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    println!("{}", proxy.addr());
    eprintln!(
        "proxy {} -> {}, control http://{control_addr}",
        proxy.addr(),
        args.upstream
    );
    let serve = async {
        loop {
            let Ok((conn, _)) = control.accept().await else {
                continue;
            };
            if let Err(e) = answer(conn, &proxy).await {
                eprintln!("control: {e:#}");
            }
        }
    };
    tokio::select! {
        () = serve => {}
        () = tokio::time::sleep(args.lifetime) => eprintln!("proxy: --for elapsed, stopping"),
    }
    Ok(())
}

/// Reads one HTTP request from `conn`, applies it, answers and closes.
async fn answer(mut conn: TcpStream, proxy: &Proxy) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .context("request head timed out")??;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        anyhow::ensure!(head.len() <= 8192, "request head too large");
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match command(path) {
        Some(Command::Status) => ("200 OK", String::new()),
        Some(Command::Set(fault)) => {
            proxy.set(fault);
            ("200 OK", String::new())
        }
        Some(Command::Cut) => {
            proxy.cut();
            ("200 OK", String::new())
        }
        Some(Command::CutMidReply) => {
            proxy.cut_mid_reply();
            ("200 OK", String::new())
        }
        None => ("404 Not Found", format!("unknown command {path}\n")),
    };
    let body = if body.is_empty() {
        eprintln!(
            "{} control: {path}",
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        format!("{path} ok; connections {}\n", proxy.connections())
    } else {
        body
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.shutdown().await?;
    Ok(())
}

/// What a control request asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Status,
    Set(Fault),
    Cut,
    CutMidReply,
}

/// The command a control path names.
fn command(path: &str) -> Option<Command> {
    Some(match path.trim_end_matches('/') {
        "" => Command::Status,
        "/none" => Command::Set(Fault::None),
        "/drop/to-client" => Command::Set(Fault::Drop(Direction::ToClient)),
        "/drop/to-upstream" => Command::Set(Fault::Drop(Direction::ToUpstream)),
        "/stall/to-client" => Command::Set(Fault::Stall(Direction::ToClient)),
        "/stall/to-upstream" => Command::Set(Fault::Stall(Direction::ToUpstream)),
        "/cut" => Command::Cut,
        "/cut-mid-reply" => Command::CutMidReply,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_name_the_proxys_faults() {
        assert_eq!(command("/"), Some(Command::Status));
        assert_eq!(command("/none"), Some(Command::Set(Fault::None)));
        assert_eq!(
            command("/drop/to-client"),
            Some(Command::Set(Fault::Drop(Direction::ToClient)))
        );
        assert_eq!(
            command("/stall/to-upstream/"),
            Some(Command::Set(Fault::Stall(Direction::ToUpstream)))
        );
        assert_eq!(command("/cut-mid-reply"), Some(Command::CutMidReply));
        assert_eq!(command("/drop"), None);
    }

    #[tokio::test]
    async fn a_blackhole_set_over_http_silences_replies_until_lifted() {
        // An upstream that echoes.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = c.read(&mut buf).await {
                        if n == 0 || c.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream_addr).await;
        let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control_addr = control.local_addr().unwrap();
        let proxy_addr = proxy.addr();
        tokio::spawn(async move {
            while let Ok((c, _)) = control.accept().await {
                answer(c, &proxy).await.unwrap();
            }
        });
        let post = |path: &'static str| async move {
            let mut c = TcpStream::connect(control_addr).await.unwrap();
            c.write_all(format!("POST {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        };
        let mut client = TcpStream::connect(proxy_addr).await.unwrap();
        let mut buf = [0u8; 4];
        client.write_all(b"ping").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        assert!(post("/drop/to-client").await.starts_with("HTTP/1.1 200"));
        client.write_all(b"lost").await.unwrap();
        let silent =
            tokio::time::timeout(Duration::from_millis(300), client.read_exact(&mut buf)).await;
        assert!(silent.is_err(), "a blackholed reply came through");

        assert!(post("/none").await.starts_with("HTTP/1.1 200"));
        client.write_all(b"back").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
        assert!(post("/nope").await.starts_with("HTTP/1.1 404"));
    }
}

//! TLS at the load balancer: deploy/local/run.sh's HAProxy serves HTTPS and
//! WSS with the throwaway certificate it made, and routes them exactly as
//! plain HTTP. The clients trust that certificate and nothing else.

use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::local::{LocalTopology, require};

/// curl over HTTPS trusting `ca` only: `(HTTP status, body)`, or curl's exit
/// code when no response came (60: the certificate is not trusted).
fn curl(ca: Option<&str>, args: &[&str]) -> Result<(u16, String), i32> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}"]);
    if let Some(ca) = ca {
        cmd.args(["--cacert", ca]);
    }
    let out = cmd.args(args).output().expect("curl runs");
    if !out.status.success() {
        return Err(out.status.code().unwrap_or(-1));
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    Ok((status.parse().unwrap(), body.to_owned()))
}

/// A TLS client configuration whose only trust anchor is the PEM certificate at `ca`.
fn trusting(ca: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // The provider is the one rustls is built with here (ring, the only
    // one enabled in this workspace).
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Connects to `wss://…/connect` at `base` (`https://host:port`) with
/// `token`, over TLS configured by `tls`.
async fn connect_wss(
    base: &str,
    token: &str,
    tls: rustls::ClientConfig,
) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
    let url = format!("{}/connect", base.replacen("https", "wss", 1));
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let connector = Connector::Rustls(Arc::new(tls));
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(connector)).await?;
    Ok(WsClient::after_handshake(ws).await.unwrap())
}

#[tokio::test]
async fn through_haproxy_over_tls_rest_calls_and_a_wss_connection_work_with_the_generated_certificate()
 {
    for tool in ["haproxy", "openssl", "curl"] {
        require(tool);
    }
    // Stopping it at the end takes a gateway up to its drain deadline.
    let topo = LocalTopology::start(&[("TELEPATH_DRAIN_SECS", "2")]);
    let base = topo.env["TELEPATH_TLS_URL"].clone();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = topo.env["TLS_CERT"].clone();

    // REST over HTTPS: log in and create a room.
    let (status, body) = curl(
        Some(&ca),
        &[
            "-X",
            "POST",
            &format!("{base}/auth/login"),
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"username":"ada"}"#,
        ],
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("authorization: Bearer {token}");
    let (status, body) = curl(
        Some(&ca),
        &[
            "-X",
            "POST",
            &format!("{base}/rooms"),
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"name":"sealed"}"#,
        ],
    )
    .unwrap();
    assert!((200..300).contains(&status), "{status}: {body}");
    let room = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same routing as plain HTTP: /metrics is not served here either.
    let (status, _) = curl(Some(&ca), &[&format!("{base}/metrics")]).unwrap();
    assert_eq!(status, 404);
    // It is TLS with that certificate: a client that does not trust it gives up.
    assert_eq!(curl(None, &[&format!("{base}/healthz")]), Err(60));

    // WSS: join, send, and the message comes back over the same connection.
    let mut ws = connect_wss(&base, &token, trusting(&ca)).await.unwrap();
    ws.join(&room).await;
    let reply = ws
        .ok(json!({"type": "send", "room": room, "body": "sealed with TLS"}))
        .await;
    let got = ws.next_of("message").await;
    assert_eq!(got["id"], reply["id"]);
    assert_eq!(got["body"], "sealed with TLS");

    // And the history, over HTTPS, has it.
    let (status, body) = curl(
        Some(&ca),
        &[&format!("{base}/rooms/{room}/messages"), "-H", &auth],
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["messages"][0]["body"], "sealed with TLS");

    // A WebSocket client that trusts only some other certificate is refused.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other.pem");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(other.path().join("other.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(made.status.success());
    let refused = connect_wss(&base, &token, trusting(other_ca.to_str().unwrap())).await;
    assert!(refused.is_err(), "a certificate the client does not trust");
}
